"""Synthetic ADE20K-layout semantic segmentation data, so segmentors can be trained on CPU.

Every image mixes the two kinds of content that separate feature upsamplers:

* **region-sensitive**: a top and a bottom area split by a wavy horizon, plus a few large,
  slightly skewed quadrilaterals, each class with its own colour and texture (gradient,
  stripes, bricks, noise);
* **detail-sensitive**: thin structures 1-3 px wide (dark poles, pale sagging wires, oblique
  rails) and small blobs down to single pixels;

plus one or two small "other" patches labelled 0 (ignored with ``reduce_zero_label=True``).
Class colours are fixed per class, and thin and blob classes are tied to one shape each, so a
tiny model separates the classes after a few hundred iterations; JPEGs are written at quality
95 without chroma subsampling so 1-px lines keep their colour.

Layout under ``root`` (what mmseg's ``ADE20KDataset`` reads)::

    images/training/synthetic_training_000000.jpg ...       annotations/training/*.png
    images/validation/synthetic_validation_000000.jpg ...   annotations/validation/*.png
    manifest.json            (arguments, sizes + hashes; makes re-runs a no-op)

The root is written atomically (drawn in a temporary sibling, then renamed), so a killed run
never leaves a half dataset under ``root``; :func:`fade_mm.datasets.ensure_synthetic` checks
an existing root against its manifest before it is used.

Annotation PNGs hold ``0`` for "other" and ``k + 1`` for class ``k``, as in ADE20K.

Class names are the first ``num_classes`` names of ADE20K's 150 (``'wall', 'building',
'sky', ...``) and carry no meaning here: mmseg's ``BaseSegDataset`` accepts only a subset of
a dataset's own class names and remaps labels by their index in that list, so the first
``N`` names are the only choice for which the remapping is the identity (gt = PNG - 1, 0 ->
255). :func:`class_roles` tells what each class looks like.

Only numpy, OpenCV and json are needed (no mmseg)::

    python -m fade_mm.datasets.synthetic_seg --out data/synthetic/seg

In an mmseg config::

    info = make_synthetic_ade('data/synthetic/seg')
    train_dataloader = dict(dataset=dict(
        type='ADE20KDataset', data_root=info['root'], metainfo=info['metainfo'],
        reduce_zero_label=True, data_prefix=info['data_prefix']['training'], ...))
"""
from __future__ import annotations

import argparse
import colorsys
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ._common import MANIFEST, ImageSize, generate_atomic, normalise_size, parse_size, write_bytes

__all__ = ['ADE20K_HEAD_CLASSES', 'synthetic_seg_classes', 'class_roles',
           'synthetic_seg_palette', 'make_synthetic_ade']

# Bump whenever the rendering changes, so stale data on disk is regenerated rather than reused.
GENERATOR_VERSION = 1

#: The first 40 ADE20K class names, verbatim (``'bed '`` has a trailing space upstream).
ADE20K_HEAD_CLASSES: Tuple[str, ...] = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed ', 'windowpane',
    'grass', 'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant',
    'curtain', 'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror',
    'rug', 'field', 'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp',
    'bathtub', 'railing', 'cushion')
MIN_CLASSES = 6   # the first thin class is class 5
MAX_CLASSES = len(ADE20K_HEAD_CLASSES)

# Role of classes 0..11; later classes cycle region, thin, blob. Interleaved so that any
# N >= 6 has regions, blobs and thin structures.
_HEAD_ROLES = ('region', 'region', 'region', 'region', 'blob', 'thin',
               'region', 'blob', 'thin', 'region', 'blob', 'thin')
# Hand-picked RGB for classes 0..11 (far apart; thin ones extreme in luminance).
_HEAD_COLOURS = ((200, 180, 150), (150, 90, 80), (110, 170, 235), (170, 120, 60),
                 (40, 140, 40), (25, 25, 25), (95, 95, 105), (230, 60, 160),
                 (250, 250, 215), (125, 205, 60), (240, 160, 20), (230, 30, 30))
