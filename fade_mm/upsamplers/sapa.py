"""SAPA: Similarity-Aware Point Affiliation for feature upsampling.

Lu, Liu, Ye, Fu, Liu, Cao. NeurIPS 2022. Each upsampled point takes its kernel from the
similarity between the high-resolution encoder feature at that point (the query, from the
guide) and the ``k x k`` low-resolution decoder neighbourhood of its parent pixel (the keys);
the softmax-normalised similarities reassemble the decoder feature (the values), exactly as a
CARAFE kernel would. The official implementation is a CUDA extension; this one is pure
PyTorch and reuses :func:`fade_mm.ops.carafe` for the reassembly.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_int, guided_output_size
from ..ops import carafe, graph_capture, local_similarity
from ._common import Upsampler, crop, empty_batch, mmcv_cuda_allowed

VARIANTS = ('I', 'B', 'G')
NORMS = ('layer', 'group', 'none')

# local_similarity, SAPA's autograd operator, lives in fade_mm.ops.similarity (next to
# carafe); re-exported here for imports from this module.
__all__ = ['SAPA', 'local_similarity']


def _nearest_up(t: Tensor, s: int, big_h: int, big_w: int) -> Tensor:
    """Channels-last nearest upsampling ``(B, h, w, d) -> (B, H, W, d)``, cropped."""
    b, h, w, d = t.shape
    up = t[:, :, None, :, None].expand(b, h, s, w, s, d).reshape(b, s * h, s * w, d)
    return crop(up, big_h, big_w, channels_last=True)


class SAPA(Upsampler):
    """SAPA upsampler: ``forward(x, guide) -> (B, C, H, W)``.

    With ``x`` the decoder feature (values), ``guide`` the encoder feature ``y``, ``LN`` a
    per-pixel LayerNorm over channels (separate affine parameters for ``x`` and ``y``),
    ``up`` nearest upsampling and ``x[n(Y, X)]`` the ``k*k`` low-res neighbours of the
    parent pixel ``(Y//s, X//s)`` (zero outside the map)::

        K[n, Y, X] = softmax_n( q(Y, X) . key(x)[n(Y, X)] )
        out[:, Y, X] = sum_n K[n, Y, X] * x[:, n(Y, X)]      (CARAFE reassembly)

    Variants (``variant=``) differ in the similarity, i.e. in ``q`` and ``key``:

    - ``'I'`` inner product: ``q = LN(y)``, ``key = LN(x)``; needs ``guide_channels ==
      in_channels``; ``embedding_dim`` unused. Parameters: the two LayerNorms,
      ``2*C + 2*C_y`` = **1,024** at 256 channels. (The official repository has no code
      path for it; it follows the paper's inner-product similarity on normalised features.)
    - ``'B'`` low-rank bilinear: ``q = W_q LN(y) + b_q``, ``key = W_k LN(x) + b_k`` with
      ``d = embedding_dim`` (32). Parameters ``2C + 2C_y + (C_y+1)d + (C+1)d`` =
      **17,472** at 256 channels (d=32). This is the official ``SAPA`` class.
    - ``'G'`` gated bilinear: the query mixes an encoder and a decoder embedding with a gate
      predicted from the decoder, ``G = up(sigmoid(w_g . LN(x) + b_g))``,
      ``q = G * (W_qy LN(y) + b_qy) + (1 - G) * up(W_qx x + b_qx)``; key as in ``'B'``.
      As in the official code (``SAPAExp``, ``q_mode='gate'``) the decoder query embedding
      reads the *un-normalised* ``x``. Parameters ``2C + 2C_y + (C_y+1)d + 2(C+1)d + C+1``
      = **25,953** at 256 channels (d=32).

    Similarities are plain dot products (no ``1/sqrt(d)`` temperature), values are the raw
    ``x``, out-of-map neighbours take part in the softmax with logit 0 and contribute zero
    values -- all as in the official CUDA implementation. Initialisation as the official
    code: embedding weights truncated-normal with std 0.02, cut at +-2 like timm's default
    (so in effect plain normal), zero biases, LayerNorms identity.
    Parameter names (``norm_x``, ``norm_y``, ``q``/``qy``/``qx``, ``k``, ``gate``) and
    ``nn.Linear`` shapes follow the official modules, whose state dicts therefore load
    (the official default ``embedding_dim`` is 64, the paper's 32).

    Normalisation of ``x`` and ``y`` before the embeddings (``norm=``): ``'layer'`` (default,
    the paper's code: per-pixel LayerNorm over channels, as above); ``'group'`` (the authors'
    later mmseg/mmdet forks, tiny-smart/segmentation-with-upsamplers: ``GroupNorm(32)`` over
    channel groups *and* the whole map, then the embeddings -- 1x1 convs there, the same maps
    as these ``Linear`` layers; same parameter count as ``'layer'``, a different function);
    ``'none'`` (their ``norm=False``: raw features, no norm parameters, 16,448 at 256
    channels for ``'B'``). Values are the raw ``x`` in every case.

    Args:
        in_channels: channels ``C`` of ``x`` (decoder feature).
        scale_factor: integer upsampling ratio ``s``.
        up_kernel: odd size ``k`` of the low-res neighbourhood (5).
        embedding_dim: channels ``d`` of the query/key embeddings (32); ``'B'``/``'G'`` only.
        variant: ``'I'`` | ``'B'`` (default) | ``'G'``.
        guide_channels: channels ``C_y`` of the guide; defaults to ``in_channels``.
        norm: ``'layer'`` (default) | ``'group'`` | ``'none'`` (see above).
        norm_groups: groups of ``norm='group'`` (32); must divide ``C`` and ``C_y``.

    Determinism: the similarity and the reassembly are plain PyTorch with deterministic
    backward passes; under ``torch.use_deterministic_algorithms(True)`` the reassembly skips
    mmcv's CUDA kernel (``atomicAdd`` backward).

    Double backward (``create_graph=True``, e.g. gradient penalties) works: the custom
    backward passes of the similarity and the reassembly then differentiate their loop-free
    formulations (:func:`fade_mm.ops.similarity_shift`, :func:`fade_mm.ops.carafe_shift`),
    which hold the ``k*k*d*h*w`` and ``k*k*C*h*w`` unfolds.

    Shapes:
        x: ``(B, C, h, w)``; guide: ``(B, C_y, H, W)`` with ``ceil(H/s) = h``,
        ``ceil(W/s) = w``; output: ``(B, C, H, W)``.
    """

    uses_guide = True

    def __init__(self, in_channels: int, scale_factor: int = 2, up_kernel: int = 5,
                 embedding_dim: int = 32, variant: str = 'B',
                 guide_channels: Optional[int] = None, norm: str = 'layer',
                 norm_groups: int = 32) -> None:
        super().__init__()
        name = type(self).__name__
        in_channels = check_int(name, 'in_channels', in_channels, 1)
        scale_factor = check_int(name, 'scale_factor', scale_factor, 1)
        up_kernel = check_int(name, 'up_kernel', up_kernel, 1, odd=True)
        embedding_dim = check_int(name, 'embedding_dim', embedding_dim, 1)
        check_choice(name, 'variant', variant, VARIANTS)
        check_choice(name, 'norm', norm, NORMS)
        if guide_channels is None:
            guide_channels = in_channels
        guide_channels = check_int(name, 'guide_channels', guide_channels, 1)
        if variant == 'I' and guide_channels != in_channels:
            raise ValueError(f"{name}: `guide_channels` must equal `in_channels`={in_channels} "
                             f"for variant='I' (inner product without embeddings), got "
                             f"{guide_channels}")
        self.in_channels = in_channels
        self.scale_factor = scale_factor
        self.up_kernel = up_kernel
        self.variant = variant
        self.guide_channels = guide_channels
        self.embedding_dim = in_channels if variant == 'I' else embedding_dim
        self.norm = norm

        if norm == 'layer':
            self.norm_x = nn.LayerNorm(in_channels)
            self.norm_y = nn.LayerNorm(guide_channels)
        elif norm == 'group':
            norm_groups = check_int(name, 'norm_groups', norm_groups, 1)
            for arg, c in (('in_channels', in_channels), ('guide_channels', guide_channels)):
                if c % norm_groups:
                    raise ValueError(f"{name}: `{arg}` must be divisible by norm_groups="
                                     f"{norm_groups} for norm='group', got {c}")
            self.norm_x = nn.GroupNorm(norm_groups, in_channels)
            self.norm_y = nn.GroupNorm(norm_groups, guide_channels)
        self.norm_groups = norm_groups
        if variant == 'B':
            self.q = nn.Linear(guide_channels, embedding_dim)
        elif variant == 'G':
            self.qy = nn.Linear(guide_channels, embedding_dim)
            self.qx = nn.Linear(in_channels, embedding_dim)
            self.gate = nn.Linear(in_channels, 1)
        if variant != 'I':
            self.k = nn.Linear(in_channels, embedding_dim)
        self.init_weights()

    def init_weights(self) -> None:
        """Embeddings truncated-normal (std 0.02) with zero biases, norms identity (as the
        official code)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                m.reset_parameters()

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, scale_factor={self.scale_factor}, '
                f'up_kernel={self.up_kernel}, embedding_dim={self.embedding_dim}, '
                f'variant={self.variant!r}, guide_channels={self.guide_channels}'
                + ('' if self.norm == 'layer' else f', norm={self.norm!r}'))

    def _normalised(self, t: Tensor, which: str) -> Tensor:
        """``t`` (channels first) normalised as ``self.norm`` says, channels last."""
        if self.norm == 'group':
            return getattr(self, which)(t).permute(0, 2, 3, 1)
        t_cl = t.permute(0, 2, 3, 1)
        return getattr(self, which)(t_cl) if self.norm == 'layer' else t_cl

    def query_key(self, x: Tensor, guide: Tensor):
        """Channels-last embeddings: query ``(B, H, W, d)`` and key ``(B, h, w, d)``."""
        s = self.scale_factor
        big_h, big_w = guide.shape[-2:]
        x_cl = x.permute(0, 2, 3, 1)
        x_n = self._normalised(x, 'norm_x')
        y_n = self._normalised(guide, 'norm_y')
        if self.variant == 'I':
            return y_n, x_n
        key = self.k(x_n)
        if self.variant == 'B':
            return self.q(y_n), key
        # Linear maps commute with nearest upsampling: embed and gate at low resolution.
        gate = _nearest_up(torch.sigmoid(self.gate(x_n)), s, big_h, big_w)
        q_dec = _nearest_up(self.qx(x_cl), s, big_h, big_w)
        return gate * self.qy(y_n) + (1 - gate) * q_dec, key

    def kernels(self, x: Tensor, guide: Tensor) -> Tensor:
        """Softmax-normalised kernels ``(B, k*k, s*h, s*w)``, whole ``s x s`` cells.

        Rows/columns beyond the guide's ``(H, W)`` get a zero query (uniform kernels) and
        are cropped after reassembly.
        """
        s = self.scale_factor
        h, w = x.shape[-2:]
        query, key = self.query_key(x, guide)
        big_h, big_w = query.shape[1:3]
        if graph_capture() or (big_h, big_w) != (s * h, s * w):
            query = F.pad(query, (0, 0, 0, s * w - big_w, 0, s * h - big_h))
        return F.softmax(local_similarity(query, key, self.up_kernel, s), dim=1)

    def forward(self, x: Tensor, guide: Optional[Tensor] = None) -> Tensor:
        big_h, big_w = guided_output_size(type(self).__name__, x, guide, self.in_channels,
                                          self.scale_factor,
                                          self.guide_channels)
        if x.shape[0] == 0:
            return empty_batch(x, guide, big_h, big_w)
        up = carafe(x, self.kernels(x, guide), self.up_kernel, 1, self.scale_factor,
                    use_mmcv_cuda=mmcv_cuda_allowed())
        return crop(up, big_h, big_w)
