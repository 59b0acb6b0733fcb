"""Synthetic COCO-panoptic data, so panoptic models can be trained and evaluated on CPU.

The things are :mod:`~fade_mm.datasets.synthetic_det`'s shapes (same sizes, border cuts and
degenerate cases, one class per shape and colour); the background is made of stuff regions
instead of grey clutter: ``sky`` above a wavy horizon, ``ground`` below it and, in most
images, a ``water`` pool in the ground, each with its own muted colour and texture. Every
pixel belongs to exactly one segment (no void).

Output layout under ``root`` (that of COCO panoptic; the image ids, file names and object
annotations are those of a :func:`~fade_mm.datasets.make_synthetic_coco` root, masks
included, so the same root also serves instance segmentation)::

    train/000001.png ...                         val/000001.png ...
    annotations/panoptic_train.json              annotations/panoptic_val.json
    annotations/panoptic_train/000001.png ...    annotations/panoptic_val/000001.png ...
    annotations/instances_train.json             annotations/instances_val.json
    manifest.json

The segment PNGs encode segment ids as in COCO (``id = R + 256 G + 256^2 B``; ids are 1, 2,
... in each image). Categories: the shapes (ids 1..num_classes, ``isthing`` 1), then the stuff
classes (``isthing`` 0). Written atomically with a manifest, like the other generators
(:func:`fade_mm.datasets.ensure_synthetic` kind ``'pan'``). mmdet's panoptic loading and
metric import ``panopticapi``; :func:`fade_mm.datasets.panopticapi_fallback.install` stands
in for it where it is not installed.

Command line::

    python -m fade_mm.datasets.synthetic_pan --out data/synthetic/pan
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from . import synthetic_det as det
from ._common import MANIFEST, ImageSize, generate_atomic, write_bytes

__all__ = ['STUFF_CLASSES', 'STUFF_PALETTE', 'make_synthetic_coco_panoptic']

# '<synthetic_det drawing version>.<stuff and panoptic files version>': bump the second part
# when this module's output changes.
GENERATOR_VERSION = f'{det.GENERATOR_VERSION}.1'

#: Stuff class names, after the thing classes in category-id order.
STUFF_CLASSES: Tuple[str, ...] = ('sky', 'ground', 'water')
#: Mean RGB of each stuff class: muted, so the shapes' saturated colours stand out.
STUFF_PALETTE: Tuple[Tuple[int, int, int], ...] = ((150, 165, 185), (120, 105, 85),
                                                   (70, 100, 110))
# Texture of each stuff class: blotch and grating amplitudes, pixel noise; the water's grating
# is horizontal (waves).
_STUFF_TEXTURE = ((8.0, 0.0, 2.0), (30.0, 6.0, 8.0), (10.0, 14.0, 4.0))
_WATER_PROB = 0.7

_SPLITS = det._SPLITS


def _texture(rng: np.random.Generator, h: int, w: int, s: int) -> np.ndarray:
    """A full ``(h, w, 3)`` float32 texture of stuff class ``s``."""
    blotch, grating, noise = _STUFF_TEXTURE[s]
    gh, gw = (int(v) for v in rng.integers(3, 9, 2))
    img = cv2.resize(rng.uniform(-blotch, blotch, (gh, gw)).astype(np.float32), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = np.pi / 2 + rng.uniform(-0.2, 0.2) if STUFF_CLASSES[s] == 'water' \
        else rng.uniform(0, np.pi)
    img += grating * np.sin((xx * np.cos(theta) + yy * np.sin(theta))
                            * (2 * np.pi / rng.uniform(5.0, 16.0)) + rng.uniform(0, 6.3))
    colour = np.array(STUFF_PALETTE[s], np.float32) * rng.uniform(0.9, 1.1)
    return img[..., None] + colour + rng.normal(0.0, noise, (h, w, 3)).astype(np.float32)


def _stuff_background(rng: np.random.Generator, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Draws the stuff regions: ``(float32 RGB image, (h, w) uint8 stuff index map)``."""
    x = np.arange(w, dtype=np.float32)
    horizon = h * rng.uniform(0.25, 0.6) + h * rng.uniform(0.0, 0.12) * np.sin(
        x * (2 * np.pi / (w * rng.uniform(0.5, 2.0))) + rng.uniform(0, 6.3))
    stuff = (np.arange(h, dtype=np.float32)[:, None] >= horizon).astype(np.uint8)  # 0 sky
    if rng.random() < _WATER_PROB:
        pool = np.zeros((h, w), np.uint8)
        cx = int(rng.integers(0, w))
        cy = int(rng.uniform(min(horizon[cx] + 0.1 * h, h - 1), h))
        axes = (max(2, int(w * rng.uniform(0.15, 0.4))), max(2, int(h * rng.uniform(0.08, 0.2))))
        cv2.ellipse(pool, (cx, cy), axes, 0, 0, 360, 1, -1)
        stuff[(pool == 1) & (stuff == 1)] = 2
    img = np.empty((h, w, 3), np.float32)
    for s in range(len(STUFF_CLASSES)):
        where = stuff == s
        if where.any():
            img[where] = _texture(rng, h, w, s)[where]
    return img, stuff


