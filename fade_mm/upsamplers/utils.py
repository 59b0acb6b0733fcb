"""Building upsamplers for a neck or head: the registry is the builder."""
from __future__ import annotations

from typing import Optional

import torch.nn as nn
from mmengine.registry import MODELS, Registry


def build_upsamplers(cfg: Optional[dict], channels: int, num: int,
                     registry: Registry = MODELS) -> Optional[nn.ModuleList]:
    """``num`` independent x2 upsamplers from ``cfg`` (``in_channels`` and ``scale_factor``
    filled in), or None when ``cfg`` is None. ``registry`` is the caller's scope (mmdet's or
    mmseg's ``MODELS``), which falls back to mmengine's root where fade_mm registers."""
    if cfg is None:
        return None
    return nn.ModuleList(
        registry.build(dict(cfg, in_channels=channels, scale_factor=2)) for _ in range(num))