# Texture of each region class (blobs are flat, thin structures plain).
_HEAD_TEXTURES = {0: 'vstripes', 1: 'bricks', 2: 'gradient', 3: 'hstripes', 6: 'noise',
                  9: 'streaks'}
_TEXTURES = ('gradient', 'hstripes', 'vstripes', 'bricks', 'noise', 'streaks')
_THIN_SHAPES = ('pole', 'wire', 'rail')
_BLOB_SHAPES = ('ellipse', 'square', 'dot')

SPLITS = ('training', 'validation')
MIN_SIDE = 32



# ----------------------------------------------------------------------------- classes

def synthetic_seg_classes(num_classes: int = 12) -> Tuple[str, ...]:
    """Class names of a generation with ``num_classes`` classes (ADE20K's first names).

    Raises:
        ValueError: unless ``MIN_CLASSES <= num_classes <= MAX_CLASSES``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or \
            not MIN_CLASSES <= num_classes <= MAX_CLASSES:
        raise ValueError(f'num_classes must be an int in [{MIN_CLASSES}, {MAX_CLASSES}], '
                         f'got {num_classes!r}')
    return ADE20K_HEAD_CLASSES[:num_classes]


def class_roles(num_classes: int = 12) -> Tuple[str, ...]:
    """``'region'``, ``'thin'`` or ``'blob'`` for each class (0-based, as after
    ``reduce_zero_label``)."""
    synthetic_seg_classes(num_classes)
    cycle = ('region', 'thin', 'blob')
    return tuple(_HEAD_ROLES[k] if k < len(_HEAD_ROLES) else cycle[(k - len(_HEAD_ROLES)) % 3]
                 for k in range(num_classes))


def synthetic_seg_palette(num_classes: int = 12) -> Tuple[Tuple[int, int, int], ...]:
    """RGB base colour of each class; also the visualisation palette."""
    roles = class_roles(num_classes)
    out = []
    for k in range(num_classes):
        if k < len(_HEAD_COLOURS):
            out.append(_HEAD_COLOURS[k])
            continue
        # Golden-ratio hue steps keep later classes apart from each other.
        hue = (0.13 + k * 0.618034) % 1.0
        sat, val = {'region': (0.45, 0.8), 'blob': (0.9, 0.75), 'thin': (1.0, 1.0)}[roles[k]]
        r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
        out.append((int(round(r * 255)), int(round(g * 255)), int(round(b * 255))))
    return tuple(out)


def _texture_of(k: int) -> str:
    return _HEAD_TEXTURES.get(k, _TEXTURES[k % len(_TEXTURES)])


def _shape_of(k: int, roles: Sequence[str]) -> str:
    """Shape a thin or blob class is always drawn as: its ordinal among its role."""
    ordinal = sum(1 for j in range(k) if roles[j] == roles[k])
    shapes = _THIN_SHAPES if roles[k] == 'thin' else _BLOB_SHAPES
    return shapes[ordinal % len(shapes)]


# ----------------------------------------------------------------------------- drawing

def _texture(kind: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Brightness offset map ``(h, w)`` of one texture; phases vary per image."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 'gradient':
        return 40.0 * (yy / h - 0.5)
    if kind in ('hstripes', 'vstripes'):
        period = rng.uniform(6.0, 10.0)
        t = (yy if kind == 'hstripes' else xx) + rng.uniform(0, period)
        return np.where(np.sin(2 * np.pi * t / period) > 0, 14.0, -14.0).astype(np.float32)
    if kind == 'bricks':
        row = (yy + rng.integers(0, 6)) // 6
        shift = np.where(row % 2 == 0, 0, 6)
        mortar = ((yy + rng.integers(0, 6)) % 6 < 1) | ((xx + shift) % 12 < 1)
        return np.where(mortar, -35.0, 6.0).astype(np.float32)
    if kind == 'noise':
        return rng.normal(0.0, 14.0, (h, w)).astype(np.float32)
    if kind == 'streaks':
        cols = rng.normal(0.0, 18.0, (1, w)).astype(np.float32)
        return np.repeat(cols, h, axis=0) + rng.normal(0.0, 4.0, (h, w)).astype(np.float32)
    return np.zeros((h, w), np.float32)


def _pick(rng: np.random.Generator, items: Sequence[int]) -> int:
    return int(items[int(rng.integers(len(items)))])


def _draw_thin(lab: np.ndarray, rng: np.random.Generator, shape: str, value: int,
               horizon: np.ndarray) -> None:
    """One thin structure, 1-3 px wide, 8-connected and never anti-aliased."""
    h, w = lab.shape
    pts: List[Tuple[int, int]]
    if shape == 'pole':
        x = int(rng.integers(2, w - 2))
        top = int(rng.integers(0, max(1, int(horizon[x]) - 4)))
        bottom = int(rng.integers(min(h - 1, int(horizon[x]) + 2), h))
        pts = [(x, top), (x + int(rng.integers(-3, 4)), bottom)]
        width = int(rng.integers(1, 4))
    elif shape == 'wire':
        # A sagging curve across the image, 1 px wide: the hardest detail to keep.
        y0, y1 = rng.uniform(0.05, 0.45, size=2) * h
        sag = rng.uniform(0.03, 0.15) * h
        xs = np.linspace(0, w - 1, 24)
        t = xs / (w - 1)
        ys = y0 + (y1 - y0) * t + sag * 4 * t * (1 - t)
        pts = [(int(round(a)), int(round(b))) for a, b in zip(xs, ys)]
        width = 1
    else:  # 'rail': an oblique straight line
        a = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        angle = rng.uniform(0.15, 1.4) * rng.choice([-1, 1])
        length = rng.uniform(0.4, 1.0) * max(h, w)
        b = (int(a[0] + length * np.cos(angle)), int(a[1] + length * np.sin(angle)))
        pts = [a, b]
        width = int(rng.integers(1, 3))
    steep = abs(pts[-1][1] - pts[0][1]) >= abs(pts[-1][0] - pts[0][0])
    for off in range(width):
        # Offsets across the line's main direction widen it one pixel at a time.
        dx, dy = (off, 0) if steep else (0, off)
        moved = np.array([(x + dx, y + dy) for x, y in pts], np.int32)
        cv2.polylines(lab, [moved], False, int(value), thickness=1, lineType=cv2.LINE_8)


def _draw_blob(lab: np.ndarray, rng: np.random.Generator, shape: str, value: int) -> None:
    h, w = lab.shape
    cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
    if shape == 'dot':  # a scatter of 1-2 px objects (single dots would be too rare to learn)
        for _ in range(int(rng.integers(2, 6))):
            x, y = cx + int(rng.integers(-12, 13)), cy + int(rng.integers(-12, 13))
            size = int(rng.integers(1, 3))
            lab[max(y, 0):max(y + size, 0), max(x, 0):max(x + size, 0)] = value
    elif shape == 'square':
        half = float(rng.uniform(1.5, 5.0))
        box = cv2.boxPoints(((cx, cy), (2 * half, 2 * half), float(rng.uniform(0, 90))))
        cv2.fillPoly(lab, [np.round(box).astype(np.int32)], int(value), lineType=cv2.LINE_8)
    else:  # ellipse: mostly small, sometimes medium (a tree crown)
        scale = min(h, w) * (rng.uniform(0.06, 0.14) if rng.random() < 0.35 else
                             rng.uniform(0.01, 0.04))
        axes = (max(1, int(scale * rng.uniform(0.6, 1.2))), max(1, int(scale)))
        cv2.ellipse(lab, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, int(value), -1,
                    lineType=cv2.LINE_8)


def _render(rng: np.random.Generator, h: int, w: int,
            num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """One ``(label PNG, RGB image)`` pair; label values are ``0`` (other) or ``k + 1``."""
    roles = class_roles(num_classes)
    palette = np.array(synthetic_seg_palette(num_classes), np.float32)
    by_role = {r: [k for k in range(num_classes) if roles[k] == r]
               for r in ('region', 'thin', 'blob')}
    lab = np.zeros((h, w), np.uint8)

    # Large regions: top / bottom split by a wavy horizon.
    top = _pick(rng, by_role['region'])
    bottom = _pick(rng, [k for k in by_role['region'] if k != top])
    xs = np.arange(w, dtype=np.float32)
    horizon = (rng.uniform(0.3, 0.65) * h + rng.uniform(0.0, 0.06) * h *
               np.sin(2 * np.pi * xs / (rng.uniform(0.5, 2.0) * w) + rng.uniform(0, 2 * np.pi)))
    yy = np.arange(h, dtype=np.float32)[:, None]
    lab[:] = np.where(yy < horizon[None, :], top + 1, bottom + 1)

    # Skewed quadrilaterals standing on the horizon (buildings, walls).
    others = [k for k in by_role['region'] if k not in (top, bottom)] or by_role['region']
    for _ in range(int(rng.integers(1, 4))):
        bw, bh = rng.uniform(0.15, 0.4) * w, rng.uniform(0.2, 0.5) * h
        x0 = rng.uniform(-0.1, 0.9) * w
        base = float(horizon[int(np.clip(x0 + bw / 2, 0, w - 1))]) + rng.uniform(-0.05, 0.1) * h
        jit = rng.uniform(-0.05, 0.05, size=4) * w
        quad = np.array([(x0 + jit[0], base - bh), (x0 + bw + jit[1], base - bh + jit[2]),
                         (x0 + bw, base), (x0, base + jit[3])])
        cv2.fillPoly(lab, [np.round(quad).astype(np.int32)], _pick(rng, others) + 1,
                     lineType=cv2.LINE_8)

    # Small blobs, then thin structures over everything.
    for _ in range(int(rng.integers(3, 9))):
        k = _pick(rng, by_role['blob'])
        _draw_blob(lab, rng, _shape_of(k, roles), k + 1)
    thin = [k for k in by_role['thin'] if rng.random() < 0.7] or [_pick(rng, by_role['thin'])]
    for k in thin:
        for _ in range(int(rng.integers(1, 3))):
            _draw_thin(lab, rng, _shape_of(k, roles), k + 1, horizon)

    # "Other" patches (ignored in training and evaluation).
    for _ in range(int(rng.integers(1, 3))):
        axes = (int(rng.integers(2, 10)), int(rng.integers(2, 10)))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.ellipse(lab, centre, axes, float(rng.uniform(0, 180)), 0, 360, 0, -1)

    # Colour: class colour with per-image gain, class texture, sensor noise.
    img = np.zeros((h, w, 3), np.float32)
    for value in np.unique(lab):
        m = lab == value
        if value == 0:
            img[m] = rng.uniform(60, 200, 3) + rng.normal(0, 25, (int(m.sum()), 3))
            continue
        k = int(value) - 1
        colour = palette[k] * rng.uniform(0.92, 1.08)
        offset = _texture(_texture_of(k), rng, h, w) if roles[k] == 'region' else \
            np.zeros((h, w), np.float32)
        img[m] = colour[None, :] + offset[m][:, None]
    img += rng.normal(0.0, 3.0, img.shape)
    return lab, np.clip(np.round(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- files






def _encode(ext: str, array: np.ndarray, params: Sequence[int] = ()) -> bytes:
    ok, buf = cv2.imencode(ext, array, list(params))
    if not ok:
        raise RuntimeError(f'OpenCV could not encode {ext}')
    return buf.tobytes()


def _dirs(root: str, split: str) -> Tuple[str, str]:
    return osp.join(root, 'images', split), osp.join(root, 'annotations', split)


def _generate_split(root: str, split: str, n: int, params: Dict[str, Any]) -> Dict[str, Any]:
    img_dir, ann_dir = _dirs(root, split)
    os.makedirs(img_dir)
    os.makedirs(ann_dir)
    (h_lo, h_hi), (w_lo, w_hi) = params['image_size']
    num_classes = params['num_classes']
    pixels = np.zeros(num_classes + 1, np.int64)
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, 95]
    if hasattr(cv2, 'IMWRITE_JPEG_SAMPLING_FACTOR'):
        jpeg += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    for i in range(n):
        # One generator per image: image i is the same whatever num_train / num_val are.
        rng = np.random.default_rng([params['seed'], SPLITS.index(split), i])
        h, w = int(rng.integers(h_lo, h_hi + 1)), int(rng.integers(w_lo, w_hi + 1))
        lab, img = _render(rng, h, w, num_classes)
        stem = f'synthetic_{split}_{i:06d}'
        write_bytes(osp.join(img_dir, stem + '.jpg'),
                    _encode('.jpg', cv2.cvtColor(img, cv2.COLOR_RGB2BGR), jpeg))
        write_bytes(osp.join(ann_dir, stem + '.png'), _encode('.png', lab))
        pixels += np.bincount(lab.ravel(), minlength=num_classes + 1)
    return dict(num_images=n, ignore_pixels=int(pixels[0]),
                per_class_pixels=[int(v) for v in pixels[1:]])


def _result(root: str, manifest: Dict[str, Any], generated: bool) -> Dict[str, Any]:
    params, stats = manifest['params'], manifest['stats']
    classes = synthetic_seg_classes(params['num_classes'])
    palette = [list(c) for c in synthetic_seg_palette(params['num_classes'])]
    out: Dict[str, Any] = dict(
        root=root, classes=classes, palette=palette, roles=class_roles(len(classes)),
        metainfo=dict(classes=classes, palette=palette),
        manifest=osp.join(root, MANIFEST), params=params, generated=generated,
        data_prefix={}, splits={})
    for split in SPLITS:
        img_rel, ann_rel = f'images/{split}', f'annotations/{split}'
        out['data_prefix'][split] = dict(img_path=img_rel, seg_map_path=ann_rel)
        out['splits'][split] = dict(
            img_dir=osp.join(root, img_rel), ann_dir=osp.join(root, ann_rel),
            images=[osp.join(root, r) for r in sorted(manifest['files'])
                    if osp.dirname(r) == img_rel],
            annotations=[osp.join(root, r) for r in sorted(manifest['files'])
                         if osp.dirname(r) == ann_rel],
            num_images=stats[split]['num_images'], ignore_pixels=stats[split]['ignore_pixels'],
            per_class_pixels=stats[split]['per_class_pixels'])
    return out


def make_synthetic_ade(root: str,
                       num_train: int = 200,
                       num_val: int = 50,
                       image_size: ImageSize = ((128, 160), (160, 224)),
                       num_classes: int = 12,
                       seed: int = 0,
                       force: bool = False) -> Dict[str, Any]:
    """Writes (or reuses) a synthetic segmentation dataset in ADE20K's layout under ``root``.

    The output is a pure function of the arguments: the same seed gives byte-identical files.
    A second call with the same arguments finds ``root/manifest.json``, checks every file's
    size and hash and returns without drawing anything (``generated=False``); it needs no
    write access then. Otherwise the dataset is drawn into a temporary sibling of ``root`` and
    renamed to ``root`` when complete (replacing an older or damaged generation), so a killed
    run leaves no partial ``root``; concurrent calls (torchrun ranks) generate once.

    Args:
        root: Output directory (created if missing; an existing one must be empty or hold
            this generator's files only).
        num_train: Images in ``training``.
        num_val: Images in ``validation``.
        image_size: ``int`` (square), ``(H, W)``, or inclusive per-image ranges
            ``((h_lo, h_hi), (w_lo, w_hi))``; every side at least 32. The default draws odd
            and non-multiple-of-32 sizes.
        num_classes: Number of classes, 6 to 40 (ADE20K's first names, see module doc).
        seed: Seed of everything drawn.
        force: Regenerate even if an up-to-date generation exists.

    Returns:
        A dict with ``root`` (absolute), ``classes`` (tuple of names), ``palette`` (RGB
        lists), ``roles`` (``'region'``/``'thin'``/``'blob'`` per class), ``metainfo``
        (``dict(classes=..., palette=...)`` for mmseg), ``data_prefix`` (per split,
        ``dict(img_path=..., seg_map_path=...)`` relative to ``root``), ``manifest`` (its
        path), ``params``, ``generated`` (False if reused) and ``splits``: per split
        ``img_dir``, ``ann_dir``, sorted absolute ``images`` and ``annotations``,
        ``num_images``, ``ignore_pixels`` and ``per_class_pixels``.

    Raises:
        ValueError: On an out-of-range argument.
        SyntheticDataError: (a ``ValueError``) ``root`` holds other files.
    """
    if num_train < 0 or num_val < 0:
        raise ValueError('num_train and num_val must be >= 0')
    synthetic_seg_classes(num_classes)  # validates
    params = dict(version=GENERATOR_VERSION, num_train=int(num_train), num_val=int(num_val),
                  image_size=[list(r) for r in normalise_size(image_size, MIN_SIDE)],
                  num_classes=int(num_classes), seed=int(seed))
    root = osp.abspath(root)

    def write(directory: str) -> Tuple[Dict[str, int], Dict[str, Any]]:
        stats = {split: _generate_split(directory, split, n, params)
                 for split, n in zip(SPLITS, (num_train, num_val))}
        counts = {d: n for split, n in zip(SPLITS, (num_train, num_val))
                  for d in (f'images/{split}', f'annotations/{split}')}
        return counts, stats

    manifest, generated = generate_atomic(root, __name__, params, ('images', 'annotations'),
                                          write, force)
    return _result(root, manifest, generated)


# ----------------------------------------------------------------------------- CLI




def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Command-line entry point; prints what was written (or reused)."""
    ap = argparse.ArgumentParser(
        prog='python -m fade_mm.datasets.synthetic_seg',
        description='Write a synthetic segmentation dataset in ADE20K layout.')
    ap.add_argument('--out', default='data/synthetic/seg', help='output root')
    ap.add_argument('--num-train', type=int, default=200)
    ap.add_argument('--num-val', type=int, default=50)
    ap.add_argument('--num-classes', type=int, default=12,
                    help=f'{MIN_CLASSES}..{MAX_CLASSES} (ADE20K names, in order)')
    ap.add_argument('--image-size', type=parse_size, default='128-160x160-224',
                    help="'160', 'HxW', 'LO-HI' (both sides) or 'LO-HIxLO-HI'")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--force', action='store_true', help='regenerate even if up to date')
    a = ap.parse_args(argv)
    info = make_synthetic_ade(a.out, num_train=a.num_train, num_val=a.num_val,
                              image_size=a.image_size, num_classes=a.num_classes,
                              seed=a.seed, force=a.force)
    (h_lo, h_hi), (w_lo, w_hi) = info['params']['image_size']
    print(f"{'wrote' if info['generated'] else 'up to date, reused'}: {info['root']}")
    print(f'image size: H {h_lo}-{h_hi}, W {w_lo}-{w_hi}  seed: {a.seed}')
    for k, (name, role) in enumerate(zip(info['classes'], info['roles'])):
        print(f'  class {k:2d} (png {k + 1:2d}) {name.strip():12s} {role}')
    for split, s in info['splits'].items():
        total = s['ignore_pixels'] + sum(s['per_class_pixels'])
        print(f"  {split:10s} {s['num_images']:5d} images in {s['img_dir']}  "
              f"(ignored pixels {100.0 * s['ignore_pixels'] / max(total, 1):.2f}%)")
    print(f"  manifest: {info['manifest']}")
    return info


if __name__ == '__main__':
    main()
