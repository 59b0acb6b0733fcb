"""Synthetic instance and panoptic data: exact masks, COCO-panoptic files, mmdet's datasets and
metrics on them (ground truth scored as predictions gives AP 1 / PQ 100)."""
import hashlib
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from fade_mm.datasets import (
    STUFF_CLASSES,
    make_synthetic_coco,
    make_synthetic_coco_panoptic,
    panopticapi_fallback,
)
from fade_mm.datasets.synthetic_pan import main as pan_main

SMALL = dict(num_train=4, num_val=3, image_size=((64, 96), (64, 96)))


def _json(path):
    with open(path, 'rb') as f:
        return json.loads(f.read())


def _ids(png_path):
    """Segment ids of a COCO-panoptic PNG (id = R + 256 G + 256^2 B)."""
    return panopticapi_fallback.rgb2id(cv2.imread(png_path)[..., ::-1])


@pytest.fixture(scope='module')
def det(tmp_path_factory):
    return make_synthetic_coco(str(tmp_path_factory.mktemp('det')), **SMALL)


@pytest.fixture(scope='module')
def pan(tmp_path_factory):
    return make_synthetic_coco_panoptic(str(tmp_path_factory.mktemp('pan')), **SMALL)


@pytest.fixture(scope='module')
def mmdet_ready():
    """mmdet's modules registered, and panopticapi (or fade_mm's stand-in) importable."""
    from mmdet.utils import register_all_modules
    register_all_modules()
    panopticapi_fallback.install()


# ----------------------------------------------------------------------------- instance masks

def test_images_and_boxes_unchanged_by_masks(tmp_path):
    """Pixels and boxes of seed 3 are those of generator version 1 (before masks)."""
    root = make_synthetic_coco(str(tmp_path), num_train=2, num_val=1, seed=3)['root']
    h = hashlib.sha256()
    for split, n in (('train', 2), ('val', 1)):
        for i in range(1, n + 1):
            h.update(cv2.imread(f'{root}/{split}/{i:06d}.png', cv2.IMREAD_UNCHANGED).tobytes())
        anns = _json(f'{root}/annotations/instances_{split}.json')['annotations']
        h.update(json.dumps([[a['image_id'], a['category_id'], a['bbox'], a['area']]
                             for a in anns]).encode())
    assert h.hexdigest() == '61605c5c7e97d29986cc9111d80ba8156d64bd7d2e7519652cf78df5e74e3242'


def test_masks_are_exact_and_rings_have_holes(det):
    from pycocotools.coco import COCO
    palette = np.array(det['palette'], np.float32)
    holes = polygons = 0
    for split in ('train', 'val'):
        coco = COCO(det['splits'][split]['ann_file'])
        for a in coco.dataset['annotations']:
            mask = coco.annToMask(a)
            ys, xs = np.nonzero(mask)
            assert mask.sum() == a['area']
            assert [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1] == a['bbox']
            img = coco.imgs[a['image_id']]
            rgb = cv2.imread(osp.join(det['splits'][split]['img_dir'], img['file_name']))
            colour = rgb[..., ::-1][mask.astype(bool)].astype(np.float32).mean(0)
            assert np.linalg.norm(colour - palette[a['category_id'] - 1]) < 60
            # A hole: background pixels enclosed by the mask (rings, unless tiny or cut).
            contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
            has_hole = (hierarchy[0][:, 3] >= 0).any()
            if isinstance(a['segmentation'], list):  # polygons cannot cut holes
                assert not has_hole and all(len(p) >= 6 for p in a['segmentation'])
                polygons += 1
            else:
                assert set(a['segmentation']) == {'size', 'counts'}
            if has_hole:
                assert a['category_id'] == det['classes'].index('ring') + 1
                holes += 1
    assert holes >= 1 and polygons >= 10


def test_mmdet_loads_masks(det, mmdet_ready):
    from mmdet.datasets import CocoDataset
    from pycocotools.coco import COCO
    split = det['splits']['train']
    ds = CocoDataset(
        data_root=det['root'], ann_file=split['ann_file_rel'],
        data_prefix=dict(img=split['img_prefix']), metainfo=det['metainfo'],
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                  dict(type='PackDetInputs')])
    coco = COCO(split['ann_file'])
    for idx in range(len(ds)):
        sample = ds[idx]['data_samples']
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[sample.img_id]))
        masks = sample.gt_instances.masks.to_ndarray()
        assert len(masks) == len(anns) and len(sample.ignored_instances) == 0
        for mask, a in zip(masks, anns):
            np.testing.assert_array_equal(mask, coco.annToMask(a))


