"""SegFormer's all-MLP head with the upsampling to 1/4 done by cascaded upsamplers (FADE)."""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn as nn
from mmseg.models.decode_heads import SegformerHead
from mmseg.registry import MODELS
from torch import Tensor

from .._checks import check_choice
from ..registry import build_upsamplers
from ..upsamplers._common import check_bool, checkpointed

PROJECTIONS = ('conv', 'linear')


@MODELS.register_module()
class UpsamplerSegformerHead(SegformerHead):
    """mmseg's ``SegformerHead`` whose resizes to 1/4 are cascades of x2 upsamplers.

    The design of the official FADE SegFormer head: after the per-level projections to
    ``channels``, the 1/32 map goes 1/32 -> 1/16 -> 1/8 -> 1/4 through three upsamplers
    guided by the projected 1/16, 1/8 and 1/4 maps; the 1/16 map through two, the 1/8 map
    through one -- six upsamplers for four levels, built in that order. Guided upsamplers
    (FADE, SAPA, ...) use the guide's content; single-input ones use only its size, so the
    same head serves both. Test-time inputs of any size work: every level is
    ``ceil(previous / 2)``, which every upsampler accepts.

    Per-level projections (``projection``):
        ``'conv'``: mmseg's ``SegformerHead`` -- 1x1 ``ConvModule`` with ``norm_cfg`` and
        ``act_cfg`` (conv without bias + BN + ReLU).
        ``'linear'``: the official SegFormer head (NVlabs; the head of the FADE paper's
        SegFormer runs) -- one ``Linear`` per level (a 1x1 conv with bias, kept as
        ``nn.Conv2d``), no norm, no activation; ``channels`` fewer parameters per level than
        ``'conv'``. The fusion (1x1 conv + BN + ReLU), dropout and classifier are the same
        in both. (The official head concatenates the levels coarsest first; the order only
        permutes the input channels of the fusion conv.) Its test-time resize to a multiple
        of 32 (``AlignedResize``) is a pipeline step: ``dict(type='ResizeToMultiple',
        size_divisor=32)`` after ``Resize`` -- see the ``*_official-head_*`` configs.

    Args:
        upsample_cfg: registry config of the upsampler (e.g. ``dict(type='FADE')``), or None
            for the plain bilinear head (then identical to ``SegformerHead`` with the same
            ``projection``). ``in_channels=channels, scale_factor=2`` are filled in; other
            values of these keys are refused.
        projection: ``'conv'`` (default, mmseg) or ``'linear'`` (official SegFormer).
        with_cp: gradient checkpointing (mmcv's name): while training, each of the six
            upsampler calls is recomputed in backward instead of keeping its activations
            (at 1/4 resolution the largest of the head). Same outputs and gradients; one
            more forward of the upsamplers per step. Default False.
        **kwargs: as ``SegformerHead``.

    Initialisation: the upsamplers are held in mmengine's ``ModuleList``, so the head's
    ``init_weights()`` re-runs each upsampler's own ``init_weights()`` (its paper's
    initialisation) after the head's ``init_cfg``, and a ``Pretrained`` entry of ``init_cfg``
    is loaded after both.

    Shapes:
        inputs: four maps at 1/4, 1/8, 1/16, 1/32; output: ``(B, num_classes, H/4, W/4)``.
    """

    def __init__(self, upsample_cfg: Optional[dict] = None, projection: str = 'conv',
                 with_cp: bool = False, **kwargs) -> None:
        check_choice(type(self).__name__, 'projection', projection, PROJECTIONS)
        check_bool(type(self).__name__, 'with_cp', with_cp)
        super().__init__(**kwargs)
        self.with_cp = bool(with_cp)
        self.upsample_cfg = upsample_cfg
        self.projection = projection
        if projection == 'linear':
            # a Linear over channels at every pixel, with bias; default (Kaiming-uniform)
            # init, the same distribution as nn.Linear's
            self.convs = nn.ModuleList(nn.Conv2d(c, self.channels, 1) for c in self.in_channels)
        n = len(self.in_channels)
        self.upsamplers = build_upsamplers(upsample_cfg, self.channels, n * (n - 1) // 2,
                                           MODELS, type(self).__name__)

    def forward(self, inputs: List[Tensor]) -> Tensor:
        if self.upsamplers is None:
            return super().forward(inputs)
        feats = [conv(x) for conv, x in zip(self.convs, self._transform_inputs(inputs))]
        ups = iter(self.upsamplers)
        outs = list(feats)
        for level in range(len(feats) - 1, 0, -1):  # coarsest first, as the official head
            for guide in reversed(feats[:level]):
                outs[level] = checkpointed(self.with_cp and self.training, next(ups),
                                           outs[level], guide)
        return self.cls_seg(self.fusion_conv(torch.cat(outs, dim=1)))
