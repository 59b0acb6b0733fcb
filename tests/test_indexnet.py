import itertools

import pytest
import torch
import torch.nn.functional as F

from fade_mm.upsamplers.indexnet import IndexNet


# ----------------------------------------------------------------------------------------
# Independent float64 reference: the official branch-per-sub-pixel structure, written with
# unfold + einsum and explicit BatchNorm, then explicit sub-pixel placement.
# ----------------------------------------------------------------------------------------
def _bn_ref(t, bn, rows, train):
    """BatchNorm over the hidden channels ``rows`` of ``bn`` (batch stats when training)."""
    if train:
        mean = t.mean((0, 2, 3))
        var = t.var((0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean[rows], bn.running_var[rows]
    tn = (t - mean[:, None, None]) / torch.sqrt(var[:, None, None] + bn.eps)
    return tn * bn.weight[rows][:, None, None] + bn.bias[rows][:, None, None]


def _branch_logits_ref(m, gpad, train):
    """List over sub-pixels t of logits ``(B, 1 or C, h, w)``; t = dy*s + dx."""
    s, c = m.scale_factor, m.in_channels
    s2 = s * s
    k, pad = (s + 2, 1) if m.use_context else (s, 0)
    b = gpad.shape[0]
    patches = F.unfold(gpad, k, padding=pad, stride=s)
    h, w = (gpad.shape[2] + 2 * pad - k) // s + 1, (gpad.shape[3] + 2 * pad - k) // s + 1
    patches = patches.view(b, c, k * k, h, w)
    conv0 = m.index_block[0].weight
    nonlinear = m.use_nonlinear
    bn = m.index_block[1] if nonlinear else None
    conv1 = m.index_block[3].weight if nonlinear else None
    relu6 = lambda t: t.clamp(0, 6)  # noqa: E731
    out = []
    if m.index_mode == 'holistic':
        if nonlinear:
            hid = torch.einsum('ock,bckhw->bohw', conv0.view(2 * c, c, k * k), patches)
            hid = relu6(_bn_ref(hid, bn, slice(None), train))
            logits = torch.einsum('oc,bchw->bohw', conv1[:, :, 0, 0], hid)
        else:
            logits = torch.einsum('ock,bckhw->bohw', conv0.view(s2, c, k * k), patches)
        return [logits[:, t:t + 1] for t in range(s2)]
    for t in range(s2):
        if m.index_mode == 'm2o':          # branch t: full conv C -> C
            rows = slice(t * c, (t + 1) * c)
            hid = torch.einsum('ock,bckhw->bohw', conv0[rows].view(c, c, k * k), patches)
            if nonlinear:
                hid = relu6(_bn_ref(hid, bn, rows, train))
                hid = torch.einsum('oc,bchw->bohw', conv1[rows][:, :, 0, 0], hid)
        else:                              # branch t: channel-wise conv
            rows = torch.arange(c) * s2 + t
            hid = torch.einsum('ck,bckhw->bchw', conv0[rows].view(c, k * k), patches)
            if nonlinear:
                hid = relu6(_bn_ref(hid, bn, rows, train))
                hid = hid * conv1[rows].view(c)[:, None, None]
        out.append(hid)
    return out


def indexnet_ref(m, x, g, train=False):
    s = m.scale_factor
    b, c, big_h, big_w = g.shape
    h, w = x.shape[-2:]
    gpad = F.pad(g, (0, s * w - big_w, 0, s * h - big_h))
    idx = torch.stack([torch.sigmoid(t) for t in _branch_logits_ref(m, gpad, train)])
    if m.index_norm == 'sigmoid_softmax':
        idx = idx.softmax(0)
    out = torch.zeros(b, c, s * h, s * w, dtype=x.dtype)
    for dy in range(s):
        for dx in range(s):
            out[:, :, dy::s, dx::s] = idx[dy * s + dx] * x
    return out[:, :, :big_h, :big_w]


def _make(c=4, **kw):
    m = IndexNet(c, **kw).double().eval()
    if m.use_nonlinear:
        bn = m.index_block[1]
        with torch.no_grad():
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    return m


def _pair(b, c, big_h, big_w, s=2):
    x = torch.randn(b, c, -(-big_h // s), -(-big_w // s), dtype=torch.float64)
    g = torch.randn(b, c, big_h, big_w, dtype=torch.float64)
    return x, g


VARIANTS = list(itertools.product(('holistic', 'o2o', 'm2o'), (True, False), (True, False)))


# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('mode,nonlinear,context', VARIANTS)
@pytest.mark.parametrize('size', [(8, 6), (7, 9)])   # even, and odd non-square
def test_matches_reference(mode, nonlinear, context, size):
    m = _make(index_mode=mode, use_nonlinear=nonlinear, use_context=context)
    x, g = _pair(2, 4, *size)
    out = m(x, g)
    assert out.shape == g.shape
    torch.testing.assert_close(out, indexnet_ref(m, x, g), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('kw,size', [
    (dict(index_norm='sigmoid_softmax'), (6, 8)),
    (dict(index_mode='m2o', index_norm='sigmoid_softmax'), (5, 7)),
    (dict(scale_factor=3), (9, 7)),
    (dict(scale_factor=3, index_mode='o2o', use_context=False), (8, 6)),
    (dict(scale_factor=1, index_mode='m2o'), (3, 4)),
])
def test_matches_reference_options(kw, size):
    m = _make(**kw)
    x, g = _pair(2, 4, *size, s=m.scale_factor)
    torch.testing.assert_close(m(x, g), indexnet_ref(m, x, g), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('mode', ['holistic', 'm2o', 'o2o'])
def test_train_mode_batch_norm(mode):
    m = _make(index_mode=mode).train()
    x, g = _pair(3, 4, 7, 8)
    torch.testing.assert_close(m(x, g), indexnet_ref(m, x, g, train=True), rtol=1e-10,
                               atol=1e-12)


def test_softmax_indices_partition_each_cell():
    m = _make(index_mode='o2o', index_norm='sigmoid_softmax')
    _, g = _pair(2, 4, 6, 8)
    idx = m.indices(g)
    assert idx.shape == (2, 4, 6, 8)
    cells = F.avg_pool2d(idx, 2) * 4
    torch.testing.assert_close(cells, torch.ones_like(cells))
    holistic = _make().indices(g)
    assert holistic.shape == (2, 1, 6, 8) and ((holistic > 0) & (holistic < 1)).all()


@pytest.mark.parametrize('kw', [dict(), dict(index_mode='o2o', use_context=False),
                                dict(index_mode='m2o', use_nonlinear=False)])
def test_gradcheck(kw):
    m = _make(c=3, **kw)
    x, g = _pair(1, 3, 5, 4)
    x.requires_grad_()
    g.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: m(a, b), (x, g))


def test_gradcheck_parameters_train_mode():
    m = _make(c=2).train()
    x, g = _pair(2, 2, 4, 5)
    names = [n for n, _ in m.named_parameters()]
    params = dict(m.named_parameters())

    def f(*ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x, g))

    inputs = tuple(params[n].detach().clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(f, inputs)


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts():
    # FADE's table: IndexNet +12.60M over six modules at 256 channels (SegFormer-B1).
    assert _count(IndexNet(256)) == 2_100_224
    assert 6 * _count(IndexNet(256)) == 12_601_344
    # The block printed in FADE's segformer.b1_indexnet log (linear M2O, no context).
    logged = IndexNet(256, index_mode='m2o', use_nonlinear=False, use_context=False)
    assert _count(logged) == 4 * 256 * 256 * 2 * 2 == 1_048_576
    c, s2, k2 = 256, 4, 16
    assert _count(IndexNet(c, index_mode='m2o')) == s2 * (c * c * k2 + 2 * c + c * c)
    assert _count(IndexNet(c, index_mode='o2o')) == s2 * (c * k2 + 2 * c + c)
    assert _count(IndexNet(c, use_nonlinear=False, use_context=False)) == c * s2 * 4


def test_defaults_and_repr():
    m = IndexNet(256)
    assert IndexNet.uses_guide is True
    assert (m.scale_factor, m.index_mode, m.use_nonlinear, m.use_context, m.index_norm) == (
        2, 'holistic', True, True, 'sigmoid')
    conv0 = m.index_block[0]
    assert (conv0.kernel_size, conv0.stride, conv0.padding) == ((4, 4), (2, 2), (1, 1))
    text = repr(m)
    for part in ('in_channels=256', 'scale_factor=2', "index_mode='holistic'",
                 'use_nonlinear=True', 'use_context=True', "index_norm='sigmoid'"):
        assert part in text


@pytest.mark.parametrize('bad,match', [
    (dict(in_channels=0), '`in_channels`'),
    (dict(in_channels=4.0), '`in_channels`'),
    (dict(scale_factor=0), '`scale_factor`'),
    (dict(index_mode='depthwise'), '`index_mode`'),
    (dict(use_nonlinear='yes'), '`use_nonlinear`'),
    (dict(use_context=None), '`use_context`'),
    (dict(index_norm='softmax'), '`index_norm`'),
])
def test_bad_construction(bad, match):
    kw = dict(in_channels=8)
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        IndexNet(**kw)


@pytest.mark.parametrize('x,g,match', [
    ('x', torch.rand(2, 8, 8, 8), '`x` must be a torch.Tensor'),
    (torch.rand(2, 8, 4), torch.rand(2, 8, 8, 8), '`x` must be 4-D'),
    (torch.ones(2, 8, 4, 4, dtype=torch.int32), torch.rand(2, 8, 8, 8), '`x` must be a float'),
    (torch.rand(2, 3, 4, 4), torch.rand(2, 8, 8, 8), '`x` must have 8 channels'),
    (torch.rand(2, 8, 4, 4), None, '`guide` .* is required'),
    (torch.rand(2, 8, 4, 4), torch.rand(2, 8, 9, 8), r'`guide` must have shape'),
    (torch.rand(2, 8, 4, 4), torch.rand(2, 8, 8, 6), r'`guide` must have shape'),
    (torch.rand(2, 8, 4, 4), torch.rand(3, 8, 8, 8), r'`guide` must have shape'),
    (torch.rand(2, 8, 4, 4), torch.rand(2, 4, 8, 8), '`guide` must have 8 channels'),
    (torch.rand(2, 8, 4, 4), [0], '`guide` must be a torch.Tensor'),
    (torch.rand(2, 8, 4, 4), torch.rand(2, 8, 8, 8, dtype=torch.float64), '`guide` must match'),
])
def test_bad_input(x, g, match):
    with pytest.raises(ValueError, match=match):
        IndexNet(8)(x, g)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_build_from_registry(scope):
    import mmdet.registry  # noqa: F401  (creates the child registries)
    import mmseg.registry  # noqa: F401
    from mmengine.registry import MODELS, DefaultScope
    child = mmdet.registry.MODELS if scope == 'mmdet' else mmseg.registry.MODELS
    with DefaultScope.overwrite_default_scope(scope):
        for registry in (MODELS, child):
            m = registry.build(dict(type='IndexNet', in_channels=16, index_mode='m2o'))
            assert type(m) is IndexNet and m.index_mode == 'm2o'
            x, g = torch.rand(2, 16, 3, 4), torch.rand(2, 16, 5, 8)
            assert m(x, g).shape == (2, 16, 5, 8)