def _score(metric, samples):
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def test_coco_metric_segm_on_ground_truth(det, mmdet_ready):
    from mmdet.evaluation import CocoMetric
    from pycocotools.coco import COCO
    split = det['splits']['val']
    coco = COCO(split['ann_file'])
    samples = []
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        img = coco.imgs[img_id]
        samples.append(dict(
            img_id=img_id, ori_shape=(img['height'], img['width']), pred_instances=dict(
                bboxes=torch.tensor([[x, y, x + w, y + h] for x, y, w, h in
                                     (a['bbox'] for a in anns)]),
                scores=torch.ones(len(anns)),
                labels=torch.tensor([a['category_id'] - 1 for a in anns]),
                masks=torch.from_numpy(np.stack([coco.annToMask(a) for a in anns])).bool())))

    def metric():
        m = CocoMetric(ann_file=split['ann_file'], metric=['bbox', 'segm'])
        m.dataset_meta = det['metainfo']
        return m

    res = _score(metric(), samples)
    assert res['coco/bbox_mAP'] == res['coco/segm_mAP'] == 1.0
    # Not a constant: eroding every mask of 3 px or more lowers the mask AP only.
    for s in samples:
        masks = s['pred_instances']['masks'].numpy().astype(np.uint8)
        s['pred_instances']['masks'] = torch.from_numpy(np.stack(
            [cv2.erode(m, np.ones((3, 3), np.uint8)) if m.sum() >= 3 else m
             for m in masks])).bool()
    res = _score(metric(), samples)
    assert res['coco/bbox_mAP'] == 1.0 and 0.0 < res['coco/segm_mAP'] < 0.9


# ----------------------------------------------------------------------------- panoptic

def test_panoptic_files_are_consistent(pan):
    from pycocotools.coco import COCO
    cats = _json(pan['splits']['val']['ann_file'])['categories']
    things = len(pan['thing_classes'])
    assert [c['name'] for c in cats] == list(pan['classes'])
    assert [c['isthing'] for c in cats] == [1] * things + [0] * len(STUFF_CLASSES)
    assert [c['id'] for c in cats] == list(range(1, len(cats) + 1))
    stuff_seen = set()
    for split in ('train', 'val'):
        s = pan['splits'][split]
        data = _json(s['ann_file'])
        instances = COCO(s['instances_ann_file'])
        assert data['images'] == instances.dataset['images']
        assert len(data['annotations']) == len(data['images']) == s['num_images']
        for ann in data['annotations']:
            ids = _ids(osp.join(s['seg_dir'], ann['file_name']))
            segs = ann['segments_info']
            # every pixel in exactly one segment: no void
            assert sorted(np.unique(ids)) == sorted(g['id'] for g in segs)
            for g in segs:
                ys, xs = np.nonzero(ids == g['id'])
                assert g['area'] == len(ys) and g['iscrowd'] == 0
                assert g['bbox'] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
            thing_segs = [g for g in segs if g['category_id'] <= things]
            stuff_seen |= {g['category_id'] for g in segs if g['category_id'] > things}
            anns = instances.loadAnns(instances.getAnnIds(imgIds=[ann['image_id']]))
            assert len(thing_segs) == len(anns)
            for g, a in zip(thing_segs, anns):  # the instance masks, in the same order
                assert g['category_id'] == a['category_id']
                np.testing.assert_array_equal(ids == g['id'], instances.annToMask(a) == 1)
    assert stuff_seen == {things + 1, things + 2, things + 3}


def _panoptic_dataset(pan, split):
    from mmdet.datasets import CocoPanopticDataset
    s = pan['splits'][split]
    return CocoPanopticDataset(
        data_root=pan['root'], ann_file=s['ann_file_rel'], metainfo=pan['metainfo'],
        data_prefix=dict(img=s['img_prefix'], seg=s['seg_prefix']), test_mode=split == 'val',
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadPanopticAnnotations'),
                  dict(type='PackDetInputs')])


def test_mmdet_panoptic_dataset_loads(pan, mmdet_ready):
    ds = _panoptic_dataset(pan, 'train')
    assert len(ds) == 4 and ds.metainfo['thing_classes'] == pan['thing_classes']
    things = len(pan['thing_classes'])
    for idx in range(len(ds)):
        info = ds.get_data_info(idx)
        sample = ds[idx]['data_samples']
        ids = _ids(info['seg_map_path'])
        expected = np.full(ids.shape, 255)
        for g in info['segments_info']:
            expected[ids == g['id']] = g['category']
        sem = sample.gt_sem_seg.sem_seg.numpy()[0]
        np.testing.assert_array_equal(sem, expected)
        assert sem.max() < len(pan['classes'])  # no void
        masks = sample.gt_instances.masks.to_ndarray()
        labels = sample.gt_instances.labels.tolist()
        assert len(masks) == len(labels) == sum(g['is_thing'] for g in info['segments_info'])
        assert all(0 <= label < things for label in labels)
        for mask, label in zip(masks, labels):  # a thing mask is one segment of its class
            assert (sem[mask.astype(bool)] == label).all()


