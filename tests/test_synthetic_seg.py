"""Synthetic ADE20K-layout segmentation data: determinism, content, and mmseg loading."""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

from fade_mm.datasets.synthetic_seg import (
    ADE20K_HEAD_CLASSES,
    class_roles,
    make_synthetic_ade,
    synthetic_seg_classes,
    synthetic_seg_palette,
)

SMALL = dict(num_train=6, num_val=2, image_size=((64, 81), (64, 97)))


def read_label(path: str) -> np.ndarray:
    lab = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert lab is not None and lab.dtype == np.uint8 and lab.ndim == 2
    return lab


def tree_bytes(root: str) -> dict:
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f != 'manifest.json':
                p = osp.join(d, f)
                with open(p, 'rb') as fh:
                    out[osp.relpath(p, root)] = fh.read()
    return out


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_synthetic_ade(str(tmp_path_factory.mktemp('seg')), seed=0, **SMALL)


def test_layout_and_return_value(data):
    root = data['root']
    assert data['classes'] == ADE20K_HEAD_CLASSES[:12] == synthetic_seg_classes()
    assert len(data['palette']) == 12 and data['metainfo']['classes'] == data['classes']
    for split, n in (('training', 6), ('validation', 2)):
        s = data['splits'][split]
        assert s['img_dir'] == osp.join(root, 'images', split)
        assert s['ann_dir'] == osp.join(root, 'annotations', split)
        assert data['data_prefix'][split] == dict(img_path=f'images/{split}',
                                                  seg_map_path=f'annotations/{split}')
        assert len(s['images']) == len(s['annotations']) == n
        assert sorted(os.listdir(s['img_dir'])) == [osp.basename(p) for p in s['images']]
        for img, ann in zip(s['images'], s['annotations']):
            assert img.endswith('.jpg') and ann.endswith('.png')
            assert osp.splitext(osp.basename(img))[0] == osp.splitext(osp.basename(ann))[0]
            im = cv2.imread(img)
            assert im.shape[:2] == read_label(ann).shape
            assert 64 <= im.shape[0] <= 81 and 64 <= im.shape[1] <= 97
    assert osp.isfile(data['manifest']) and data['generated']


def test_deterministic_and_idempotent(data, tmp_path):
    again = make_synthetic_ade(str(tmp_path / 'b'), seed=0, **SMALL)
    assert tree_bytes(again['root']) == tree_bytes(data['root'])
    other = make_synthetic_ade(str(tmp_path / 'c'), seed=1, **SMALL)
    assert tree_bytes(other['root']) != tree_bytes(data['root'])

    # Same arguments: nothing is rewritten.
    mtimes = {p: os.stat(p).st_mtime_ns for p in again['splits']['training']['images']}
    reused = make_synthetic_ade(str(tmp_path / 'b'), seed=0, **SMALL)
    assert not reused['generated']
    assert {p: os.stat(p).st_mtime_ns for p in mtimes} == mtimes
    assert reused['splits']['training']['images'] == again['splits']['training']['images']

    # A damaged file is detected and regenerated; a smaller run leaves no stale files.
    with open(again['splits']['training']['annotations'][0], 'wb') as f:
        f.write(b'broken')
    assert make_synthetic_ade(str(tmp_path / 'b'), seed=0, **SMALL)['generated']
    assert tree_bytes(again['root']) == tree_bytes(data['root'])
    fewer = make_synthetic_ade(str(tmp_path / 'b'), seed=0, **{**SMALL, 'num_train': 3})
    assert len(os.listdir(fewer['splits']['training']['img_dir'])) == 3
    assert len(os.listdir(fewer['splits']['training']['ann_dir'])) == 3
    # Image i does not depend on how many images are drawn.
    first = fewer['splits']['training']['annotations'][0]
    assert tree_bytes(fewer['root'])[osp.relpath(first, fewer['root'])] == \
        tree_bytes(data['root'])[osp.relpath(first, fewer['root'])]


