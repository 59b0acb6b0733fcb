"""mmdet integration: UpsamplerFPN and every Faster R-CNN config in configs/faster_rcnn."""
import glob
import os

import pytest
import torch
from mmengine.config import Config

pytestmark = pytest.mark.threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG_DIR = os.path.join(ROOT, 'configs', 'faster_rcnn')

# Delta params over the nearest baseline with the published topology (four upsamplers at
# 256 channels): 4 x the module count.
DELTA = {
    'nearest': 0,
    'deconv': 4 * 1_048_832,
    'pixel-shuffle': 4 * 2_360_320,
    'carafe': 296_592,
    'fade': 190_056,
    'fade-nogate': 4 * (47_514 - 257),
    'fade-lite': 4 * 13_332,
    'sapa': 4 * 17_472,
    'dysample': 32_896,
    'a2u': 4 * 20_042,
    'indexnet': 4 * 2_100_224,
}


@pytest.fixture(scope='module', autouse=True)
def _mmdet():
    from mmdet.utils import register_all_modules
    register_all_modules()
    import fade_mm.det  # noqa: F401  (what the configs' custom_imports load)


def _upsampler(path):
    name = os.path.basename(path)
    return name.split('_fpn-')[1].split('_1x')[0]


def _build(path):
    from mmdet.registry import MODELS
    cfg = Config.fromfile(path)
    return cfg, MODELS.build(cfg.model)


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_every_upsampler_has_r50_and_r101_configs():
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CFG_DIR, '*.py')))
    for up in DELTA:
        for depth in ('r50', 'r101'):
            assert f'faster-rcnn_{depth}_fpn-{up}_1x_coco.py' in names


@pytest.mark.parametrize('depth,baseline', [('r50', 47_061_984), ('r101', 66_054_112)])
def test_config_delta_params(depth, baseline):
    rows = []
    for up, delta in DELTA.items():
        cfg, model = _build(os.path.join(CFG_DIR, f'faster-rcnn_{depth}_fpn-{up}_1x_coco.py'))
        assert cfg.model.neck.type == 'UpsamplerFPN'
        assert cfg.model.neck.topology == 'fpn_carafe'
        assert len(model.neck.upsamplers) == 4
        rows.append((up, _params(model) - baseline))
        del model
    print('\n'.join(f'{depth} {up}: {d:+,}' for up, d in rows))
    assert dict(rows) == DELTA


def _batch(shapes, num_classes=80, seed=0):
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(seed)
    packed = demo_mm_inputs(batch_size=len(shapes), image_shapes=shapes,
                            num_classes=num_classes, num_items=[3] * len(shapes))
    return packed


