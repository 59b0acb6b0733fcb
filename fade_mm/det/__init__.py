"""mmdet adapters: ``custom_imports=dict(imports=['fade_mm.det'])`` registers them (and the
upsamplers, and the runner hooks of :mod:`fade_mm.engine`) for mmdet configs, and lets runner
checkpoints load safely on torch >= 2.6 (:func:`fade_mm.compat.install_safe_checkpoint_loading`),
so mmdet's own tools work too."""
from .. import (
    engine,  # noqa: F401  (registers RNGStateHook, SafeCheckpointHook in HOOKS)
    registry,  # noqa: F401  (registers the upsamplers in mmengine's root MODELS)
)
from ..compat import install_safe_checkpoint_loading
from ..datasets import panopticapi_fallback
from .fpn import UpsamplerFPN
from .pafpn import UpsamplerCSPNeXtPAFPN, UpsamplerYOLOXPAFPN

install_safe_checkpoint_loading()
# mmdet's panoptic loading and PQ need panopticapi (git-only): a small stand-in without it
panopticapi_fallback.install()

__all__ = ['UpsamplerFPN', 'UpsamplerCSPNeXtPAFPN', 'UpsamplerYOLOXPAFPN']
