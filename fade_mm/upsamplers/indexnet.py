"""IndexNet: learned index functions for upsampling.

Lu, Dai, Shen, Xu. "Indices Matter: Learning to Index for Deep Image Matting", ICCV 2019
(extended in TPAMI 2020, "Index Networks"). An index block looks at the high-resolution
encoder feature (the guide) and predicts, for every ``s x s`` cell, how much each sub-pixel
should receive; the decoder feature is nearest-upsampled and multiplied by these indices,
a learned generalisation of max-unpooling.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_int, guided_output_size
from ..ops import graph_capture
from ._common import Upsampler, crop, empty_batch

INDEX_MODES = ('holistic', 'o2o', 'm2o')
INDEX_NORMS = ('sigmoid', 'sigmoid_softmax')


class IndexNet(Upsampler):
    """IndexNet upsampler: ``forward(x, guide) -> (B, C, H, W)``.

    ``out[c, Y, X] = I[c', Y, X] * x[c, Y//s, X//s]`` with ``c' = 0`` for holistic indices
    (one map shared by all channels) and ``c' = c`` for depthwise ones. The indices come
    from an index block applied to the guide ``g`` (zero-padded on the right/bottom to
    ``(s*h, s*w)`` when ``H`` or ``W`` is odd) with stride ``s``, giving ``s*s`` logits per
    low-resolution cell (and channel), which are normalised and pixel-shuffled to ``(H, W)``:

    - ``index_mode='holistic'``: ``conv(C -> s*s)``; nonlinear:
      ``conv(C -> 2C) - BN - ReLU6 - conv1x1(2C -> s*s)``.
    - ``'m2o'`` (depthwise, many-to-one): per sub-pixel ``t`` a full ``conv(C -> C)``;
      nonlinear: ``conv(C -> C) - BN - ReLU6 - conv1x1(C -> C)`` per ``t``.
    - ``'o2o'`` (depthwise, one-to-one): as ``'m2o'`` with channel-wise (grouped) convs.
    - ``use_context``: the strided conv sees the ``(s+2) x (s+2)`` window around each cell
      (``4 x 4``, padding 1 for ``s = 2``) instead of the ``s x s`` cell itself.
    - ``index_norm='sigmoid'``: ``I = sigmoid(logits)``, the decoder indices of IndexNet
      (``idx_de``); ``'sigmoid_softmax'``: ``softmax(sigmoid(logits))`` over the ``s*s``
      sub-pixels of each cell, its encoder (pooling) indices (``idx_en``).

    All convs are bias-free and use IndexNet's He-normal (fan-out) initialisation.

    Default variant. FADE's comparison table (SegFormer-B1, six modules at 256 channels)
    reports IndexNet as +12.60M parameters and +30.65 GFLOPs. The holistic nonlinear block
    with context reproduces both exactly: 2,097,152 (4x4 conv 256->512) + 1,024 (BN) +
    2,048 (1x1 conv 512->4) = **2,100,224** per module, 12,601,344 for six, and
    ``2,099,200`` MACs per low-resolution pixel over the 14,592 such pixels of the six
    upsamplers at 512x512 (30.63 G, plus BN/ReLU6). That is the default. The module printed
    in FADE's ``segformer.b1_indexnet`` training log is instead a linear ``'m2o'`` block
    without context (four ``Conv2d(256, 256, 2, stride=2)``, 1,048,576 per module, 6.29M
    for six), available as ``IndexNet(256, index_mode='m2o', use_nonlinear=False,
    use_context=False)``.

    Args:
        in_channels: channels ``C`` of the decoder feature ``x`` (and of the output).
        scale_factor: integer upsampling ratio ``s``.
        index_mode: ``'holistic'`` | ``'o2o'`` | ``'m2o'``.
        use_nonlinear: two-layer index block with BN and ReLU6 (else a single conv).
        use_context: ``(s+2) x (s+2)`` receptive window per cell instead of ``s x s``.
        index_norm: ``'sigmoid'`` | ``'sigmoid_softmax'``.
        guide_channels: channels ``C_g`` of the guide; defaults to ``in_channels``
            (2,100,224 parameters at 256). The index block reads the guide only, so a
            different ``C_g`` resizes its first conv (holistic: ``C_g -> 2*C_g`` hidden,
            ``s*s`` indices; ``'m2o'``: ``C_g -> s*s*C`` hidden, ``s*s*C`` indices, one per
            output channel); no extra layer is added. ``'o2o'`` pairs guide and output
            channels one to one, so it needs ``C_g = C``.

    Double backward (``create_graph=True``, e.g. gradient penalties) works: only
    differentiable torch ops.

    Shapes:
        x: ``(B, C, h, w)`` decoder feature; guide: ``(B, C_g, H, W)`` encoder feature with
        ``ceil(H/s) = h``, ``ceil(W/s) = w``; output: ``(B, C, H, W)``.
    """

    uses_guide = True

    def __init__(self, in_channels: int, scale_factor: int = 2, index_mode: str = 'holistic',
                 use_nonlinear: bool = True, use_context: bool = True,
                 index_norm: str = 'sigmoid', guide_channels: Optional[int] = None) -> None:
        super().__init__()
        name = type(self).__name__
        in_channels = check_int(name, 'in_channels', in_channels, 1)
        if guide_channels is None:
            guide_channels = in_channels
        guide_channels = check_int(name, 'guide_channels', guide_channels, 1)
        scale_factor = check_int(name, 'scale_factor', scale_factor, 1)
        check_choice(name, 'index_mode', index_mode, INDEX_MODES)
        check_choice(name, 'use_nonlinear', use_nonlinear, (True, False))
        check_choice(name, 'use_context', use_context, (True, False))
        check_choice(name, 'index_norm', index_norm, INDEX_NORMS)
        if index_mode == 'o2o' and guide_channels != in_channels:
            raise ValueError(f"{name}: index_mode='o2o' pairs guide and output channels one "
                             f"to one, so `guide_channels` must equal in_channels="
                             f"{in_channels}, got {guide_channels}")
        self.in_channels = in_channels
        self.guide_channels = guide_channels
        self.scale_factor = scale_factor
        self.index_mode = index_mode
        self.use_nonlinear = bool(use_nonlinear)
        self.use_context = bool(use_context)
        self.index_norm = index_norm

        c, cg, s2 = in_channels, guide_channels, scale_factor * scale_factor
        kernel, pad = (scale_factor + 2, 1) if use_context else (scale_factor, 0)
        if index_mode == 'holistic':
            hidden, groups, out, out_groups = 2 * cg, 1, s2, 1
        elif index_mode == 'm2o':
            # The s*s branches as one conv, branch-major channels (t*C + c).
            hidden, groups, out, out_groups = s2 * c, 1, s2 * c, s2
        else:
            # Grouped by input channel, so channels come channel-major (c*s*s + t).
            hidden, groups, out, out_groups = s2 * c, c, s2 * c, s2 * c
        if use_nonlinear:
            self.index_block = nn.Sequential(
                nn.Conv2d(cg, hidden, kernel, scale_factor, pad, groups=groups, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
                nn.Conv2d(hidden, out, 1, groups=out_groups, bias=False))
        else:
            self.index_block = nn.Sequential(
                nn.Conv2d(cg, out, kernel, scale_factor, pad, groups=groups, bias=False))
        self.init_weights()

    def init_weights(self) -> None:
        """IndexNet's He-normal (fan-out) convs; batch norms reset (identity, fresh stats)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, scale_factor={self.scale_factor}, '
                f'index_mode={self.index_mode!r}, use_nonlinear={self.use_nonlinear}, '
                f'use_context={self.use_context}, index_norm={self.index_norm!r}, '
                f'guide_channels={self.guide_channels}')

    def indices(self, guide: Tensor) -> Tensor:
        """Normalised indices ``(B, 1 or C, s*h, s*w)`` predicted from the guide."""
        s = self.scale_factor
        b, big_h, big_w = guide.shape[0], guide.shape[2], guide.shape[3]
        c = self.in_channels
        pad_h, pad_w = -big_h % s, -big_w % s
        if graph_capture() or pad_h or pad_w:
            # The strided index block needs whole s x s cells; extra rows/cols are cut later.
            # (Always while a graph is captured, so it stays valid for odd and even sizes.)
            guide = F.pad(guide, (0, pad_w, 0, pad_h))
        logits = self.index_block(guide)
        h, w = logits.shape[-2:]
        if self.index_mode == 'holistic':
            logits = logits.view(b, 1, s * s, h, w)
        elif self.index_mode == 'm2o':
            logits = logits.view(b, s * s, c, h, w).transpose(1, 2)
        else:
            logits = logits.view(b, c, s * s, h, w)
        idx = torch.sigmoid(logits)
        if self.index_norm == 'sigmoid_softmax':
            idx = F.softmax(idx, dim=2)
        return F.pixel_shuffle(idx.reshape(b, -1, h, w), s)

    def forward(self, x: Tensor, guide: Optional[Tensor] = None) -> Tensor:
        big_h, big_w = guided_output_size(type(self).__name__, x, guide, self.in_channels,
                                          self.scale_factor, self.guide_channels)
        if x.shape[0] == 0:
            return empty_batch(x, guide, big_h, big_w)
        idx = crop(self.indices(guide), big_h, big_w)
        up = F.interpolate(x, scale_factor=self.scale_factor, mode='nearest')
        return idx * crop(up, big_h, big_w)
