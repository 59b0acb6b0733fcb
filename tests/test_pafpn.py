"""Real-time detectors: the upsampler-aware PAFPNs of RTMDet and YOLOX (fade_mm/det/pafpn.py)
and their configs in configs/rtmdet and configs/yolox."""
import glob
import os

import pytest
import torch
from mmengine.config import Config

from zoo import IDS, ZOO

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NECKS = {'UpsamplerCSPNeXtPAFPN': 'CSPNeXtPAFPN', 'UpsamplerYOLOXPAFPN': 'YOLOXPAFPN'}
# small necks for the unit tests: three levels, one CSP block
SMALL = dict(in_channels=[16, 32, 64], out_channels=16, num_csp_blocks=1)
# (model, config folder, schedule suffix, mmdet's config, params of mmdet's model)
MODELS_ = {
    'rtmdet_tiny': ('rtmdet', '8xb32-300e_coco', 'rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
                    4_896_168),
    'rtmdet_s': ('rtmdet', '8xb32-300e_coco', 'rtmdet/rtmdet_s_8xb32-300e_coco.py',
                 8_886_924),
    'yolox_s': ('yolox', '8xb8-300e_coco', 'yolox/yolox_s_8xb8-300e_coco.py', 8_968_255),
}
# Δparams over the nearest baseline: two upsamplers, at the channels of the two finer
# levels (RTMDet-tiny 192 and 96; RTMDet-s and YOLOX-s 256 and 128). By hand, FADE at C
# channels has compressor_enc C*64+64, compressor_dec C*64 (no bias), content encoder
# 64*25*9+25 = 14,425 and gate C+1, i.e. 129*C + 14,490 (47,514 at 256, the published
# count); RTMDet-tiny: 129*(192+96) + 2*14,490 = 66,132. CARAFE is 64*C + 57,764 (74,148 at
# 256), DySample (lp, 4 groups) 32*C + 32 (8,224 at 256).
DELTAS = {
    'rtmdet_tiny': {'nearest': 0, 'fade': 66_132, 'dysample': 9_280, 'carafe': 133_960},
    'rtmdet_s': {'nearest': 0, 'fade': 78_516, 'dysample': 12_352, 'carafe': 140_104},
    'yolox_s': {'nearest': 0, 'fade': 78_516, 'dysample': 12_352, 'carafe': 140_104},
}
# backbone maps of a 3x97x131 image at strides 8, 16, 32 (stride-2 convs: ceil each time)
ODD = [(13, 17), (7, 9), (4, 5)]


def _path(model, up):
    folder, suffix, _, _ = MODELS_[model]
    return os.path.join(ROOT, 'configs', folder, f'{model}_pafpn-{up}_{suffix}.py')


def _mmdet_config(model):
    import mmdet
    return os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs', MODELS_[model][2])


@pytest.fixture(scope='module', autouse=True)
def _mmdet():
    from mmdet.utils import register_all_modules
    register_all_modules()
    import fade_mm.det.pafpn  # noqa: F401


def _registry():
    from mmdet.registry import MODELS
    return MODELS


def _params(m):
    return sum(p.numel() for p in m.parameters())


def _feats(sizes, batch=2, channels=SMALL['in_channels']):
    return tuple(torch.randn(batch, c, h, w) for c, (h, w) in zip(channels, sizes))


@pytest.mark.parametrize('ours', list(NECKS))
@pytest.mark.parametrize('upsample_cfg', [
    dict(type='NearestUpsample'), dict(scale_factor=2, mode='nearest'),
    dict(scale_factor=2, mode='bilinear')])
def test_default_equals_mmdet_neck(ours, upsample_cfg):
    """Same state dict, same outputs as mmdet's neck, in train and eval mode; mmdet's own
    ``nn.Upsample`` form of ``upsample_cfg`` maps to the equal registry upsampler."""
    mode = upsample_cfg.get('mode', 'nearest')
    theirs = _registry().build(dict(SMALL, type=NECKS[ours],
                                    upsample_cfg=dict(scale_factor=2, mode=mode)))
    neck = _registry().build(dict(SMALL, type=ours, upsample_cfg=upsample_cfg))
    assert [type(u).__name__ for u in neck.upsamplers] == [
        'NearestUpsample' if mode == 'nearest' else 'BilinearUpsample'] * 2
    assert neck.state_dict().keys() == theirs.state_dict().keys()
    neck.load_state_dict(theirs.state_dict())
    feats = _feats([(16, 20), (8, 10), (4, 5)])
    for train in (True, False):
        neck.train(train), theirs.train(train)
        for a, b in zip(neck(feats), theirs(feats)):
            assert torch.equal(a, b)


