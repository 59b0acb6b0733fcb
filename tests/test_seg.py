"""mmseg integration: heads, every config in configs/segformer and configs/upernet, a Runner.

Parameter counts and config checks build the decode head alone, on the meta device (shapes
only, no initialisation; the counts are the CPU ones): every config differs from its
bilinear baseline in the head's ``upsample_cfg`` only, which the tests check. The baselines
are counted whole: SegFormer on the CPU (MiT's constructor reads tensor values, which the
meta device has not), UPerNet on the meta device, checked against one CPU build. The quick
loop (``-m "not slow"``) trains one full model per family (FADE); the other upsamplers'
train steps are marked slow.
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
CFG = os.path.join(ROOT, 'configs')
UPS = ['bilinear', 'deconv', 'pixel-shuffle', 'carafe', 'fade', 'fade-nogate', 'fade-lite',
       'sapa', 'dysample', 'a2u', 'indexnet']
# the two variants of the authors' later forks, on the UPerNet 80k recipe only
FORK_UPS = ['dysample-plus', 'sapa-gn']
# family -> its configs: (stem, layout-schedule) pairs and the upsamplers of each
SEGFORMER = [(f'mit-{b}', '8xb2-160k') for b in ('b0', 'b1', 'b2', 'b3', 'b4', 'b5')] + \
    [('mit-b0', '1xb16-160k'), ('mit-b1', '1xb16-160k'), ('mit-b1', 'official-head_1xb16-160k')]
UPERNET = [(d, s) for d in ('r50', 'r101') for s in ('4xb4-80k', '4xb4-160k')]
TAIL = '_ade20k-512x512.py'
# Published SegFormer-B1 deltas (six upsamplers at 256 channels).
B1_DELTA = {'fade': 285_084, 'fade-lite': 79_992, 'carafe': 444_888, 'a2u': 120_252,
            'deconv': 6 * 590_080}


def _path(family, stem, up, layout):
    return os.path.join(CFG, family, f'{family}_{stem}_{up}_{layout}{TAIL}')


def _configs():
    """Every (path, family, layout, upsampler) this repository ships."""
    rows = [(_path('segformer', st, up, lay), 'segformer', lay, up)
            for st, lay in SEGFORMER for up in UPS]
    rows += [(_path('upernet', st, up, lay), 'upernet', lay, up)
             for st, lay in UPERNET for up in UPS + (FORK_UPS if '80k' in lay else [])]
    return rows


@pytest.fixture(scope='module', autouse=True)
def _mmseg():
    from mmseg.utils import register_all_modules
    register_all_modules()
    import fade_mm.seg  # noqa: F401  (what the configs' custom_imports load)


@functools.lru_cache(maxsize=None)
def _parsed(path):
    """Each config is parsed once per session (``mmseg::`` bases take ~1 s to resolve)."""
    return Config.fromfile(path)


def _cfg(path):
    """A private copy of the parsed config (building a model changes its dicts)."""
    return copy.deepcopy(_parsed(path))


def _build(path):
    from mmseg.registry import MODELS
    cfg = _cfg(path)
    return cfg, MODELS.build(cfg.model)


def _build_meta(model_cfg):
    """``model_cfg`` built on the meta device: the parameters' shapes without their values,
    so exact counts at a fraction of the cost."""
    from mmseg.registry import MODELS
    with torch.device('meta'):
        module = MODELS.build(copy.deepcopy(model_cfg))
    assert all(p.is_meta for p in module.parameters())
    return module


def _params(m):
    return sum(p.numel() for p in m.parameters())


def _module_params(up_cfg, channels):
    from mmengine.registry import MODELS
    return _params(MODELS.build(dict(up_cfg, in_channels=channels, scale_factor=2)))


def test_every_config_is_listed():
    paths = sorted(glob.glob(os.path.join(CFG, 'segformer', '*.py')) +
                   glob.glob(os.path.join(CFG, 'upernet', '*.py')))
    assert paths == sorted(p for p, *_ in _configs())


@pytest.mark.parametrize('family,stem,layout,baseline,per_head', [
    ('segformer', 'mit-b1', '8xb2-160k', 13_716_822, 6),
    # linear projections: 256 fewer parameters (no BN, a bias) at each of the four levels
    ('segformer', 'mit-b1', 'official-head_1xb16-160k', 13_716_822 - 4 * 256, 6),
    ('upernet', 'r50', '4xb4-80k', 66_516_108, 3),
    ('upernet', 'r101', '4xb4-80k', 85_508_236, 3),
])
def test_published_baselines_and_deltas(family, stem, layout, baseline, per_head):
    """The bilinear baseline is counted whole; the other configs differ from it in the
    decode head's `upsample_cfg` only, so their deltas are those of the head (built alone,
    on the meta device)."""
    base_cfg = _cfg(_path(family, stem, 'bilinear', layout))
    if family == 'segformer':
        _, base_model = _build(_path(family, stem, 'bilinear', layout))
    else:
        base_model = _build_meta(base_cfg.model)
    assert _params(base_model) == baseline
    base_head = _params(base_model.decode_head)
    del base_model
    deltas = {}
    ups = UPS + (FORK_UPS if family == 'upernet' else [])
    for up in ups:
        cfg = _cfg(_path(family, stem, up, layout))
        rest, base_rest = dict(cfg.model), dict(base_cfg.model)
        head_cfg, base_head_cfg = dict(rest.pop('decode_head')), dict(base_rest.pop('decode_head'))
        assert rest == base_rest, up
        up_cfg = head_cfg.pop('upsample_cfg')
        base_head_cfg.pop('upsample_cfg')
        assert head_cfg == base_head_cfg, up
        deltas[up] = _params(_build_meta(cfg.model.decode_head)) - base_head
        channels = cfg.model.decode_head.channels
        want = 0 if up_cfg is None else per_head * _module_params(up_cfg, channels)
        assert deltas[up] == want, (up, deltas[up], want)
    print('\n'.join(f'{family}_{stem} {k}: {v:+,}' for k, v in deltas.items()))
    if family == 'segformer':
        assert {k: deltas[k] for k in B1_DELTA} == B1_DELTA


def test_meta_counts_are_cpu_counts():
    """One UPerNet built whole on the CPU against its meta-device build: same parameters,
    names and shapes (R50, UPerHead with FADE, auxiliary FCN head)."""
    path = _path('upernet', 'r50', 'fade', '4xb4-80k')
    meta = _build_meta(_cfg(path).model)
    _, cpu = _build(path)
    assert _params(cpu) == 66_516_108 + 3 * _module_params(dict(type='FADE'), 512)
    assert ({k: v.shape for k, v in meta.named_parameters()} ==
            {k: v.shape for k, v in cpu.named_parameters()})
    assert ({k: v.shape for k, v in meta.named_buffers()} ==
            {k: v.shape for k, v in cpu.named_buffers()})


# family -> (stem, layout) of the configs whose parameter deltas are checked above
COUNTED = {'segformer': ('mit-b1', '8xb2-160k'), 'upernet': ('r50', '4xb4-80k')}
RECIPES = {  # layout-schedule -> (batch per GPU, iterations, validation interval)
    '8xb2-160k': (2, 160_000, 16_000),
    '1xb16-160k': (16, 160_000, 16_000),
    '4xb4-80k': (4, 80_000, 8_000),
    '4xb4-160k': (4, 160_000, 16_000),
}


def test_every_config_recipe_and_head():
    """Layout, schedule, one evaluator entry with mIoU and bIoU, best checkpoint kept; the
    model is its bilinear baseline's but for the head's `upsample_cfg`, and the decode head
    builds with its upsamplers."""
    built = set()
    for path, family, layout, up in _configs():
        cfg = _cfg(path)
        base = _cfg(path.replace(f'_{up}_', '_bilinear_'))
        model, base_model = copy.deepcopy(dict(cfg.model)), copy.deepcopy(dict(base.model))
        model['decode_head'].pop('upsample_cfg'), base_model['decode_head'].pop('upsample_cfg')
        assert model == base_model, path
        # the upsampler is that of the config whose count is checked above
        stem, counted_layout = COUNTED[family]
        counted = _cfg(_path(family, stem, up, counted_layout))
        assert cfg.model.decode_head.upsample_cfg == counted.model.decode_head.upsample_cfg, path
        batch, iters, interval = RECIPES[layout.replace('official-head_', '')]
        assert cfg.train_dataloader.batch_size == batch, path
        assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == (iters, interval), path
        assert cfg.val_evaluator.type == 'IoUBoundaryMetric', path
        assert cfg.test_evaluator == cfg.val_evaluator, path
        assert cfg.default_hooks.checkpoint.save_best == 'mIoU', path
        if 'official-head' in layout:
            assert cfg.model.decode_head.projection == 'linear'
            assert dict(type='ResizeToMultiple', size_divisor=32) in cfg.test_pipeline
        if family == 'upernet':
            assert cfg.optim_wrapper.optimizer.lr == 0.01
        key = repr(cfg.model.decode_head)
        if key in built:  # e.g. the 80k and 160k schedules share their heads
            continue
        built.add(key)
        head = _build_meta(cfg.model.decode_head)
        if cfg.model.decode_head.upsample_cfg is None:
            assert head.upsamplers is None
        else:
            assert len(head.upsamplers) == (6 if family == 'segformer' else 3), path
        del head


def _seg_batch(model, shapes, num_classes, training):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    inputs, samples = [], []
    for h, w in shapes:
        inputs.append(torch.randint(0, 255, (3, h, w), dtype=torch.uint8))
        s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w)))
        samples.append(s)
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), training)


def _slow_unless_fade(*args):
    return args if args[-1] == 'fade' else pytest.param(*args, marks=pytest.mark.slow)


@pytest.mark.parametrize('family,stem,layout,up', [
    *[_slow_unless_fade('segformer', 'mit-b1', '8xb2-160k', up) for up in UPS],
    *[_slow_unless_fade('upernet', 'r50', '4xb4-80k', up) for up in UPS + FORK_UPS]])
def test_train_step_and_odd_size_inference(family, stem, layout, up):
    cfg, model = _build(_path(family, stem, up, layout))
    model.data_preprocessor.size = None  # keep the odd sizes below
    model.data_preprocessor.size_divisor = 1
    model.train()
    data = _seg_batch(model, [(67, 93), (67, 93)], 150, True)
    losses = model(**data, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    ups = model.decode_head.upsamplers
    if ups is not None and _params(ups):
        grads = {n: p.grad for n, p in ups.named_parameters()}
        unused = {n for n, g in grads.items() if g is None}
        assert all('proj_down' in n for n in unused), unused  # A2U's documented spare
        assert sum(float(g.abs().sum()) for g in grads.values() if g is not None) > 0
    model.eval()
    with torch.no_grad():
        data = _seg_batch(model, [(75, 101)], 150, False)  # 1/4 = 19x26, 1/32 = 3x4
        out = model(**data, mode='predict')
    assert out[0].pred_sem_seg.data.shape == (1, 75, 101)


def test_uper_head_fpn_out_upsamplers():
    from mmseg.registry import MODELS
    base = dict(type='UpsamplerUPerHead', in_channels=[8, 16, 32, 64], in_index=[0, 1, 2, 3],
                channels=8, num_classes=3, norm_cfg=dict(type='BN'), align_corners=False)
    head = MODELS.build(dict(base, upsample_cfg=dict(type='FADE'), upsample_fpn_outs=True))
    assert len(head.upsamplers) == 3 and len(head.fpn_out_upsamplers) == 6
    head.eval()
    feats = [torch.randn(1, c, s, s) for c, s in zip([8, 16, 32, 64], [19, 10, 5, 3])]
    assert head(feats).shape == (1, 3, 19, 19)
    plain = MODELS.build(base)
    assert plain.upsamplers is None and plain.fpn_out_upsamplers is None
    with pytest.raises(ValueError, match='`upsample_fpn_outs`=True needs'):
        MODELS.build(dict(base, upsample_fpn_outs=True))


def test_segformer_head_cascade_order_and_bilinear_equivalence():
    from mmseg.models.decode_heads import SegformerHead
    from mmseg.registry import MODELS
    base = dict(in_channels=[8, 16, 32, 64], in_index=[0, 1, 2, 3], channels=8,
                num_classes=3, norm_cfg=dict(type='BN'), align_corners=False)
    feats = [torch.randn(2, c, h, w)
             for c, h, w in zip([8, 16, 32, 64], [21, 11, 6, 3], [22, 11, 6, 3])]
    ours = MODELS.build(dict(base, type='UpsamplerSegformerHead')).eval()
    ref = SegformerHead(**base).eval()
    ref.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(feats), ref(feats))
    # With nearest upsamplers the cascade is a chain of exact x2 nearest steps + crops.
    near = MODELS.build(dict(base, type='UpsamplerSegformerHead',
                             upsample_cfg=dict(type='NearestUpsample'))).eval()
    assert len(near.upsamplers) == 6
    proj = [conv(f) for conv, f in zip(near.convs, feats)]
    up = [proj[0]] + [p.repeat_interleave(2 ** i, 2).repeat_interleave(2 ** i, 3)[:, :, :21, :22]
                      for i, p in enumerate(proj[1:], 1)]
    want = near.cls_seg(near.fusion_conv(torch.cat(up, 1)))
    torch.testing.assert_close(near(feats), want)


@pytest.mark.slow
def test_runner_trains_and_evaluates_miou_and_biou(tmp_path):
    from mmengine.runner import Runner

    from fade_mm.configs import apply_overlay
    from fade_mm.datasets.synthetic_seg import make_synthetic_ade
    make_synthetic_ade(str(tmp_path / 'data'), num_train=8, num_val=3, seed=0)
    cfg = _cfg(_path('segformer', 'mit-b0', 'fade', '8xb2-160k'))
    apply_overlay(cfg, os.path.join(CFG, '_base_', 'synthetic_ade.py'),
                  data_root=tmp_path / 'data', work_dir=tmp_path / 'work')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=4, val_interval=4)
    cfg.param_scheduler = []
    cfg.train_dataloader.batch_size = 2
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=4)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    assert {'mIoU', 'bIoU', 'aAcc', 'mAcc'} <= set(metrics)
    assert 0 <= metrics['bIoU'] <= 100 and 0 <= metrics['mIoU'] <= 100
