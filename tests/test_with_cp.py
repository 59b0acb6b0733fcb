"""Gradient checkpointing (``with_cp``): FADE / FADE-Lite and the mmdet/mmseg necks and heads.

With ``with_cp=True`` (mmcv's name; default False) the kernel generation of FADE, or every
upsampler call of ``UpsamplerFPN`` / ``UpsamplerUPerHead`` / ``UpsamplerSegformerHead``, is
recomputed in backward while training. Checked here: outputs, input and parameter gradients
(and batch-norm running statistics) equal the plain ones in float64; the recomputation does
happen (a second forward of the checkpointed layers during backward) and only while training;
fewer activation bytes are kept (:func:`fade_mm.upsamplers.saved_tensor_bytes`);
:func:`fade_mm.upsamplers.set_with_cp` and the config key switch it.
"""
import os

import pytest
import torch
import torch.nn as nn

from fade_mm.upsamplers import FADE, FADELite, IndexNet, saved_tensor_bytes, set_with_cp
from fade_mm.upsamplers._common import checkpointed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXACT = dict(rtol=1e-12, atol=1e-12)


def _pair(factory):
    """The same module twice (float64), plain and checkpointed."""
    plain = factory(False).double().train()
    cp = factory(True).double().train()
    cp.load_state_dict(plain.state_dict())
    return plain, cp


def _step(model, inputs, weight_seed=1):
    """Forward, a random linear loss, backward: (output, input grads, param grads)."""
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    model.zero_grad(set_to_none=True)
    out = model(*inputs)
    if isinstance(out, (tuple, list)):
        out = torch.cat([o.flatten() for o in out])
    weight = torch.randn(out.shape, dtype=out.dtype,
                         generator=torch.Generator().manual_seed(weight_seed))
    (out * weight).sum().backward()
    grads = [t.grad for t in inputs] + [p.grad for p in model.parameters()]
    return out.detach(), grads


def _assert_same_step(plain, cp, inputs):
    out_a, grads_a = _step(plain, inputs)
    out_b, grads_b = _step(cp, inputs)
    torch.testing.assert_close(out_b, out_a, **EXACT)
    assert len(grads_a) == len(grads_b)
    for a, b in zip(grads_a, grads_b):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, **EXACT)
    for (name, a), (_, b) in zip(plain.named_buffers(), cp.named_buffers()):
        torch.testing.assert_close(b, a, **EXACT, msg=name)  # e.g. BN running statistics


FADE_VARIANTS = [
    pytest.param(FADE, {}, id='fade'),
    pytest.param(FADELite, {}, id='fade_lite'),
    pytest.param(FADE, {'semi_shift_impl': 'h2l'}, id='fade_h2l'),
    pytest.param(FADE, {'kernel_source': 'decoder', 'fusion': 'none'}, id='b2_decoder'),
    pytest.param(FADE, {'kernel_source': 'encoder', 'fusion': 'skip'}, id='b1_encoder'),
    pytest.param(FADE, {'kernel_generator': 'naive'}, id='b3_naive'),
    pytest.param(FADE, {'guide_channels': 6}, id='guide_channels'),
]


@pytest.mark.parametrize('cls,kwargs', FADE_VARIANTS)
@pytest.mark.parametrize('big', [(10, 12), (9, 11)], ids=['even', 'odd'])
def test_fade_with_cp_equals_plain_float64(cls, kwargs, big):
    plain, cp = _pair(lambda flag: cls(8, with_cp=flag, **kwargs))
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    g = torch.randn(2, kwargs.get('guide_channels', 8), *big, dtype=torch.float64)
    _assert_same_step(plain, cp, (x, g))


def _count_calls(module):
    """Calls of ``module`` (a pre-hook: checkpoint stops a recomputation as soon as it has
    what backward needs, so a post-forward hook may not run then)."""
    calls = []
    module.register_forward_pre_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    return calls


def test_fade_recomputes_kernel_generation_in_backward_only_when_training():
    m = FADE(8, with_cp=True)
    calls = _count_calls(m.compressor_enc)
    gate_calls = _count_calls(m.gate)
    x, g = torch.randn(1, 8, 4, 4, requires_grad=True), torch.randn(1, 8, 8, 8)
    m(x, g).sum().backward()
    assert len(calls) == 2  # forward, then the recomputation during backward
    assert len(gate_calls) == 1  # the gate is outside the checkpointed region
    calls.clear()
    m.eval()
    m(x, g).sum().backward()
    assert len(calls) == 1
    calls.clear()
    m.train()
    with torch.no_grad():
        m(x, g)
    assert len(calls) == 1


def test_fade_with_cp_keeps_fewer_activations():
    x, g = torch.randn(2, 32, 16, 16), torch.randn(2, 32, 32, 32, requires_grad=True)
    plain, cp = FADE(32), FADE(32, with_cp=True)
    cp.load_state_dict(plain.state_dict())
    kept = {}
    for name, m in (('plain', plain), ('cp', cp)):
        kept[name] = saved_tensor_bytes(lambda: m(x, g).sum())
    # at least the 64-channel encoder embedding at the guide's resolution
    assert kept['plain'] - kept['cp'] >= 2 * 64 * 32 * 32 * 4, kept