def test_odd_sizes_need_the_guide():
    """mmdet's nn.Upsample makes 8x10 of a 4x5 map, which cannot join a 7x9 level; the
    upsamplers here take the lateral's size (cropping the x2 map, so the rows and columns
    kept equal mmdet's at even sizes)."""
    theirs = _registry().build(dict(SMALL, type='CSPNeXtPAFPN'))
    with pytest.raises(RuntimeError, match='Sizes of tensors must match'):
        theirs(_feats(ODD))
    ours = _registry().build(dict(SMALL, type='UpsamplerCSPNeXtPAFPN'))
    assert [o.shape[-2:] for o in ours(_feats(ODD))] == ODD


def test_upsample_cfg_checks():
    with pytest.raises(ValueError, match='nn.Upsample arguments'):
        _registry().build(dict(SMALL, type='UpsamplerYOLOXPAFPN',
                               upsample_cfg=dict(scale_factor=2, mode='bicubic')))
    with pytest.raises(ValueError, match='`with_cp` must be a bool'):
        _registry().build(dict(SMALL, type='UpsamplerYOLOXPAFPN', with_cp=1))


@pytest.mark.parametrize('ours', list(NECKS))
@pytest.mark.parametrize('zoo_id', IDS)
def test_every_upsampler_at_odd_sizes(ours, zoo_id):
    """Every upsampler of the zoo builds by registry name in both necks, one per top-down
    step at that level's channels, and gives maps of the backbone's (odd) sizes."""
    _, cls, kwargs = ZOO[IDS.index(zoo_id)]
    neck = _registry().build(dict(SMALL, type=ours,
                                  upsample_cfg=dict(type=cls.__name__, **kwargs)))
    assert [type(u) for u in neck.upsamplers] == [cls, cls]
    assert [u.in_channels for u in neck.upsamplers] == [32, 16]  # coarsest step first
    neck.train()
    outs = neck(_feats(ODD))
    assert [tuple(o.shape) for o in outs] == [(2, 16, h, w) for h, w in ODD]
    sum(o.square().mean() for o in outs).backward()
    grads = {n: p.grad for n, p in neck.upsamplers.named_parameters()}
    # A2U's downsampling-kernel projection is documented as unused when upsampling
    assert all(g is not None for n, g in grads.items() if 'proj_down' not in n)


def test_init_weights_keeps_upsampler_init_and_with_cp():
    neck = _registry().build(dict(SMALL, type='UpsamplerCSPNeXtPAFPN',
                                  upsample_cfg=dict(type='CARAFE')))
    assert neck.upsamplers[0].content_encoder.weight.std() < 0.01  # CARAFE's N(0, 0.001)
    neck.init_weights()  # mmdet's Kaiming init_cfg, then CARAFE's own init_weights() again
    assert neck.upsamplers[0].content_encoder.weight.std() < 0.01

    # with_cp recomputes the upsamplers in backward: same outputs and gradients
    feats = _feats(ODD)
    results = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        neck = _registry().build(dict(SMALL, type='UpsamplerYOLOXPAFPN', with_cp=with_cp,
                                      upsample_cfg=dict(type='FADE')))
        outs = neck(feats)
        sum(o.sum() for o in outs).backward()
        results.append((outs, [p.grad for p in neck.upsamplers.parameters()]))
    (o0, g0), (o1, g1) = results
    torch.testing.assert_close(o1, o0)
    torch.testing.assert_close(g1, g0)


def test_every_config_is_named_and_listed():
    for folder, models in (('rtmdet', ['rtmdet_tiny', 'rtmdet_s']), ('yolox', ['yolox_s'])):
        names = sorted(os.path.basename(p)
                       for p in glob.glob(os.path.join(ROOT, 'configs', folder, '*.py')))
        assert names == sorted(os.path.basename(_path(m, up))
                               for m in models for up in DELTAS[m])


@pytest.mark.parametrize('model, batch, base_batch', [
    ('rtmdet_tiny', 32, 256), ('rtmdet_s', 32, 256), ('yolox_s', 8, 64)])