def _pq(pan, samples):
    from mmdet.evaluation import CocoPanopticMetric
    s = pan['splits']['val']
    metric = CocoPanopticMetric(ann_file=s['ann_file'], seg_prefix=s['seg_dir'])
    metric.dataset_meta = pan['metainfo']
    return _score(metric, samples)


def test_coco_panoptic_metric_on_ground_truth(pan, mmdet_ready):
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    ds = _panoptic_dataset(pan, 'val')

    def predictions(keep_every=1):
        """The ground truth in mmdet's format (instance * OFFSET + label), keeping every
        ``keep_every``-th thing (the others become void)."""
        samples = []
        for idx in range(len(ds)):
            info = ds.get_data_info(idx)
            ids = _ids(info['seg_map_path'])
            pred = np.full(ids.shape, len(pan['classes']), np.int64)  # void
            for k, g in enumerate(info['segments_info']):
                if not g['is_thing']:
                    pred[ids == g['id']] = g['category']
                elif k % keep_every == 0:
                    pred[ids == g['id']] = g['category'] + (k + 1) * INSTANCE_OFFSET
            samples.append(dict(img_id=info['img_id'], img_path=info['img_path'],
                                ori_shape=ids.shape,
                                pred_panoptic_seg=dict(sem_seg=torch.from_numpy(pred)[None])))
        return samples

    res = _pq(pan, predictions())
    for key in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
        assert res[f'coco_panoptic/{key}'] == pytest.approx(100.0), (key, res)
    # Not a constant: missing every other thing costs recognition quality on things only.
    res = _pq(pan, predictions(keep_every=2))
    assert res['coco_panoptic/PQ_st'] == pytest.approx(100.0)
    assert 30.0 < res['coco_panoptic/PQ_th'] < 90.0


def test_panoptic_cli_and_determinism(tmp_path, pan, capsys):
    args = ['--num-train', '4', '--num-val', '3', '--image-size', '64-96']
    info = pan_main(['--out', str(tmp_path / 'a'), *args])
    assert capsys.readouterr().out.startswith('wrote: ')
    for rel in ('annotations/panoptic_val.json', 'annotations/panoptic_val/000002.png',
                'val/000003.png', 'annotations/instances_train.json'):
        with open(osp.join(info['root'], rel), 'rb') as f, \
                open(osp.join(pan['root'], rel), 'rb') as g:
            assert f.read() == g.read(), rel
    pan_main(['--out', str(tmp_path / 'a'), *args])
    assert capsys.readouterr().out.startswith('up to date')


def test_panopticapi_fallback_ids():
    f = panopticapi_fallback
    ids = np.array([[0, 1, 255], [256, 65536, 16777215]])
    np.testing.assert_array_equal(f.rgb2id(f.id2rgb(ids)), ids)
    assert f.id2rgb(70000) == [112, 17, 1] and f.rgb2id((112, 17, 1)) == 70000
    stat = f.PQStat()
    stat[1].tp, stat[1].iou, stat[2].fn = 2, 1.5, 1
    avg, per = stat.pq_average({1: dict(isthing=1), 2: dict(isthing=0), 3: dict(isthing=0)},
                               None)
    assert avg['n'] == 2 and per[1] == dict(pq=0.75, sq=0.75, rq=1.0)
    assert avg['pq'] == pytest.approx(0.375) and per[3]['pq'] == 0.0


@pytest.mark.parametrize('config, overlay, kind', [
    ('mask_rcnn/mask-rcnn_r50_fpn-nearest_8xb2-1x_coco.py', 'synthetic_coco_instance.py', 'det'),
    ('panoptic_fpn/panoptic-fpn_r50_fpn-nearest_8xb2-1x_coco.py', 'synthetic_coco_panoptic.py',
     'pan')])
def test_overlays_build_datasets_and_metrics(config, overlay, kind, det, pan, mmdet_ready):
    from mmdet.registry import DATASETS, METRICS
    from mmengine.config import Config

    from fade_mm.configs import apply_overlay
    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))
    info = dict(det=det, pan=pan)[kind]
    cfg = apply_overlay(Config.fromfile(osp.join(repo, 'configs', config)),
                        osp.join(repo, 'configs', '_base_', overlay), data_root=info['root'])
    things = len(info.get('thing_classes', info['classes']))
    assert cfg.model.roi_head.mask_head.num_classes == things
    for key in ('train_dataloader', 'val_dataloader'):
        ds = DATASETS.build(cfg[key].dataset)
        assert len(ds) == SMALL['num_' + key.split('_')[0]]
        sample = ds[0]['data_samples']
        assert len(sample.gt_instances.masks) == len(sample.gt_instances.labels) > 0
        assert ('gt_sem_seg' in sample) == (kind == 'pan')
    evaluator = cfg.val_evaluator.copy()
    if 'seg_prefix' in evaluator:  # apply_overlay re-points ann_file only
        evaluator['seg_prefix'] = info['splits']['val']['seg_dir']
    assert evaluator['ann_file'].startswith(info['root'])
    METRICS.build(evaluator)