def _box(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]


def _generate_split(root: str, split: str, n: int, params: Dict[str, Any]) -> Dict[str, Any]:
    """Writes images, instances, segment PNGs and panoptic json of one split; its stats."""
    num_classes = params['num_classes']
    seg_dir = osp.join(root, 'annotations', f'panoptic_{split}')
    os.makedirs(seg_dir)
    images: List[Dict[str, Any]] = []
    annotations: List[Dict[str, Any]] = []
    stuff_counts = [0] * len(STUFF_CLASSES)

    def on_image(image: Dict[str, Any], objects: List[Dict[str, Any]], stuff: np.ndarray
                 ) -> None:
        ids = np.zeros(stuff.shape, np.int64)
        segments = []
        things = np.zeros(stuff.shape, bool)
        for o in objects:
            things |= o['mask'].astype(bool)
        for s in range(len(STUFF_CLASSES)):
            region = (stuff == s) & ~things
            if region.any():
                segments.append(dict(id=len(segments) + 1, category_id=num_classes + s + 1,
                                     iscrowd=0, bbox=_box(region), area=int(region.sum())))
                ids[region] = segments[-1]['id']
                stuff_counts[s] += 1
        for o in objects:
            segments.append(dict(id=len(segments) + 1, category_id=o['label'] + 1, iscrowd=0,
                                 bbox=[float(v) for v in o['bbox']], area=int(o['area'])))
            ids[o['mask'].astype(bool)] = segments[-1]['id']
        png = osp.splitext(image['file_name'])[0] + '.png'
        ok, buf = cv2.imencode('.png', np.stack([ids // 65536, ids // 256 % 256, ids % 256],
                                                -1).astype(np.uint8))  # BGR of id2rgb
        if not ok:  # pragma: no cover
            raise RuntimeError('OpenCV cannot encode .png')
        write_bytes(osp.join(seg_dir, png), buf.tobytes())
        images.append(image)
        annotations.append(dict(image_id=image['id'], file_name=png, segments_info=segments))

    stats = det._generate_split(root, split, n, params, _stuff_background, on_image)
    panoptic = dict(
        info=dict(description=f'fade_mm synthetic panoptic ({split})',
                  version=GENERATOR_VERSION),
        licenses=[], images=images, annotations=annotations,
        categories=_categories(num_classes))
    write_bytes(osp.join(root, 'annotations', f'panoptic_{split}.json'), det._dumps(panoptic))
    stats['per_stuff_class'] = dict(zip(STUFF_CLASSES, stuff_counts))
    return stats


def _categories(num_classes: int) -> List[Dict[str, Any]]:
    things = [dict(id=c + 1, name=det.SHAPE_CLASSES[c], supercategory='shape', isthing=1,
                   color=list(det.SHAPE_PALETTE[c])) for c in range(num_classes)]
    stuff = [dict(id=num_classes + s + 1, name=name, supercategory='region', isthing=0,
                  color=list(STUFF_PALETTE[s])) for s, name in enumerate(STUFF_CLASSES)]
    return things + stuff


def _result(root: str, manifest: Dict[str, Any], generated: bool) -> Dict[str, Any]:
    params, stats = manifest['params'], manifest['stats']
    things = det.synthetic_det_classes(params['num_classes'])
    classes = things + STUFF_CLASSES
    palette = [tuple(c['color']) for c in _categories(len(things))]
    out: Dict[str, Any] = dict(
        root=root, classes=classes, thing_classes=things, stuff_classes=STUFF_CLASSES,
        palette=palette,
        metainfo=dict(classes=classes, thing_classes=things, stuff_classes=STUFF_CLASSES,
                      palette=palette),
        manifest=osp.join(root, MANIFEST), params=params, generated=generated, splits={})
    for split in _SPLITS:
        ann, seg, ins = (f'annotations/panoptic_{split}.json', f'annotations/panoptic_{split}/',
                         f'annotations/instances_{split}.json')
        out['splits'][split] = dict(
            ann_file=osp.join(root, ann), ann_file_rel=ann, img_dir=osp.join(root, split),
            img_prefix=f'{split}/', seg_dir=osp.join(root, seg[:-1]), seg_prefix=seg,
            instances_ann_file=osp.join(root, ins), instances_ann_file_rel=ins, **stats[split])
    return out


def make_synthetic_coco_panoptic(root: str,
                                 num_train: int = 200,
                                 num_val: int = 50,
                                 image_size: ImageSize = ((128, 192), (128, 192)),
                                 num_classes: int = 4,
                                 seed: int = 0,
                                 max_objects: int = 8,
                                 empty_ratio: float = 0.0,
                                 image_format: str = 'png',
                                 force: bool = False) -> Dict[str, Any]:
    """Writes (or reuses) a synthetic COCO-panoptic dataset under ``root``.

    Deterministic, reused and written atomically as
    :func:`~fade_mm.datasets.make_synthetic_coco`, which documents the arguments
    (``num_classes`` counts the thing classes; the 3 stuff classes are always there).

    Returns:
        A dict with ``root``, ``classes`` (things then stuff), ``thing_classes``,
        ``stuff_classes``, ``palette``, ``metainfo`` (those four, for mmdet's
        ``CocoPanopticDataset``), ``manifest``, ``params``, ``generated`` and ``splits``: per
        split ``ann_file`` / ``ann_file_rel`` (panoptic json), ``img_dir`` / ``img_prefix``,
        ``seg_dir`` / ``seg_prefix`` (segment PNGs, ``annotations/panoptic_train/``),
        ``instances_ann_file`` / ``instances_ann_file_rel`` (things with masks), the object
        statistics of :func:`~fade_mm.datasets.make_synthetic_coco` and
        ``per_stuff_class`` (images holding each stuff class).

    Raises:
        ValueError: On an out-of-range argument.
        SyntheticDataError: (a ``ValueError``) ``root`` holds other files.
    """
    params = det._params(GENERATOR_VERSION, num_train, num_val, image_size, num_classes, seed,
                         max_objects, empty_ratio, image_format)
    root = osp.abspath(root)

    def write(directory: str) -> Tuple[Dict[str, int], Dict[str, Any]]:
        os.makedirs(osp.join(directory, 'annotations'))
        stats = {split: _generate_split(directory, split, n, params)
                 for split, n in zip(_SPLITS, (num_train, num_val))}
        counts = dict(train=num_train, val=num_val, annotations=2 * len(_SPLITS))
        counts.update({f'annotations/panoptic_{split}': n
                       for split, n in zip(_SPLITS, (num_train, num_val))})
        return counts, stats

    manifest, generated = generate_atomic(root, __name__, params,
                                          (*_SPLITS, 'annotations'), write, force)
    return _result(root, manifest, generated)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Command-line entry point; prints what was written (or reused)."""
    info = make_synthetic_coco_panoptic(**det._parse_cli(
        argv, 'fade_mm.datasets.synthetic_pan', 'COCO-panoptic', 'data/synthetic/pan'))
    print(f"{'wrote' if info['generated'] else 'up to date, reused'}: {info['root']}")
    print(f"things: {info['thing_classes']}  stuff: {info['stuff_classes']}")
    for split, s in info['splits'].items():
        print(f"  {split:5s} {s['num_images']:5d} images in {s['img_dir']}, "
              f"{s['num_objects']} objects; segments in {s['seg_dir']}")
    print(f"  manifest: {info['manifest']}")
    return info


if __name__ == '__main__':
    main()
