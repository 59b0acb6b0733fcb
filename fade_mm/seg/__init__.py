"""mmseg adapters: ``custom_imports=dict(imports=['fade_mm.seg'])`` registers the heads, the
mIoU + bIoU metrics (and the upsamplers, and the runner hooks of :mod:`fade_mm.engine`) for
mmseg configs, and lets runner checkpoints load safely on torch >= 2.6
(:func:`fade_mm.compat.install_safe_checkpoint_loading`), so mmseg's own tools work too."""
from .. import (
           engine,  # noqa: F401  (registers RNGStateHook, SafeCheckpointHook in HOOKS)
           registry,  # noqa: F401  (registers the upsamplers in mmengine's root MODELS)
)
from ..compat import install_safe_checkpoint_loading
from .biou_metric import BoundaryIoUMetric, IoUBoundaryMetric
from .segformer_head import UpsamplerSegformerHead
from .uper_head import UpsamplerUPerHead

install_safe_checkpoint_loading()

__all__ = ['BoundaryIoUMetric', 'IoUBoundaryMetric', 'UpsamplerSegformerHead',
           'UpsamplerUPerHead']
