"""Semi-shift convolution (FADE, ECCV 2022 / IJCV 2024).

One convolution ``W`` is shared between a high-resolution encoder embedding ``e``
``(B, d, H, W)`` and a low-resolution decoder embedding ``q`` ``(B, d, h, w)``, with
``h = ceil(H / s)``, ``w = ceil(W / s)``::

    logits = (W * e + b) + nearest_up_s(W * q)[:H, :W]        # (B, k_out, H, W)

so every high-resolution position sees the 3x3 encoder neighbourhood centred on it and the
3x3 decoder neighbourhood of its parent pixel. The bias is applied once: the published code
adds it in both branches, which only re-parametrises it (official bias x 2 == ours).

Two implementations give the same numbers (up to float rounding):
- ``'l2h'`` (IJCV, memory-efficient): the formula above, literally.
- ``'h2l'`` (ECCV supplementary, Algorithm 1): the ``s*s`` sub-pixel shifts of the padded
  encoder map are stacked on the batch axis and convolved with stride ``s`` at low
  resolution, the decoder term is added there, and the result is space-reassembled.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_feature, check_int, check_spatial

__all__ = ['semi_shift_conv', 'SEMI_SHIFT_IMPLS']

SEMI_SHIFT_IMPLS = ('l2h', 'h2l')


def _nearest_up_crop(t: Tensor, s: int, out_h: int, out_w: int) -> Tensor:
    """Nearest ``s``-times upsampling of ``(B, C, h, w)`` cropped to ``(out_h, out_w)``."""
    if s > 1:
        t = F.interpolate(t, scale_factor=s, mode='nearest')
    return t[:, :, :out_h, :out_w]


def semi_shift_conv(enc: Tensor, dec: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                    scale_factor: int = 2, impl: str = 'l2h', groups: int = 1) -> Tensor:
    """Semi-shift convolution.

    Args:
        enc: ``(B, d, H, W)`` high-resolution (encoder) embedding.
        dec: ``(B, d, h, w)`` low-resolution (decoder) embedding, ``h = ceil(H/s)``,
            ``w = ceil(W/s)``.
        weight: ``(k_out, d // groups, kc, kc)`` shared convolution weight, ``kc`` odd.
        bias: ``(k_out,)`` or None; applied once.
        scale_factor: integer ratio ``s >= 1`` between the two resolutions.
        impl: ``'l2h'`` or ``'h2l'`` (same result).
        groups: convolution groups (``d`` for the depthwise FADE-Lite variant).

    Returns:
        ``(B, k_out, H, W)`` logits.

    Raises:
        ValueError: naming the argument: maps that are not 4-D float tensors or have no
            pixels, ``dec`` not of ``enc``'s batch size and channels at ``ceil(H/s) x
            ceil(W/s)``, a ``weight`` that does not read ``d`` channels, ``scale_factor`` or
            ``groups`` not an int >= 1, an unknown ``impl``.
    """
    name = 'semi_shift_conv'
    check_choice(name, 'impl', impl, SEMI_SHIFT_IMPLS)
    s = check_int(name, 'scale_factor', scale_factor, 1)
    groups = check_int(name, 'groups', groups, 1)
    for arg, t in (('enc', enc), ('dec', dec)):
        check_feature(name, arg, t)
        check_spatial(name, arg, t)
    b, d, big_h, big_w = enc.shape
    h, w = dec.shape[-2:]
    want_h, want_w = -(-big_h // s), -(-big_w // s)
    if tuple(dec.shape) != (b, d, want_h, want_w):
        raise ValueError(f'{name}: `dec` must be (B, d, ceil(H/{s}), ceil(W/{s})) = '
                         f'{(b, d, want_h, want_w)} for `enc` of shape {tuple(enc.shape)}, got '
                         f'{tuple(dec.shape)}')
    if weight.dim() != 4 or weight.shape[1] * groups != d:
        raise ValueError(f'{name}: `weight` must be (k_out, d/groups, kc, kc) with '
                         f'd/groups = {d}/{groups}, got shape {tuple(weight.shape)}')
    kc = weight.shape[-1]
    pad = kc // 2
    low = F.conv2d(dec, weight, None, padding=pad, groups=groups)
    if impl == 'l2h':
        high = F.conv2d(enc, weight, bias, padding=pad, groups=groups)
        return high + _nearest_up_crop(low, s, big_h, big_w)

    # h2l: zero-pad the encoder map to exactly (s*h, s*w) (the same zeros the 'same'-padded
    # convolution would see past the border), then take the s*s sub-pixel shifts.
    e = F.pad(enc, (pad, pad + s * w - big_w, pad, pad + s * h - big_h))
    span_h, span_w = s * (h - 1) + kc, s * (w - 1) + kc
    shifts = [e[:, :, sy:sy + span_h, sx:sx + span_w] for sy in range(s) for sx in range(s)]
    per_shift = F.conv2d(torch.cat(shifts, 0), weight, bias, stride=s, groups=groups)
    per_shift = per_shift.view(s, s, b, weight.shape[0], h, w) + low  # (sy, sx, B, k_out, h, w)
    out = per_shift.permute(2, 3, 4, 0, 5, 1).reshape(b, weight.shape[0], s * h, s * w)
    return out[:, :, :big_h, :big_w]
