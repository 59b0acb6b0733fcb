"""fade_mm: FADE and peer feature upsamplers for any PyTorch network, and for mmdet / mmseg.

The core -- :mod:`fade_mm.ops` and :mod:`fade_mm.upsamplers` -- needs torch alone. When
mmengine is importable, importing the package also registers every upsampler in mmengine's
root ``MODELS`` (:mod:`fade_mm.registry`), so configs build them by name. The mmdet and mmseg
adapters live in :mod:`fade_mm.det` and :mod:`fade_mm.seg` and are loaded by configs through
``custom_imports``.
"""
from . import ops, upsamplers  # noqa: F401

try:
    import mmengine.registry  # noqa: F401
except ImportError:  # torch-only install: plain modules, no registry
    pass
else:
    from . import registry  # noqa: F401  (registers the upsamplers)

__version__ = '0.2.0'
