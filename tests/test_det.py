"""mmdet integration: UpsamplerFPN and every Faster R-CNN config in configs/faster_rcnn.

Parameter counts and config checks build on the meta device (shapes only, no
initialisation; the counts are the CPU ones) and, for the deltas, the neck alone: every
config differs from its baseline in the neck's ``upsample_cfg`` only, which the test
checks. One Faster R-CNN is built whole on the CPU in the quick loop (``-m "not slow"``):
the FADE train step; the other upsamplers' train steps are marked slow.
"""
import copy
import functools
import glob
import os

import pytest
import torch
from mmengine.config import Config

pytestmark = pytest.mark.threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG_DIR = os.path.join(ROOT, 'configs', 'faster_rcnn')

# Parameters of one upsampler module at 256 channels (x2): every config's delta over the
# nearest baseline of its topology is this times the number of upsamplers (3 in mmdet's
# standard FPN, 4 in the FPN_CARAFE topology).
PER_MODULE = {
    'nearest': 0,
    'deconv': 590_080,  # 3x3 transposed conv (the published deconv rows)
    'pixel-shuffle': 2_360_320,
    'carafe': 74_148,
    'fade': 47_514,
    'fade-nogate': 47_514 - 257,
    'fade-lite': 13_332,
    'sapa': 17_472,
    'sapa-gn': 17_472,
    'dysample': 8_224,
    'dysample-plus': 16_448,  # biased scope conv (the authors' forks)
    'a2u': 20_042,
    'indexnet': 2_100_224,
}
# topology -> (config infix, upsamplers, R50 and R101 nearest baselines, upsamplers with configs)
TOPOLOGIES = {
    'fpn': ('fpn', 3, {'r50': 41_753_056, 'r101': 60_745_184}, list(PER_MODULE)),
    'fpn_carafe': ('fpncarafe', 4, {'r50': 47_061_984, 'r101': 66_054_112},
                   [u for u in PER_MODULE if u not in ('sapa-gn', 'dysample-plus')]),
}
# The published FPN_CARAFE rows (R50): CARAFE +0.3M, FADE +0.2M, DySample +32,896, deconv +2.4M.
PUBLISHED_FPNCARAFE = {'carafe': 296_592, 'fade': 190_056, 'dysample': 32_896,
                       'deconv': 2_360_320}


def _path(depth, infix, up):
    return os.path.join(CFG_DIR, f'faster-rcnn_{depth}_{infix}-{up}_8xb2-1x_coco.py')


@pytest.fixture(scope='module', autouse=True)
def _mmdet():
    from mmdet.utils import register_all_modules
    register_all_modules()
    import fade_mm.det  # noqa: F401  (what the configs' custom_imports load)


@functools.lru_cache(maxsize=None)
def _parsed(path):
    """Each config is parsed once per session."""
    return Config.fromfile(path)


def _cfg(path):
    """A private copy of the parsed config (building a model changes its dicts)."""
    return copy.deepcopy(_parsed(path))


def _build(path):
    from mmdet.registry import MODELS
    cfg = _cfg(path)
    return cfg, MODELS.build(cfg.model)


def _build_small_rois(path):
    """The config's model built whole on the CPU, its R-CNN stage fed 64 RoIs per training
    image and 100 proposals at test time instead of 512 and 1000: the box head's two
    12544x1024 FCs then no longer dominate a step on tiny images (counts unchanged)."""
    from mmdet.registry import MODELS
    cfg = _cfg(path)
    cfg.model.train_cfg.rcnn.sampler.num = 64
    cfg.model.test_cfg.rpn.max_per_img = 100
    return cfg, MODELS.build(cfg.model)


def _build_meta(model_cfg):
    """``model_cfg`` built on the meta device: the parameters' shapes without their values
    (no memory, no initialisation), so exact counts at a fraction of the cost."""
    from mmdet.registry import MODELS
    with torch.device('meta'):
        module = MODELS.build(copy.deepcopy(model_cfg))
    assert all(p.is_meta for p in module.parameters())
    return module


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_every_config_is_named_and_listed():
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CFG_DIR, '*.py')))
    want = sorted(os.path.basename(_path(depth, infix, up))
                  for infix, _, _, ups in TOPOLOGIES.values() for up in ups
                  for depth in ('r50', 'r101'))
    assert names == want