def test_configs_layout_and_best_checkpoint(model, batch, base_batch):
    cfg = Config.fromfile(_path(model, 'fade'))
    assert cfg.train_dataloader.batch_size == batch  # x 8 GPUs
    # --auto-scale-lr scales from the batch of the config's lr (8 x batch)
    assert cfg.auto_scale_lr.base_batch_size == base_batch == 8 * batch
    assert cfg.default_hooks.checkpoint.save_best == 'coco/bbox_mAP'
    assert cfg.default_hooks.checkpoint.type == 'SafeCheckpointHook'
    # mmdet's own hooks unchanged (EMA, pipeline / mode switches), exact resume added
    # (`mmdet::` bases tag their dicts with `_scope_='mmdet'`: compare without it)
    stock = Config.fromfile(_mmdet_config(model)).custom_hooks
    assert _unscoped(cfg.custom_hooks) == [*stock, dict(type='RNGStateHook')]


def _unscoped(node):
    if isinstance(node, dict):
        return {k: _unscoped(v) for k, v in node.items() if k != '_scope_'}
    if isinstance(node, (list, tuple)):
        return type(node)(_unscoped(v) for v in node)
    return node


@pytest.mark.parametrize('model', list(MODELS_))
def test_config_delta_params(model):
    """The baseline is mmdet's model (parameters and state-dict keys, so mmdet's checkpoints
    load); every other config differs from it in ``upsample_cfg`` only, so its delta is the
    neck's."""
    base_cfg = Config.fromfile(_path(model, 'nearest'))
    assert base_cfg.custom_imports.imports == ['fade_mm.det']
    assert base_cfg.model.neck.upsample_cfg == dict(type='NearestUpsample')
    stock = _registry().build(Config.fromfile(_mmdet_config(model)).model)
    base = _registry().build(base_cfg.model)
    assert _params(stock) == _params(base) == MODELS_[model][3]
    assert stock.state_dict().keys() == base.state_dict().keys()
    base_neck = _params(base.neck)
    del stock, base
    base_cfg = Config.fromfile(_path(model, 'nearest'))  # building changed the dicts
    deltas = {}
    for up in DELTAS[model]:
        cfg = Config.fromfile(_path(model, up))
        rest, base_rest = dict(cfg.model), dict(base_cfg.model)
        neck_cfg, base_neck_cfg = rest.pop('neck'), dict(base_rest.pop('neck'))
        assert rest == base_rest, up
        assert dict(neck_cfg, upsample_cfg=None) == dict(base_neck_cfg, upsample_cfg=None)
        neck = _registry().build(neck_cfg)
        assert len(neck.upsamplers) == 2
        deltas[up] = _params(neck) - base_neck
    print('\n'.join(f'{model} {up}: {d:+,}' for up, d in deltas.items()))
    assert deltas == DELTAS[model]


def test_rtmdet_tiny_fade_train_step_at_odd_size():
    """One loss/backward step of the whole RTMDet-tiny + FADE config on a 3x97x131 image
    (no padding: mmdet's nn.Upsample could not join its 4x5 and 7x9 maps)."""
    from mmdet.testing import demo_mm_inputs
    cfg = Config.fromfile(_path('rtmdet_tiny', 'fade'))
    cfg.model.backbone.init_cfg = None  # no ImageNet download
    model = _registry().build(cfg.model)
    model.train()
    packed = demo_mm_inputs(batch_size=1, image_shapes=[(3, 97, 131)], num_classes=80,
                            num_items=[3])
    data = model.data_preprocessor(packed, True)
    assert tuple(data['inputs'].shape) == (1, 3, 97, 131)
    assert [tuple(f.shape[-2:]) for f in model.extract_feat(data['inputs'])] == ODD
    losses = model(**data, mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.neck.upsamplers.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize('ours', ['UpsamplerCSPNeXtPAFPN', 'UpsamplerYOLOXPAFPN'])
def test_conflicting_upsample_cfg_is_refused(ours):
    from mmdet.registry import MODELS
    with pytest.raises(ValueError, match=r'sets in_channels=7, but its upsamplers need'):
        MODELS.build(dict(type=ours, in_channels=[8, 16, 32], out_channels=8,
                          upsample_cfg=dict(type='FADE', in_channels=7)))
