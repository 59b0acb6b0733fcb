import math

import pytest
import torch
import torch.nn.functional as F

from fade_mm.upsamplers.a2u import A2U
from reference import carafe_ref


# ----------------------------------------------------------------------------------------
# Independent float64 reference, written from the formulas in the A2U docstring.
# ----------------------------------------------------------------------------------------
def _adaptive_pool_ref(g, k):
    """Adaptive average pooling by its definition: bin i spans [floor(iH/k), ceil((i+1)H/k))."""
    b, c, big_h, big_w = g.shape
    out = torch.zeros(b, c, k, k, dtype=g.dtype)
    for i in range(k):
        y0, y1 = (i * big_h) // k, -(-((i + 1) * big_h) // k)
        for j in range(k):
            x0, x1 = (j * big_w) // k, -(-((j + 1) * big_w) // k)
            out[:, :, i, j] = g[:, :, y0:y1, x0:x1].mean((2, 3))
    return out


def _conv1x1_ref(conv, t):
    return torch.einsum('oc,bcyx->boyx', conv.weight[:, :, 0, 0], t) + conv.bias[:, None, None]


def _group_norm_ref(t, gn):
    """Biased variance over (C/G, h, w) per sample and group, then the per-channel affine."""
    b, c, h, w = t.shape
    g = gn.num_groups
    tg = t.reshape(b, g, -1)
    mean = tg.mean(-1, keepdim=True)
    var = ((tg - mean) ** 2).mean(-1, keepdim=True)
    tn = ((tg - mean) / torch.sqrt(var + gn.eps)).reshape(b, c, h, w)
    return tn * gn.weight[:, None, None] + gn.bias[:, None, None]


def _leaky_ref(t):
    return torch.where(t > 0, t, 0.01 * t)


