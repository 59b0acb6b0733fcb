"""The kernel generators of FADE's ablation (rows B1-B3 of the paper), off FADE's main path.

FADE proper (rows B4-B6) makes its kernel logits with the semi-shift convolution
(:meth:`FADE.kernel_logits <fade_mm.upsamplers.FADE.kernel_logits>`). The alternatives the
paper compares it with are built and run here, on a :class:`~fade_mm.upsamplers.FADE`
instance and under its layer names (``compressor_enc``, ``compressor_dec``,
``content_encoder``), so ablation checkpoints keep their keys. With ``e = compressor_enc(guide)``
and ``q = compressor_dec(x)``:

- B1, ``kernel_source='encoder'``: ``logits = conv(e)`` at high resolution (no ``q``).
- B2, ``kernel_source='decoder'``: ``logits = pixel_shuffle(conv(q))``, ``conv`` to
  ``s*s*k*k`` channels at low resolution as CARAFE does, so each sub-pixel gets its own
  kernel (no ``e``; ``compressor_dec`` has the bias then).
- B3, ``kernel_generator='naive'``: ``logits = conv(concat(e, nearest_up(q)))`` at high
  resolution (with ``depthwise=True`` the two are interleaved, so that each depthwise group
  sees ``(e_i, q_i)``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ._common import crop, up_crop

KERNEL_SOURCES = ('both', 'encoder', 'decoder')
KERNEL_GENERATORS = ('semi_shift', 'naive')


def ablation_layers(fade: nn.Module) -> None:
    """Add the kernel-generating layers of ``fade``'s ablation row to it."""
    k2 = fade.up_kernel * fade.up_kernel
    source, d, e = fade.kernel_source, fade.embedding_dim, fade.encoder_kernel
    if source in ('both', 'encoder'):
        fade.compressor_enc = nn.Conv2d(fade.guide_channels, d, 1)
    if source in ('both', 'decoder'):
        # one bias suffices where both compressors feed the same linear conv
        fade.compressor_dec = nn.Conv2d(fade.in_channels, d, 1, bias=source == 'decoder')
    fade.content_encoder = nn.Conv2d(
        2 * d if source == 'both' else d,
        fade.scale_factor ** 2 * k2 if source == 'decoder' else k2,
        e, padding=e // 2, groups=k2 if fade.depthwise else 1)


def ablation_logits(fade: nn.Module, x: Tensor, guide: Tensor,
                    whole_cells: bool = False) -> Tensor:
    """Kernel logits of ``fade``'s ablation row; contract of ``FADE.kernel_logits``."""
    s = fade.scale_factor
    big_h, big_w = guide.shape[-2:]
    if whole_cells:
        big_h, big_w = s * x.shape[-2], s * x.shape[-1]
    if fade.kernel_source == 'decoder':  # B2
        logits = F.pixel_shuffle(fade.content_encoder(fade.compressor_dec(x)), s)
        return crop(logits, big_h, big_w)
    enc = fade.compressor_enc(guide)
    if whole_cells:
        enc = F.pad(enc, (0, big_w - enc.shape[-1], 0, big_h - enc.shape[-2]))
    if fade.kernel_source == 'encoder':  # B1
        return fade.content_encoder(enc)
    dec_up = up_crop(fade.compressor_dec(x), s, big_h, big_w)  # B3
    if fade.depthwise:
        both = torch.stack((enc, dec_up), 2).flatten(1, 2)
    else:
        both = torch.cat((enc, dec_up), 1)
    return fade.content_encoder(both)
