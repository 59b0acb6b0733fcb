"""The one place fade_mm meets mmengine's registry.

Imported by :mod:`fade_mm` when mmengine is importable (and by the mmdet/mmseg adapters):
every upsampler of :mod:`fade_mm.upsamplers` is registered under its class name in
mmengine's root ``MODELS``, which mmdet's and mmseg's scoped registries fall back to, so
``dict(type='FADE')`` builds under either scope. The upsamplers themselves know nothing of it.

Names: mmcv registers its own lowercase ``'carafe'`` (``mmcv.ops.CARAFEPack``), ``'nearest'``,
``'bilinear'``, ``'deconv'`` and ``'pixel_shuffle'`` in the same root registry; ours are
``'CARAFEUpsample'`` (and its former name ``'CARAFE'``), ``'NearestUpsample'``, ... Registry
names are case-sensitive, and neither mmcv nor mmdet/mmseg registers ``'CARAFE'`` or
``'CARAFEUpsample'`` (``mmcv.ops.CARAFE``, the bare operator module, is not registered).
"""
from __future__ import annotations

from typing import Optional

import torch.nn as nn
from mmengine.model import ModuleList
from mmengine.registry import MODELS, Registry

from . import upsamplers

for _name in upsamplers.__all__:
    _obj = getattr(upsamplers, _name)
    if isinstance(_obj, type) and issubclass(_obj, nn.Module):  # classes, not helpers
        MODELS.register_module(module=_obj)


def filled_cfg(cfg: dict, owner: str, in_channels: int, scale_factor: int = 2) -> dict:
    """``cfg`` with ``in_channels`` and ``scale_factor`` filled in, as a neck or head builds
    its upsamplers.

    Raises:
        ValueError: naming ``owner`` when ``cfg`` already sets either key to another value
            (an equal one is fine): it would be silently replaced otherwise.
    """
    needed = dict(in_channels=in_channels, scale_factor=scale_factor)
    for key, value in needed.items():
        if key in cfg and cfg[key] != value:
            raise ValueError(f'{owner}: `upsample_cfg` sets {key}={cfg[key]!r}, but its '
                             f'upsamplers need {key}={value}; leave the key out ({owner} fills '
                             f'it in) or set it to {value}')
    return dict(cfg, **needed)


def build_upsamplers(cfg: Optional[dict], channels: int, num: int,
                     registry: Registry = MODELS,
                     owner: str = 'build_upsamplers') -> Optional[ModuleList]:
    """``num`` independent x2 upsamplers from ``cfg`` (``in_channels`` and ``scale_factor``
    filled in by :func:`filled_cfg`, which refuses other values of them), or None when
    ``cfg`` is None. ``registry`` is the caller's scope (mmdet's or mmseg's ``MODELS``),
    which falls back to mmengine's root where fade_mm registers; ``owner`` names the caller
    in errors.

    They come in mmengine's ``ModuleList`` (a ``BaseModule``; same state-dict keys as
    ``nn.ModuleList``), so that the ``init_weights()`` of the neck or head that holds it
    reaches the upsamplers: after the holder's ``init_cfg`` (Xavier, Kaiming, ... on every
    conv, the upsamplers' too), each upsampler's own ``init_weights()`` runs, and a
    ``Pretrained`` ``init_cfg`` of the holder is loaded after both. (A plain
    ``nn.ModuleList`` has no ``init_weights``: mmengine would skip the upsamplers.)"""
    if cfg is None:
        return None
    cfg = filled_cfg(cfg, owner, channels)
    return ModuleList(registry.build(dict(cfg)) for _ in range(num))
