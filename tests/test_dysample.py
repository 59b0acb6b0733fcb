import math

import pytest
import torch
import torch.nn.functional as F

from fade_mm.upsamplers.dysample import DySample


def _randomise(m, std=0.5):
    # Offsets of several pixels, so that sampling crosses cells and hits the border.
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, std)
    return m


def _bilinear_border(v, py, px):
    """v: (B, Cg, h, w); py, px: (B, h, w) float positions in pixel indices."""
    b, cg, h, w = v.shape
    py = py.clamp(0, h - 1)
    px = px.clamp(0, w - 1)
    y0, x0 = py.floor().long(), px.floor().long()
    y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
    wy, wx = (py - y0)[:, None], (px - x0)[:, None]
    flat = v.reshape(b, cg, h * w)

    def at(yy, xx):
        idx = (yy * w + xx).view(b, 1, -1).expand(b, cg, -1)
        return flat.gather(2, idx).view(b, cg, *py.shape[1:])

    return ((1 - wy) * (1 - wx) * at(y0, x0) + (1 - wy) * wx * at(y0, x1)
            + wy * (1 - wx) * at(y1, x0) + wy * wx * at(y1, x1))


def _conv1x1(t, weight, bias=None):
    out = torch.einsum('oc,bchw->bohw', weight[:, :, 0, 0], t)
    return out if bias is None else out + bias[None, :, None, None]


def dysample_ref(x, m):
    """Offsets from the formula, then explicit bilinear sampling (no grid_sample)."""
    b, c, h, w = x.shape
    s, g = m.scale_factor, m.groups
    wo, bo = m.offset.weight.detach(), m.offset.bias.detach()
    ws = m.scope.weight.detach() if m.dyscope else None
    if m.style == 'lp':
        off = _conv1x1(x, wo, bo)
        factor = 0.5 * _conv1x1(x, ws).sigmoid() if m.dyscope else 0.25
        off = off * factor  # (B, 2*G*s*s, h, w), channel xy*G*s*s + g*s*s + i*s + j
    else:
        # pixel shuffle by indexing: hr[c, s*y+i, s*x+j] = x[c*s*s + i*s + j, y, x]
        hr = torch.zeros(b, c // (s * s), s * h, s * w, dtype=x.dtype)
        for i in range(s):
            for j in range(s):
                hr[:, :, i::s, j::s] = x[:, i * s + j::s * s]
        off_hr = _conv1x1(hr, wo, bo)
        factor = 0.5 * _conv1x1(hr, ws).sigmoid() if m.dyscope else 0.25
        off_hr = off_hr * factor  # (B, 2*G, s*h, s*w), channel xy*G + g
        off = torch.zeros(b, 2 * g * s * s, h, w, dtype=x.dtype)
        for cc in range(2 * g):
            for i in range(s):
                for j in range(s):
                    off[:, cc * s * s + i * s + j] = off_hr[:, cc, i::s, j::s]
    out = torch.zeros(b, c, s * h, s * w, dtype=x.dtype)
    cg = c // g
    ys = torch.arange(h, dtype=x.dtype).view(h, 1).expand(h, w)
    xs = torch.arange(w, dtype=x.dtype).view(1, w).expand(h, w)
    for gg in range(g):
        for i in range(s):
            for j in range(s):
                n = gg * s * s + i * s + j
                px = xs + (j - (s - 1) / 2) / s + off[:, n]
                py = ys + (i - (s - 1) / 2) / s + off[:, g * s * s + n]
                vals = _bilinear_border(x[:, gg * cg:(gg + 1) * cg], py, px)
                out[:, gg * cg:(gg + 1) * cg, i::s, j::s] = vals
    return out


@pytest.mark.parametrize('style,dyscope,s,groups,c', [
    ('lp', False, 2, 4, 8), ('lp', True, 2, 2, 8), ('lp', False, 3, 1, 9),
    ('pl', False, 2, 4, 8), ('pl', True, 2, 1, 8), ('pl', True, 3, 2, 18),
])
def test_matches_explicit_bilinear_reference(style, dyscope, s, groups, c):
    m = _randomise(DySample(c, s, style, groups, dyscope)).double()
    x = torch.randn(2, c, 5, 3, dtype=torch.float64)
    out = m(x)
    assert out.shape == (2, c, 5 * s, 3 * s)
    # The initial grid is a float32 buffer (as in the official checkpoints): exact for
    # s = 2, rounded to float32 for thirds.
    tol = 1e-10 if s == 2 else 1e-6
    torch.testing.assert_close(out, dysample_ref(x, m), rtol=tol, atol=tol)


@pytest.mark.parametrize('s', [2, 3, 4])
@pytest.mark.parametrize('style', ['lp', 'pl'])
def test_zero_offsets_are_bilinear_upsampling(s, style):
    m = DySample(144, s, style, groups=2).double()
    with torch.no_grad():
        m.offset.weight.zero_()
        m.offset.bias.zero_()
    x = torch.randn(1, 144, 4, 6, dtype=torch.float64)
    want = F.interpolate(x, scale_factor=s, mode='bilinear', align_corners=False)
    tol = 1e-6 if s == 3 else 1e-12  # float32 initial grid: thirds are rounded
    torch.testing.assert_close(m(x), want, rtol=tol, atol=tol)


def test_initialisation_as_official():
    m = DySample(256, dyscope=True)
    assert m.offset.bias.abs().max() == 0
    assert 0.0007 < m.offset.weight.std().item() < 0.0013
    assert m.scope.bias is None and m.scope.weight.abs().max() == 0
    # Static and dynamic scope coincide at initialisation (0.5 * sigmoid(0) = 0.25).
    static = DySample(256)
    static.load_state_dict({k: v for k, v in m.state_dict().items() if 'scope' not in k})
    x = torch.randn(1, 256, 3, 4)
    torch.testing.assert_close(m(x), static(x))
    assert (m(x) - F.interpolate(x, scale_factor=2, mode='bilinear')).abs().max() < 0.05


@pytest.mark.parametrize('style,dyscope,count', [
    ('lp', False, 8224), ('lp', True, 16416), ('pl', False, 520), ('pl', True, 1032)])
def test_parameter_counts(style, dyscope, count):
    m = DySample(256, style=style, dyscope=dyscope)
    assert sum(p.numel() for p in m.parameters()) == count


def test_state_dict_keys_match_official():
    assert set(DySample(16).state_dict()) == {'offset.weight', 'offset.bias', 'init_pos'}
    assert set(DySample(16, dyscope=True).state_dict()) == {
        'offset.weight', 'offset.bias', 'scope.weight', 'init_pos'}
    assert DySample(16, style='pl').init_pos.shape == (1, 32, 1, 1)


@pytest.mark.parametrize('big_h,big_w', [(9, 5), (10, 6), (9, 6), (10, 5)])
@pytest.mark.parametrize('style', ['lp', 'pl'])
def test_guide_sets_output_size(big_h, big_w, style):
    m = _randomise(DySample(8, style=style)).double()
    x = torch.randn(2, 8, 5, 3, dtype=torch.float64)
    guide = torch.randn(2, 3, big_h, big_w, dtype=torch.float64)  # only its size matters
    out = m(x, guide)
    assert out.shape == (2, 8, big_h, big_w)
    torch.testing.assert_close(out, m(x)[:, :, :big_h, :big_w], rtol=0, atol=0)


def test_float32_and_non_square():
    m = _randomise(DySample(8, groups=2), std=0.1)
    x = torch.randn(1, 8, 7, 2)
    out = m(x)
    assert out.dtype == torch.float32 and out.shape == (1, 8, 14, 4)
    torch.testing.assert_close(out.double(), dysample_ref(x.double(), m.double()),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('style,dyscope', [('lp', True), ('pl', False)])
def test_gradcheck(style, dyscope):
    m = _randomise(DySample(4, style=style, groups=2, dyscope=dyscope), std=0.3).double()
    x = torch.randn(1, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))
    params = dict(m.named_parameters())
    names = list(params)

    def of_params(*ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x.detach(),))

    assert torch.autograd.gradcheck(of_params, tuple(params.values()))


