"""The PAFPNs of RTMDet and YOLOX with any registered upsampler in their top-down path.

mmdet's ``CSPNeXtPAFPN`` and ``YOLOXPAFPN`` take an ``upsample_cfg`` that only reaches an
``nn.Upsample`` (interpolation modes), so CARAFE-like upsamplers cannot be plugged in by
config. The subclasses here keep every layer of mmdet's necks and replace that one
``nn.Upsample`` by one upsampler per top-down step (``len(in_channels) - 1``), built from
``upsample_cfg`` by registry name with ``in_channels`` (the target level's channels) and
``scale_factor=2`` filled in, and called as ``upsampler(top, lateral)``: ``top`` is the
coarser map after mmdet's 1x1 reduce conv, ``lateral`` the backbone feature of the finer
level, with which the upsampled map is then concatenated. Guided upsamplers (FADE, SAPA, A2U,
IndexNet) take ``lateral`` as their encoder feature; unguided ones (CARAFE, DySample, ...)
use only its size.

With the default ``NearestUpsample`` a neck computes exactly mmdet's and has the same state
dict, so mmdet's RTMDet/YOLOX checkpoints load into it; with another upsampler they load with
only the ``neck.upsamplers.*`` keys missing (mmengine loads non-strictly).
"""
from __future__ import annotations

from typing import Tuple

import torch
from mmdet.models.necks import YOLOXPAFPN, CSPNeXtPAFPN
from mmdet.registry import MODELS
from mmengine.model import ModuleList
from torch import Tensor

from ..registry import filled_cfg  # (importing it registers the upsamplers in root MODELS)
from ..upsamplers._common import check_bool, checkpointed

#: What mmdet's necks build by default; ours builds the same function by registry name.
DEFAULT_UPSAMPLE_CFG = dict(type='NearestUpsample')


def upsampler_cfg(cfg: dict, owner: str) -> dict:
    """Registry config of the top-down upsampler, also from mmdet's ``nn.Upsample`` kwargs.

    mmdet's own configs write ``upsample_cfg=dict(scale_factor=2, mode='nearest')`` (YOLOX
    does), so switching only the neck's ``type`` to ours must keep working: a config without
    ``type`` is read as ``nn.Upsample`` arguments and mapped to the equal upsampler.
    """
    cfg = dict(cfg)
    if 'type' in cfg:
        return cfg
    mode = cfg.pop('mode', 'nearest')
    scale = cfg.pop('scale_factor', 2)
    align_corners = cfg.pop('align_corners', None)
    if scale != 2 or cfg or mode not in ('nearest', 'bilinear') or (
            mode == 'nearest' and align_corners is not None):
        raise ValueError(
            f'{owner}: `upsample_cfg` without `type` is read as nn.Upsample arguments and '
            f"only scale_factor=2 with mode 'nearest' or 'bilinear' maps to an upsampler; "
            f"name one instead, e.g. dict(type='FADE') (with `_delete_=True` over an mmdet "
            f'config), got {dict(cfg, mode=mode, scale_factor=scale)}')
    if mode == 'nearest':
        return dict(DEFAULT_UPSAMPLE_CFG)
    return dict(type='BilinearUpsample', align_corners=bool(align_corners))


