"""UPerNet's head with its top-down x2 steps (and optionally its resizes to 1/4) done by
upsamplers."""
from __future__ import annotations

from typing import List, Optional

import torch
from mmseg.models.decode_heads import UPerHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from torch import Tensor

from ..registry import build_upsamplers
from ..upsamplers._common import check_bool, checkpointed


@MODELS.register_module()
class UpsamplerUPerHead(UPerHead):
    """mmseg's ``UPerHead`` with a configurable upsampler in the FPN.

    The three top-down x2 steps become ``lateral + up(top, lateral)``; guided upsamplers use
    the lateral as their encoder feature. With ``upsample_fpn_outs=True`` the final resize
    of each FPN output to 1/4 is replaced too, by cascaded upsamplers guided by the FPN outputs
    of the finer levels (1 + 2 + 3 = six more for four levels).

    Args:
        upsample_cfg: registry config of the upsampler, or None for plain bilinear resizing
            (then identical to ``UPerHead``). ``in_channels=channels, scale_factor=2`` are
            filled in; other values of these keys are refused.
        upsample_fpn_outs: also upsample the FPN outputs to 1/4 with upsamplers.
        with_cp: gradient checkpointing (mmcv's name): while training, every upsampler call
            is recomputed in backward instead of keeping its activations. Same outputs and
            gradients; batch norms inside an upsampler do not update their running
            statistics twice. Default False.
        **kwargs: as ``UPerHead``.

    Initialisation: the upsamplers are held in mmengine's ``ModuleList``, so the head's
    ``init_weights()`` re-runs each upsampler's own ``init_weights()`` (its paper's
    initialisation) after the head's ``init_cfg``, and a ``Pretrained`` entry of ``init_cfg``
    is loaded after both.
    """

    def __init__(self, upsample_cfg: Optional[dict] = None, upsample_fpn_outs: bool = False,
                 with_cp: bool = False, **kwargs) -> None:
        check_bool(type(self).__name__, 'with_cp', with_cp)
        super().__init__(**kwargs)
        self.with_cp = bool(with_cp)
        if upsample_fpn_outs and upsample_cfg is None:
            raise ValueError('UpsamplerUPerHead: `upsample_fpn_outs`=True needs an '
                             '`upsample_cfg`, got None')
        self.upsample_cfg = upsample_cfg
        n = len(self.in_channels)
        name = type(self).__name__
        self.upsamplers = build_upsamplers(upsample_cfg, self.channels, n - 1, MODELS, name)
        self.fpn_out_upsamplers = build_upsamplers(
            upsample_cfg if upsample_fpn_outs else None, self.channels, n * (n - 1) // 2,
            MODELS, name)

    def _resize_to(self, x: Tensor, ref: Tensor) -> Tensor:
        return resize(x, size=ref.shape[2:], mode='bilinear', align_corners=self.align_corners)

    def _up(self, upsampler, x: Tensor, guide: Tensor) -> Tensor:
        return checkpointed(self.with_cp and self.training, upsampler, x, guide)

    def _forward_feature(self, inputs: List[Tensor]) -> Tensor:
        if self.upsamplers is None:
            return super()._forward_feature(inputs)
        inputs = self._transform_inputs(inputs)
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs))
        n = len(laterals)
        for i in range(n - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + self._up(self.upsamplers[i - 1], laterals[i],
                                                         laterals[i - 1])
        outs = [self.fpn_convs[i](laterals[i]) for i in range(n - 1)] + [laterals[-1]]
        guides = list(outs)
        ups = iter(self.fpn_out_upsamplers or ())
        for i in range(n - 1, 0, -1):
            if self.fpn_out_upsamplers is None:
                outs[i] = self._resize_to(outs[i], outs[0])
                continue
            for guide in reversed(guides[:i]):
                outs[i] = self._up(next(ups), outs[i], guide)
        return self.fpn_bottleneck(torch.cat(outs, dim=1))
