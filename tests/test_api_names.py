"""Names of the public API and their former spellings: UpsamplerFPN's ``top_down`` (formerly
``fusion``), ``FADE(depthwise=True)`` = ``FADELite``, ``CARAFEUpsample`` (formerly ``CARAFE``),
SAPA's similarity operator in :mod:`fade_mm.ops`."""
import warnings

import pytest
import torch
from mmengine.registry import MODELS, DefaultScope

import fade_mm  # noqa: F401  (registers)
from fade_mm.upsamplers import CARAFE, FADE, CARAFEUpsample, FADELite


def _count(m):
    return sum(p.numel() for p in m.parameters())


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------ UpsamplerFPN top_down
def _fpn(**kwargs):
    from mmdet.registry import MODELS as DET

    import fade_mm.det  # noqa: F401
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DET.build(dict(type='UpsamplerFPN', in_channels=[8, 16, 32], out_channels=8,
                              num_outs=4, upsample_cfg=dict(type='FADE'), **kwargs))


@pytest.mark.parametrize('fusion,top_down', [('add', 'add'), ('none', 'replace')])
def test_fpn_fusion_is_a_deprecated_alias_of_top_down(fusion, top_down):
    new = _fpn(top_down=top_down)
    with pytest.warns(DeprecationWarning, match=f"use top_down='{top_down}'"):
        old = _fpn(fusion=fusion)
    assert old.top_down == top_down and _same_state(old, new)
    feats = tuple(torch.randn(2, c, s, s) for c, s in zip([8, 16, 32], [13, 7, 4]))
    for a, b in zip(old(feats), new(feats)):
        assert torch.equal(a, b)


def test_fpn_top_down_values():
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the new name does not warn
        neck = _fpn(top_down='replace')
    feats = tuple(torch.randn(1, c, s, s) for c, s in zip([8, 16, 32], [13, 7, 4]))
    assert len(neck(feats)) == 4
    with pytest.raises(ValueError, match='`top_down` must be one of'):
        _fpn(top_down='none')
    with pytest.raises(ValueError, match='`fusion` must be one of'):
        _fpn(fusion='replace')
    with pytest.raises(ValueError, match="fusion`='add' .* means top_down='add'"):
        _fpn(fusion='add', top_down='replace')


# ------------------------------------------------------------- FADE variants by argument
@pytest.mark.parametrize('kwargs', [{}, dict(fusion='none'), dict(semi_shift_impl='h2l'),
                                    dict(kernel_generator='naive'),
                                    dict(kernel_source='decoder'), dict(guide_channels=6)])
def test_fade_depthwise_is_fade_lite(kwargs):
    torch.manual_seed(0)
    lite = FADELite(8, **kwargs)
    torch.manual_seed(0)
    dw = FADE(8, depthwise=True, **kwargs)
    assert _same_state(lite, dw)
    x, g = torch.randn(2, 8, 5, 6), torch.randn(2, kwargs.get('guide_channels', 8), 9, 12)
    assert torch.equal(lite(x, g), dw(x, g))
    assert isinstance(lite, FADE) and lite.depthwise and not FADE(8).depthwise


def test_fade_variant_counts_and_embedding_dim():
    assert _count(FADE(256)) == 47_514
    assert _count(FADE(256, depthwise=True)) == _count(FADELite(256)) == 13_332
    assert FADE(8).embedding_dim == 64 and FADELite(8).embedding_dim == 25
    assert FADELite(8, up_kernel=3, embedding_dim=9).embedding_dim == 9
    with pytest.raises(ValueError, match='`embedding_dim` must be up_kernel\\*\\*2 = 25'):
        FADE(8, depthwise=True, embedding_dim=64)
    with pytest.raises(ValueError, match='`depthwise` must be a bool'):
        FADE(8, depthwise=1)
    assert 'depthwise=True' in repr(FADELite(8)) and 'depthwise' not in repr(FADE(8))


def test_fade_lite_builds_from_the_registry_as_before():
    m = MODELS.build(dict(type='FADELite', in_channels=256))
    assert type(m) is FADELite and _count(m) == 13_332


# ------------------------------------------------------------- CARAFEUpsample / CARAFE
@pytest.mark.parametrize('scope', [None, 'mmdet', 'mmseg'])
def test_carafe_upsample_and_carafe_build_the_same(scope):
    def build(name):
        torch.manual_seed(0)
        if scope is None:
            return MODELS.build(dict(type=name, in_channels=16, up_group=2))
        with DefaultScope.overwrite_default_scope(scope):
            registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
            return registry.build(dict(type=name, in_channels=16, up_group=2))
    new, old = build('CARAFEUpsample'), build('CARAFE')
    assert type(new) is CARAFEUpsample and type(old) is CARAFE
    assert isinstance(old, CARAFEUpsample) and _count(new) == _count(old)
    assert _same_state(new, old)
    x = torch.randn(2, 16, 5, 7)
    assert torch.equal(new(x), old(x))
    assert _count(CARAFEUpsample(256)) == 74_148


def test_mmcv_keeps_its_lowercase_carafe():
    import mmcv.ops  # noqa: F401  (registers mmcv's 'carafe')
    assert MODELS.get('carafe').__name__ == 'CARAFEPack'
    assert MODELS.get('CARAFE') is CARAFE and MODELS.get('CARAFEUpsample') is CARAFEUpsample


# ------------------------------------------------------------- SAPA's similarity op
def test_similarity_op_lives_in_ops():
    from fade_mm.ops import local_similarity
    from fade_mm.ops.similarity import local_similarity as in_ops
    from fade_mm.upsamplers.sapa import local_similarity as via_sapa
    assert local_similarity is in_ops is via_sapa
    assert in_ops.__module__ == 'fade_mm.ops.similarity'
