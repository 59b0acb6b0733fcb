"""Config helpers for CPU runs on the synthetic data and offline runs (mmengine only)."""
from __future__ import annotations

import os
from typing import Any, List, Optional

from mmengine.config import Config

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


# Top-level helper variables of the dataset bases (configs/_base_/datasets/synthetic_*.py),
# not settings: an overlay does not carry them into the config it is merged over.
OVERLAY_HELPERS = ('data_root', 'dataset_type', 'classes', 'crop_size', 'scale', 'img_ratios',
                   'backend_args', '_dataset')


def merge_where_present(dst: Any, src: dict) -> None:
    """Merges ``src`` into the dict ``dst`` where ``dst`` has the parts ``src`` names.

    A dict value of ``src`` is merged into ``dst``'s dict of the same key (into each dict of a
    list, e.g. a cascade's ``bbox_head``) and skipped when ``dst`` has no such key; any other
    value is set. So an overlay's ``model=dict(roi_head=..., bbox_head=...)`` fixes the class
    count of a two-stage and of a single-stage detector alike, without adding a head.
    """
    for key, value in src.items():
        if not isinstance(value, dict):
            dst[key] = value
            continue
        here = dst.get(key)
        for part in here if isinstance(here, (list, tuple)) else [here]:
            if isinstance(part, dict):
                merge_where_present(part, value)


def apply_overlay(cfg: Config, overlay: str, data_root: Optional[str] = None,
                  work_dir: Optional[str] = None) -> Config:
    """Merge an overlay config file (e.g. ``configs/_base_/synthetic_ade.py``) over ``cfg``.

    An overlay is a dataset base of ``configs/_base_/datasets/`` (dataloaders, pipelines,
    evaluators) plus what only an overlay needs: the class counts and toy-scale settings of the
    model, applied where ``cfg.model`` has those parts (:func:`merge_where_present`). Lists
    (pipelines, evaluators) in the overlay replace the config's, dicts merge key by key; the
    dataset base's helper variables (:data:`OVERLAY_HELPERS`) are left out. A dataset base
    alone is an overlay too, without model fixes.

    ``data_root`` re-points every dataloader, and the evaluators' annotation paths (the
    overlay's own default is ``data/synthetic/...`` relative to the working directory).
    """
    over = Config.fromfile(overlay).to_dict()
    default_root = over.get('data_root')
    for key in OVERLAY_HELPERS:
        over.pop(key, None)
    model = over.pop('model', None)
    cfg.merge_from_dict(over, allow_list_keys=False)
    if model and cfg.get('model') is not None:
        merge_where_present(cfg.model, model)
    if data_root is not None:
        root = os.fspath(data_root)
        for key in DATALOADERS:
            if key in cfg:
                cfg[key].dataset.data_root = root
        for key in ('val_evaluator', 'test_evaluator'):
            evaluators = cfg.get(key)
            for ev in evaluators if isinstance(evaluators, list) else [evaluators]:
                for path_key in ('ann_file', 'seg_prefix'):  # seg_prefix: panoptic PNGs
                    path = ev.get(path_key) if ev else None
                    if path and default_root and path.startswith(default_root):
                        ev[path_key] = root + path[len(default_root):]
    if work_dir is not None:
        cfg.work_dir = os.fspath(work_dir)
    return cfg


def clear_pretrained(cfg: Config) -> List[str]:
    """Removes every pretrained-weight source from ``cfg.model`` so that it builds and
    initialises offline: each ``pretrained`` key (mmseg's ``model.pretrained``, which
    ``EncoderDecoder`` turns into the backbone's init_cfg) becomes None, and every
    ``init_cfg`` of type ``'Pretrained'`` (alone, or inside a list of init configs) is
    dropped. Other initialisations (Xavier, Normal, ...) stay.

    Args:
        cfg: a loaded config (modified in place).

    Returns:
        The dotted paths that were cleared, e.g. ``['model.pretrained',
        'model.backbone.init_cfg']``.
    """
    cleared: List[str] = []

    def is_pretrained(init: Any) -> bool:
        return isinstance(init, dict) and init.get('type') == 'Pretrained'

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key in list(node.keys()):
                value, here = node[key], f'{path}.{key}'
                if key == 'pretrained' and value is not None:
                    node[key] = None
                    cleared.append(here)
                elif key == 'init_cfg' and is_pretrained(value):
                    node[key] = None
                    cleared.append(here)
                elif key == 'init_cfg' and isinstance(value, (list, tuple)) \
                        and any(is_pretrained(v) for v in value):
                    node[key] = [v for v in value if not is_pretrained(v)] or None
                    cleared.append(here)
                else:
                    visit(value, here)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                visit(value, f'{path}.{i}')

    if cfg.get('model') is not None:
        visit(cfg.model, 'model')
    return cleared
