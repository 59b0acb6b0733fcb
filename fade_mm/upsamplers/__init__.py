"""Upsamplers registered in mmengine's root ``MODELS`` (visible from mmdet and mmseg)."""
from .fade import FADE
from .fade_lite import FADELite

__all__ = ['FADE', 'FADELite']
