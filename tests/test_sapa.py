import pytest
import torch

from fade_mm.upsamplers.sapa import SAPA, local_similarity
from reference import largest_tensor_numel


def _randomise(m, std=0.5):
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, std)
    return m


def _layer_norm(t, weight, bias, eps=1e-5):
    """Per-pixel normalisation over channels of a (B, C, H, W) map."""
    mean = t.mean(1, keepdim=True)
    var = ((t - mean) ** 2).mean(1, keepdim=True)
    return (t - mean) / torch.sqrt(var + eps) * weight[:, None, None] + bias[:, None, None]


def _linear(t, lin):
    return torch.einsum('oc,bchw->bohw', lin.weight.detach(), t) + lin.bias.detach()[:, None, None]


def _up(t, s, big_h, big_w):
    return t[:, :, torch.arange(big_h) // s][:, :, :, torch.arange(big_w) // s]


def embeddings_ref(m, x, guide):
    """Query (B, d, H, W) and key (B, d, h, w) straight from the variant's formula."""
    s = m.scale_factor
    big_h, big_w = guide.shape[-2:]
    xn = _layer_norm(x, m.norm_x.weight.detach(), m.norm_x.bias.detach())
    yn = _layer_norm(guide, m.norm_y.weight.detach(), m.norm_y.bias.detach())
    if m.variant == 'I':
        return yn, xn
    key = _linear(xn, m.k)
    if m.variant == 'B':
        return _linear(yn, m.q), key
    gate = _up(torch.sigmoid(_linear(xn, m.gate)), s, big_h, big_w)
    q_dec = _up(_linear(x, m.qx), s, big_h, big_w)
    return gate * _linear(yn, m.qy) + (1 - gate) * q_dec, key


def similarity_ref(q, key, k, s):
    """q: (B, d, H, W), key: (B, d, h, w) -> (B, k*k, H, W); zero logit outside the map."""
    b, _, big_h, big_w = q.shape
    h, w = key.shape[-2:]
    r = (k - 1) // 2
    out = torch.zeros(b, k * k, big_h, big_w, dtype=q.dtype)
    for yy in range(big_h):
        for xx in range(big_w):
            for i in range(k):
                for j in range(k):
                    py, px = yy // s + i - r, xx // s + j - r
                    if 0 <= py < h and 0 <= px < w:
                        out[:, i * k + j, yy, xx] = (q[:, :, yy, xx] * key[:, :, py, px]).sum(1)
    return out


def sapa_ref(m, x, guide):
    """Explicit similarity, softmax over the k*k neighbours and weighted sum of values."""
    k, s = m.up_kernel, m.scale_factor
    r = (k - 1) // 2
    h, w = x.shape[-2:]
    q, key = embeddings_ref(m, x, guide)
    weights = similarity_ref(q, key, k, s).softmax(1)
    b, c = x.shape[:2]
    big_h, big_w = guide.shape[-2:]
    out = torch.zeros(b, c, big_h, big_w, dtype=x.dtype)
    for yy in range(big_h):
        for xx in range(big_w):
            for i in range(k):
                for j in range(k):
                    py, px = yy // s + i - r, xx // s + j - r
                    if 0 <= py < h and 0 <= px < w:
                        out[:, :, yy, xx] += weights[:, i * k + j, yy, xx, None] * x[:, :, py, px]
    return out


@pytest.mark.parametrize('variant', ['I', 'B', 'G'])
@pytest.mark.parametrize('s,k,h,w,big_h,big_w', [
    (2, 5, 4, 3, 8, 6), (2, 3, 4, 3, 7, 5), (3, 3, 3, 2, 8, 6), (2, 1, 3, 3, 5, 6)])
def test_matches_explicit_reference(variant, s, k, h, w, big_h, big_w):
    m = _randomise(SAPA(6, s, k, embedding_dim=4, variant=variant)).double()
    x = torch.randn(2, 6, h, w, dtype=torch.float64)
    guide = torch.randn(2, 6, big_h, big_w, dtype=torch.float64)
    out = m(x, guide)
    assert out.shape == (2, 6, big_h, big_w)
    torch.testing.assert_close(out, sapa_ref(m, x, guide), rtol=1e-10, atol=1e-10)


def test_guide_with_other_channel_count():
    m = _randomise(SAPA(6, embedding_dim=3, variant='G', guide_channels=4)).double()
    x = torch.randn(1, 6, 3, 4, dtype=torch.float64)
    guide = torch.randn(1, 4, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(m(x, guide), sapa_ref(m, x, guide), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('k,s', [(5, 2), (3, 3), (1, 1), (3, 1)])
def test_local_similarity_matches_loops(k, s):
    key = torch.randn(2, 3, 4, 5, dtype=torch.float64)  # (B, h, w, d)
    q = torch.randn(2, 3 * s, 4 * s, 5, dtype=torch.float64)
    got = local_similarity(q, key, k, s)
    want = similarity_ref(q.permute(0, 3, 1, 2), key.permute(0, 3, 1, 2), k, s)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('k,s', [(3, 2), pytest.param(5, 2, marks=pytest.mark.slow), (3, 3)])
def test_local_similarity_gradcheck(k, s):
    key = torch.randn(1, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    q = torch.randn(1, 3 * s, 2 * s, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: local_similarity(a, b, k, s), (q, key))


def test_local_similarity_grad_of_one_input():
    key = torch.randn(1, 3, 4, 2, dtype=torch.float64)
    q = torch.randn(1, 6, 8, 2, dtype=torch.float64, requires_grad=True)
    local_similarity(q, key, 3, 2).sum().backward()
    qr = q.detach().clone().requires_grad_()
    similarity_ref(qr.permute(0, 3, 1, 2), key.permute(0, 3, 1, 2), 3, 2).sum().backward()
    torch.testing.assert_close(q.grad, qr.grad)


@pytest.mark.parametrize('variant', ['I', 'B', 'G'])
def test_module_gradcheck(variant):
    m = _randomise(SAPA(4, up_kernel=3, embedding_dim=3, variant=variant), std=0.3).double()
    x = torch.randn(1, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    guide = torch.randn(1, 4, 3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x, guide))
    params = dict(m.named_parameters())
    names = list(params)

    def of_params(*ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x.detach(), guide.detach()))

    assert torch.autograd.gradcheck(of_params, tuple(params.values()))


def test_similarity_never_unfolds_the_keys():
    """Largest tensor in forward + backward stays well below k*k*d*h*w."""
    k, s, d, h, w = 5, 2, 16, 6, 6
    key = torch.randn(1, h, w, d, requires_grad=True)
    q = torch.randn(1, s * h, s * w, d, requires_grad=True)
    biggest = largest_tensor_numel(
        lambda: local_similarity(q, key, k, s).square().sum().backward())
    assert biggest <= k * k * d * h * w // 3, (biggest, k * k * d * h * w)


@pytest.mark.parametrize('variant,kwargs,count', [
    ('I', {}, 1024), ('B', {}, 17472), ('G', {}, 25953),
    ('B', dict(guide_channels=64), 512 + 128 + 65 * 32 + 257 * 32),
    ('B', dict(embedding_dim=64), 1024 + 2 * 257 * 64),
])
def test_parameter_counts(variant, kwargs, count):
    m = SAPA(256, variant=variant, **kwargs)
    assert sum(p.numel() for p in m.parameters()) == count


def test_state_dict_names_and_init_follow_official():
    assert set(SAPA(8).state_dict()) == {
        'norm_x.weight', 'norm_x.bias', 'norm_y.weight', 'norm_y.bias',
        'q.weight', 'q.bias', 'k.weight', 'k.bias'}
    g = SAPA(256, variant='G')
    assert {n.split('.')[0] for n in g.state_dict()} == {
        'norm_x', 'norm_y', 'qy', 'qx', 'gate', 'k'}
    assert g.qy.weight.shape == (32, 256)  # nn.Linear layout
    assert g.k.bias.abs().max() == 0 and g.k.weight.abs().max() <= 2  # timm-style cut at ±2
    assert 0.015 < g.k.weight.std().item() < 0.025
    assert torch.equal(g.norm_y.weight, torch.ones(256))


def test_float32_runs():
    m = _randomise(SAPA(8, variant='G', embedding_dim=4), std=0.2)
    x, guide = torch.randn(1, 8, 3, 5), torch.randn(1, 8, 6, 9)
    out = m(x, guide)
    assert out.dtype == torch.float32 and out.shape == (1, 8, 6, 9)
    want = sapa_ref(m.double(), x.double(), guide.double())
    torch.testing.assert_close(out.double(), want, rtol=1e-4, atol=1e-5)


def test_kernels_are_normalised_and_uniform_for_zero_query():
    m = SAPA(8, variant='B').double()
    with torch.no_grad():
        m.q.weight.zero_()
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    kern = m.kernels(x, torch.randn(1, 8, 6, 8, dtype=torch.float64))
    torch.testing.assert_close(kern, torch.full_like(kern, 1 / 25))


def test_repr_and_flags():
    assert SAPA.uses_guide is True
    r = repr(SAPA(16, variant='I'))
    assert "up_kernel=5, embedding_dim=16, variant='I', guide_channels=16" in r


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=0), '`in_channels`'),
    (dict(scale_factor=0), '`scale_factor`'),
    (dict(up_kernel=4), '`up_kernel` must be an odd int'),
    (dict(embedding_dim=0), '`embedding_dim`'),
    (dict(variant='b'), '`variant` must be one of'),
    (dict(guide_channels=0), '`guide_channels`'),
    (dict(variant='I', guide_channels=4), '`guide_channels` must equal `in_channels`=8'),
])
def test_bad_construction(kwargs, match):
    args = dict(in_channels=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SAPA(**args)


@pytest.mark.parametrize('x,guide,match', [
    (torch.randn(1, 8, 3, 4), None, '`guide` .* is required'),
    (torch.randn(8, 3, 4), torch.randn(1, 8, 6, 8), '`x` must be 4-D'),
    (torch.ones(1, 8, 3, 4, dtype=torch.int32), torch.randn(1, 8, 6, 8), '`x` must be a float'),
    (torch.randn(1, 6, 3, 4), torch.randn(1, 8, 6, 8), '`x` must have 8 channels'),
    (torch.randn(1, 8, 3, 4), torch.randn(1, 6, 6, 8), '`guide` must have 8 channels'),
    (torch.randn(1, 8, 3, 4), torch.randn(1, 8, 4, 8), r'`guide` must have shape .*H in \[5, 6\]'),
    (torch.randn(1, 8, 3, 4), torch.randn(1, 8, 6, 9), r'`guide` must have shape'),
    (torch.randn(1, 8, 3, 4), torch.randn(2, 8, 6, 8), r'`guide` must have shape \(B=1'),
    (torch.randn(1, 8, 3, 4), torch.randn(1, 8, 6, 8).double(), '`guide` must match'),
    (torch.randn(1, 8, 3, 4), 'guide', '`guide` must be a torch.Tensor'),
])
def test_bad_forward_input(x, guide, match):
    with pytest.raises(ValueError, match=match):
        SAPA(8)(x, guide)


@pytest.mark.parametrize('q_shape,key_shape,kw,match', [
    ((1, 8, 8, 4), (1, 4, 4, 4), dict(kernel_size=2), '`kernel_size`'),
    ((1, 8, 8, 4), (1, 4, 4, 4), dict(scale_factor=0), '`scale_factor`'),
    ((1, 8, 7, 4), (1, 4, 4, 4), {}, r'`query` must have shape .*\(1, 8, 8, 4\)'),
    ((1, 8, 8, 3), (1, 4, 4, 4), {}, '`query` must have shape'),
    ((8, 8, 4), (1, 4, 4, 4), {}, '`query` must be 4-D'),
    ((1, 8, 8, 4), (4, 4, 4), {}, '`key` must be 4-D'),
])
def test_local_similarity_bad_input(q_shape, key_shape, kw, match):
    args = dict(kernel_size=3, scale_factor=2)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        local_similarity(torch.randn(q_shape), torch.randn(key_shape), **args)


@pytest.mark.parametrize('scope', [None, 'mmdet', 'mmseg'])
def test_build_by_name(scope):
    import mmdet.registry  # noqa: F401  (registers the mmdet scope)
    import mmseg.registry  # noqa: F401
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        m = MODELS.build(dict(type='SAPA', in_channels=16, variant='G'))
    assert type(m) is SAPA and m.variant == 'G'
    assert m(torch.randn(1, 16, 3, 4), torch.randn(1, 16, 5, 8)).shape == (1, 16, 5, 8)
    if scope is not None:
        child = {'mmdet': mmdet.registry.MODELS, 'mmseg': mmseg.registry.MODELS}[scope]
        assert type(child.build(dict(type='SAPA', in_channels=16))) is SAPA