def test_labels_thin_structures_and_ignore(data):
    roles = class_roles(12)
    thin_values = [k + 1 for k, r in enumerate(roles) if r == 'thin']
    region_values = [k + 1 for k, r in enumerate(roles) if r == 'region']
    kernel = np.ones((5, 5), np.uint8)
    thin_total = thin_survive = 0
    seen = set()
    for split in ('training', 'validation'):
        for ann in data['splits'][split]['annotations']:
            lab = read_label(ann)
            assert lab.max() <= 12
            seen |= set(np.unique(lab).tolist())
            assert (lab == 0).any(), 'every image has ignored ("other") pixels'
            thin = np.isin(lab, thin_values).astype(np.uint8)
            assert thin.any(), 'every image has a thin structure'
            thin_total += int(thin.sum())
            # 1-3 px wide: a 5x5 erosion removes (nearly) all of it ...
            thin_survive += int(cv2.erode(thin, kernel, borderValue=0).sum())
            # ... while the large regions survive it.
            region = np.isin(lab, region_values).astype(np.uint8)
            assert cv2.erode(region, kernel).sum() > 0.5 * lab.size
    assert thin_survive < 0.05 * thin_total
    assert len(seen) >= 10  # most classes appear in 8 small images
    # Tiny objects exist: a component of at most 4 px of a blob class somewhere.
    blob_values = [k + 1 for k, r in enumerate(roles) if r == 'blob']
    tiny = False
    for ann in data['splits']['training']['annotations']:
        lab = read_label(ann)
        for v in blob_values:
            n, _, stats, _ = cv2.connectedComponentsWithStats((lab == v).astype(np.uint8), 8)
            tiny |= bool((stats[1:, cv2.CC_STAT_AREA] <= 4).any())
    assert tiny


def test_classes_distinguishable_by_colour(data):
    """Mean image colour per class stays close to its palette colour and far from others."""
    pal = np.array(data['palette'], np.float64)
    sums = np.zeros((12, 3))
    counts = np.zeros(12)
    for img_p, ann_p in zip(data['splits']['training']['images'],
                            data['splits']['training']['annotations']):
        img = cv2.cvtColor(cv2.imread(img_p), cv2.COLOR_BGR2RGB).astype(np.float64)
        lab = read_label(ann_p)
        for k in range(12):
            m = lab == k + 1
            sums[k] += img[m].sum(0)
            counts[k] += m.sum()
    present = counts > 20
    assert present.sum() >= 8
    means = sums[present] / counts[present, None]
    dist = np.linalg.norm(means[:, None] - pal[None, present], axis=-1)
    assert (dist.argmin(1) == np.arange(len(means))).all()
    assert min(np.linalg.norm(a - b) for i, a in enumerate(pal) for b in pal[i + 1:]) > 40


@pytest.mark.filterwarnings('ignore:`reduce_zero_label` will be deprecated')
def test_mmseg_ade20k_dataset_loads(data):
    pytest.importorskip('mmseg')
    from mmseg.datasets import ADE20KDataset
    from mmseg.utils import register_all_modules
    register_all_modules()
    ds = ADE20KDataset(
        data_root=data['root'], data_prefix=data['data_prefix']['training'],
        metainfo=dict(classes=data['classes'], palette=data['palette']),
        reduce_zero_label=True,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', reduce_zero_label=True),
                  dict(type='PackSegInputs')])
    assert len(ds) == 6
    assert ds.metainfo['classes'] == data['classes']
    for i in (0, 5):
        out = ds[i]
        sample = out['data_samples']
        gt = sample.gt_sem_seg.data.numpy()[0]
        png = read_label(sample.seg_map_path).astype(np.int64)
        want = np.where(png == 0, 255, png - 1)
        np.testing.assert_array_equal(gt, want)
        assert out['inputs'].shape[1:] == gt.shape
        assert set(np.unique(gt).tolist()) <= set(range(12)) | {255}
        assert (gt == 255).any()


def test_rejects_bad_arguments(tmp_path):
    for bad in (5, 41, True):
        with pytest.raises(ValueError):
            make_synthetic_ade(str(tmp_path), num_classes=bad)
    with pytest.raises(ValueError):
        make_synthetic_ade(str(tmp_path), image_size=16)
    with pytest.raises(ValueError):
        make_synthetic_ade(str(tmp_path), num_train=-1)
    assert len(synthetic_seg_palette(40)) == 40 and len(set(synthetic_seg_palette(40))) == 40


@pytest.mark.slow
def test_cli_without_mmseg(tmp_path):
    """The CLI writes the dataset and never imports mmseg."""
    code = ('import sys; from fade_mm.datasets.synthetic_seg import main; '
            f'main(["--out", {str(tmp_path / "cli")!r}, "--num-train", "2", "--num-val", "1", '
            '"--image-size", "48x64"]); assert "mmseg" not in sys.modules')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert 'wrote' in res.stdout
    assert len(os.listdir(tmp_path / 'cli' / 'images' / 'training')) == 2
    assert len(os.listdir(tmp_path / 'cli' / 'annotations' / 'validation')) == 1
