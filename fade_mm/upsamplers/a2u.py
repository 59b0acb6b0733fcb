"""A2U: affinity-aware upsampling.

Dai, Lu, Shen. "Learning Affinity-Aware Upsampling for Deep Image Matting", CVPR 2021.
Upsampling kernels are predicted from the high-resolution encoder feature (the guide) by a
low-rank bilinear model of the second-order affinity between the guide's channels, and are
applied to the low-resolution decoder feature by CARAFE reassembly.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_feature, check_int, guided_output_size
from ..ops import carafe, graph_capture
from ._common import Upsampler, crop, empty_batch, mmcv_cuda_allowed

KERNEL_NORMS = ('sigmoid_softmax', 'softmax')


def _pooling_matrix(size, out: int, like: Tensor) -> Tensor:
    """``(out, size)`` averaging matrix of adaptive average pooling along one axis: row ``i``
    averages ``[floor(i*size/out), ceil((i+1)*size/out))``, as ``adaptive_avg_pool2d``."""
    i = torch.arange(out, device=like.device)
    start = torch.div(i * size, out, rounding_mode='floor')
    end = torch.div((i + 1) * size + out - 1, out, rounding_mode='floor')
    pos = torch.arange(size, device=like.device)
    inside = (pos[None] >= start[:, None]) & (pos[None] < end[:, None])
    weights = inside.to(like.dtype)
    return weights / weights.sum(1, keepdim=True)


def _adaptive_avg_pool_by_matrices(t: Tensor, out: int) -> Tensor:
    """``adaptive_avg_pool2d(t, out)`` as two matrix products, exportable for any input size
    (ONNX has no adaptive pooling for sizes unknown at export time)."""
    ph = _pooling_matrix(t.shape[-2], out, t)
    pw = _pooling_matrix(t.shape[-1], out, t)
    return torch.matmul(torch.matmul(ph, t), pw.transpose(0, 1))


class A2U(Upsampler):
    """Affinity-aware upsampler: ``forward(x, guide) -> (B, C, H, W)``.

    With ``s`` the scale, ``k`` the reassembly kernel, ``k_e`` the encoding kernel,
    ``d`` the rank and ``g`` the guide ``(B, C, H, W)`` (zero-padded on the right/bottom to
    ``(s*h, s*w)`` when ``H`` or ``W`` is odd):

    1. Per-image parameters from pooled guide statistics (computed on the unpadded guide):
       ``U, V = conv1x1(adaptive_avg_pool(g, k_e))`` -- ``d`` filters of ``k_e x k_e``
       each, shared by all channels (``share=True``) or one per channel;
       ``P = conv1x1(global_avg_pool(g))`` -- ``s*s*k*k*d`` mixing weights.
    2. Bilinear encoding at low resolution: each channel of ``g`` is filtered by ``U_j``
       and by ``V_j`` with stride ``s`` and padding ``(k_e - s)/2`` (the ``k_e x k_e``
       window centred on each ``s x s`` cell), then ``LeakyReLU(GroupNorm(.))``.
    3. Affinity ``a_j = sum_c U_j g[c] * V_j g[c] / sqrt(C)``, ``(B, d, h, w)``: a rank-``d``
       bilinear form over the channels of the local ``k_e x k_e`` patch.
    4. Kernel logits ``sum_j P[o, j] a_j`` for ``o < s*s*k*k`` are pixel-shuffled to
       ``(B, k*k, s*h, s*w)`` and normalised by ``softmax(sigmoid(.))`` over the ``k*k``
       taps (official A2U; ``sigmoid`` alone when ``k = 1``).
    5. ``out = CARAFE(x, kernels, k, s)`` cropped to ``(H, W)``.

    The default is the variant FADE benchmarked in SegFormer-B1 (``A2UUp`` in its
    ``segformer.b1_a2u`` log, the ``adobe.yaml`` setting of the official A2U matting code):
    ``k = 3`` (``up_kernel_size``), ``k_e = 6`` (``encode_kernel_size``), rank ``d = 1``,
    ``share=True``, one kernel group, ``GroupNorm(32)`` + ``LeakyReLU(0.01)``, sigmoid then
    softmax. Parameters at ``C = 256``, ``s = 2``:

    ========================================  ======
    two GroupNorm(32, 256) (affine)            1,024
    kernel projection 256 -> 36 (+bias)        9,252
    downsampling projection 256 -> 36 (+bias)  9,252
    two filter generators 256 -> 1 (+bias)       514
    total                                     20,042
    ========================================  ======

    The official module also predicts A2U's paired *downsampling* kernels (``s*k`` square,
    stride ``s``, softmax); FADE's copy kept that projection (``bconv_DP`` in its log, with
    ``find_unused_parameters=True`` in its config) but upsamples only. They are kept here
    (``with_downsampler=True``) so the count matches the published 20,042 and are usable
    through :meth:`downsample`; ``forward`` does not touch them, so training with DDP needs
    ``find_unused_parameters=True`` (as FADE's config had) unless ``with_downsampler=False``
    (10,790 parameters at 256 channels).

    Determinism: under ``torch.use_deterministic_algorithms(True)`` on CUDA the pooled
    statistics are computed by two matrix products instead of ``adaptive_avg_pool2d``, whose
    CUDA backward has no deterministic implementation (same numbers to float rounding), and
    the reassembly avoids mmcv's ``atomicAdd`` kernel.

    Args:
        in_channels: channels ``C`` of the decoder feature ``x`` (and of the output).
        scale_factor: integer upsampling ratio ``s``.
        up_kernel: odd reassembly kernel size ``k`` (3).
        encoder_kernel: size ``k_e`` of the bilinear encoding filters; ``k_e - s`` must be
            even and non-negative. ``None`` means ``s + 4`` (6 for ``s = 2``).
        rank: rank ``d`` of the bilinear affinity model (1).
        share: one ``U``/``V`` filter for all channels (``True``) or one per channel.
        norm_groups: GroupNorm groups; must divide ``C``. ``None`` means ``gcd(32, C)``
            (32 for 256 channels; the official code hard-codes 32).
        kernel_norm: ``'sigmoid_softmax'`` (official) or ``'softmax'``.
        with_downsampler: keep the downsampling-kernel projection (see above).
        guide_channels: channels ``C_g`` of the guide; defaults to ``in_channels`` (20,042
            parameters at 256). Every learned layer of A2U reads the guide only, so a
            different ``C_g`` just resizes them (``norm_groups`` must then divide ``C_g``):
            ``4*C_g`` (norms) ``+ 2*(C_g+1)*f`` (filters, ``f = d`` or ``d*C_g``)
            ``+ (1 or 2)*(C_g+1)*s*s*k*k*d`` (projections); no extra layer is added.

    Double backward (``create_graph=True``, e.g. gradient penalties) works: the custom
    backward of the reassembly then differentiates its loop-free formulation
    (:func:`fade_mm.ops.carafe_shift`), which holds the ``k*k*C*h*w`` unfold.

    Shapes:
        x: ``(B, C, h, w)`` decoder feature; guide: ``(B, C_g, H, W)`` encoder feature with
        ``ceil(H/s) = h``, ``ceil(W/s) = w``; output: ``(B, C, H, W)``.
    """

    uses_guide = True

    def __init__(self, in_channels: int, scale_factor: int = 2, up_kernel: int = 3,
                 encoder_kernel: Optional[int] = None, rank: int = 1, share: bool = True,
                 norm_groups: Optional[int] = None, kernel_norm: str = 'sigmoid_softmax',
                 with_downsampler: bool = True, guide_channels: Optional[int] = None) -> None:
        super().__init__()
        name = type(self).__name__
        in_channels = check_int(name, 'in_channels', in_channels, 1)
        if guide_channels is None:
            guide_channels = in_channels
        guide_channels = check_int(name, 'guide_channels', guide_channels, 1)
        scale_factor = check_int(name, 'scale_factor', scale_factor, 1)
        up_kernel = check_int(name, 'up_kernel', up_kernel, 1, odd=True)
        if encoder_kernel is None:
            encoder_kernel = scale_factor + 4
        encoder_kernel = check_int(name, 'encoder_kernel', encoder_kernel, scale_factor)
        if (encoder_kernel - scale_factor) % 2:
            raise ValueError(f'{name}: `encoder_kernel` minus `scale_factor` must be even so '
                             f'that the window is centred on each {scale_factor}x'
                             f'{scale_factor} cell, got encoder_kernel={encoder_kernel}')
        rank = check_int(name, 'rank', rank, 1)
        check_choice(name, 'share', share, (True, False))
        if norm_groups is None:
            norm_groups = math.gcd(32, guide_channels)
        norm_groups = check_int(name, 'norm_groups', norm_groups, 1)
        if guide_channels % norm_groups:
            raise ValueError(f'{name}: `norm_groups` must divide guide_channels='
                             f'{guide_channels}, got {norm_groups}')
        check_choice(name, 'kernel_norm', kernel_norm, KERNEL_NORMS)
        check_choice(name, 'with_downsampler', with_downsampler, (True, False))
        self.in_channels = in_channels
        self.guide_channels = guide_channels
        self.scale_factor = scale_factor
        self.up_kernel = up_kernel
        self.encoder_kernel = encoder_kernel
        self.rank = rank
        self.share = bool(share)
        self.norm_groups = norm_groups
        self.kernel_norm = kernel_norm
        self.with_downsampler = bool(with_downsampler)

        taps = scale_factor * scale_factor * up_kernel * up_kernel
        cg = guide_channels
        filters = rank if share else rank * cg
        self.norm_u = nn.GroupNorm(norm_groups, cg)
        self.norm_v = nn.GroupNorm(norm_groups, cg)
        self.filter_u = nn.Conv2d(cg, filters, 1)
        self.filter_v = nn.Conv2d(cg, filters, 1)
        self.proj_up = nn.Conv2d(cg, taps * rank, 1)
        if with_downsampler:
            # Same tap count: the down kernel is (s*k) x (s*k), i.e. s*s*k*k taps.
            self.proj_down = nn.Conv2d(cg, taps * rank, 1)
        self.init_weights()

    def init_weights(self) -> None:
        """PyTorch's default initialisation of every layer, as the official module (which
        sets none of its own)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.GroupNorm)):
                m.reset_parameters()

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, scale_factor={self.scale_factor}, '
                f'up_kernel={self.up_kernel}, encoder_kernel={self.encoder_kernel}, '
                f'rank={self.rank}, share={self.share}, norm_groups={self.norm_groups}, '
                f'kernel_norm={self.kernel_norm!r}, with_downsampler={self.with_downsampler}, '
                f'guide_channels={self.guide_channels}')

    def _pad_to_cells(self, guide: Tensor) -> Tensor:
        s = self.scale_factor
        big_h, big_w = guide.shape[-2:]
        pad_h, pad_w = -big_h % s, -big_w % s
        # Padding unconditionally while a graph is captured keeps it valid for every size.
        if graph_capture() or pad_h or pad_w:
            return F.pad(guide, (0, pad_w, 0, pad_h))
        return guide

    def _encode(self, guide: Tensor, filters: Tensor) -> Tensor:
        """Filter every channel with its image's ``k_e x k_e`` filters, stride ``s``.

        ``guide`` ``(B, C, s*h, s*w)``, ``filters`` ``(B, d or d*C, k_e, k_e)`` ->
        ``(B*d, C, h, w)`` (rank on the batch axis, ready for GroupNorm per rank).
        """
        b, big_h, big_w = guide.shape[0], guide.shape[2], guide.shape[3]
        c, d, ke, s = self.guide_channels, self.rank, self.encoder_kernel, self.scale_factor
        if self.share:
            weight = filters.view(b, 1, d, ke, ke).expand(b, c, d, ke, ke)
        else:
            weight = filters.view(b, d, c, ke, ke).transpose(1, 2)
        if graph_capture():
            # ONNX convolutions need weights of known shape; an unfold and one product with
            # the per-image filters export for any size (9x the guide's memory, export only).
            cols = F.unfold(guide.reshape(-1, 1, big_h, big_w), ke, padding=(ke - s) // 2,
                            stride=s).view(b, c, ke * ke, -1)
            h, w = -(-big_h // s), -(-big_w // s)
            out = torch.einsum('bcdk,bckp->bcdp', weight.reshape(b, c, d, ke * ke), cols)
            return out.reshape(b, c, d, h, w).transpose(1, 2).reshape(-1, c, h, w)
        # One grouped conv for the whole batch: group (b, c) owns its d filters.
        out = F.conv2d(guide.reshape(1, -1, big_h, big_w),
                       weight.reshape(-1, 1, ke, ke), stride=s,
                       padding=(ke - s) // 2, groups=b * c)
        h, w = out.shape[-2:]
        return out.view(-1, c, d, h, w).transpose(1, 2).reshape(-1, c, h, w)

    def affinity(self, guide: Tensor) -> Tensor:
        """Low-rank affinity map ``(B, d, h, w)`` of the guide ``(B, C, H, W)``."""
        b, c = guide.shape[:2]
        ke = self.encoder_kernel
        if graph_capture() or (guide.is_cuda and torch.are_deterministic_algorithms_enabled()):
            # Also the deterministic path: adaptive_avg_pool2d's CUDA backward has none.
            pooled = _adaptive_avg_pool_by_matrices(guide, ke)
        else:
            pooled = F.adaptive_avg_pool2d(guide, ke)
        fu = self.filter_u(pooled)
        fv = self.filter_v(pooled)
        padded = self._pad_to_cells(guide)
        eu = F.leaky_relu(self.norm_u(self._encode(padded, fu)), 0.01)
        ev = F.leaky_relu(self.norm_v(self._encode(padded, fv)), 0.01)
        h, w = eu.shape[-2:]
        # sqrt(C) keeps the bilinear form's scale independent of the width, as in A2U.
        return (eu * ev).sum(1).view(b, self.rank, h, w) / math.sqrt(c)

    @staticmethod
    def _mix(proj: nn.Conv2d, guide: Tensor, aff: Tensor) -> Tensor:
        """``sum_j P[o, j] a_j`` with ``P`` from the pooled guide: ``(B, taps, h, w)``."""
        b, d = aff.shape[:2]
        p = proj(guide.mean((2, 3), keepdim=True)).view(b, -1, d)
        return torch.einsum('boj,bjhw->bohw', p, aff)

    def up_kernels(self, guide: Tensor, aff: Optional[Tensor] = None) -> Tensor:
        """Normalised reassembly kernels ``(B, k*k, s*h, s*w)`` from the guide."""
        if aff is None:
            aff = self.affinity(guide)
        logits = F.pixel_shuffle(self._mix(self.proj_up, guide, aff), self.scale_factor)
        if self.kernel_norm == 'softmax':
            return F.softmax(logits, dim=1)
        if self.up_kernel == 1:
            # A softmax over one tap is constant; the official code keeps the sigmoid only.
            return torch.sigmoid(logits)
        return F.softmax(torch.sigmoid(logits), dim=1)

    def down_kernels(self, guide: Tensor, aff: Optional[Tensor] = None) -> Tensor:
        """A2U downsampling kernels ``(B, (s*k)**2, h, w)``, softmax over the taps."""
        if not self.with_downsampler:
            raise ValueError(f'{type(self).__name__}: built with with_downsampler=False, so '
                             f'it has no downsampling kernels')
        if aff is None:
            aff = self.affinity(guide)
        return F.softmax(self._mix(self.proj_down, guide, aff), dim=1)

    def downsample(self, guide: Tensor) -> Tensor:
        """A2U's paired downsampling of the guide itself: ``(B, C, ceil(H/s), ceil(W/s))``.

        ``out[c, i, j] = sum_{u,v} K[u*kd + v, i, j] * g[c, s*i - p + u, s*j - p + v]`` with
        ``kd = s*k``, ``p = (kd - s)/2``, zero outside (and on the odd-size padding).
        """
        name = type(self).__name__
        check_feature(name, 'guide', guide, self.guide_channels)
        kern = self.down_kernels(guide)
        s, kd = self.scale_factor, self.scale_factor * self.up_kernel
        h, w = kern.shape[-2:]
        p = (kd - s) // 2
        gp = F.pad(self._pad_to_cells(guide), (p, p, p, p))
        out = guide.new_zeros(guide.shape[0], guide.shape[1], h, w)
        # Accumulating over taps avoids materialising a (kd*kd)-times larger unfold.
        for u in range(kd):
            for v in range(kd):
                tap = gp[:, :, u:u + s * (h - 1) + 1:s, v:v + s * (w - 1) + 1:s]
                out = out + kern[:, u * kd + v:u * kd + v + 1] * tap
        return out

    def forward(self, x: Tensor, guide: Optional[Tensor] = None) -> Tensor:
        big_h, big_w = guided_output_size(type(self).__name__, x, guide, self.in_channels,
                                          self.scale_factor, self.guide_channels)
        if x.shape[0] == 0:
            return empty_batch(x, guide, big_h, big_w)
        kernels = self.up_kernels(guide)
        up = carafe(x, kernels, self.up_kernel, 1, self.scale_factor,
                    use_mmcv_cuda=mmcv_cuda_allowed())
        return crop(up, big_h, big_w)