def test_repr_and_flags():
    m = DySample(16, 2, 'pl', 2, True)
    assert DySample.uses_guide is False
    assert "in_channels=16, scale_factor=2, style='pl', groups=2, dyscope=True" in repr(m)


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=0), '`in_channels`'),
    (dict(in_channels=8.0), '`in_channels`'),
    (dict(scale_factor=0), '`scale_factor`'),
    (dict(scale_factor=2.0), '`scale_factor`'),
    (dict(style='lpl'), '`style` must be one of'),
    (dict(groups=0), '`groups`'),
    (dict(groups=3), '`groups` must divide `in_channels`=8'),
    (dict(dyscope=1), '`dyscope` must be a bool'),
    (dict(in_channels=6, groups=2, style='pl'), r'`in_channels` must be divisible by scale'),
])
def test_bad_construction(kwargs, match):
    args = dict(in_channels=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DySample(**args)


@pytest.mark.parametrize('x,guide,match', [
    ('not a tensor', None, '`x` must be a torch.Tensor'),
    (torch.randn(8, 5, 3), None, '`x` must be 4-D'),
    (torch.ones(1, 8, 5, 3, dtype=torch.long), None, '`x` must be a floating'),
    (torch.randn(1, 4, 5, 3), None, '`x` must have 8 channels'),
    (torch.randn(1, 8, 5, 3), torch.randn(1, 8, 8, 6), r'`guide` must have shape .*H in \[9, 10\]'),
    (torch.randn(1, 8, 5, 3), torch.randn(1, 8, 10, 7), r'`guide` must have shape'),
    (torch.randn(1, 8, 5, 3), torch.randn(2, 8, 10, 6), r'`guide` must have shape \(B=1'),
    (torch.randn(1, 8, 5, 3), torch.randn(1, 8, 10), '`guide` must be 4-D'),
    (torch.randn(1, 8, 5, 3), torch.randn(1, 8, 10, 6, dtype=torch.float64), '`guide` must match'),
])
def test_bad_forward_input(x, guide, match):
    with pytest.raises(ValueError, match=match):
        DySample(8)(x, guide)


@pytest.mark.parametrize('scope', [None, 'mmdet', 'mmseg'])
def test_build_by_name(scope):
    import mmdet.registry  # noqa: F401  (registers the mmdet scope)
    import mmseg.registry  # noqa: F401
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        m = MODELS.build(dict(type='DySample', in_channels=16, dyscope=True))
    assert type(m) is DySample and m.dyscope
    assert m(torch.randn(1, 16, 3, 4)).shape == (1, 16, 6, 8)
    if scope is not None:
        child = {'mmdet': mmdet.registry.MODELS, 'mmseg': mmseg.registry.MODELS}[scope]
        assert type(child.build(dict(type='DySample', in_channels=16))) is DySample
    assert math.isclose(DySample(16).init_pos.abs().max().item(), 0.25)
