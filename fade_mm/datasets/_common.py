"""Helpers shared by the synthetic data generators: image-size forms, atomic writes, hashes."""
from __future__ import annotations

import argparse
import hashlib
import os
from typing import Any, Tuple, Union

import numpy as np

ImageSize = Union[int, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]
SizeRange = Tuple[Tuple[int, int], Tuple[int, int]]


def normalise_size(image_size: ImageSize, min_side: int) -> SizeRange:
    """Turns every accepted ``image_size`` form into inclusive ``((h_lo, h_hi), (w_lo, w_hi))``.

    Raises:
        ValueError: on another form, or a side outside ``min_side <= lo <= hi``.
    """
    def as_range(v: Any) -> Tuple[int, int]:
        lo, hi = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
        lo, hi = int(lo), int(hi)
        if not min_side <= lo <= hi:
            raise ValueError(f'image sides must satisfy {min_side} <= lo <= hi, got {v!r}')
        return lo, hi

    if isinstance(image_size, (int, np.integer)):
        return as_range(image_size), as_range(image_size)
    try:
        h, w = image_size
    except (TypeError, ValueError):
        raise ValueError(f'image_size must be int, (H, W) or ((h_lo, h_hi), (w_lo, w_hi)), '
                         f'got {image_size!r}') from None
    return as_range(h), as_range(w)


def parse_size(text: str) -> ImageSize:
    """CLI form: ``'160'``, ``'128x192'``, ``'128-192'`` or ``'128-160x160-224'`` (H x W,
    ranges inclusive)."""
    def side(t: str) -> Tuple[int, int]:
        lo, _, hi = t.partition('-')
        return int(lo), int(hi or lo)

    parts = text.lower().split('x')
    try:
        if len(parts) == 1:
            return side(parts[0]), side(parts[0])
        if len(parts) == 2:
            return side(parts[0]), side(parts[1])
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f'bad image size {text!r}')


def sha256(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_atomic(path: str, data: bytes) -> None:
    # A crash mid-write must not leave a half file that a later run would trust.
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)
