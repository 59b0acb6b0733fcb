"""FPN whose top-down x2 steps are done by any registered upsampler (mmdet neck)."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

from .._checks import check_choice
from ..registry import build_upsamplers
from ..upsamplers._common import check_bool, checkpointed

TOPOLOGIES = ('fpn', 'fpn_carafe')
FUSIONS = ('add', 'none')


@MODELS.register_module()
class UpsamplerFPN(BaseModule):
    """Feature pyramid network with a configurable upsampler in every top-down step.

    Each x2 step of the top-down path is an upsampler built from ``upsample_cfg`` by registry
    name (``in_channels=out_channels, scale_factor=2`` are filled in; other values of these
    keys in ``upsample_cfg`` are refused) and called as
    ``upsampler(top, lateral)``: guided upsamplers (FADE, SAPA, A2U, IndexNet) use the lateral
    as their encoder feature, unguided ones use only its size, so odd image sizes (no padding
    to 32) give maps of exactly the lateral's size for every upsampler.

    Topologies:
        ``'fpn'``: mmdet's ``FPN``; extra levels by stride-2 max-pool of the last output
        (Faster R-CNN's P6). ``len(in_channels) - 1`` upsamplers.
        ``'fpn_carafe'``: mmdet's ``FPN_CARAFE``; extra levels by stride-2 3x3 convs (the
        first on the last backbone input), which join the top-down path, so P6 is upsampled
        into P5 -- ``num_outs - 1`` upsamplers (four for Faster R-CNN), the count behind the
        published CARAFE, FADE and DySample detection results.

    Fusion of the upsampled map with the lateral:
        ``'add'``: ``lateral + up(top, lateral)``, the usual FPN and what the FADE authors'
        detection code does; ``'none'``: ``up(top, lateral)`` alone, for upsamplers that
        already mix in the lateral (FADE's gate), as some re-implementations do.

    Args:
        in_channels: channels of each backbone level used.
        out_channels: channels of every pyramid level.
        num_outs: number of output levels.
        start_level: first backbone level used.
        topology: ``'fpn'`` or ``'fpn_carafe'``.
        fusion: ``'add'`` or ``'none'``.
        upsample_cfg: registry config of the upsampler, e.g. ``dict(type='FADE')``.
        conv_cfg, norm_cfg, act_cfg: of the lateral and output convs, as in mmdet's FPN.
        init_cfg: initialisation of the FPN convs (Xavier uniform, as mmdet). The
            upsamplers keep the initialisation their papers prescribe.
        with_cp: gradient checkpointing (mmcv's name): while training, every upsampler call
            is recomputed in backward instead of keeping its activations (kernels,
            embeddings, offsets at the finer level's resolution). Same outputs and
            gradients; batch norms inside an upsampler (IndexNet) do not update their
            running statistics twice. Default False.

    Shapes:
        inputs: tuple of ``(B, in_channels[i], H_i, W_i)`` with ``H_{i+1} = ceil(H_i / 2)``;
        outputs: tuple of ``num_outs`` maps ``(B, out_channels, H_i, W_i)``.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_outs: int,
                 start_level: int = 0, topology: str = 'fpn_carafe', fusion: str = 'add',
                 upsample_cfg: dict = dict(type='NearestUpsample'), conv_cfg=None,
                 norm_cfg=None, act_cfg=None,
                 init_cfg=dict(type='Xavier', layer='Conv2d', distribution='uniform'),
                 with_cp: bool = False) -> None:
        super().__init__(init_cfg)
        name = type(self).__name__
        check_choice(name, 'topology', topology, TOPOLOGIES)
        check_choice(name, 'fusion', fusion, FUSIONS)
        check_bool(name, 'with_cp', with_cp)
        used = len(in_channels) - start_level
        if used < 1 or num_outs < used:
            raise ValueError(f'{name}: `num_outs` must be >= the {used} backbone levels used '
                             f'(in_channels={list(in_channels)}, start_level={start_level}), '
                             f'got {num_outs}')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.start_level = start_level
        self.topology = topology
        self.fusion = fusion
        self.upsample_cfg = dict(upsample_cfg)
        self.with_cp = bool(with_cp)

        def conv(cin, k, stride=1):
            return ConvModule(cin, out_channels, k, stride=stride, padding=k // 2,
                              conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
                              inplace=False)

        self.lateral_convs = nn.ModuleList(conv(c, 1) for c in self.in_channels[start_level:])
        extra = num_outs - used
        if topology == 'fpn_carafe':
            # stride-2 laterals: the first from the last backbone input, then chained
            self.lateral_convs.extend(
                conv(self.in_channels[-1] if i == 0 else out_channels, 3, stride=2)
                for i in range(extra))
        self.fpn_convs = nn.ModuleList(conv(out_channels, 3)
                                       for _ in range(len(self.lateral_convs)))
        self.upsamplers = build_upsamplers(self.upsample_cfg, out_channels,
                                           len(self.lateral_convs) - 1, MODELS, name)

    def init_weights(self) -> None:
        # init_cfg would re-initialise every Conv2d, the upsamplers' too (e.g. CARAFE's and
        # DySample's near-zero kernel predictors); keep theirs from construction.
        kept = {k: v.clone() for k, v in self.upsamplers.state_dict().items()}
        super().init_weights()
        self.upsamplers.load_state_dict(kept)

    def forward(self, inputs: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'{type(self).__name__}: expected {len(self.in_channels)} input '
                             f'levels, got {len(inputs)}')
        feats = list(inputs[self.start_level:])
        laterals: List[Tensor] = [lc(f) for lc, f in zip(self.lateral_convs, feats)]
        if self.topology == 'fpn_carafe':
            source = inputs[-1]
            for lc in self.lateral_convs[len(feats):]:
                laterals.append(lc(source))
                source = laterals[-1]
        for i in range(len(laterals) - 1, 0, -1):
            up = checkpointed(self.with_cp and self.training, self.upsamplers[i - 1],
                              laterals[i], laterals[i - 1])
            laterals[i - 1] = laterals[i - 1] + up if self.fusion == 'add' else up
        outs = [fc(lat) for fc, lat in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:  # 'fpn' topology: P6 by stride-2 max-pool
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
