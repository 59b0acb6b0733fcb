"""One init protocol: every upsampler's ``init_weights()`` sets all its parameters, its
``__init__`` calls it last (torch-only use), and the necks/heads let mmengine re-run it after
their own ``init_cfg`` and before a ``Pretrained`` one (no snapshot/restore)."""
import pytest
import torch
from mmengine.registry import DefaultScope

import fade_mm.upsamplers as U
from zoo import IDS, ZOO

SEED = 1234


def _seeded_init(monkeypatch, *classes):
    """Make ``init_weights`` of ``classes`` start from ``torch.manual_seed(SEED)``, so that
    every call of it gives the same numbers whatever ran before."""
    for cls in set(classes):
        original = cls.init_weights

        def seeded(self, _original=original):
            torch.manual_seed(SEED)
            _original(self)

        monkeypatch.setattr(cls, 'init_weights', seeded)


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


def _perturb(module):
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(7.0)


# ------------------------------------------------------------------- torch only
@pytest.mark.parametrize('cls,kwargs', [z[1:] for z in ZOO], ids=IDS)
def test_init_calls_init_weights_which_sets_every_parameter(cls, kwargs, monkeypatch):
    """Torch-only use: the parameters after construction are those of ``init_weights()``
    alone (two constructions from different RNG states agree when it is seeded), and
    ``init_weights()`` / ``reset_parameters()`` restore them after training changed them."""
    assert isinstance(cls(8, **kwargs), U.Upsampler)
    _seeded_init(monkeypatch, cls)
    torch.manual_seed(0)
    a = cls(8, **kwargs)
    torch.manual_seed(99)
    b = cls(8, **kwargs)
    _assert_same_state(a, b)
    for reinit in (b.init_weights, b.reset_parameters):
        _perturb(b)
        reinit()
        _assert_same_state(a, b)


def test_init_is_the_papers_without_mmengine():
    """The defaults a plain ``FADE(...)``/``CARAFEUpsample(...)``/``DySample(...)`` starts
    from: near-zero kernel/offset predictors, zero biases."""
    carafe = U.CARAFEUpsample(64)
    assert carafe.content_encoder.weight.std() < 0.01
    assert U.DySample(64).offset.weight.std() < 0.01
    fade = U.FADE(64)
    assert all(torch.count_nonzero(m.bias) == 0 for m in fade.modules()
               if isinstance(m, torch.nn.Conv2d) and m.bias is not None)


# -------------------------------------------------------------- necks and heads
def _fpn(upsample_cfg, **kwargs):
    from mmdet.registry import MODELS

    import fade_mm.det  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(dict(type='UpsamplerFPN', in_channels=[8, 16, 32],
                                 out_channels=8, num_outs=4, upsample_cfg=upsample_cfg,
                                 **kwargs))


def _pafpn(kind, upsample_cfg, **kwargs):
    from mmdet.registry import MODELS

    import fade_mm.det  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(dict(type=kind, in_channels=[8, 8, 8], out_channels=8,
                                 num_csp_blocks=1, upsample_cfg=upsample_cfg, **kwargs))


def _head(kind, upsample_cfg, **kwargs):
    from mmseg.registry import MODELS

    import fade_mm.seg  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(dict(type=kind, in_channels=[8, 8, 8, 8], in_index=[0, 1, 2, 3],
                                 channels=8, num_classes=3, norm_cfg=dict(type='BN'),
                                 align_corners=False, upsample_cfg=upsample_cfg, **kwargs))


HOLDERS = {
    'fpn': lambda cfg, **kw: _fpn(cfg, **kw),
    'cspnext_pafpn': lambda cfg, **kw: _pafpn('UpsamplerCSPNeXtPAFPN', cfg, **kw),
    'yolox_pafpn': lambda cfg, **kw: _pafpn('UpsamplerYOLOXPAFPN', cfg, **kw),
    'segformer_head': lambda cfg, **kw: _head('UpsamplerSegformerHead', cfg, **kw),
    'uper_head': lambda cfg, **kw: _head('UpsamplerUPerHead', cfg, upsample_fpn_outs=True,
                                         **kw),
}


def _upsamplers(holder):
    return [m for m in holder.modules() if isinstance(m, U.Upsampler)]


# every upsampler with parameters in the FPN, two in the other necks and heads
HOLDER_CASES = ([('fpn', n) for n in ('CARAFE', 'DySample', 'FADE', 'SAPA', 'A2U', 'IndexNet',
                                      'DeconvUpsample', 'PixelShuffleUpsample')]
                + [(h, n) for h in list(HOLDERS)[1:] for n in ('CARAFE', 'FADE')])


@pytest.mark.parametrize('holder,name', HOLDER_CASES)
def test_holder_init_weights_reruns_upsampler_init(holder, name, monkeypatch):
    """After the neck/head's ``init_weights()`` (its Xavier/Kaiming/Normal ``init_cfg``
    included) every upsampler equals a freshly constructed one with the same seed: its
    paper's initialisation, not the holder's."""
    cls = getattr(U, name)
    _seeded_init(monkeypatch, cls)
    module = HOLDERS[holder](dict(type=name))
    ups = _upsamplers(module)
    assert ups
    for up in ups:
        _perturb(up)  # as if the init_cfg had changed them; the holder must redo them
    module.init_weights()
    for up in ups:
        _assert_same_state(up, cls(up.in_channels))
    assert not any(hasattr(m, '_params_init_info') for m in module.modules())


def test_fpn_xavier_still_reaches_its_own_convs():
    torch.manual_seed(0)
    neck = _fpn(dict(type='CARAFE'))
    with torch.no_grad():
        for conv in neck.lateral_convs:
            conv.conv.bias.fill_(3.0)
    neck.init_weights()
    assert all(torch.count_nonzero(c.conv.bias) == 0 for c in neck.lateral_convs)
    assert neck.upsamplers[0].content_encoder.weight.std() < 0.01  # CARAFE's N(0, 0.001)


def _pretrained_roundtrip(build, tmp_path):
    """Save randomised weights of ``build()``; a second one with a Pretrained init_cfg has
    exactly them after init_weights (upsamplers included)."""
    source = build()
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    path = str(tmp_path / 'neck.pth')
    torch.save(source.state_dict(), path)
    target = build(init_cfg=[dict(type='Xavier', layer='Conv2d', distribution='uniform'),
                             dict(type='Pretrained', checkpoint=path)])
    target.init_weights()
    _assert_same_state(source, target)


@pytest.mark.parametrize('name', ['CARAFE', 'FADE'])
def test_pretrained_init_cfg_survives_fpn_init_weights(name, tmp_path):
    _pretrained_roundtrip(lambda **kw: _fpn(dict(type=name), **kw), tmp_path)


def test_pretrained_init_cfg_survives_segformer_head_init_weights(tmp_path):
    _pretrained_roundtrip(lambda **kw: _head('UpsamplerSegformerHead', dict(type='FADE'), **kw),
                          tmp_path)


def test_pretrained_init_cfg_survives_pafpn_init_weights(tmp_path):
    _pretrained_roundtrip(
        lambda **kw: _pafpn('UpsamplerCSPNeXtPAFPN', dict(type='DySample'), **kw), tmp_path)