def _affinity_ref(m, g):
    """a_j[b, i, j'] over low-res cells; also returns the padded guide and cell counts."""
    s, ke, d = m.scale_factor, m.encoder_kernel, m.rank
    b, c, big_h, big_w = g.shape
    h, w = -(-big_h // s), -(-big_w // s)
    pooled = _adaptive_pool_ref(g, ke)                       # from the unpadded guide
    filt = {}
    for key in ('u', 'v'):
        f = _conv1x1_ref(getattr(m, f'filter_{key}'), pooled)  # (B, d or d*C, ke, ke)
        if m.share:
            f = f[:, :, None].expand(b, d, c, ke, ke)
        else:
            f = f.view(b, d, c, ke, ke)
        filt[key] = f
    gpad = F.pad(g, (0, s * w - big_w, 0, s * h - big_h))
    p = (ke - s) // 2
    patches = F.unfold(gpad, ke, padding=p, stride=s).view(b, c, ke * ke, h, w)
    enc = {}
    for key in ('u', 'v'):
        e = torch.einsum('bdct,bcthw->bdchw', filt[key].reshape(b, d, c, ke * ke), patches)
        gn = getattr(m, f'norm_{key}')
        e = torch.stack([_leaky_ref(_group_norm_ref(e[:, j], gn)) for j in range(d)], 1)
        enc[key] = e
    return (enc['u'] * enc['v']).sum(2) / math.sqrt(c), h, w


def _mix_ref(conv, g, aff):
    b, d = aff.shape[:2]
    p = (torch.einsum('oc,bc->bo', conv.weight[:, :, 0, 0], g.mean((2, 3))) + conv.bias)
    p = p.view(b, -1, d)                                      # channel o*d + j
    return torch.einsum('boj,bjhw->bohw', p, aff)


def a2u_ref(m, x, g):
    s, k = m.scale_factor, m.up_kernel
    big_h, big_w = g.shape[-2:]
    aff, h, w = _affinity_ref(m, g)
    low = _mix_ref(m.proj_up, g, aff)                         # (B, s*s*k*k, h, w)
    b = low.shape[0]
    logits = torch.zeros(b, k * k, s * h, s * w, dtype=low.dtype)
    for t in range(k * k):
        for dy in range(s):
            for dx in range(s):
                logits[:, t, dy::s, dx::s] = low[:, t * s * s + dy * s + dx]
    if m.kernel_norm == 'softmax':
        kern = logits.softmax(1)
    elif k == 1:
        kern = torch.sigmoid(logits)
    else:
        kern = torch.sigmoid(logits).softmax(1)
    return carafe_ref(x, kern, k, 1, s)[:, :, :big_h, :big_w]


def a2u_downsample_ref(m, g):
    s, k = m.scale_factor, m.up_kernel
    kd = s * k
    aff, h, w = _affinity_ref(m, g)
    kern = _mix_ref(m.proj_down, g, aff).softmax(1)           # (B, kd*kd, h, w)
    big_h, big_w = g.shape[-2:]
    out = torch.zeros(g.shape[0], g.shape[1], h, w, dtype=g.dtype)
    p = (kd - s) // 2
    for i in range(h):
        for j in range(w):
            for u in range(kd):
                for v in range(kd):
                    yy, xx = s * i - p + u, s * j - p + v
                    if 0 <= yy < big_h and 0 <= xx < big_w:
                        out[:, :, i, j] += kern[:, u * kd + v, i, j, None] * g[:, :, yy, xx]
    return out


def _randomise(m):
    """Non-trivial norm affines so that every parameter shows up in the output."""
    with torch.no_grad():
        for gn in (m.norm_u, m.norm_v):
            gn.weight.uniform_(0.5, 1.5)
            gn.bias.uniform_(-0.3, 0.3)
    return m


def _make(c=8, **kw):
    return _randomise(A2U(c, **kw).double())


def _pair(b, c, big_h, big_w, s=2):
    x = torch.randn(b, c, -(-big_h // s), -(-big_w // s), dtype=torch.float64)
    g = torch.randn(b, c, big_h, big_w, dtype=torch.float64)
    return x, g


# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('kw,size', [
    (dict(), (8, 10)),
    (dict(), (7, 9)),                                   # odd, non-square
    (dict(), (5, 12)),
    (dict(norm_groups=2), (6, 6)),
    (dict(rank=2, share=False), (7, 8)),
    (dict(up_kernel=5, kernel_norm='softmax'), (8, 5)),
    (dict(up_kernel=1), (6, 7)),
    (dict(scale_factor=3), (9, 7)),                     # encoder_kernel defaults to 7
    (dict(scale_factor=3, encoder_kernel=5, rank=3), (8, 10)),
])
def test_matches_reference(kw, size):
    m = _make(**kw)
    x, g = _pair(2, 8, *size, s=m.scale_factor)
    out = m(x, g)
    assert out.shape == g.shape
    torch.testing.assert_close(out, a2u_ref(m, x, g), rtol=1e-10, atol=1e-12)


def test_kernels_are_convex_weights():
    m = _make()
    _, g = _pair(2, 8, 7, 10)
    kern = m.up_kernels(g)
    assert kern.shape == (2, 9, 8, 10)
    assert (kern > 0).all()
    torch.testing.assert_close(kern.sum(1), torch.ones(2, 8, 10, dtype=torch.float64))


@pytest.mark.parametrize('size', [(8, 10), (7, 5)])
def test_downsample_matches_reference(size):
    m = _make()
    _, g = _pair(2, 8, *size)
    out = m.downsample(g)
    assert out.shape == (2, 8, -(-size[0] // 2), -(-size[1] // 2))
    torch.testing.assert_close(out, a2u_downsample_ref(m, g), rtol=1e-10, atol=1e-12)


def test_forward_leaves_downsampling_projection_unused():
    m = A2U(8)
    x, g = _pair(1, 8, 6, 6)
    m(x.float(), g.float()).sum().backward()
    assert m.proj_down.weight.grad is None
    assert all(p.grad is not None for n, p in m.named_parameters() if 'proj_down' not in n)


def test_gradcheck():
    m = _make(c=4, norm_groups=2)
    x, g = _pair(1, 4, 3, 5)
    x.requires_grad_()
    g.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: m(a, b), (x, g))


def test_gradcheck_parameters():
    m = _make(c=4, norm_groups=2)
    x, g = _pair(1, 4, 4, 3)
    names = ['proj_up.weight', 'filter_u.weight', 'filter_v.bias', 'norm_u.weight']
    params = dict(m.named_parameters())

    def f(*ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x, g))

    inputs = tuple(params[n].detach().clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(f, inputs)


def test_float32_close_to_float64():
    m = _make()
    x, g = _pair(2, 8, 7, 9)
    want = m(x, g)
    got = m.float()(x.float(), g.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts():
    assert _count(A2U(256)) == 20_042                   # FADE's SegFormer-B1 logs
    assert _count(A2U(256, with_downsampler=False)) == 10_790
    assert 6 * _count(A2U(256)) == 120_252              # "+0.12M" for six modules
    # General formula: 2 GN affines + 2 projections + 2 filter generators.
    c, s, k, d = 64, 3, 5, 2
    taps = s * s * k * k * d
    want = 2 * 2 * c + 2 * (c + 1) * taps + 2 * (c + 1) * d * c
    assert _count(A2U(c, scale_factor=s, up_kernel=k, rank=d, share=False)) == want


def test_defaults_and_repr():
    m = A2U(256)
    assert A2U.uses_guide is True
    assert (m.scale_factor, m.up_kernel, m.encoder_kernel, m.rank, m.share, m.norm_groups,
            m.kernel_norm) == (2, 3, 6, 1, True, 32, 'sigmoid_softmax')
    assert A2U(16).norm_groups == 16
    text = repr(m)
    for part in ('in_channels=256', 'scale_factor=2', 'up_kernel=3', 'encoder_kernel=6',
                 'rank=1', 'share=True', 'norm_groups=32', "kernel_norm='sigmoid_softmax'",
                 'with_downsampler=True'):
        assert part in text


@pytest.mark.parametrize('bad,match', [
    (dict(in_channels=0), '`in_channels`'),
    (dict(scale_factor=0), '`scale_factor`'),
    (dict(scale_factor=2.0), '`scale_factor`'),
    (dict(up_kernel=4), '`up_kernel` must be an odd int'),
    (dict(encoder_kernel=5), '`encoder_kernel` minus `scale_factor` must be even'),
    (dict(encoder_kernel=1), '`encoder_kernel`'),
    (dict(rank=0), '`rank`'),
    (dict(share='yes'), '`share`'),
    (dict(norm_groups=3), '`norm_groups` must divide'),
    (dict(norm_groups=0), '`norm_groups`'),
    (dict(kernel_norm='sigmoid'), '`kernel_norm`'),
    (dict(with_downsampler=None), '`with_downsampler`'),
])
def test_bad_construction(bad, match):
    kw = dict(in_channels=8)
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        A2U(**kw)


@pytest.mark.parametrize('x,g,match', [
    ([1.0], torch.rand(2, 8, 8, 8), '`x` must be a torch.Tensor'),
    (torch.rand(8, 4, 4), torch.rand(2, 8, 8, 8), '`x` must be 4-D'),
    (torch.ones(2, 8, 4, 4, dtype=torch.long), torch.rand(2, 8, 8, 8), '`x` must be a floating'),
    (torch.rand(2, 6, 4, 4), torch.rand(2, 8, 8, 8), '`x` must have 8 channels'),
    (torch.rand(2, 8, 4, 4), None, '`guide` .* is required'),
    (torch.rand(2, 8, 4, 4), torch.rand(2, 8, 10, 8), r'`guide` must have shape'),
    (torch.rand(2, 8, 4, 4), torch.rand(2, 8, 6, 8), r'`guide` must have shape'),
    (torch.rand(2, 8, 4, 4), torch.rand(1, 8, 8, 8), r'`guide` must have shape'),
    (torch.rand(2, 8, 4, 4), torch.rand(2, 6, 8, 8), '`guide` must have 8 channels'),
    (torch.rand(2, 8, 4, 4), torch.rand(2, 8, 8), '`guide` must be 4-D'),
    (torch.rand(2, 8, 4, 4), torch.rand(2, 8, 8, 8, dtype=torch.float64), '`guide` must match'),
])
def test_bad_input(x, g, match):
    with pytest.raises(ValueError, match=match):
        A2U(8)(x, g)


def test_bad_downsample_input():
    with pytest.raises(ValueError, match='`guide` must have 8 channels'):
        A2U(8).downsample(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match='with_downsampler=False'):
        A2U(8, with_downsampler=False).downsample(torch.rand(1, 8, 8, 8))


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_build_from_registry(scope):
    import mmdet.registry  # noqa: F401  (creates the child registries)
    import mmseg.registry  # noqa: F401
    from mmengine.registry import MODELS, DefaultScope
    child = mmdet.registry.MODELS if scope == 'mmdet' else mmseg.registry.MODELS
    with DefaultScope.overwrite_default_scope(scope):
        for registry in (MODELS, child):
            m = registry.build(dict(type='A2U', in_channels=16, up_kernel=5))
            assert type(m) is A2U and m.up_kernel == 5
            x, g = torch.rand(1, 16, 3, 4), torch.rand(1, 16, 5, 8)
            assert m(x, g).shape == (1, 16, 5, 8)
