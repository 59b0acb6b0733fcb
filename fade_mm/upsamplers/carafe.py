"""CARAFE: Content-Aware ReAssembly of FEatures.

Wang, Chen, Xu, Liu, Loy, Lin. ICCV 2019 (https://arxiv.org/abs/1905.02188). A kernel
prediction module compresses the decoder feature, predicts one ``k x k`` reassembly kernel
per output pixel and group at low resolution (``s*s`` of them per input pixel), normalises
them with a softmax, and the CARAFE operator reassembles each output pixel from the
``k x k`` neighbourhood of its source pixel.
"""
from __future__ import annotations

from typing import Optional

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_int, unguided_output_size
from ..ops.carafe import carafe
from ._common import Upsampler, crop, empty_batch, mmcv_cuda_allowed


class CARAFEUpsample(Upsampler):
    """CARAFE upsampler (the ``CARAFEPack`` design), ``forward(x, guide=None) -> (B, C, H, W)``.

    Registered as ``'CARAFEUpsample'``, next to ``NearestUpsample`` and ``BilinearUpsample``
    (the reassembly operator itself is :func:`fade_mm.ops.carafe`); :class:`CARAFE` is its
    former name, kept so that configs with ``type='CARAFE'`` build the same module.

    1. ``channel_compressor``: ``Conv2d(C, compressed_channels, 1)``.
    2. ``content_encoder``: ``Conv2d(compressed_channels, up_group*s*s*k*k, encoder_kernel,
       dilation=encoder_dilation)``, "same" padding, at low resolution.
    3. Pixel shuffle to ``(B, up_group*k*k, s*h, s*w)``, softmax over each group's ``k*k``.
    4. Reassembly with :func:`fade_mm.ops.carafe` (pure PyTorch on CPU; mmcv's CUDA kernel
       on GPU when available, except under ``torch.use_deterministic_algorithms(True)``:
       its backward accumulates with ``atomicAdd``, so the pure-PyTorch reassembly, whose
       backward is deterministic, is used instead).

    Parameter names, shapes and the content encoder's channel order
    (``(group*k*k + tap)*s*s + sub_pixel``) are those of ``mmcv.ops.CARAFEPack``, so its
    state dict (e.g. from an ``FPN_CARAFE`` checkpoint) loads with ``strict=True``; the
    initialisation is mmcv's too (Xavier uniform, then ``N(0, 0.001)`` for the content
    encoder, zero biases). Parameters: ``C*d + d + d*G*s*s*k*k*E*E + G*s*s*k*k`` with
    ``d = compressed_channels``, ``E = encoder_kernel``: ``16,448 + 57,700 = 74,148`` at
    256 channels with the defaults.

    Unguided peer of :class:`~fade_mm.upsamplers.FADE`: a guide is accepted for its size
    only; the ``s x`` result is then cropped to it.

    Args:
        in_channels: channels ``C`` of input and output (mmcv calls it ``channels``).
        scale_factor: integer upsampling ratio ``s``.
        up_kernel: odd reassembly kernel size ``k`` (5).
        up_group: channel groups ``G`` with their own kernels (1); divides ``C``.
        encoder_kernel: odd kernel size of the content encoder (3).
        encoder_dilation: dilation of the content encoder (1).
        compressed_channels: channels ``d`` of the compressed feature (64).

    Double backward (``create_graph=True``, e.g. gradient penalties) works: the custom
    backward of the reassembly then differentiates its loop-free formulation
    (:func:`fade_mm.ops.carafe_shift`), which holds the ``k*k*C*h*w`` unfold.

    Shapes:
        x: ``(B, C, h, w)``; guide (optional): ``(B, *, H, W)`` with ``ceil(H/s) = h`` and
        ``ceil(W/s) = w``; output: ``(B, C, H, W)``, or ``(B, C, s*h, s*w)`` without guide.
    """

    uses_guide = False

    def __init__(self, in_channels: int, scale_factor: int = 2, up_kernel: int = 5,
                 up_group: int = 1, encoder_kernel: int = 3, encoder_dilation: int = 1,
                 compressed_channels: int = 64) -> None:
        super().__init__()
        name = type(self).__name__
        in_channels = check_int(name, 'in_channels', in_channels, 1)
        scale_factor = check_int(name, 'scale_factor', scale_factor, 1)
        up_kernel = check_int(name, 'up_kernel', up_kernel, 1, odd=True)
        up_group = check_int(name, 'up_group', up_group, 1)
        if in_channels % up_group:
            raise ValueError(f'{name}: `up_group` must divide in_channels={in_channels}, '
                             f'got {up_group}')
        # mmcv pads by (E-1)*dilation/2, which only keeps the size for odd E.
        encoder_kernel = check_int(name, 'encoder_kernel', encoder_kernel, 1, odd=True)
        encoder_dilation = check_int(name, 'encoder_dilation', encoder_dilation, 1)
        compressed_channels = check_int(name, 'compressed_channels', compressed_channels, 1)
        self.in_channels = in_channels
        self.scale_factor = scale_factor
        self.up_kernel = up_kernel
        self.up_group = up_group
        self.encoder_kernel = encoder_kernel
        self.encoder_dilation = encoder_dilation
        self.compressed_channels = compressed_channels
        self.channel_compressor = nn.Conv2d(in_channels, compressed_channels, 1)
        self.content_encoder = nn.Conv2d(
            compressed_channels, up_group * scale_factor * scale_factor * up_kernel * up_kernel,
            encoder_kernel, padding=(encoder_kernel - 1) * encoder_dilation // 2,
            dilation=encoder_dilation)
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv's ``CARAFEPack`` initialisation."""
        for m in (self.channel_compressor, self.content_encoder):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        # Near-zero logits give near-uniform kernels, i.e. a smooth (box-filter) start.
        nn.init.normal_(self.content_encoder.weight, 0, 0.001)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, scale_factor={self.scale_factor}, '
                f'up_kernel={self.up_kernel}, up_group={self.up_group}, '
                f'encoder_kernel={self.encoder_kernel}, '
                f'encoder_dilation={self.encoder_dilation}, '
                f'compressed_channels={self.compressed_channels}')

    def kernel_normalizer(self, logits: Tensor) -> Tensor:
        """``(B, G*s*s*k*k, h, w)`` logits -> ``(B, G*k*k, s*h, s*w)`` normalised kernels.

        Same channel order and result as ``CARAFEPack.kernel_normalizer``.
        """
        kernels = F.pixel_shuffle(logits, self.scale_factor)
        b, c, big_h, big_w = kernels.shape
        kernels = kernels.view(b, self.up_group, -1, big_h, big_w).softmax(2)
        return kernels.view(b, c, big_h, big_w)

    def forward(self, x: Tensor, guide: Optional[Tensor] = None) -> Tensor:
        out_h, out_w = unguided_output_size(type(self).__name__, x, guide,
                                              self.in_channels, self.scale_factor)
        if x.shape[0] == 0:
            return empty_batch(x, guide, out_h, out_w)
        kernels = self.kernel_normalizer(self.content_encoder(self.channel_compressor(x)))
        up = carafe(x, kernels, self.up_kernel, self.up_group, self.scale_factor,
                    use_mmcv_cuda=mmcv_cuda_allowed())
        return crop(up, out_h, out_w)


class CARAFE(CARAFEUpsample):
    """Former name of :class:`CARAFEUpsample`, still registered (``type='CARAFE'``): the same
    module, parameters and state dict."""
