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
from ._common import Upsampler, crop


def deconv_geometry(scale_factor: int) -> Tuple[int, int]:
    """``(kernel_size, padding)`` of a transposed conv whose output is exactly ``s x``.

    The output length is ``(h - 1)*s - 2p + K``, so ``K = s + 2p``. Even ``s``: ``K = 2s``,
    ``p = s/2`` (4/1 at ``s = 2``), every output pixel covered by two taps per axis -- the
    usual overlap that avoids the checkerboard of ``K = s``. Odd ``s``: ``K = 2s - 1``,
    ``p = (s - 1)/2``, the nearest symmetric choice.
    """
    kernel = 2 * scale_factor - scale_factor % 2
    return kernel, (kernel - scale_factor) // 2


def deconv_geometry_for_kernel(kernel_size: int, scale_factor: int) -> Tuple[int, int]:
    """``(padding, output_padding)`` of a ``kernel_size`` transposed conv whose output is
    exactly ``s x``: ``p = (K - 1) // 2`` and ``op = s + 2p - K``, as mmdet's ``FPN_CARAFE``
    builds its deconv upsamplers (``K = 3``: ``p = 1, op = 1`` at ``s = 2``).

    Raises:
        ValueError: if ``op`` falls outside ``[0, s)`` (an even ``K`` at ``s = 1``).
    """
    padding = (kernel_size - 1) // 2
    output_padding = scale_factor + 2 * padding - kernel_size
    if not 0 <= output_padding < scale_factor:
        raise ValueError(f'DeconvUpsample: `kernel_size` must give an output padding in '
                         f'[0, {scale_factor}) at scale_factor={scale_factor} (K = s + 2*((K-1)'
                         f'//2) - op), got {kernel_size}')
    return padding, output_padding


class DeconvUpsample(Upsampler):
    """Transposed-convolution upsampler, ``forward(x, guide=None) -> (B, C, H, W)``.

    One ``nn.ConvTranspose2d(C, C, K, stride=s, padding=p, output_padding=op)``,
    Xavier-uniform weights and zero bias (as mmdet's ``FPN_CARAFE`` initialises its deconv
    upsamplers). Parameters: ``C*C*K*K + C``.

    * ``kernel_size=None`` (default): ``(K, p)`` from :func:`deconv_geometry`, ``op = 0``
      (``K = 4, p = 1`` at ``s = 2``): ``1,048,832`` parameters at 256 channels.
    * ``kernel_size=K``: ``(p, op)`` from :func:`deconv_geometry_for_kernel`. ``K = 3``
      (``p = 1, op = 1`` at ``s = 2``) is mmdet's ``FPN_CARAFE`` deconv and the one behind the
      published deconv rows of FADE (+2.4M on Faster R-CNN, +3.5M on SegFormer-B1):
      ``256*256*9 + 256 = 590,080`` parameters at 256 channels.

    Unguided peer of :class:`~fade_mm.upsamplers.FADE`: a guide is accepted for its size
    only; the ``s x`` result is then cropped to it.

    Args:
        in_channels: channels ``C`` of input and output.
        scale_factor: integer upsampling ratio ``s``.
        kernel_size: ``K`` of the transposed conv, or None for :func:`deconv_geometry`.

    Double backward (``create_graph=True``, e.g. gradient penalties) works: only
    differentiable torch ops.

    Shapes:
        x: ``(B, C, h, w)``; guide (optional): ``(B, *, H, W)`` with ``ceil(H/s) = h`` and
        ``ceil(W/s) = w``; output: ``(B, C, H, W)``, or ``(B, C, s*h, s*w)`` without guide.
    """

    uses_guide = False

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 kernel_size: Optional[int] = None) -> None:
        super().__init__()
        name = type(self).__name__
        in_channels = check_int(name, 'in_channels', in_channels, 1)
        scale_factor = check_int(name, 'scale_factor', scale_factor, 1)
        self.in_channels = in_channels
        self.scale_factor = scale_factor
        if kernel_size is not None:
            kernel_size = check_int(name, 'kernel_size', kernel_size, 1)
        self.kernel_size = kernel_size
        if kernel_size is None:
            kernel, padding = deconv_geometry(scale_factor)
            output_padding = 0
        else:
            kernel = kernel_size
            padding, output_padding = deconv_geometry_for_kernel(kernel_size, scale_factor)
        self.deconv = nn.ConvTranspose2d(in_channels, in_channels, kernel,
                                         stride=scale_factor, padding=padding,
                                         output_padding=output_padding)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform weight, zero bias (mmdet's ``FPN_CARAFE`` deconv)."""
        nn.init.xavier_uniform_(self.deconv.weight)
        nn.init.zeros_(self.deconv.bias)

    def extra_repr(self) -> str:
        text = f'in_channels={self.in_channels}, scale_factor={self.scale_factor}'
        if self.kernel_size is not None:
            text += f', kernel_size={self.kernel_size}'
        return text

    def forward(self, x: Tensor, guide: Optional[Tensor] = None) -> Tensor:
        out_h, out_w = unguided_output_size(type(self).__name__, x, guide,
                                              self.in_channels, self.scale_factor)
        return crop(self.deconv(x), out_h, out_w)
