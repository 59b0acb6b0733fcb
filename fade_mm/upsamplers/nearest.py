"""Nearest-neighbour upsampling: the parameter-free baseline of every upsampler comparison.

Each low-resolution pixel is copied into an ``s x s`` block,
``out[b, c, Y, X] = x[b, c, Y // s, X // s]``.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor

from .._checks import check_int, unguided_output_size
from ._common import Upsampler, crop


class NearestUpsample(Upsampler):
    """Nearest-neighbour upsampler, ``forward(x, guide=None) -> (B, C, H, W)``; no parameters.

    A drop-in, unguided peer of :class:`~fade_mm.upsamplers.FADE`: a guide is accepted
    for its size only (its values are ignored), so configs can swap upsamplers freely.

    Args:
        in_channels: channels ``C`` of ``x`` (checked, not used otherwise).
        scale_factor: integer upsampling ratio ``s``.

    Double backward (``create_graph=True``, e.g. gradient penalties) works: only
    differentiable torch ops.

    Shapes:
        x: ``(B, C, h, w)``; guide (optional): ``(B, *, H, W)`` with ``ceil(H/s) = h`` and
        ``ceil(W/s) = w``; output: ``(B, C, H, W)``, or ``(B, C, s*h, s*w)`` without guide.
        The output with a guide is the ``s x`` result cropped to ``(H, W)``.
    """

    uses_guide = False

    def __init__(self, in_channels: int, scale_factor: int = 2) -> None:
        super().__init__()
        name = type(self).__name__
        in_channels = check_int(name, 'in_channels', in_channels, 1)
        scale_factor = check_int(name, 'scale_factor', scale_factor, 1)
        self.in_channels = in_channels
        self.scale_factor = scale_factor

    def extra_repr(self) -> str:
        return f'in_channels={self.in_channels}, scale_factor={self.scale_factor}'

    def forward(self, x: Tensor, guide: Optional[Tensor] = None) -> Tensor:
        out_h, out_w = unguided_output_size(type(self).__name__, x, guide,
                                              self.in_channels, self.scale_factor)
        up = F.interpolate(x, scale_factor=self.scale_factor, mode='nearest')
        return crop(up, out_h, out_w)
