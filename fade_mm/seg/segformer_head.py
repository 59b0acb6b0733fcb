"""SegFormer's all-MLP head with the upsampling to 1/4 done by cascaded upsamplers (FADE)."""
from __future__ import annotations

from typing import List, Optional

import torch
from mmseg.models.decode_heads import SegformerHead
from mmseg.registry import MODELS
from torch import Tensor

from ..registry import build_upsamplers


@MODELS.register_module()
class UpsamplerSegformerHead(SegformerHead):
    """mmseg's ``SegformerHead`` whose resizes to 1/4 are cascades of x2 upsamplers.

    The design of the official FADE SegFormer head: after the per-level 1x1 projections to
    ``channels``, the 1/32 map goes 1/32 -> 1/16 -> 1/8 -> 1/4 through three upsamplers
    guided by the projected 1/16, 1/8 and 1/4 maps; the 1/16 map through two, the 1/8 map
    through one -- six upsamplers for four levels, built in that order. Guided upsamplers
    (FADE, SAPA, ...) use the guide's content; single-input ones use only its size, so the
    same head serves both. Test-time inputs of any size work: every level is
    ``ceil(previous / 2)``, which every upsampler accepts.

    Args:
        upsample_cfg: registry config of the upsampler (e.g. ``dict(type='FADE')``), or None
            for the plain bilinear head (then identical to ``SegformerHead``).
        **kwargs: as ``SegformerHead``.

    Shapes:
        inputs: four maps at 1/4, 1/8, 1/16, 1/32; output: ``(B, num_classes, H/4, W/4)``.
    """

    def __init__(self, upsample_cfg: Optional[dict] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.upsample_cfg = upsample_cfg
        n = len(self.in_channels)
        self.upsamplers = build_upsamplers(upsample_cfg, self.channels, n * (n - 1) // 2,
                                           MODELS)

    def forward(self, inputs: List[Tensor]) -> Tensor:
        if self.upsamplers is None:
            return super().forward(inputs)
        feats = [conv(x) for conv, x in zip(self.convs, self._transform_inputs(inputs))]
        ups = iter(self.upsamplers)
        outs = list(feats)
        for level in range(len(feats) - 1, 0, -1):  # coarsest first, as the official head
            for guide in reversed(feats[:level]):
                outs[level] = next(ups)(outs[level], guide)
        return self.cls_seg(self.fusion_conv(torch.cat(outs, dim=1)))