class _TopDownUpsamplers:
    """What both PAFPNs share: building the upsamplers and mmdet's forward with the
    ``nn.Upsample`` call replaced by ``upsampler(top, lateral)``.

    The upsamplers are held in mmengine's ``ModuleList``, so the neck's ``init_weights()``
    applies mmdet's ``init_cfg`` (Kaiming on every ``Conv2d``, theirs included), then each
    upsampler's own ``init_weights()`` (its paper's initialisation, e.g. the near-zero kernel
    predictors of CARAFE and DySample), then a ``Pretrained`` entry of ``init_cfg``, if any."""

    def _build_upsamplers(self, upsample_cfg: dict, with_cp: bool) -> None:
        name = type(self).__name__
        check_bool(name, 'with_cp', with_cp)
        self.upsample_cfg = upsampler_cfg(upsample_cfg, name)
        self.with_cp = with_cp
        del self.upsample  # mmdet's parameter-free nn.Upsample: no state-dict entry lost
        # Step k (coarsest first, as mmdet's reduce_layers) upsamples the reduced top
        # feature, which the 1x1 reduce conv has already brought to the channels of the
        # target level, in_channels[n - 2 - k]. The guide is the backbone feature of that
        # level, with the same channels, so guided upsamplers need no `guide_channels`.
        n = len(self.in_channels)
        self.upsamplers = ModuleList(
            MODELS.build(filled_cfg(self.upsample_cfg, name, self.in_channels[idx - 1]))
            for idx in range(n - 1, 0, -1))

    def forward(self, inputs: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
        """mmdet's PAFPN forward with the top-down upsampling done by ``self.upsamplers``.

        Args:
            inputs: ``n`` backbone maps ``(B, in_channels[i], H_i, W_i)``, finest first,
                with ``H_{i+1} = ceil(H_i / 2)`` (odd sizes allowed: each upsampled map
                takes its guide's size, where mmdet's ``nn.Upsample`` would not fit).

        Returns:
            ``n`` maps ``(B, out_channels, H_i, W_i)``.
        """
        n = len(self.in_channels)
        if len(inputs) != n:
            raise ValueError(f'{type(self).__name__}: expected {n} input levels, got '
                             f'{len(inputs)}')
        # top-down: reduce the coarser map's channels, upsample it guided by the backbone
        # feature of the finer level (mmdet's `feat_low`), concatenate both, CSP block
        inner_outs = [inputs[-1]]
        for k, idx in enumerate(range(n - 1, 0, -1)):
            top = self.reduce_layers[k](inner_outs[0])
            inner_outs[0] = top
            lateral = inputs[idx - 1]
            up = checkpointed(self.with_cp and self.training, self.upsamplers[k], top,
                              lateral)
            inner_outs.insert(0, self.top_down_blocks[k](torch.cat([up, lateral], 1)))
        # bottom-up and output convs: mmdet's, unchanged
        outs = [inner_outs[0]]
        for idx in range(n - 1):
            down = self.downsamples[idx](outs[-1])
            outs.append(self.bottom_up_blocks[idx](torch.cat([down, inner_outs[idx + 1]], 1)))
        return tuple(conv(out) for conv, out in zip(self.out_convs, outs))


@MODELS.register_module()
class UpsamplerCSPNeXtPAFPN(_TopDownUpsamplers, CSPNeXtPAFPN):
    """RTMDet's ``CSPNeXtPAFPN`` with a registered upsampler in each top-down step.

    Args:
        in_channels: channels of each backbone level, finest first.
        out_channels: channels of every output level.
        upsample_cfg: registry config of the upsampler, e.g. ``dict(type='FADE')``; mmdet's
            ``nn.Upsample`` form (``dict(scale_factor=2, mode='nearest')``, no ``type``) is
            read as the equal ``NearestUpsample`` / ``BilinearUpsample``.
        with_cp: gradient checkpointing of every upsampler call while training (recomputed
            in backward; same outputs and gradients). Default False.
        **kwargs: the other arguments of mmdet's neck (num_csp_blocks, use_depthwise,
            expand_ratio, conv_cfg, norm_cfg, act_cfg, init_cfg).

    Shapes:
        inputs: tuple of ``(B, in_channels[i], H_i, W_i)`` with ``H_{i+1} = ceil(H_i / 2)``;
        outputs: tuple of ``(B, out_channels, H_i, W_i)``.
    """

    def __init__(self, in_channels, out_channels, *, upsample_cfg: dict = DEFAULT_UPSAMPLE_CFG,
                 with_cp: bool = False, **kwargs) -> None:
        super().__init__(in_channels, out_channels, **kwargs)
        self._build_upsamplers(upsample_cfg, with_cp)


@MODELS.register_module()
class UpsamplerYOLOXPAFPN(_TopDownUpsamplers, YOLOXPAFPN):
    """YOLOX's ``YOLOXPAFPN`` with a registered upsampler in each top-down step.

    Args:
        in_channels: channels of each backbone level, finest first.
        out_channels: channels of every output level.
        upsample_cfg: registry config of the upsampler, e.g. ``dict(type='FADE')``; mmdet's
            ``nn.Upsample`` form (``dict(scale_factor=2, mode='nearest')``, no ``type``) is
            read as the equal ``NearestUpsample`` / ``BilinearUpsample``.
        with_cp: gradient checkpointing of every upsampler call while training (recomputed
            in backward; same outputs and gradients). Default False.
        **kwargs: the other arguments of mmdet's neck (num_csp_blocks, use_depthwise,
            conv_cfg, norm_cfg, act_cfg, init_cfg).

    Shapes:
        inputs: tuple of ``(B, in_channels[i], H_i, W_i)`` with ``H_{i+1} = ceil(H_i / 2)``;
        outputs: tuple of ``(B, out_channels, H_i, W_i)``.
    """

    def __init__(self, in_channels, out_channels, *, upsample_cfg: dict = DEFAULT_UPSAMPLE_CFG,
                 with_cp: bool = False, **kwargs) -> None:
        super().__init__(in_channels, out_channels, **kwargs)
        self._build_upsamplers(upsample_cfg, with_cp)
