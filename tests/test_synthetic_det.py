"""Synthetic COCO detection generator: determinism, COCO validity, coverage, mmdet loading."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from fade_mm.datasets import SHAPE_CLASSES, make_synthetic_coco, synthetic_det_classes
from fade_mm.datasets.synthetic_det import THIN_MIN_ASPECT, TINY_MAX_SIDE, main

SMALL = dict(num_train=6, num_val=2, image_size=((64, 96), (64, 96)))


def _json(path):
    with open(path, 'rb') as f:
        return json.loads(f.read())


def _read_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


def _split_files(root):
    """Every generated file's bytes, keyed by path relative to ``root``."""
    out = {}
    for sub in ('train', 'val', 'annotations'):
        for name in sorted(os.listdir(osp.join(root, sub))):
            out[f'{sub}/{name}'] = _read_bytes(osp.join(root, sub, name))
    return out


@pytest.fixture(scope='module')
def small(tmp_path_factory):
    """One small generation with default content settings, shared by the read-only tests."""
    return make_synthetic_coco(str(tmp_path_factory.mktemp('det')), seed=0, **SMALL)


def test_same_seed_identical_other_seed_differs(tmp_path, small):
    again = make_synthetic_coco(str(tmp_path / 'a'), seed=0, **SMALL)
    other = make_synthetic_coco(str(tmp_path / 'b'), seed=1, **SMALL)
    ref = _split_files(small['root'])
    assert again['generated'] and _split_files(again['root']) == ref
    assert len(ref) == 6 + 2 + 2
    diff = _split_files(other['root'])
    assert diff['annotations/instances_train.json'] != ref['annotations/instances_train.json']
    assert diff['train/000001.png'] != ref['train/000001.png']


def test_coco_valid_and_boxes_inside(small):
    from pycocotools.coco import COCO
    assert small['classes'] == SHAPE_CLASSES[:4] == synthetic_det_classes()
    for split, n in (('train', 6), ('val', 2)):
        coco = COCO(small['splits'][split]['ann_file'])
        assert len(coco.getImgIds()) == n
        cats = coco.loadCats(coco.getCatIds())
        assert [c['name'] for c in cats] == list(small['classes'])
        assert [c['id'] for c in cats] == [1, 2, 3, 4]
        ann_ids = coco.getAnnIds()
        assert len(ann_ids) == small['splits'][split]['num_objects'] > 0
        assert len(set(ann_ids)) == len(ann_ids)
        for img in coco.loadImgs(coco.getImgIds()):
            h, w = img['height'], img['width']
            assert 64 <= h <= 96 and 64 <= w <= 96
            pixels = cv2.imread(osp.join(small['splits'][split]['img_dir'], img['file_name']))
            assert pixels.shape == (h, w, 3)
            for a in coco.loadAnns(coco.getAnnIds(imgIds=[img['id']])):
                x, y, bw, bh = a['bbox']
                assert a['iscrowd'] == 0 and a['category_id'] in (1, 2, 3, 4)
                assert bw >= 1 and bh >= 1 and x >= 0 and y >= 0
                assert x + bw <= w and y + bh <= h
                assert 0 < a['area'] <= bw * bh


def test_box_is_tight_on_object_colour(small):
    """The box must hug the object: its edge rows/columns hold class-coloured pixels."""
    data = _json(small['train_ann_file'])
    palette = np.array(small['palette'], np.float32)
    img_by_id = {im['id']: im for im in data['images']}
    checked = 0
    for a in data['annotations']:
        x, y, w, h = (int(v) for v in a['bbox'])
        if min(w, h) < 3:
            continue  # 1-2 px objects: noise could flip the colour test, skip
        im = img_by_id[a['image_id']]
        rgb = cv2.imread(osp.join(small['train_img_dir'], im['file_name']))[..., ::-1]
        crop = rgb[y:y + h, x:x + w].astype(np.float32)
        dist = np.linalg.norm(crop - palette[a['category_id'] - 1], axis=-1)
        close = dist < 80
        assert close[0].any() and close[-1].any() and close[:, 0].any() and close[:, -1].any()
        checked += 1
    assert checked > 5


