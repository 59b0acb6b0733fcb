"""The few names of ``panopticapi`` that mmdet 3.3 needs, for machines without it.

mmdet's panoptic parts import ``panopticapi`` (https://github.com/cocodataset/panopticapi,
installable from git only): ``LoadPanopticAnnotations`` its ``rgb2id``, ``CocoPanopticMetric``
and the PQ computation that mmdet vendors (``mmdet.evaluation.functional.panoptic_utils``)
its ``PQStat``, ``VOID``, ``OFFSET``, ``rgb2id`` and ``id2rgb``. Without the package they
refuse to run. :func:`install` registers this module as ``panopticapi`` (and
``panopticapi.evaluation`` / ``panopticapi.utils``) when the real one is missing, and fills in
the names that mmdet modules already imported bound to ``None``; with the real package it
does nothing. The definitions follow panopticapi's (same formulas, same results).

Note: ``CocoPanopticMetric(outfile_prefix=...)`` computes PQ in a process pool; with the
``spawn`` start method (not Linux's default) its workers do not see the fallback.
"""
from __future__ import annotations

import sys
import types
from collections import defaultdict
from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = ['OFFSET', 'VOID', 'PQStat', 'PQStatCat', 'rgb2id', 'id2rgb', 'install']

OFFSET = 256 * 256 * 256  # gt_id * OFFSET + pred_id keys a (gt, pred) segment pair
VOID = 0                  # segment id of unlabelled pixels


def rgb2id(color: Any) -> Any:
    """COCO-panoptic segment ids of an ``(H, W, 3)`` RGB array (``R + 256 G + 256^2 B``),
    or of one colour."""
    if isinstance(color, np.ndarray) and color.ndim == 3:
        color = color.astype(np.int32) if color.dtype == np.uint8 else color
        return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]
    return int(color[0] + 256 * color[1] + 256 * 256 * color[2])


def id2rgb(id_map: Any) -> Any:
    """Inverse of :func:`rgb2id`: an ``(H, W, 3)`` uint8 array, or one ``[R, G, B]``."""
    if isinstance(id_map, np.ndarray):
        ids = id_map.astype(np.int64)
        return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], -1).astype(np.uint8)
    return [id_map % 256, id_map // 256 % 256, id_map // 65536 % 256]


class PQStatCat:
    """Sums of one category: IoU of the matched pairs, true/false positives, false negatives."""

    def __init__(self) -> None:
        self.iou, self.tp, self.fp, self.fn = 0.0, 0, 0, 0

    def __iadd__(self, other: 'PQStatCat') -> 'PQStatCat':
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self


class PQStat:
    """Per-category :class:`PQStatCat` sums; ``pq_average`` turns them into PQ, SQ and RQ."""

    def __init__(self) -> None:
        self.pq_per_cat: Dict[int, PQStatCat] = defaultdict(PQStatCat)

    def __getitem__(self, i: int) -> PQStatCat:
        return self.pq_per_cat[i]

    def __iadd__(self, other: 'PQStat') -> 'PQStat':
        for label, stat in other.pq_per_cat.items():
            self.pq_per_cat[label] += stat
        return self

    def pq_average(self, categories: Dict[int, Dict[str, Any]], isthing: Optional[bool]
                   ) -> Tuple[Dict[str, float], Dict[int, Dict[str, float]]]:
        """Mean PQ/SQ/RQ over the categories (things only, stuff only, or all for ``None``)
        that occur in ground truth or predictions; also per category."""
        pq = sq = rq = 0.0
        n = 0
        per_class: Dict[int, Dict[str, float]] = {}
        for label, info in categories.items():
            if isthing is not None and isthing != (info['isthing'] == 1):
                continue
            s = self.pq_per_cat[label]
            if s.tp + s.fp + s.fn == 0:
                per_class[label] = dict(pq=0.0, sq=0.0, rq=0.0)
                continue
            n += 1
            denominator = s.tp + 0.5 * s.fp + 0.5 * s.fn
            per_class[label] = dict(pq=s.iou / denominator, sq=s.iou / s.tp if s.tp else 0.0,
                                    rq=s.tp / denominator)
            pq += per_class[label]['pq']
            sq += per_class[label]['sq']
            rq += per_class[label]['rq']
        # panopticapi divides by n unguarded; a split without stuff (or things) then fails
        n_ = max(n, 1)
        return dict(pq=pq / n_, sq=sq / n_, rq=rq / n_, n=n), per_class


# mmdet modules that bind panopticapi's names at import time (None without the package)
_MMDET_MODULES = ('mmdet.evaluation.functional.panoptic_utils',
                  'mmdet.evaluation.metrics.coco_panoptic_metric',
                  'mmdet.apis.det_inferencer')


def install() -> bool:
    """Makes mmdet's panoptic parts work without panopticapi (see the module docstring).

    Returns:
        ``True`` if this fallback serves as ``panopticapi``, ``False`` if the real package is
        installed (then nothing changes).
    """
    this = sys.modules[__name__]
    try:
        import panopticapi.evaluation  # noqa: F401
        import panopticapi.utils  # noqa: F401
    except ImportError:
        package = types.ModuleType('panopticapi', __doc__)
        package.__path__ = []  # a package, so `from panopticapi import utils` works
        package.evaluation = package.utils = this
        sys.modules.update({'panopticapi': package, 'panopticapi.evaluation': this,
                            'panopticapi.utils': this})
    if sys.modules['panopticapi.evaluation'] is not this:
        return False
    names = dict(panopticapi=sys.modules['panopticapi'], PQStat=PQStat, VOID=VOID,
                 OFFSET=OFFSET, rgb2id=rgb2id, id2rgb=id2rgb)
    for module_name in _MMDET_MODULES:
        module = sys.modules.get(module_name)
        for name, value in names.items():
            if module is not None and hasattr(module, name):
                setattr(module, name, value)
    return True
