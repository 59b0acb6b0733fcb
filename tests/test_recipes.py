"""The options behind the faithful recipes (issue: recipes that reproduce the published tables).

- ``IoUBoundaryMetric``: mIoU and bIoU in one evaluator entry, equal to ``IoUMetric`` and
  ``BoundaryIoUMetric`` side by side, and ``output_dir`` as mmseg's ``test.py --out`` sets it;
- ``clear_pretrained``: every pretrained source of a config gone, so it builds offline;
- the 3x3 deconv, DySample's biased scope, SAPA's GroupNorm / norm-free embeddings and the
  official SegFormer head's linear projections: exact counts and what they compute;
- ``tools/train.py``'s layout and resume warnings (``fade_mm.runner``).
"""
from __future__ import annotations

import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope

from fade_mm.upsamplers import SAPA, DeconvUpsample, DySample

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CFG = osp.join(ROOT, 'configs')


def _params(m):
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------------------- metric
def _samples(rng, n, num_classes, shape=(64, 96)):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    out = []
    for _ in range(n):
        gt = rng.integers(0, num_classes, size=(shape[0] // 16, shape[1] // 16))
        gt = np.kron(gt, np.ones((16, 16), np.int64))
        gt[rng.random(shape) < 0.05] = 255
        pred = np.roll(gt, 1, axis=1)
        pred[pred == 255] = 0
        s = SegDataSample(metainfo=dict(img_path=f'img_{len(out)}.jpg'))
        s.gt_sem_seg = PixelData(data=torch.from_numpy(gt)[None])
        s.pred_sem_seg = PixelData(data=torch.from_numpy(pred)[None])
        out.append(s)
    return out


def test_iou_boundary_metric_equals_the_two_metrics(tmp_path):
    import mmseg.evaluation  # noqa: F401  (registers IoUMetric)
    from mmengine.evaluator import Evaluator

    import fade_mm.seg  # noqa: F401
    classes = tuple(f'c{i}' for i in range(5))
    samples = _samples(np.random.default_rng(0), 3, 5)
    with DefaultScope.overwrite_default_scope('mmseg'):
        pair = Evaluator([dict(type='IoUMetric', iou_metrics=['mIoU', 'mDice']),
                          dict(type='BoundaryIoUMetric', ratio=0.05)])
        one = Evaluator(dict(type='IoUBoundaryMetric', iou_metrics=['mIoU', 'mDice'],
                             boundary_ratio=0.05, output_dir=str(tmp_path / 'out'),
                             keep_results=True))
        for ev in (pair, one):
            ev.dataset_meta = dict(classes=classes)
            ev.process(samples, None)
        want, got = pair.evaluate(len(samples)), one.evaluate(len(samples))
    assert set(got) == set(want) >= {'aAcc', 'mIoU', 'mAcc', 'mDice', 'bIoU'}
    assert got == want  # bit for bit
    assert 0 < got['bIoU'] < got['mIoU'] < 100
    # output_dir writes one prediction PNG per image, as IoUMetric does
    assert sorted(os.listdir(tmp_path / 'out')) == ['img_0.png', 'img_1.png', 'img_2.png']


def test_iou_boundary_metric_rejects_bad_ratio():
    from fade_mm.seg import IoUBoundaryMetric
    for bad in (0, -0.1, True, 'x'):
        with pytest.raises(ValueError, match='boundary_ratio'):
            IoUBoundaryMetric(boundary_ratio=bad)


# ---------------------------------------------------------------------------- offline
@pytest.mark.parametrize('path', [
    'upernet/upernet_r50_fade_4xb4-80k_ade20k-512x512.py',
    'segformer/segformer_mit-b1_fade_8xb2-160k_ade20k-512x512.py',
    'faster_rcnn/faster-rcnn_r50_fpn-fade_8xb2-1x_coco.py',
])
def test_clear_pretrained_leaves_no_source(path):
    from fade_mm.configs import clear_pretrained
    cfg = Config.fromfile(osp.join(CFG, path))
    text = cfg.pretty_text
    assert 'Pretrained' in text or "pretrained='open-mmlab" in text  # the check can fail
    cleared = clear_pretrained(cfg)
    assert cleared
    assert 'Pretrained' not in cfg.pretty_text
    assert cfg.model.get('pretrained') is None
    assert clear_pretrained(cfg) == []  # idempotent


def test_cleared_upernet_initialises_without_network(monkeypatch):
    """UPerNet's R50 comes from open-mmlab://resnet50_v1c: with the sources cleared,
    init_weights must not try to fetch anything."""
    from mmengine.runner import checkpoint
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    from fade_mm.configs import clear_pretrained
    register_all_modules()
    import fade_mm.seg  # noqa: F401

    def no_network(*args, **kwargs):
        raise AssertionError(f'tried to load a checkpoint: {args}')

    monkeypatch.setattr(checkpoint, 'load_checkpoint', no_network)
    monkeypatch.setattr(checkpoint.CheckpointLoader, 'load_checkpoint', no_network)
    cfg = Config.fromfile(osp.join(CFG, 'upernet', 'upernet_r50_fade_4xb4-80k_ade20k-512x512.py'))
    assert cfg.model.pretrained == 'open-mmlab://resnet50_v1c'
    assert clear_pretrained(cfg) == ['model.pretrained']
    model = MODELS.build(cfg.model)
    model.init_weights()


# ------------------------------------------------------------------ upsampler options
def test_deconv_3x3_is_the_published_one():
    m = DeconvUpsample(256, kernel_size=3)
    assert _params(m) == 590_080 and _params(DeconvUpsample(256)) == 1_048_832
    assert (m.deconv.padding, m.deconv.output_padding) == ((1, 1), (1, 1))
    small = DeconvUpsample(4, kernel_size=3).double()
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    out = small(x)
    assert out.shape == (1, 4, 10, 12)
    # a transposed conv is the adjoint of the strided conv with the same weights
    y = torch.randn_like(out)
    lhs = (out - small.deconv.bias.view(1, -1, 1, 1)).mul(y).sum()
    rhs = F.conv2d(F.pad(y, (1, 0, 1, 0)), small.deconv.weight, stride=2).mul(x).sum()
    torch.testing.assert_close(lhs, rhs)
    guide = torch.randn(1, 1, 9, 11, dtype=torch.float64)
    assert small(x, guide).shape == (1, 4, 9, 11)  # cropped to a guide
    with pytest.raises(ValueError, match='kernel_size'):
        DeconvUpsample(4, scale_factor=1, kernel_size=4)


def test_dysample_scope_bias():
    assert _params(DySample(256, dyscope=True, scope_bias=True)) == 16_448
    assert _params(DySample(256, dyscope=True)) == 16_416
    assert _params(DySample(256, style='pl', dyscope=True, scope_bias=True)) == 1_040
    m = DySample(8, dyscope=True, scope_bias=True)
    torch.nn.init.normal_(m.scope.weight, std=0.1)
    ref = DySample(8, dyscope=True)
    ref.load_state_dict({k: v for k, v in m.state_dict().items() if k != 'scope.bias'})
    x = torch.randn(1, 8, 5, 6)
    torch.testing.assert_close(m(x), ref(x))  # the bias starts at zero
    # a bias changes the scope: the offsets differ once it is non-zero
    before = m.offsets(x).clone()
    with torch.no_grad():
        m.scope.bias.fill_(1.0)
    assert not torch.allclose(m.offsets(x), before)
    with pytest.raises(ValueError, match='scope_bias'):
        DySample(8, scope_bias=True)


def test_sapa_norm_options():
    assert _params(SAPA(256, norm='group')) == _params(SAPA(256)) == 17_472
    assert _params(SAPA(256, norm='none')) == 17_472 - 4 * 256 == 16_448
    x, g = torch.randn(2, 64, 5, 6), torch.randn(2, 64, 10, 12)
    layer = SAPA(64).eval()
    group = SAPA(64, norm='group').eval()
    group.load_state_dict(layer.state_dict())  # same parameter names and shapes
    assert not torch.allclose(layer(x, g), group(x, g))  # a different function
    # the key embedding reads GroupNorm(32) of x over channel groups and the whole map
    q, k = group.query_key(x, g)
    want_k = group.k(F.group_norm(x, 32, group.norm_x.weight, group.norm_x.bias,
                                  group.norm_x.eps).permute(0, 2, 3, 1))
    torch.testing.assert_close(k, want_k)
    plain = SAPA(64, norm='none')
    q, k = plain.query_key(x, g)
    torch.testing.assert_close(k, plain.k(x.permute(0, 2, 3, 1)))
    with pytest.raises(ValueError, match='norm_groups'):
        SAPA(48, norm='group')
    with pytest.raises(ValueError, match='norm'):
        SAPA(64, norm='batch')


def test_segformer_linear_projection_head():
    from mmseg.models.decode_heads import SegformerHead
    from mmseg.registry import MODELS

    import fade_mm.seg  # noqa: F401
    base = dict(in_channels=[8, 16, 32, 64], in_index=[0, 1, 2, 3], channels=8,
                num_classes=3, norm_cfg=dict(type='BN'), align_corners=False)
    # mmengine builds through the current default scope's registry: name mmseg's
    with DefaultScope.overwrite_default_scope('mmseg'):
        conv = MODELS.build(dict(base, type='UpsamplerSegformerHead'))
        lin = MODELS.build(dict(base, type='UpsamplerSegformerHead', projection='linear'))
    assert _params(conv) - _params(lin) == 4 * 8  # per level: BN (2C) out, bias (C) in
    assert _params(conv) == _params(SegformerHead(**base))
    feats = [torch.randn(2, c, s, s) for c, s in zip([8, 16, 32, 64], [16, 8, 4, 2])]
    # each projection is a per-pixel Linear with bias, no norm, no activation
    p = lin.convs[1]
    want = F.linear(feats[1].permute(0, 2, 3, 1), p.weight.flatten(1), p.bias)
    torch.testing.assert_close(p(feats[1]).permute(0, 2, 3, 1), want)
    lin.eval()
    assert lin(feats).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match='projection'), \
            DefaultScope.overwrite_default_scope('mmseg'):
        MODELS.build(dict(base, type='UpsamplerSegformerHead', projection='mlp'))


# ------------------------------------------------------- train.py's warnings (fade_mm.runner)
def test_layout_warning():
    from fade_mm.runner import layout_warning as warn
    path = osp.join(CFG, 'faster_rcnn', 'faster-rcnn_r50_fpn-fade_8xb2-1x_coco.py')
    cfg = Config.fromfile(path)
    assert warn(cfg, path, 8) is None  # 8 x 2 as laid out
    text = warn(cfg, path, 1)
    assert 'batch 16' in text and 'batch 2' in text and '--auto-scale-lr' in text
    cfg.auto_scale_lr.enable = True
    assert warn(cfg, path, 1) is None  # the learning rate will be scaled
    seg = osp.join(CFG, 'segformer', 'segformer_mit-b1_fade_1xb16-160k_ade20k-512x512.py')
    assert warn(Config.fromfile(seg), seg, 1) is None


def test_resume_source_warning(tmp_path):
    from fade_mm.runner import resume_source_warning as warn
    work = tmp_path / 'work'
    work.mkdir()
    cfg = Config(dict(work_dir=str(work), resume=True, load_from=None))
    assert warn(cfg) is None  # nothing to follow
    (work / 'last_checkpoint').write_text(str(work / 'iter_2.pth'))
    assert warn(cfg) is None  # inside the work dir
    (work / 'last_checkpoint').write_text(str(tmp_path / 'elsewhere' / 'iter_9.pth'))
    assert 'points outside the work dir' in warn(cfg)
