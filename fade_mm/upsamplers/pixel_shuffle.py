"""Sub-pixel convolution upsampling (pixel shuffle).

Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network", CVPR 2016; the design of mmcv's ``PixelShufflePack``. A conv
predicts ``s*s`` values per channel at low resolution, then
``out[b, c, s*y + i, s*x + j] = conv(x)[b, c*s*s + i*s + j, y, x]``.
"""
from __future__ import annotations

from typing import Optional

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_int, unguided_output_size
from ._common import Upsampler, crop, empty_batch


class PixelShuffleUpsample(Upsampler):
    """Pixel-shuffle upsampler, ``forward(x, guide=None) -> (B, C, H, W)``.

    ``upsample_conv``: ``Conv2d(C, C*s*s, upsample_kernel, padding=upsample_kernel//2)``,
    Xavier-uniform with zero bias, followed by ``F.pixel_shuffle(., s)``. Parameter names
    match mmcv's ``PixelShufflePack(C, C, s, upsample_kernel)``, whose state dict loads
    as is. Parameters: ``C*C*s*s*K*K + C*s*s``, i.e. ``2,360,320`` at 256 channels,
    ``s = 2``, ``K = 3``.

    Unguided peer of :class:`~fade_mm.upsamplers.FADE`: a guide is accepted for its size
    only; the ``s x`` result is then cropped to it.

    Args:
        in_channels: channels ``C`` of input and output.
        scale_factor: integer upsampling ratio ``s``.
        upsample_kernel: odd kernel size ``K`` of the channel-expanding conv (3).

    Double backward (``create_graph=True``, e.g. gradient penalties) works: only
    differentiable torch ops.

    Shapes:
        x: ``(B, C, h, w)``; guide (optional): ``(B, *, H, W)`` with ``ceil(H/s) = h`` and
        ``ceil(W/s) = w``; output: ``(B, C, H, W)``, or ``(B, C, s*h, s*w)`` without guide.
    """

    uses_guide = False

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 upsample_kernel: int = 3) -> None:
        super().__init__()
        name = type(self).__name__
        in_channels = check_int(name, 'in_channels', in_channels, 1)
        scale_factor = check_int(name, 'scale_factor', scale_factor, 1)
        # An even kernel cannot be padded symmetrically: the map would lose a row and column.
        upsample_kernel = check_int(name, 'upsample_kernel', upsample_kernel, 1, odd=True)
        self.in_channels = in_channels
        self.scale_factor = scale_factor
        self.upsample_kernel = upsample_kernel
        self.upsample_conv = nn.Conv2d(in_channels, in_channels * scale_factor * scale_factor,
                                       upsample_kernel, padding=upsample_kernel // 2)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform weight, zero bias."""
        nn.init.xavier_uniform_(self.upsample_conv.weight)
        nn.init.zeros_(self.upsample_conv.bias)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, scale_factor={self.scale_factor}, '
                f'upsample_kernel={self.upsample_kernel}')

    def forward(self, x: Tensor, guide: Optional[Tensor] = None) -> Tensor:
        out_h, out_w = unguided_output_size(type(self).__name__, x, guide,
                                              self.in_channels, self.scale_factor)
        if x.shape[0] == 0:
            return empty_batch(x, guide, out_h, out_w)
        up = F.pixel_shuffle(self.upsample_conv(x), self.scale_factor)
        return crop(up, out_h, out_w)