@pytest.mark.parametrize('up', list(DELTA))
def test_train_step_and_predict_at_odd_sizes(up):
    cfg, model = _build(os.path.join(CFG_DIR, f'faster-rcnn_r50_fpn-{up}_1x_coco.py'))
    # odd sizes, no padding to 32/64: every pyramid level has odd extents
    model.data_preprocessor.pad_size_divisor = 1
    model.train()
    data = model.data_preprocessor(_batch([(3, 67, 99), (3, 67, 99)]), True)
    losses = model(**data, mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    ups = model.neck.upsamplers
    if _params(ups):
        grads = {n: p.grad for n, p in ups.named_parameters()}
        # A2U's downsampling-kernel projection is documented as unused when upsampling
        unused = {n for n, g in grads.items() if g is None}
        assert all('proj_down' in n for n in unused), unused
        assert unused == set() or cfg.get('find_unused_parameters')
        assert sum(float(g.abs().sum()) for g in grads.values() if g is not None) > 0
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(_batch([(3, 67, 99)], seed=1), False)
        feats = model.extract_feat(data['inputs'])
        assert [tuple(f.shape[-2:]) for f in feats] == [(17, 25), (9, 13), (5, 7), (3, 4),
                                                         (2, 2)]
        results = model(**data, mode='predict')
    assert len(results) == 1 and 'bboxes' in results[0].pred_instances


def test_neck_topologies_and_fusion():
    import fade_mm.det  # noqa: F401
    from mmdet.registry import MODELS
    feats = tuple(torch.randn(1, c, s, s) for c, s in zip([8, 16, 32, 64], [17, 9, 5, 3]))
    base = dict(type='UpsamplerFPN', in_channels=[8, 16, 32, 64], out_channels=8, num_outs=5)
    fpn = MODELS.build(dict(base, topology='fpn', upsample_cfg=dict(type='FADE')))
    carafe_topo = MODELS.build(dict(base, topology='fpn_carafe', upsample_cfg=dict(type='FADE')))
    assert len(fpn.upsamplers) == 3 and len(carafe_topo.upsamplers) == 4
    outs = fpn(feats)
    # 'fpn': P6 is the stride-2 max-pool (kernel 1) of P5
    torch.testing.assert_close(outs[4], outs[3][:, :, ::2, ::2])
    assert [o.shape[-1] for o in carafe_topo(feats)] == [17, 9, 5, 3, 2]
    # fusion='none' gives the upsampled map alone: with a nearest upsampler, the top-down
    # path then just copies the top level down
    none = MODELS.build(dict(base, topology='fpn', fusion='none',
                             upsample_cfg=dict(type='NearestUpsample')))
    lat = [lc(f) for lc, f in zip(none.lateral_convs, feats)]
    want = lat[3].repeat_interleave(8, 2).repeat_interleave(8, 3)[:, :, :17, :17]
    torch.testing.assert_close(none(feats)[0], none.fpn_convs[0](want))
    with pytest.raises(ValueError, match='`topology` must be one of'):
        MODELS.build(dict(base, topology='bifpn'))
    with pytest.raises(ValueError, match='`fusion` must be one of'):
        MODELS.build(dict(base, fusion='concat'))


def test_init_weights_keeps_upsampler_init():
    import fade_mm.det  # noqa: F401
    from mmdet.registry import MODELS
    neck = MODELS.build(dict(type='UpsamplerFPN', in_channels=[8, 16], out_channels=8,
                             num_outs=2, upsample_cfg=dict(type='CARAFE')))
    before = neck.upsamplers[0].content_encoder.weight.clone()
    assert before.std() < 0.01  # CARAFE's N(0, 0.001) content encoder
    neck.init_weights()
    torch.testing.assert_close(neck.upsamplers[0].content_encoder.weight, before)


def test_degenerate_batch_trains():
    """An image without objects and a box on the image border in one batch."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    _, model = _build(os.path.join(CFG_DIR, 'faster-rcnn_r50_fpn-fade_1x_coco.py'))
    model.train()
    samples, inputs = [], []
    for boxes in ([], [[0.0, 0.0, 12.0, 40.0], [70.0, 50.0, 99.0, 67.0]]):
        s = DetDataSample(metainfo=dict(img_shape=(67, 99), ori_shape=(67, 99),
                                        scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(bboxes=torch.tensor(boxes).reshape(-1, 4),
                                      labels=torch.zeros(len(boxes), dtype=torch.long))
        samples.append(s)
        inputs.append(torch.randint(0, 255, (3, 67, 99), dtype=torch.uint8))
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    losses = model(**data, mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()


@pytest.mark.slow
def test_runner_trains_and_evaluates_coco_metric(tmp_path):
    from mmengine.runner import Runner
    from fade_mm.configs import apply_overlay
    from fade_mm.datasets.synthetic_det import make_synthetic_coco
    info = make_synthetic_coco(str(tmp_path / 'data'), num_train=6, num_val=3, seed=0,
                               image_size=((96, 128), (96, 128)), empty_ratio=0.2)
    cfg = Config.fromfile(os.path.join(CFG_DIR, 'faster-rcnn_r50_fpn-fade_1x_coco.py'))
    apply_overlay(cfg, os.path.join(ROOT, 'configs', '_base_', 'synthetic_coco.py'),
                  data_root=info['root'], work_dir=tmp_path / 'work')
    assert tuple(cfg.train_dataloader.dataset.metainfo.classes) == info['classes']
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=3, val_interval=3)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=3)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    assert 'coco/bbox_mAP' in metrics and 'coco/bbox_mAP_50' in metrics
    assert metrics['coco/bbox_mAP'] >= 0
