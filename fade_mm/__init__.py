"""fade_mm: FADE and peer feature upsamplers as OpenMMLab registry modules.

Importing the package registers the upsamplers in mmengine's root ``MODELS``. The mmdet and
mmseg adapters live in :mod:`fade_mm.det` and :mod:`fade_mm.seg` and are imported by configs
through ``custom_imports`` (they need mmdet / mmseg; this package does not).
"""
from . import ops, upsamplers  # noqa: F401  (registers the upsamplers)

__version__ = '0.1.0'
