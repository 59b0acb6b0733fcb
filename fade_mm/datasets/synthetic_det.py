"""Synthetic COCO-format detection data, so detectors can be trained and evaluated on CPU.

The generator draws flat-coloured shapes (one shape and one colour per class) on a grey,
textured, noisy background. Sizes span tiny objects of a few pixels, thin bars with an aspect
ratio of 5 or more, and small, medium and large shapes; some objects are cut by the image
border, and images may optionally be left empty. Boxes are the tight boxes of the visible
pixels of each object, so they are exact, lie inside the image and never need clipping later.
Every object also has its instance mask (``segmentation``: polygons along the pixel edges, or
RLE for shapes with a hole), exact under pycocotools: it decodes to the painted pixels, its
pixel count is ``area`` and its box is ``bbox``, so the same files serve instance
segmentation (mmdet's ``LoadAnnotations(with_mask=True)``, ``CocoMetric(metric='segm')``).
:mod:`fade_mm.datasets.synthetic_pan` adds stuff regions and COCO-panoptic files.

Only numpy, OpenCV, pycocotools and json are needed (no mmdet): the same module serves
configs, tests and a command line::

    python -m fade_mm.datasets.synthetic_det --out data/synthetic/det --num-train 200 --num-val 50

Output layout under ``root``::

    train/000001.png ...                  val/000001.png ...
    annotations/instances_train.json      annotations/instances_val.json
    manifest.json                         (arguments, sizes + hashes; makes re-runs a no-op)

The root is written atomically (drawn in a temporary sibling, then renamed), so a killed run
never leaves a half dataset under ``root``; :func:`fade_mm.datasets.ensure_synthetic` checks
an existing root against its manifest before it is used.

In an mmdet config::

    info = make_synthetic_coco('data/synthetic/det')
    train_dataloader = dict(dataset=dict(
        type='CocoDataset', data_root=info['root'], metainfo=info['metainfo'],
        ann_file=info['splits']['train']['ann_file_rel'],
        data_prefix=dict(img=info['splits']['train']['img_prefix']), ...))
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ._common import MANIFEST, ImageSize, generate_atomic, normalise_size, parse_size, write_bytes

__all__ = ['SHAPE_CLASSES', 'SHAPE_PALETTE', 'synthetic_det_classes', 'make_synthetic_coco']

# Bump whenever the rendering changes, so stale data on disk is regenerated rather than reused.
GENERATOR_VERSION = 2  # 2: instance masks

#: Class names, in category-id order (id = index + 1). A class is one shape in one colour.
SHAPE_CLASSES: Tuple[str, ...] = ('rectangle', 'ellipse', 'triangle', 'ring', 'cross',
                                  'diamond', 'frame', 'semicircle')
#: RGB colour of each class; saturated hues far apart, so even a 3-pixel object is separable
#: from the grey background and from the other classes by colour alone.
SHAPE_PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (220, 40, 40),    # red
    (40, 200, 60),    # green
    (50, 80, 235),    # blue
    (235, 210, 40),   # yellow
    (225, 50, 215),   # magenta
    (40, 210, 225),   # cyan
    (245, 135, 25),   # orange
    (135, 40, 225),   # purple
)

# Size regimes an object is drawn in, with their sampling probabilities.
_KINDS: Tuple[str, ...] = ('tiny', 'thin', 'small', 'medium', 'large')
_KIND_PROBS = np.array([0.2, 0.15, 0.2, 0.3, 0.15])
_BORDER_PROB = 0.2         # chance an object is placed across (or flush with) the border
_MIN_VISIBLE = 0.3         # a border-cut object keeps at least this share of its pixels
_PLACEMENT_TRIES = 30
# Statistics thresholds, measured on the final (visible) boxes.
TINY_MAX_SIDE = 8
THIN_MIN_ASPECT = 5.0

_SPLITS = ('train', 'val')



def synthetic_det_classes(num_classes: int = 4) -> Tuple[str, ...]:
    """Class names of a generation with ``num_classes`` classes.

    Args:
        num_classes: Number of classes, 1 to ``len(SHAPE_CLASSES)``.

    Returns:
        The first ``num_classes`` names of :data:`SHAPE_CLASSES`.
    """
    if not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f'num_classes must be in [1, {len(SHAPE_CLASSES)}], got {num_classes}')
    return SHAPE_CLASSES[:num_classes]




# ----------------------------------------------------------------------------- rendering

def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Grey, low-saturation texture: smooth blotches, a faint grating and pixel noise.

    Kept grey on purpose: the clutter must challenge localisation, not imitate class colours.
    """
    base = rng.uniform(80.0, 160.0)
    gh, gw = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    blotch = cv2.resize(rng.uniform(-35.0, 35.0, (gh, gw)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta, period = rng.uniform(0, np.pi), rng.uniform(6.0, 24.0)
    grating = rng.uniform(0.0, 10.0) * np.sin(
        (xx * np.cos(theta) + yy * np.sin(theta)) * (2 * np.pi / period) + rng.uniform(0, 6.3))
    grey = base + blotch + grating
    tint = rng.uniform(-8.0, 8.0, 3).astype(np.float32)
    img = grey[..., None] + tint + rng.normal(0.0, rng.uniform(3.0, 10.0), (h, w, 3))
    return img.astype(np.float32)


def _shape_mask(shape: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Rasterises ``shape`` into a ``(h, w)`` uint8 mask that spans (roughly) the whole canvas.

    Drawing uses 4 bits of sub-pixel precision so that tiny and thin shapes stay centred, and
    no anti-aliasing, so the mask is exactly the set of painted pixels.
    """
    m = np.zeros((h, w), np.uint8)
    s = 16  # 2**shift

    def p(x: float, y: float) -> Tuple[int, int]:
        return int(round(x * s)), int(round(y * s))

    cx, cy, ax, ay = (w - 1) / 2, (h - 1) / 2, (w - 1) / 2, (h - 1) / 2
    t = max(1, int(round(min(w, h) * rng.uniform(0.18, 0.3))))  # stroke of rings/frames/crosses
    if shape == 'rectangle':
        m[:] = 1
    elif shape in ('ellipse', 'ring'):
        cv2.ellipse(m, p(cx, cy), p(ax, ay), 0, 0, 360, 1, -1, cv2.LINE_8, 4)
        if shape == 'ring' and min(ax, ay) - t > 0.5:
            cv2.ellipse(m, p(cx, cy), p(ax - t, ay - t), 0, 0, 360, 0, -1, cv2.LINE_8, 4)
    elif shape == 'triangle':
        pts = {0: [(0, h - 1), (w - 1, h - 1), (cx, 0)],         # pointing up
               1: [(0, 0), (w - 1, 0), (cx, h - 1)],             # down
               2: [(w - 1, 0), (w - 1, h - 1), (0, cy)],         # left
               3: [(0, 0), (0, h - 1), (w - 1, cy)]}[int(rng.integers(4))]
        cv2.fillPoly(m, [np.array([p(*q) for q in pts], np.int32)], 1, cv2.LINE_8, 4)
    elif shape == 'diamond':
        pts = [(cx, 0), (w - 1, cy), (cx, h - 1), (0, cy)]
        cv2.fillPoly(m, [np.array([p(*q) for q in pts], np.int32)], 1, cv2.LINE_8, 4)
    elif shape == 'cross':
        x0, y0 = (w - t) // 2, (h - t) // 2
        m[y0:y0 + t, :] = 1
        m[:, x0:x0 + t] = 1
    elif shape == 'frame':
        m[:] = 1
        if h > 2 * t and w > 2 * t:
            m[t:h - t, t:w - t] = 0
    elif shape == 'semicircle':
        # A filled half-ellipse whose flat side lies on one canvas edge.
        side = int(rng.integers(4))
        if side == 0:    # flat side down
            cv2.ellipse(m, p(cx, h - 1), p(ax, h - 1), 0, 180, 360, 1, -1, cv2.LINE_8, 4)
        elif side == 1:  # flat side up
            cv2.ellipse(m, p(cx, 0), p(ax, h - 1), 0, 0, 180, 1, -1, cv2.LINE_8, 4)
        elif side == 2:  # flat side right
            cv2.ellipse(m, p(w - 1, cy), p(w - 1, ay), 0, 90, 270, 1, -1, cv2.LINE_8, 4)
        else:            # flat side left
            cv2.ellipse(m, p(0, cy), p(w - 1, ay), 0, -90, 90, 1, -1, cv2.LINE_8, 4)
    else:  # pragma: no cover - guarded by SHAPE_CLASSES
        raise KeyError(shape)
    if not m.any():
        # Sub-pixel shapes can rasterise to nothing; a solid blob keeps the object real.
        m[:] = 1
    return m


def _object_size(kind: str, rng: np.random.Generator, min_side: int) -> Tuple[int, int]:
    """Samples a drawing canvas ``(w, h)`` for one size regime."""
    if kind == 'thin':
        short = int(rng.integers(1, 4))
        long_ = int(round(short * rng.uniform(6.0, 14.0)))
        long_ = min(max(long_, 8), int(0.9 * min_side))
        return (long_, short) if rng.random() < 0.5 else (short, long_)
    lo, hi = {'tiny': (3, 6), 'small': (8, 16), 'medium': (16, 40),
              'large': (40, max(41, int(0.75 * min_side)))}[kind]
    a = int(rng.integers(lo, hi + 1))
    # Keep non-thin objects compact (aspect <= 2) so that "thin" stays a distinct regime.
    b = max(2, int(round(a * rng.uniform(0.5, 1.0))))
    return (a, b) if rng.random() < 0.5 else (b, a)


def _place(rng: np.random.Generator, img_h: int, img_w: int, w: int, h: int,
           border: bool) -> Tuple[int, int]:
    """Top-left corner for a ``w x h`` canvas; with ``border`` the canvas meets an image edge."""
    x0 = int(rng.integers(0, max(1, img_w - w + 1)))
    y0 = int(rng.integers(0, max(1, img_h - h + 1)))
    if border:
        side = int(rng.integers(4))
        extent = w if side in (0, 1) else h
        # A third of border objects sit flush with the edge, the rest are cut by it.
        cut = 0 if rng.random() < 1 / 3 else int(round(extent * rng.uniform(0.1, 0.6)))
        if side == 0:
            x0 = -cut
        elif side == 1:
            x0 = img_w - w + cut
        elif side == 2:
            y0 = -cut
        else:
            y0 = img_h - h + cut
    return x0, y0


def _render_image(rng: np.random.Generator, img: np.ndarray, num_classes: int,
                  max_objects: int, empty: bool, forced: Sequence[Tuple[str, bool]]
                  ) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Draws the objects of one image over its background.

    Args:
        rng: The image's own generator.
        img: ``(H, W, 3)`` float32 RGB background, drawn over in place.
        num_classes: Classes to draw from.
        max_objects: Upper bound of the number of sampled objects.
        empty: Draw the background only.
        forced: ``(kind, border)`` specs placed before the sampled ones.

    Returns:
        The RGB uint8 image and one dict per object: ``label`` (0-based), ``bbox`` (COCO
        ``[x, y, w, h]`` of the visible pixels), ``area`` (visible pixel count), ``mask``
        (``(H, W)`` uint8, its visible pixels), ``kind`` and ``clipped`` (the border cut some
        of its pixels).
    """
    img_h, img_w = img.shape[:2]
    objects: List[Dict[str, Any]] = []
    if empty:
        return np.clip(img, 0, 255).astype(np.uint8), objects

    specs = list(forced)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        specs.append((str(rng.choice(_KINDS, p=_KIND_PROBS)), bool(rng.random() < _BORDER_PROB)))
    min_side = min(img_h, img_w)
    drawn = []
    for kind, border in specs:
        label = int(rng.integers(num_classes))
        w, h = _object_size(kind, rng, min_side)
        drawn.append((kind, border, label, _shape_mask(SHAPE_CLASSES[label], w, h, rng)))
    # Forced specs first, then big before small: large shapes need free room, small ones fit
    # into what is left.
    order = list(range(len(forced))) + sorted(
        range(len(forced), len(drawn)), key=lambda i: -int(drawn[i][3].size))

    occupied = np.zeros((img_h, img_w), np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    for i in order:
        kind, border, label, mask = drawn[i]
        h, w = mask.shape
        full = int(mask.sum())
        for _ in range(_PLACEMENT_TRIES):
            x0, y0 = _place(rng, img_h, img_w, w, h, border)
            # Intersection of the canvas with the image, in image and in canvas coordinates.
            ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, img_w), min(y0 + h, img_h)
            if ix1 <= ix0 or iy1 <= iy0:
                continue
            vis = mask[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
            n_vis = int(vis.sum())
            if n_vis == 0 or n_vis < _MIN_VISIBLE * full:
                continue
            # Objects never overlap nor touch, so every box is unambiguous (no occlusion).
            if (occupied[iy0:iy1, ix0:ix1] & vis).any():
                continue
            break
        else:
            continue  # no room in this image: drop the object rather than overlap
        obj_mask = np.zeros((img_h, img_w), np.uint8)
        obj_mask[iy0:iy1, ix0:ix1] = vis
        occupied |= cv2.dilate(obj_mask, kernel)
        colour = np.array(SHAPE_PALETTE[label], np.float32)
        colour = colour * rng.uniform(0.85, 1.1) + rng.uniform(-15.0, 15.0, 3)
        img[obj_mask.astype(bool)] = colour
        ys, xs = np.nonzero(obj_mask)
        bx, by = int(xs.min()), int(ys.min())
        bw, bh = int(xs.max()) - bx + 1, int(ys.max()) - by + 1
        objects.append(dict(label=label, bbox=[bx, by, bw, bh], area=n_vis, mask=obj_mask,
                            kind=kind, clipped=n_vis < full))
    # Sensor-like noise over everything, objects included, so colours are not perfectly flat.
    img += rng.normal(0.0, rng.uniform(2.0, 6.0), img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), objects


# ----------------------------------------------------------------------------- bookkeeping

def _box_stats(objects: Sequence[Dict[str, Any]], img_h: int, img_w: int) -> Dict[str, int]:
    """Counts the degenerate-case objects of one image from their final boxes."""
    c = dict(num_tiny=0, num_thin=0, num_border=0, num_clipped=0)
    for o in objects:
        x, y, w, h = o['bbox']
        c['num_tiny'] += max(w, h) <= TINY_MAX_SIDE
        c['num_thin'] += max(w, h) / min(w, h) >= THIN_MIN_ASPECT
        c['num_border'] += x == 0 or y == 0 or x + w == img_w or y + h == img_h
        c['num_clipped'] += bool(o['clipped'])
    return c





def _segmentation(mask: np.ndarray) -> Any:
    """COCO ``segmentation`` of a ``(H, W)`` uint8 mask, exact under pycocotools.

    Polygons along the pixel edges (one per connected part) where they decode to exactly
    ``mask``; compressed RLE otherwise, which is the case of every mask with a hole (rings,
    frames), since COCO polygons cannot cut holes.
    """
    from pycocotools import mask as mask_utils
    h, w = mask.shape
    # The contour of the 2x upscaled mask runs through the centres of its boundary pixels, so
    # (c + 1) // 2 maps it onto the edges of the original pixels.
    big = cv2.resize(mask, (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(big, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [((c.reshape(-1, 2) + 1) // 2).ravel().astype(float).tolist() for c in contours]
    if (hierarchy[0][:, 3] < 0).all() and all(len(p) >= 6 for p in polygons):
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
        if np.array_equal(mask_utils.decode(rle), mask):
            return polygons
    rle = mask_utils.encode(np.asfortranarray(mask))
    return dict(size=[int(v) for v in rle['size']], counts=rle['counts'].decode('ascii'))


def _plain_background(rng: np.random.Generator, h: int, w: int) -> Tuple[np.ndarray, None]:
    return _background(rng, h, w), None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(',', ':')).encode('utf-8')


def _empty_indices(rng: np.random.Generator, n: int, ratio: float) -> set:
    """Which images of a split stay empty: ``round(ratio * n)``, at least one when ``ratio > 0``,
    but never all of them, so each split still has something to learn from."""
    if ratio <= 0 or n == 0:
        return set()
    k = max(1, int(round(ratio * n)))
    k = min(k, n - 1) if n > 1 else n
    return set(int(i) for i in rng.choice(n, size=k, replace=False))


def _generate_split(root: str, split: str, n: int, params: Dict[str, Any],
                    background: Callable[[np.random.Generator, int, int], Tuple[np.ndarray, Any]]
                    = _plain_background,
                    on_image: Optional[Callable[[Dict[str, Any], List[Dict[str, Any]], Any],
                                                None]] = None) -> Dict[str, Any]:
    """Writes the images and the annotation file of one split; returns its statistics.

    ``background(rng, h, w)`` draws each image's background: ``(float32 RGB, extra)``;
    ``on_image(image, objects, extra)`` then sees each image's COCO entry and objects (the
    panoptic generator uses both).
    """
    img_dir = osp.join(root, split)
    os.makedirs(img_dir, exist_ok=True)
    split_id = _SPLITS.index(split)
    (h_lo, h_hi), (w_lo, w_hi) = params['image_size']
    num_classes = params['num_classes']
    split_rng = np.random.default_rng(np.random.SeedSequence([params['seed'], split_id]))
    empty = _empty_indices(split_rng, n, params['empty_ratio'])
    first_full = next((i for i in range(n) if i not in empty), None)
    ext = params['image_format']
    encode = ([cv2.IMWRITE_PNG_COMPRESSION, 3] if ext == 'png'
              else [cv2.IMWRITE_JPEG_QUALITY, 95])

    images, annotations = [], []
    stats = dict(num_images=n, num_empty=0, num_objects=0, num_tiny=0, num_thin=0,
                 num_border=0, num_clipped=0)
    per_class = [0] * num_classes
    for i in range(n):
        # One generator per image, keyed by (seed, split, index): image i is the same whatever
        # the split size, so a bigger generation extends a smaller one.
        rng = np.random.default_rng(np.random.SeedSequence([params['seed'], split_id, i]))
        img_h, img_w = int(rng.integers(h_lo, h_hi + 1)), int(rng.integers(w_lo, w_hi + 1))
        # The first non-empty image of a split always holds a tiny, a thin and a border-cut
        # object, so even a handful of images covers those cases.
        forced = [('tiny', False), ('thin', False), ('medium', True)] if i == first_full else []
        canvas, extra = background(rng, img_h, img_w)
        img, objects = _render_image(rng, canvas, num_classes, params['max_objects'],
                                     i in empty, forced)
        name = f'{i + 1:06d}.{ext}'
        ok, buf = cv2.imencode('.' + ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), encode)
        if not ok:  # pragma: no cover - OpenCV built without the codec
            raise RuntimeError(f'OpenCV cannot encode .{ext}')
        write_bytes(osp.join(img_dir, name), buf.tobytes())
        images.append(dict(id=i + 1, file_name=name, height=img_h, width=img_w))
        for o in objects:
            annotations.append(dict(
                id=len(annotations) + 1, image_id=i + 1, category_id=o['label'] + 1,
                bbox=[float(v) for v in o['bbox']], area=float(o['area']), iscrowd=0,
                segmentation=_segmentation(o['mask'])))
            per_class[o['label']] += 1
        stats['num_empty'] += not objects
        stats['num_objects'] += len(objects)
        for k, v in _box_stats(objects, img_h, img_w).items():
            stats[k] += v
        if on_image is not None:
            on_image(images[-1], objects, extra)

    coco = dict(
        info=dict(description=f'fade_mm synthetic detection ({split})',
                  version=str(GENERATOR_VERSION)),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=c + 1, name=SHAPE_CLASSES[c], supercategory='shape')
                    for c in range(num_classes)])
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    write_bytes(ann_file, _dumps(coco))
    stats['per_class'] = dict(zip(SHAPE_CLASSES[:num_classes], per_class))
    return stats


def _result(root: str, manifest: Dict[str, Any], generated: bool) -> Dict[str, Any]:
    params, stats = manifest['params'], manifest['stats']
    classes = synthetic_det_classes(params['num_classes'])
    palette = [tuple(c) for c in SHAPE_PALETTE[:len(classes)]]
    out: Dict[str, Any] = dict(
        root=root, classes=classes, palette=palette,
        metainfo=dict(classes=classes, palette=palette),
        manifest=osp.join(root, MANIFEST), params=params, generated=generated,
        splits={})
    for split in _SPLITS:
        rel = f'annotations/instances_{split}.json'
        out['splits'][split] = dict(ann_file=osp.join(root, rel), ann_file_rel=rel,
                                    img_dir=osp.join(root, split), img_prefix=f'{split}/',
                                    **stats[split])
        out[f'{split}_ann_file'] = osp.join(root, rel)
        out[f'{split}_img_dir'] = osp.join(root, split)
    return out


def _params(version: Any, num_train: int, num_val: int, image_size: ImageSize,
            num_classes: int, seed: int, max_objects: int, empty_ratio: float,
            image_format: str) -> Dict[str, Any]:
    """Checks the generator arguments; returns them in their manifest (JSON) form."""
    if num_train < 0 or num_val < 0:
        raise ValueError('num_train and num_val must be >= 0')
    if max_objects < 1:
        raise ValueError(f'max_objects must be >= 1, got {max_objects}')
    if not 0.0 <= empty_ratio <= 1.0:
        raise ValueError(f'empty_ratio must be in [0, 1], got {empty_ratio}')
    image_format = image_format.lower().replace('jpeg', 'jpg')
    if image_format not in ('png', 'jpg'):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    synthetic_det_classes(num_classes)  # validates
    return dict(version=version, num_train=int(num_train), num_val=int(num_val),
                image_size=[list(r) for r in normalise_size(image_size, 32)],
                num_classes=int(num_classes), seed=int(seed), max_objects=int(max_objects),
                empty_ratio=float(empty_ratio), image_format=image_format)


def make_synthetic_coco(root: str,
                        num_train: int = 200,
                        num_val: int = 50,
                        image_size: ImageSize = ((128, 192), (128, 192)),
                        num_classes: int = 4,
                        seed: int = 0,
                        max_objects: int = 8,
                        empty_ratio: float = 0.0,
                        image_format: str = 'png',
                        force: bool = False) -> Dict[str, Any]:
    """Writes (or reuses) a synthetic COCO-instances detection dataset under ``root``.

    The output is a pure function of the arguments: the same seed gives byte-identical
    annotation files and identical images. A second call with the same arguments finds
    ``root/manifest.json``, checks every file's size and hash, and returns without drawing
    anything (``generated=False``); it needs no write access then. Otherwise the dataset is
    drawn into a temporary sibling of ``root`` and renamed to ``root`` when complete
    (replacing an older or damaged generation), so a killed run leaves no partial ``root``;
    concurrent calls (torchrun ranks) generate once.

    Args:
        root: Output directory (created if missing; an existing one must be empty or hold
            this generator's files only).
        num_train: Images in the train split.
        num_val: Images in the val split.
        image_size: ``int`` (square), ``(H, W)``, or inclusive per-image ranges
            ``((h_lo, h_hi), (w_lo, w_hi))``; every side at least 32. The default draws odd and
            non-multiple-of-32 sizes.
        num_classes: Number of classes, 1 to 8; names from :data:`SHAPE_CLASSES`.
        seed: Seed of everything drawn.
        max_objects: Each non-empty image gets between 1 and ``max_objects`` sampled objects
            (fewer if they do not fit; the first non-empty image of a split gets 3 more: a tiny,
            a thin and a border-cut one).
        empty_ratio: Share of images left without objects (at least one per split when > 0,
            never all of them).
        image_format: ``'png'`` (lossless) or ``'jpg'``.
        force: Regenerate even if an up-to-date generation exists.

    Returns:
        A dict with ``root`` (absolute), ``classes`` (tuple of names), ``palette`` (RGB
        tuples), ``metainfo`` (``dict(classes=..., palette=...)`` for mmdet configs),
        ``manifest`` (its path), ``params``, ``generated`` (False if reused),
        ``train_ann_file``/``val_ann_file``/``train_img_dir``/``val_img_dir`` (absolute) and
        ``splits``: per split ``ann_file``, ``ann_file_rel`` (relative to ``root``),
        ``img_dir``, ``img_prefix`` (``'train/'``), ``num_images``, ``num_empty``,
        ``num_objects``, ``num_tiny`` (longer box side <= 8 px), ``num_thin`` (box aspect
        >= 5), ``num_border`` (box touches the image edge), ``num_clipped`` (the edge cut
        some of its pixels) and ``per_class`` counts.

    Raises:
        ValueError: On an out-of-range argument.
        SyntheticDataError: (a ``ValueError``) ``root`` holds other files.
    """
    params = _params(GENERATOR_VERSION, num_train, num_val, image_size, num_classes, seed,
                     max_objects, empty_ratio, image_format)
    root = osp.abspath(root)

    def write(directory: str) -> Tuple[Dict[str, int], Dict[str, Any]]:
        os.makedirs(osp.join(directory, 'annotations'))
        stats = {split: _generate_split(directory, split, n, params)
                 for split, n in zip(_SPLITS, (num_train, num_val))}
        return dict(train=num_train, val=num_val, annotations=len(_SPLITS)), stats

    manifest, generated = generate_atomic(root, __name__, params,
                                          (*_SPLITS, 'annotations'), write, force)
    return _result(root, manifest, generated)


# ----------------------------------------------------------------------------- CLI

def _parse_cli(argv: Optional[Sequence[str]], module: str, what: str,
              default_out: str) -> Dict[str, Any]:
    """The command line of ``module`` as generator keyword arguments (``root`` included)."""
    ap = argparse.ArgumentParser(prog=f'python -m {module}',
                                 description=f'Write a synthetic {what} dataset.')
    ap.add_argument('--out', dest='root', default=default_out, help='output root')
    ap.add_argument('--num-train', type=int, default=200)
    ap.add_argument('--num-val', type=int, default=50)
    ap.add_argument('--num-classes', type=int, default=4,
                    help=f'1..{len(SHAPE_CLASSES)}: {", ".join(SHAPE_CLASSES)}')
    ap.add_argument('--image-size', type=parse_size, default='128-192',
                    help="'160', 'HxW', 'LO-HI' (both sides) or 'LO-HIxLO-HI'")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--max-objects', type=int, default=8)
    ap.add_argument('--empty-ratio', type=float, default=0.0)
    ap.add_argument('--format', dest='image_format', choices=('png', 'jpg'), default='png')
    ap.add_argument('--force', action='store_true', help='regenerate even if up to date')
    return vars(ap.parse_args(argv))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Command-line entry point; prints what was written (or reused)."""
    info = make_synthetic_coco(**_parse_cli(argv, 'fade_mm.datasets.synthetic_det',
                                            'COCO-format detection', 'data/synthetic/det'))
    (h_lo, h_hi), (w_lo, w_hi) = info['params']['image_size']
    print(f"{'wrote' if info['generated'] else 'up to date, reused'}: {info['root']}")
    print(f"classes: {info['classes']}  image size: H {h_lo}-{h_hi}, W {w_lo}-{w_hi}  "
          f"seed: {info['params']['seed']}")
    for split, s in info['splits'].items():
        print(f"  {split:5s} {s['num_images']:5d} images in {s['img_dir']}  "
              f"({s['num_empty']} empty)")
        print(f"        {s['num_objects']:5d} objects in {s['ann_file']}")
        print(f"        tiny {s['num_tiny']}, thin {s['num_thin']}, border {s['num_border']} "
              f"(clipped {s['num_clipped']}); per class {s['per_class']}")
    print(f"  manifest: {info['manifest']}")
    return info


if __name__ == '__main__':
    main()