def test_default_content_has_tiny_thin_border(small):
    for split in ('train', 'val'):
        s = small['splits'][split]
        assert s['num_tiny'] >= 1 and s['num_thin'] >= 1 and s['num_border'] >= 1
        assert s['num_clipped'] >= 1 and s['num_empty'] == 0
        # The reported counts agree with the json.
        data = _json(s['ann_file'])
        size = {im['id']: (im['height'], im['width']) for im in data['images']}
        tiny = thin = border = 0
        for a in data['annotations']:
            x, y, w, h = a['bbox']
            ih, iw = size[a['image_id']]
            tiny += max(w, h) <= TINY_MAX_SIDE
            thin += max(w, h) / min(w, h) >= THIN_MIN_ASPECT
            border += x == 0 or y == 0 or x + w == iw or y + h == ih
        assert (tiny, thin, border) == (s['num_tiny'], s['num_thin'], s['num_border'])


def test_empty_images_when_asked(tmp_path):
    info = make_synthetic_coco(str(tmp_path), empty_ratio=0.3, num_classes=8, **SMALL)
    assert info['classes'] == SHAPE_CLASSES
    for split in ('train', 'val'):
        data = _json(info['splits'][split]['ann_file'])
        with_ann = {a['image_id'] for a in data['annotations']}
        empty = [im for im in data['images'] if im['id'] not in with_ann]
        assert len(empty) == info['splits'][split]['num_empty'] >= 1
        assert len(empty) < len(data['images'])  # never all of them


def test_idempotent_and_regenerates_on_change(tmp_path):
    root = str(tmp_path)
    first = make_synthetic_coco(root, seed=3, **SMALL)
    ann = first['train_ann_file']
    stamp = os.stat(ann).st_mtime_ns
    second = make_synthetic_coco(root, seed=3, **SMALL)
    assert first['generated'] and not second['generated']
    assert os.stat(ann).st_mtime_ns == stamp
    assert second['splits'] == first['splits'] and second['classes'] == first['classes']
    # A missing image invalidates the generation.
    os.remove(osp.join(first['train_img_dir'], '000002.png'))
    assert make_synthetic_coco(root, seed=3, **SMALL)['generated']
    assert osp.isfile(osp.join(first['train_img_dir'], '000002.png'))
    # Fewer images: same leading images, stale ones removed.
    before = _read_bytes(osp.join(first['train_img_dir'], '000001.png'))
    fewer = make_synthetic_coco(root, seed=3, **dict(SMALL, num_train=3))
    assert fewer['generated'] and sorted(os.listdir(fewer['train_img_dir'])) == [
        '000001.png', '000002.png', '000003.png']
    assert _read_bytes(osp.join(first['train_img_dir'], '000001.png')) == before
    assert make_synthetic_coco(root, seed=3, force=True, **dict(SMALL, num_train=3))['generated']


def test_jpg_fixed_size_and_cli(tmp_path, capsys):
    info = main(['--out', str(tmp_path), '--num-train', '2', '--num-val', '1',
                 '--image-size', '65x97', '--format', 'jpg', '--num-classes', '2'])
    printed = capsys.readouterr().out
    assert printed.startswith('wrote: ') and 'instances_train.json' in printed
    assert sorted(os.listdir(info['train_img_dir'])) == ['000001.jpg', '000002.jpg']
    assert {(im['height'], im['width']) for im in _json(info['train_ann_file'])['images']} == {
        (65, 97)}
    main(['--out', str(tmp_path), '--num-train', '2', '--num-val', '1',
          '--image-size', '65x97', '--format', 'jpg', '--num-classes', '2'])
    assert capsys.readouterr().out.startswith('up to date')


@pytest.mark.parametrize('kwargs', [dict(num_classes=0), dict(num_classes=9),
                                    dict(image_size=(16, 64)), dict(empty_ratio=1.5),
                                    dict(image_format='bmp'), dict(max_objects=0)])
def test_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_synthetic_coco(str(tmp_path), **dict(SMALL, **kwargs))


def test_mmdet_coco_dataset_loads(small):
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    register_all_modules()
    split = small['splits']['train']
    ds = CocoDataset(
        data_root=small['root'], ann_file=split['ann_file_rel'],
        data_prefix=dict(img=split['img_prefix']), metainfo=dict(classes=small['classes']),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                  dict(type='PackDetInputs')])
    assert len(ds) == 6 and ds.metainfo['classes'] == small['classes']
    data = _json(split['ann_file'])
    for idx in (0, len(ds) - 1):
        sample = ds[idx]
        meta = sample['data_samples'].metainfo
        img_id = meta['img_id']
        anns = [a for a in data['annotations'] if a['image_id'] == img_id]
        expected = np.array([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)],
                            np.float32)
        gt = sample['data_samples'].gt_instances
        np.testing.assert_allclose(gt.bboxes.tensor.numpy(), expected)
        assert gt.labels.tolist() == [a['category_id'] - 1 for a in anns]
        assert tuple(sample['inputs'].shape[1:]) == meta['ori_shape']
