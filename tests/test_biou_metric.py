"""BoundaryIoUMetric against an independent float64 NumPy reference (iterated 3x3 erosion)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from fade_mm.seg import biou_metric as bm
from fade_mm.seg.biou_metric import (
    BoundaryIoUMetric,
    boundary_width,
    erode,
    label_boundary,
    mask_boundary,
)

IGNORE = 255


# ----------------------------------------------------------------------------- reference
def ref_erode(mask: np.ndarray, d: int) -> np.ndarray:
    """``d`` explicit 3x3 erosions; the outside is re-padded as background every time."""
    m = mask.astype(bool)
    h, w = m.shape
    for _ in range(d):
        p = np.zeros((h + 2, w + 2), bool)
        p[1:-1, 1:-1] = m
        out = np.ones_like(m)
        for dy in range(3):
            for dx in range(3):
                out &= p[dy:dy + h, dx:dx + w]
        m = out
    return m


def ref_d(h: int, w: int, ratio: float) -> int:
    return max(1, int(np.round(ratio * np.sqrt(np.float64(h) ** 2 + np.float64(w) ** 2))))


def ref_counts(pred: np.ndarray, gt: np.ndarray, num_classes: int, ratio: float):
    d = ref_d(*gt.shape, ratio)
    valid = gt != IGNORE
    inter = np.zeros(num_classes, np.float64)
    union = np.zeros(num_classes, np.float64)
    for c in range(num_classes):
        g, p = gt == c, pred == c
        gb = g & ~ref_erode(g, d)
        pb = p & ~ref_erode(p, d)
        inter[c] = (gb & pb & valid).sum()
        union[c] = ((gb | pb) & valid).sum()
    return inter, union


def ref_biou(pairs, num_classes: int, ratio: float) -> float:
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for pred, gt in pairs:
        i, u = ref_counts(pred, gt, num_classes, ratio)
        inter += i
        union += u
    present = union > 0
    return float(np.mean(inter[present] / union[present]) * 100)


def random_labels(rng: np.random.Generator, h: int, w: int, num_classes: int,
                  used: int, ignore_frac: float = 0.05, dots: int = 6) -> np.ndarray:
    """Blocky regions of ``used`` (< num_classes) classes, one-pixel dots and ignore pixels."""
    cell = int(rng.integers(3, 9))
    coarse = rng.integers(0, used, size=(-(-h // cell), -(-w // cell)))
    lab = np.kron(coarse, np.ones((cell, cell), np.int64))[:h, :w].copy()
    lab[rng.random((h, w)) < 0.03] = rng.integers(0, used)
    for _ in range(dots):  # one-pixel objects
        lab[rng.integers(h), rng.integers(w)] = rng.integers(0, num_classes)
    lab[rng.random((h, w)) < ignore_frac] = IGNORE
    return lab


def perturb(rng: np.random.Generator, gt: np.ndarray, num_classes: int) -> np.ndarray:
    pred = np.where(gt == IGNORE, rng.integers(0, num_classes, gt.shape), gt)
    shift = int(rng.integers(1, 3))
    pred = np.roll(pred, shift, axis=int(rng.integers(0, 2)))
    flip = rng.random(gt.shape) < 0.05
    pred[flip] = rng.integers(0, num_classes, gt.shape)[flip]
    return pred


def sample(pred: np.ndarray, gt: np.ndarray) -> dict:
    """The dict form ``Evaluator.process`` hands to metrics."""
    return dict(pred_sem_seg=dict(data=torch.from_numpy(pred)[None]),
                gt_sem_seg=dict(data=torch.from_numpy(gt)[None]))


def run_metric(metric: BoundaryIoUMetric, pairs, batch: int = 2) -> dict:
    for i in range(0, len(pairs), batch):
        metric.process({}, [sample(p, g) for p, g in pairs[i:i + batch]])
    return metric.evaluate(len(pairs))


def classes(n: int):
    return tuple(f'c{i}' for i in range(n))


# ------------------------------------------------------------------------------- tests
def test_boundary_width():
    assert boundary_width(512, 512) == 14        # 0.02 * 724.08 = 14.48
    assert boundary_width(512, 683) == 17        # ADE20K-like size, 17.07
    assert boundary_width(64, 64) == 2           # 1.81
    assert boundary_width(10, 10) == 1           # 0.28 rounds to 0, clamped to 1
    assert boundary_width(1024, 2048, 0.01) == 23
    assert boundary_width(3, 4, 0.5) == 2        # 2.5: half to even, like the authors' code
    for h, w, r in [(7, 300, 0.02), (97, 33, 0.05), (480, 640, 0.003)]:
        assert boundary_width(h, w, r) == ref_d(h, w, r)


@pytest.mark.parametrize('shape', [(1, 7), (5, 1), (9, 13), (24, 17)])
def test_single_pool_equals_iterated_3x3_erosion(shape):
    """One (2d+1) min-pool with a background border == d iterations of 3x3 erosion."""
    rng = np.random.default_rng(1)
    for density in (0.6, 0.9, 1.0):
        mask = rng.random(shape) < density
        for d in range(0, 8):  # includes d beyond the image size
            got = erode(torch.from_numpy(mask), d).numpy()
            np.testing.assert_array_equal(got, ref_erode(mask, d))
            band = mask_boundary(torch.from_numpy(mask), max(d, 1)).numpy()
            np.testing.assert_array_equal(band, mask & ~ref_erode(mask, max(d, 1)))


def test_erosion_optionally_matches_scipy():
    ndimage = pytest.importorskip('scipy.ndimage')
    rng = np.random.default_rng(2)
    mask = rng.random((31, 40)) < 0.85
    for d in (1, 2, 5):
        want = ndimage.binary_erosion(mask, np.ones((3, 3), bool), iterations=d, border_value=0)
        np.testing.assert_array_equal(erode(torch.from_numpy(mask), d).numpy(), want)


def test_label_boundary_equals_per_class_bands():
    rng = np.random.default_rng(3)
    lab = random_labels(rng, 37, 29, num_classes=6, used=4)
    for d in (1, 2, 3, 20):
        got = label_boundary(torch.from_numpy(lab), d).numpy()
        want = np.zeros(lab.shape, bool)
        for v in np.unique(lab):
            m = lab == v
            want |= m & ~ref_erode(m, d)
        np.testing.assert_array_equal(got, want)


def test_one_pixel_object_is_all_boundary_and_border_is_boundary():
    lab = np.zeros((20, 20), np.int64)
    lab[10, 10] = 1
    band = label_boundary(torch.from_numpy(lab), 1).numpy()
    assert band[10, 10]
    assert band[0].all() and band[-1].all() and band[:, 0].all() and band[:, -1].all()
    assert not band[5, 5]  # interior of class 0, far from the dot and the border
    # Missing the dot: class 1 scores 0, class 0 is perfect except around the dot.
    inter, union, d = BoundaryIoUMetric.boundary_intersect_and_union(
        torch.zeros_like(torch.from_numpy(lab)), torch.from_numpy(lab), 2, IGNORE, 0.02)
    assert d == 1 and inter[1] == 0 and union[1] == 1


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_counts_match_reference(seed):
    rng = np.random.default_rng(seed)
    num_classes = 7
    h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
    gt = random_labels(rng, h, w, num_classes, used=5)
    pred = perturb(rng, gt, num_classes)
    for ratio in (0.02, 0.05, 0.1):
        inter, union, d = BoundaryIoUMetric.boundary_intersect_and_union(
            torch.from_numpy(pred), torch.from_numpy(gt), num_classes, IGNORE, ratio)
        ri, ru = ref_counts(pred, gt, num_classes, ratio)
        assert d == ref_d(h, w, ratio)
        assert inter.dtype == torch.int64 and inter.shape == (num_classes,)
        np.testing.assert_array_equal(inter.numpy(), ri)
        np.testing.assert_array_equal(union.numpy(), ru)


def test_accumulated_over_images_matches_reference():
    rng = np.random.default_rng(10)
    num_classes = 9  # class 8 never appears: must not enter the mean
    pairs = []
    for _ in range(5):
        h, w = int(rng.integers(16, 48)), int(rng.integers(16, 48))
        gt = random_labels(rng, h, w, num_classes, used=6, dots=0)
        pairs.append((perturb(rng, gt, num_classes - 1), gt))
    metric = BoundaryIoUMetric(ratio=0.05, classwise=True)
    metric.dataset_meta = dict(classes=classes(num_classes))
    res = run_metric(metric, pairs)
    want = ref_biou(pairs, num_classes, 0.05)
    assert 0 < want < 100
    assert res['bIoU'] == pytest.approx(want, abs=0.006)
    assert math.isnan(res['bIoU_c8'])
    assert set(res) == {'bIoU'} | {f'bIoU_c{i}' for i in range(num_classes)}


def test_perfect_disjoint_and_ignore():
    rng = np.random.default_rng(4)
    num_classes = 5
    gts = [random_labels(rng, 30, 40, num_classes, used=num_classes) for _ in range(3)]

    metric = BoundaryIoUMetric()
    metric.dataset_meta = dict(classes=classes(num_classes))
    assert run_metric(metric, [(g, g) for g in gts]) == {'bIoU': 100.0}

    # Every predicted class sits on pixels of another gt class: no band pixel is shared.
    disjoint = [(np.where(g == IGNORE, 0, (g + 1) % num_classes), g) for g in gts]
    assert run_metric(metric, disjoint) == {'bIoU': 0.0}

    # Ignored pixels are never counted, but the predicted labels there still shape the
    # predicted bands next to them (the definition erodes the masks, then drops ignore).
    noisy = [(np.where(g == IGNORE, rng.integers(0, num_classes, g.shape), g), g) for g in gts]
    res = run_metric(metric, noisy)['bIoU']
    assert res == pytest.approx(ref_biou(noisy, num_classes, 0.02), abs=0.006)
    assert 50 < res < 100


def test_logs_ratio(monkeypatch):
    logged = []
    monkeypatch.setattr(bm, 'print_log', lambda msg, logger=None, **kw: logged.append(msg))
    metric = BoundaryIoUMetric(ratio=0.03)
    metric.dataset_meta = dict(classes=classes(3))
    gt = np.zeros((40, 40), np.int64)
    gt[10:30, 5:20] = 1
    run_metric(metric, [(gt, gt)])
    text = '\n'.join(logged)
    assert 'ratio=0.03' in text and 'd=2 px' in text and 'c1' in text


def test_registry_and_evaluator_next_to_iou_metric():
    import mmseg.evaluation  # noqa: F401  (registers IoUMetric)
    from mmengine.evaluator import Evaluator
    from mmengine.structures import PixelData
    from mmseg.registry import METRICS
    from mmseg.structures import SegDataSample

    with DefaultScope.overwrite_default_scope('mmseg'):
        built = METRICS.build(dict(type='BoundaryIoUMetric'))
        assert isinstance(built, BoundaryIoUMetric) and built.ratio == 0.02
        assert built.ignore_index == 255
        assert METRICS.build(dict(type='BoundaryIoUMetric', ratio=0.01)).ratio == 0.01

        evaluator = Evaluator([dict(type='IoUMetric', iou_metrics=['mIoU']),
                               dict(type='BoundaryIoUMetric')])
        evaluator.dataset_meta = dict(classes=classes(4))
        rng = np.random.default_rng(5)
        samples = []
        for _ in range(2):
            gt = random_labels(rng, 24, 32, 4, used=4)
            pred = perturb(rng, gt, 4)
            s = SegDataSample()
            s.gt_sem_seg = PixelData(data=torch.from_numpy(gt)[None])
            s.pred_sem_seg = PixelData(data=torch.from_numpy(pred)[None])
            samples.append(s)
        evaluator.process(samples, None)
        res = evaluator.evaluate(len(samples))
    assert {'aAcc', 'mIoU', 'mAcc', 'bIoU'} <= set(res)
    assert 0 < res['bIoU'] < res['mIoU'] <= 100


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        BoundaryIoUMetric(ratio=0)
    with pytest.raises(ValueError):
        BoundaryIoUMetric.boundary_intersect_and_union(
            torch.zeros(4, 5, dtype=torch.long), torch.zeros(5, 4, dtype=torch.long), 2)
