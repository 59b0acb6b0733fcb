"""Learned transposed-convolution (deconvolution) upsampling.

Each input pixel scatters a learned ``K x K`` stamp (per input/output channel pair) onto the
output grid with stride ``s``:
``out[b, o, Y, X] = bias[o] + sum_{c, y, x} x[b, c, y, x] * W[c, o, Y + p - s*y, X + p - s*x]``
over the ``(y, x)`` for which the weight index lies in ``[0, K)``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch.nn as nn
from torch import Tensor

from .._checks import check_int, unguided_output_size


def deconv_geometry(scale_factor: int) -> Tuple[int, int]:
    """``(kernel_size, padding)`` of a transposed conv whose output is exactly ``s x``.

    The output length is ``(h - 1)*s - 2p + K``, so ``K = s + 2p``. Even ``s``: ``K = 2s``,
    ``p = s/2`` (4/1 at ``s = 2``), every output pixel covered by two taps per axis -- the
    usual overlap that avoids the checkerboard of ``K = s``. Odd ``s``: ``K = 2s - 1``,
    ``p = (s - 1)/2``, the nearest symmetric choice.
    """
    kernel = 2 * scale_factor - scale_factor % 2
    return kernel, (kernel - scale_factor) // 2


class DeconvUpsample(nn.Module):
    """Transposed-convolution upsampler, ``forward(x, guide=None) -> (B, C, H, W)``.

    One ``nn.ConvTranspose2d(C, C, K, stride=s, padding=p)`` with ``(K, p)`` from
    :func:`deconv_geometry` (``K = 4, p = 1`` at ``s = 2``), Xavier-uniform weights and zero
    bias (as mmdet's ``FPN_CARAFE`` initialises its deconv upsamplers). Parameters:
    ``C*C*K*K + C``, i.e. ``256*256*16 + 256 = 1,048,832`` at 256 channels and ``s = 2``.

    Unguided peer of :class:`~fade_mm.upsamplers.FADE`: a guide is accepted for its size
    only; the ``s x`` result is then cropped to it.

    Args:
        in_channels: channels ``C`` of input and output.
        scale_factor: integer upsampling ratio ``s``.

    Shapes:
        x: ``(B, C, h, w)``; guide (optional): ``(B, *, H, W)`` with ``ceil(H/s) = h`` and
        ``ceil(W/s) = w``; output: ``(B, C, H, W)``, or ``(B, C, s*h, s*w)`` without guide.
    """

    uses_guide = False

    def __init__(self, in_channels: int, scale_factor: int = 2) -> None:
        super().__init__()
        name = type(self).__name__
        check_int(name, 'in_channels', in_channels, 1)
        check_int(name, 'scale_factor', scale_factor, 1)
        self.in_channels = in_channels
        self.scale_factor = scale_factor
        kernel, padding = deconv_geometry(scale_factor)
        self.deconv = nn.ConvTranspose2d(in_channels, in_channels, kernel,
                                         stride=scale_factor, padding=padding)
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.xavier_uniform_(self.deconv.weight)
        nn.init.zeros_(self.deconv.bias)

    def extra_repr(self) -> str:
        return f'in_channels={self.in_channels}, scale_factor={self.scale_factor}'

    def forward(self, x: Tensor, guide: Optional[Tensor] = None) -> Tensor:
        out_h, out_w = unguided_output_size(type(self).__name__, x, guide,
                                              self.in_channels, self.scale_factor)
        return self.deconv(x)[:, :, :out_h, :out_w]
