"""mmseg adapters: ``custom_imports=dict(imports=['fade_mm.seg'])`` registers the heads, the
bIoU metric (and the upsamplers) for mmseg configs."""
from .. import registry  # noqa: F401  (registers the upsamplers in mmengine's root MODELS)

from .biou_metric import BoundaryIoUMetric
from .segformer_head import UpsamplerSegformerHead
from .uper_head import UpsamplerUPerHead

__all__ = ['BoundaryIoUMetric', 'UpsamplerSegformerHead', 'UpsamplerUPerHead']