def test_fade_with_cp_under_bf16_autocast():
    plain, cp = FADE(8), FADE(8, with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x, g = torch.randn(2, 8, 5, 6), torch.randn(2, 8, 9, 11)
    outs = []
    for m in (plain, cp):
        xx = x.clone().requires_grad_()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = m(xx, g)
        out.float().sum().backward()
        outs.append((out.detach(), xx.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_with_cp_is_validated_and_shown():
    with pytest.raises(ValueError, match='with_cp'):
        FADE(8, with_cp=1)
    assert 'with_cp=True' in repr(FADELite(8, with_cp=True))
    assert 'with_cp' not in repr(FADE(8))


def test_checkpointed_batch_norm_updates_running_stats_once():
    """IndexNet has BatchNorm: the recomputation must not apply the momentum again."""
    plain = IndexNet(8).double().train()
    cp = IndexNet(8).double().train()
    cp.load_state_dict(plain.state_dict())

    class Wrapped(nn.Module):
        def __init__(self, up, flag):
            super().__init__()
            self.up, self.flag = up, flag

        def forward(self, x, g):
            return checkpointed(self.flag, self.up, x, g)

    a, b = Wrapped(plain, False), Wrapped(cp, True)
    calls = _count_calls(cp.index_block[0])
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    g = torch.randn(2, 8, 9, 12, dtype=torch.float64)
    _assert_same_step(a, b, (x, g))
    assert len(calls) == 2
    bn = cp.index_block[1]
    assert bn.track_running_stats and int(bn.num_batches_tracked) == 1


def test_set_with_cp_switches_only_this_package():
    class Foreign(nn.Module):
        with_cp = False

    model = nn.ModuleDict(dict(a=FADE(8), b=FADELite(8), c=IndexNet(8), d=Foreign()))
    assert set_with_cp(model) == 2
    assert model['a'].with_cp and model['b'].with_cp and not model['d'].with_cp
    assert set_with_cp(model, False) == 2 and not model['a'].with_cp
    with pytest.raises(ValueError, match='enabled'):
        set_with_cp(model, 1)


# ---------------------------------------------------------------- mmdet / mmseg adapters

def _fpn(flag, up):
    pytest.importorskip('mmdet')
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    import fade_mm.det  # noqa: F401
    return MODELS.build(dict(type='UpsamplerFPN', in_channels=[8, 16, 24], out_channels=8,
                             num_outs=4, topology='fpn_carafe', upsample_cfg=dict(type=up),
                             with_cp=flag))


def _seg_head(flag, up, head):
    pytest.importorskip('mmseg')
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    import fade_mm.seg  # noqa: F401
    cfg = dict(type=head, in_channels=[8, 16, 24, 32], in_index=[0, 1, 2, 3], channels=8,
               num_classes=3, dropout_ratio=0, norm_cfg=dict(type='BN', requires_grad=True),
               align_corners=False, upsample_cfg=dict(type=up), with_cp=flag)
    if head == 'UpsamplerUPerHead':
        cfg.update(pool_scales=(1, 2, 3, 6), upsample_fpn_outs=True)
    return MODELS.build(cfg)


def _pyramid(channels, size=(17, 23)):
    h, w = size
    maps = []
    for c in channels:
        maps.append(torch.randn(2, c, h, w, dtype=torch.float64))
        h, w = -(-h // 2), -(-w // 2)  # odd sizes: ceil, as strided backbones give
    return maps


def _wrap_list(head):
    class ListInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = head

        def forward(self, *maps):
            return self.head(list(maps))

    return ListInput()


@pytest.mark.parametrize('up', ['FADE', 'IndexNet', 'DySample'])
def test_fpn_with_cp_equals_plain(up):
    plain, cp = _pair(lambda flag: _wrap_list(_fpn(flag, up)))
    calls = _count_calls(cp.head.upsamplers[0])
    _assert_same_step(plain, cp, _pyramid([8, 16, 24]))
    assert len(calls) == 2 and cp.head.with_cp and not plain.head.with_cp


@pytest.mark.parametrize('head', ['UpsamplerSegformerHead', 'UpsamplerUPerHead'])
@pytest.mark.parametrize('up', ['FADE', 'IndexNet'])
def test_seg_heads_with_cp_equal_plain(head, up):
    plain, cp = _pair(lambda flag: _wrap_list(_seg_head(flag, up, head)))
    calls = _count_calls(cp.head.upsamplers[0])
    _assert_same_step(plain, cp, _pyramid([8, 16, 24, 32]))
    assert len(calls) == 2
    # eval: no checkpointing, the upsamplers run once
    calls.clear()
    cp.eval()
    with torch.no_grad():
        cp(*_pyramid([8, 16, 24, 32]))
    assert len(calls) == 1


def test_seg_head_with_cp_keeps_fewer_activations():
    plain, cp = _pair(lambda flag: _seg_head(flag, 'FADE', 'UpsamplerSegformerHead'))
    maps = [m.float() for m in _pyramid([8, 16, 24, 32], size=(32, 32))]
    kept = {}
    for name, m in (('plain', plain.float()), ('cp', cp.float())):
        kept[name] = saved_tensor_bytes(lambda: m(maps).sum())
    assert kept['cp'] < 0.8 * kept['plain'], kept


def test_config_key_switches_with_cp_for_segformer_b1():
    """What a benchmark sets: ``model.decode_head.with_cp=True`` (e.g. --cfg-options)."""
    pytest.importorskip('mmseg')
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    import fade_mm.seg  # noqa: F401
    path = os.path.join(ROOT, 'configs', 'segformer',
                        'segformer_mit-b1_fade_1xb16-160k_ade20k-512x512.py')
    cfg = Config.fromfile(path)
    cfg.merge_from_dict({'model.decode_head.with_cp': True})
    head = MODELS.build(cfg.model.decode_head)
    assert head.with_cp and len(head.upsamplers) == 6
    # the helper sets the head, not the FADEs inside it (that would recompute them twice)
    assert set_with_cp(head, False) == 1 and not head.with_cp
    assert set_with_cp(head.upsamplers, True) == 6 and head.upsamplers[0].with_cp
