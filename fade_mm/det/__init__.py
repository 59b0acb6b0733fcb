"""mmdet adapters: ``custom_imports=dict(imports=['fade_mm.det'])`` registers them (and the
upsamplers) for mmdet configs."""
from .. import registry  # noqa: F401  (registers the upsamplers in mmengine's root MODELS)

from .fpn import UpsamplerFPN

__all__ = ['UpsamplerFPN']
