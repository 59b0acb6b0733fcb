"""FPN whose top-down x2 steps are done by any registered upsampler (mmdet neck)."""
from __future__ import annotations

import warnings
from typing import List, Optional, Sequence, Tuple

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
TOP_DOWNS = ('add', 'replace')
#: The former option ``fusion=`` (deprecated) and the ``top_down`` each value means.
FUSION_TO_TOP_DOWN = {'add': 'add', 'none': 'replace'}


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

    Top-down step (``top_down``), with ``up = upsampler(top, lateral)``:
        ``'add'`` (default): ``lateral + up``, the usual FPN (mmdet's ``FPN`` and
        ``FPN_CARAFE``). With an upsampler that itself mixes the guide into its output, the
        lateral then enters twice. FADE's default ``fusion='gate'`` gives
        ``up = G*lateral + (1-G)*u`` (``u`` the reassembled ``top``), so the step computes
        ``lateral + G*lateral + (1-G)*u = (1+G)*lateral + (1-G)*u``; with FADE's
        ``fusion='skip'`` it is ``2*lateral + u``, with ``fusion='none'`` ``lateral + u``.
        The FADE authors' detection code adds too: the ``FPN_UPSAMPLE`` neck of their mmdet
        fork (tiny-smart/detection-with-upsamplers) computes
        ``lateral + upsampler(lateral, top)`` for every upsampler, FADE with or without its
        gate (their FADE's ``gating``, off by default in their mmseg fork, which then gives
        ``lateral + u``: our ``fade-nogate`` configs).
        ``'replace'``: ``up`` alone, the lateral entering only through the upsampler (once,
        through FADE's gate), as some re-implementations do; with an unguided upsampler the
        lateral is then dropped.

    Args:
        in_channels: channels of each backbone level used.
        out_channels: channels of every pyramid level.
        num_outs: number of output levels.
        start_level: first backbone level used.
        topology: ``'fpn'`` or ``'fpn_carafe'``.
        top_down: ``'add'`` or ``'replace'`` (see above).
        upsample_cfg: registry config of the upsampler, e.g. ``dict(type='FADE')``.
        conv_cfg, norm_cfg, act_cfg: of the lateral and output convs, as in mmdet's FPN.
        init_cfg: initialisation of the FPN convs (Xavier uniform, as mmdet). It reaches
            the upsamplers' convs too, but ``init_weights()`` then re-runs each upsampler's
            own ``init_weights()`` (their papers' initialisation; they are held in mmengine's
            ``ModuleList``), and a ``Pretrained`` entry is loaded after both.
        with_cp: gradient checkpointing (mmcv's name): while training, every upsampler call
            is recomputed in backward instead of keeping its activations (kernels,
            embeddings, offsets at the finer level's resolution). Same outputs and
            gradients; batch norms inside an upsampler (IndexNet) do not update their
            running statistics twice. Default False.
        fusion: deprecated former name of ``top_down`` (it shares its word with FADE's own
            ``fusion``): ``'add'`` is ``top_down='add'``, ``'none'`` is
            ``top_down='replace'``; warns with a ``DeprecationWarning``.

    Shapes:
        inputs: tuple of ``(B, in_channels[i], H_i, W_i)`` with ``H_{i+1} = ceil(H_i / 2)``;
        outputs: tuple of ``num_outs`` maps ``(B, out_channels, H_i, W_i)``.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_outs: int,
                 start_level: int = 0, topology: str = 'fpn_carafe', top_down: str = 'add',
                 upsample_cfg: dict = dict(type='NearestUpsample'), conv_cfg=None,
                 norm_cfg=None, act_cfg=None,
                 init_cfg=dict(type='Xavier', layer='Conv2d', distribution='uniform'),
                 with_cp: bool = False, fusion: Optional[str] = None) -> None:
        super().__init__(init_cfg)
        name = type(self).__name__
        check_choice(name, 'topology', topology, TOPOLOGIES)
        if fusion is not None:
            top_down = _top_down_from_fusion(name, fusion, top_down)
        check_choice(name, 'top_down', top_down, TOP_DOWNS)
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
        self.top_down = top_down
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
            laterals[i - 1] = laterals[i - 1] + up if self.top_down == 'add' else up
        outs = [fc(lat) for fc, lat in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:  # 'fpn' topology: P6 by stride-2 max-pool
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)


def _top_down_from_fusion(owner: str, fusion: str, top_down: str) -> str:
    """``top_down`` for the deprecated ``fusion=`` option, with a DeprecationWarning."""
    check_choice(owner, 'fusion', fusion, tuple(FUSION_TO_TOP_DOWN))
    mapped = FUSION_TO_TOP_DOWN[fusion]
    if top_down not in ('add', mapped):  # 'add' is the default: not told apart from unset
        raise ValueError(f'{owner}: `fusion`={fusion!r} (deprecated) means '
                         f'top_down={mapped!r}, but top_down={top_down!r} is set too; '
                         f'set top_down alone')
    warnings.warn(f'{owner}: `fusion` is deprecated (FADE has an option of that name); use '
                  f'top_down={mapped!r} for fusion={fusion!r}', DeprecationWarning,
                  stacklevel=3)
    return mapped
