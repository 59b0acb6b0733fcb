"""The one place fade_mm meets mmengine's registry.

Imported by :mod:`fade_mm` when mmengine is importable (and by the mmdet/mmseg adapters):
every upsampler of :mod:`fade_mm.upsamplers` is registered under its class name in
mmengine's root ``MODELS``, which mmdet's and mmseg's scoped registries fall back to, so
``dict(type='FADE')`` builds under either scope. The upsamplers themselves know nothing of it.
"""
from __future__ import annotations

from typing import Optional

import torch.nn as nn
from mmengine.registry import MODELS, Registry

from . import upsamplers

for _name in upsamplers.__all__:
    _obj = getattr(upsamplers, _name)
    if isinstance(_obj, type) and issubclass(_obj, nn.Module):  # classes, not helpers
        MODELS.register_module(module=_obj)


def build_upsamplers(cfg: Optional[dict], channels: int, num: int,
                     registry: Registry = MODELS) -> Optional[nn.ModuleList]:
    """``num`` independent x2 upsamplers from ``cfg`` (``in_channels`` and ``scale_factor``
    filled in), or None when ``cfg`` is None. ``registry`` is the caller's scope (mmdet's or
    mmseg's ``MODELS``), which falls back to mmengine's root where fade_mm registers."""
    if cfg is None:
        return None
    return nn.ModuleList(
        registry.build(dict(cfg, in_channels=channels, scale_factor=2)) for _ in range(num))
