"""mmdet adapters: ``custom_imports=dict(imports=['fade_mm.det'])`` registers them (and the
upsamplers) for mmdet configs, and lets runner checkpoints load safely on torch >= 2.6
(:func:`fade_mm.compat.install_safe_checkpoint_loading`), so mmdet's own tools work too."""
from .. import registry  # noqa: F401  (registers the upsamplers in mmengine's root MODELS)
from ..compat import install_safe_checkpoint_loading

from .fpn import UpsamplerFPN

install_safe_checkpoint_loading()

__all__ = ['UpsamplerFPN']
