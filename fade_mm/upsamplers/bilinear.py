"""Bilinear upsampling: the default upsampler of most decoders (FPN, UPerNet, SegFormer).

For ``align_corners=False`` the output pixel ``Y`` samples ``x`` at the source coordinate
``(Y + 0.5) / s - 0.5`` (clamped at 0 and ``h - 1``) by linear interpolation along each axis;
for ``align_corners=True`` at ``Y * (h - 1) / (s*h - 1)``.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_int, unguided_output_size
from ._common import Upsampler, crop


class BilinearUpsample(Upsampler):
    """Bilinear upsampler, ``forward(x, guide=None) -> (B, C, H, W)``; no parameters.

    Unguided peer of :class:`~fade_mm.upsamplers.FADE`: a guide is accepted for its size
    only. With a guide of odd size the ``s x`` result is cropped, so every output pixel keeps
    the same source coordinate it has without a guide (resizing straight to ``(H, W)``
    would stretch the grid by ``H / (s*h)`` instead).

    Args:
        in_channels: channels ``C`` of ``x`` (checked, not used otherwise).
        scale_factor: integer upsampling ratio ``s``.
        align_corners: as in :func:`torch.nn.functional.interpolate` (default ``False``,
            as mmdet/mmseg decoders use).

    Determinism: on CUDA the backward of bilinear interpolation accumulates with
    ``atomicAdd`` and raises under ``torch.use_deterministic_algorithms(True)`` (as do the
    bilinear resizes inside mmseg's heads and losses); use ``warn_only=True`` there, or
    :class:`NearestUpsample`, whose backward is deterministic.

    Double backward (``create_graph=True``, e.g. gradient penalties) works: only
    differentiable torch ops.

    Shapes:
        x: ``(B, C, h, w)``; guide (optional): ``(B, *, H, W)`` with ``ceil(H/s) = h`` and
        ``ceil(W/s) = w``; output: ``(B, C, H, W)``, or ``(B, C, s*h, s*w)`` without guide.
    """

    uses_guide = False

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 align_corners: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        in_channels = check_int(name, 'in_channels', in_channels, 1)
        scale_factor = check_int(name, 'scale_factor', scale_factor, 1)
        check_choice(name, 'align_corners', align_corners, (False, True))
        self.in_channels = in_channels
        self.scale_factor = scale_factor
        self.align_corners = bool(align_corners)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, scale_factor={self.scale_factor}, '
                f'align_corners={self.align_corners}')

    def forward(self, x: Tensor, guide: Optional[Tensor] = None) -> Tensor:
        out_h, out_w = unguided_output_size(type(self).__name__, x, guide,
                                              self.in_channels, self.scale_factor)
        up = F.interpolate(x, scale_factor=self.scale_factor, mode='bilinear',
                           align_corners=self.align_corners)
        return crop(up, out_h, out_w)
