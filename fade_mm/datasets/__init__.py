"""Synthetic datasets for CPU-sized training and evaluation runs (numpy + OpenCV only).

Exports are resolved lazily (PEP 562): importing a generator module here eagerly would make
``python -m fade_mm.datasets.<module>`` warn that the module was already in ``sys.modules``.
To add a generator, list its public names in ``_EXPORTS`` and ``__all__``.
"""
from importlib import import_module
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS = {
    'SHAPE_CLASSES': 'synthetic_det',
    'SHAPE_PALETTE': 'synthetic_det',
    'make_synthetic_coco': 'synthetic_det',
    'synthetic_det_classes': 'synthetic_det',
    'make_synthetic_ade': 'synthetic_seg',
    'make_synthetic_coco_panoptic': 'synthetic_pan',
    'STUFF_CLASSES': 'synthetic_pan',
    'ensure_synthetic': '_common',
    'verify_synthetic': '_common',
    'SyntheticDataError': '_common',
}

__all__ = ['SHAPE_CLASSES', 'SHAPE_PALETTE', 'make_synthetic_coco', 'synthetic_det_classes',
           'make_synthetic_ade', 'make_synthetic_coco_panoptic', 'STUFF_CLASSES',
           'ensure_synthetic', 'verify_synthetic', 'SyntheticDataError']

if TYPE_CHECKING:  # static analysers see ordinary imports
    from ._common import SyntheticDataError, ensure_synthetic, verify_synthetic
    from .synthetic_det import (
        SHAPE_CLASSES,
        SHAPE_PALETTE,
        make_synthetic_coco,
        synthetic_det_classes,
    )
    from .synthetic_pan import STUFF_CLASSES, make_synthetic_coco_panoptic
    from .synthetic_seg import make_synthetic_ade


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f'.{_EXPORTS[name]}', __name__), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