@pytest.mark.parametrize('depth', ['r50', 'r101'])
@pytest.mark.parametrize('topology', list(TOPOLOGIES))
def test_config_delta_params(topology, depth):
    """The baseline is counted whole (on the meta device); every other config differs from
    it in the neck's `upsample_cfg` only, so its delta is that of the neck (built alone)."""
    infix, n, baselines, ups = TOPOLOGIES[topology]
    base_cfg = _cfg(_path(depth, infix, 'nearest'))
    base_model = _build_meta(base_cfg.model)
    assert _params(base_model) == baselines[depth]
    assert base_cfg.model.neck.topology == topology and len(base_model.neck.upsamplers) == n
    base_neck = _params(base_model.neck)
    del base_model
    deltas = {}
    for up in ups:
        cfg = _cfg(_path(depth, infix, up))
        assert cfg.model.neck.type == 'UpsamplerFPN' and cfg.model.neck.topology == topology
        rest, base_rest = dict(cfg.model), dict(base_cfg.model)
        rest.pop('neck'), base_rest.pop('neck')
        assert rest == base_rest, up
        neck = _build_meta(cfg.model.neck)
        assert len(neck.upsamplers) == n
        deltas[up] = _params(neck) - base_neck
    print('\n'.join(f'{depth} {topology} {up}: {d:+,}' for up, d in deltas.items()))
    assert deltas == {up: n * PER_MODULE[up] for up in ups}
    if topology == 'fpn_carafe':
        assert {up: deltas[up] for up in PUBLISHED_FPNCARAFE} == PUBLISHED_FPNCARAFE


@pytest.fixture(scope='module')
def fade_r50():
    """R50 FPN with FADE built whole on the CPU, shared by the tests that only read it or
    run a step on it."""
    return _build_small_rois(_path('r50', 'fpn', 'fade'))[1]


def test_meta_counts_are_cpu_counts(fade_r50):
    """A whole CPU build against the meta-device counts above: same parameters, names and
    shapes (R50 FPN with FADE: backbone, neck with upsamplers, both heads)."""
    meta, cpu = _build_meta(_cfg(_path('r50', 'fpn', 'fade')).model), fade_r50
    assert _params(cpu) == TOPOLOGIES['fpn'][2]['r50'] + 3 * PER_MODULE['fade']
    assert ({k: v.shape for k, v in meta.named_parameters()} ==
            {k: v.shape for k, v in cpu.named_parameters()})
    assert ({k: v.shape for k, v in meta.named_buffers()} ==
            {k: v.shape for k, v in cpu.named_buffers()})


def test_configs_layout_and_best_checkpoint():
    cfg = _cfg(_path('r50', 'fpn', 'fade'))
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs
    assert cfg.optim_wrapper.optimizer.lr == 0.02
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.default_hooks.checkpoint.save_best == 'coco/bbox_mAP'


def _batch(shapes, num_classes=80, seed=0):
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(seed)
    packed = demo_mm_inputs(batch_size=len(shapes), image_shapes=shapes,
                            num_classes=num_classes, num_items=[3] * len(shapes))
    return packed


@pytest.mark.parametrize('up', [up if up == 'fade' else pytest.param(up, marks=pytest.mark.slow)
                                for up in PER_MODULE])
def test_train_step_and_predict_at_odd_sizes(up):
    cfg, model = _build_small_rois(_path('r50', 'fpn', up))
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
    from mmdet.registry import MODELS

    import fade_mm.det  # noqa: F401
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
    """The neck's Xavier ``init_cfg`` reaches the upsamplers' convs too, but
    ``init_weights()`` then re-runs each upsampler's own init: CARAFE's content encoder is
    N(0, 0.001) afterwards, not Xavier (std ~0.04 here). The protocol itself (re-run, order
    with ``Pretrained``) is tested in tests/test_init_protocol.py."""
    from mmdet.registry import MODELS

    import fade_mm.det  # noqa: F401
    neck = MODELS.build(dict(type='UpsamplerFPN', in_channels=[8, 16], out_channels=8,
                             num_outs=2, upsample_cfg=dict(type='CARAFE')))
    assert neck.upsamplers[0].content_encoder.weight.std() < 0.01
    neck.init_weights()
    encoder = neck.upsamplers[0].content_encoder
    assert encoder.weight.std() < 0.01 and float(encoder.weight.abs().sum()) > 0


def test_degenerate_batch_trains(fade_r50):
    """An image without objects and a box on the image border in one batch."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    model = fade_r50
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
    cfg = _cfg(_path('r50', 'fpncarafe', 'fade'))
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
