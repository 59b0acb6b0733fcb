"""CARAFE upsampler: float64 reference, mmcv CARAFEPack state-dict compatibility, errors."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS, DefaultScope

from fade_mm.upsamplers.carafe import CARAFE
from reference import carafe_ref

F64 = torch.float64


def _randomise(m, std=1.0):
    # Default content-encoder init (std 0.001) gives near-uniform kernels, a weak test.
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, std)
    return m


def _conv_ref(x, weight, bias, dilation=1):
    """'Same' convolution through an explicit unfold: one dot product per output pixel."""
    k = weight.shape[-1]
    pad = (k - 1) * dilation // 2
    b, _, h, w = x.shape
    cols = F.unfold(x, k, dilation=dilation, padding=pad)  # (B, C*k*k, h*w)
    out = torch.einsum('ok,bkn->bon', weight.reshape(weight.shape[0], -1), cols)
    return (out + bias[None, :, None]).view(b, -1, h, w)


def carafe_upsampler_ref(m, x):
    """CARAFEPack's steps written out: compress, encode, s x s index mapping, softmax, loop."""
    s, k, g = m.scale_factor, m.up_kernel, m.up_group
    comp = _conv_ref(x, m.channel_compressor.weight, m.channel_compressor.bias)
    enc = m.content_encoder
    logits = _conv_ref(comp, enc.weight, enc.bias, m.encoder_dilation)
    b, _, h, w = logits.shape
    # kernels[b, ch, s*y + i, s*x + j] = logits[b, ch*s*s + i*s + j, y, x]
    kernels = torch.empty(b, g * k * k, s * h, s * w, dtype=x.dtype)
    for ch in range(g * k * k):
        for i in range(s):
            for j in range(s):
                kernels[:, ch, i::s, j::s] = logits[:, ch * s * s + i * s + j]
    kernels = kernels.view(b, g, k * k, s * h, s * w).softmax(2).view_as(kernels)
    return carafe_ref(x, kernels, k, g, s)


CONFIGS = [
    dict(),
    dict(scale_factor=3, up_kernel=3, up_group=2, encoder_dilation=2),
    dict(up_kernel=1, up_group=4, encoder_kernel=1, compressed_channels=5),
    dict(scale_factor=4, up_kernel=7, encoder_kernel=5, compressed_channels=6),
]


@pytest.mark.parametrize('cfg', CONFIGS)
def test_matches_float64_reference(cfg):
    m = _randomise(CARAFE(8, **cfg), 0.3).double()
    x = torch.randn(2, 8, 5, 4, dtype=F64)
    out = m(x)
    s = m.scale_factor
    assert out.shape == (2, 8, 5 * s, 4 * s)
    with torch.no_grad():
        torch.testing.assert_close(out, carafe_upsampler_ref(m, x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('cfg', CONFIGS)
def test_loads_mmcv_carafepack_and_matches_its_steps(cfg):
    from mmcv.ops import CARAFEPack
    mm_cfg = {k: v for k, v in cfg.items()}
    pack = _randomise(CARAFEPack(channels=8, scale_factor=mm_cfg.pop('scale_factor', 2),
                                 **mm_cfg), 0.3).double()
    ours = CARAFE(8, **cfg).double()
    ours.load_state_dict(pack.state_dict(), strict=True)
    x = torch.randn(2, 8, 5, 4, dtype=F64)
    with torch.no_grad():
        # mmcv's own kernel prediction and normaliser run on CPU; only its op is CUDA-only.
        mask = pack.kernel_normalizer(pack.content_encoder(pack.channel_compressor(x)))
        want = carafe_ref(x, mask, pack.up_kernel, pack.up_group, pack.scale_factor)
        torch.testing.assert_close(ours(x), want, rtol=1e-10, atol=1e-12)
        logits = ours.content_encoder(ours.channel_compressor(x))
        torch.testing.assert_close(ours.kernel_normalizer(logits), mask, rtol=0, atol=1e-15)


def test_loads_default_mmcv_carafepack_strict():
    from mmcv.ops import CARAFEPack
    pack = CARAFEPack(channels=16, scale_factor=2)
    ours = CARAFE(16)
    result = ours.load_state_dict(pack.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for name, p in ours.state_dict().items():
        assert torch.equal(p, pack.state_dict()[name])


def test_same_init_as_mmcv():
    from mmcv.ops import CARAFEPack
    torch.manual_seed(3)
    pack = CARAFEPack(channels=32, scale_factor=2)
    torch.manual_seed(3)
    ours = CARAFE(32)
    # Same layers built and initialised in the same order: identical random draws.
    for (n1, p1), (n2, p2) in zip(pack.state_dict().items(), ours.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert torch.count_nonzero(ours.channel_compressor.bias) == 0
    assert torch.count_nonzero(ours.content_encoder.bias) == 0
    assert ours.content_encoder.weight.std().item() == pytest.approx(0.001, rel=0.05)
    bound = (6 / (32 + 64)) ** 0.5
    assert 0.9 * bound < ours.channel_compressor.weight.abs().max() <= bound


def test_param_counts():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(CARAFE(256)) == 16_448 + 57_700 == 74_148
    assert count(CARAFE(256, up_group=2)) == 16_448 + 64 * 200 * 9 + 200
    assert count(CARAFE(256, scale_factor=4, up_kernel=3)) == 16_448 + 64 * 144 * 9 + 144


def test_default_init_starts_as_box_filter():
    # Near-zero logits: every output pixel is close to the mean of its 5x5 source window.
    m = CARAFE(4).double()
    x = torch.randn(1, 4, 6, 6, dtype=F64)
    box = F.avg_pool2d(x, 5, 1, 2, count_include_pad=True)
    want = box.repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(m(x), want, rtol=0, atol=0.05)


def test_gradcheck():
    m = _randomise(CARAFE(4, up_kernel=3, compressed_channels=2), 0.5).double()
    names = [n for n, _ in m.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in m.parameters())
    x = torch.randn(1, 4, 3, 2, dtype=F64, requires_grad=True)
    guide = torch.empty(1, 4, 5, 4, dtype=F64)  # odd height: the crop is differentiated too

    def fn(inp, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (inp, guide))

    assert torch.autograd.gradcheck(fn, (x, *params))


@pytest.mark.parametrize('big', [(9, 7), (10, 8), (9, 8)])
def test_guide_crops_the_full_result(big):
    m = _randomise(CARAFE(6, up_group=2), 0.3).double()
    x = torch.randn(2, 6, 5, 4, dtype=F64)
    full = m(x)
    out = m(x, torch.randn(2, 3, *big, dtype=F64))
    assert out.shape == (2, 6, *big)
    torch.testing.assert_close(out, full[:, :, :big[0], :big[1]], rtol=0, atol=0)
    torch.testing.assert_close(m(x, torch.zeros(2, 6, *big, dtype=F64)), out, rtol=0, atol=0)


def test_interface_and_float32():
    assert CARAFE.uses_guide is False
    m = CARAFE(8, scale_factor=3, up_kernel=3, up_group=2)
    text = repr(m)
    for opt in ('in_channels=8', 'scale_factor=3', 'up_kernel=3', 'up_group=2',
                'encoder_kernel=3', 'encoder_dilation=1', 'compressed_channels=64'):
        assert opt in text
    x = torch.randn(1, 8, 3, 4, requires_grad=True)
    out = m(x)
    assert out.shape == (1, 8, 9, 12) and out.dtype == torch.float32
    out.square().sum().backward()
    assert x.grad is not None and m.content_encoder.weight.grad is not None


def test_bad_inputs_raise_naming_the_argument():
    m = CARAFE(4)
    x = torch.randn(1, 4, 5, 4)
    with pytest.raises(ValueError, match='`x` must be 4-D'):
        m(torch.randn(1, 4, 5, 4, 1))
    with pytest.raises(ValueError, match='`x` must have 4 channels'):
        m(torch.randn(1, 5, 5, 4))
    with pytest.raises(ValueError, match='`x` must be a floating-point'):
        m(torch.ones(1, 4, 5, 4, dtype=torch.uint8))
    for bad in ((11, 8), (8, 8), (10, 9), (10, 6)):
        with pytest.raises(ValueError, match=r'`guide` must have shape .*ceil\(W/2\)=4'):
            m(x, torch.randn(1, 4, *bad))
    with pytest.raises(ValueError, match='`guide` must be a floating-point'):
        m(x, torch.ones(1, 4, 10, 8, dtype=torch.int64))


@pytest.mark.parametrize('kwargs,arg', [
    (dict(up_kernel=4), 'up_kernel'), (dict(up_kernel=0), 'up_kernel'),
    (dict(encoder_kernel=2), 'encoder_kernel'), (dict(up_group=3), 'up_group'),
    (dict(up_group=0), 'up_group'), (dict(scale_factor=0), 'scale_factor'),
    (dict(encoder_dilation=0), 'encoder_dilation'),
    (dict(compressed_channels=0), 'compressed_channels'), (dict(in_channels=0), 'in_channels'),
])
def test_bad_constructor_args(kwargs, arg):
    kwargs = {'in_channels': 4, **kwargs}
    with pytest.raises(ValueError, match=f'CARAFE: `{arg}` must'):
        CARAFE(**kwargs)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_build_by_name_under_scope(scope):
    if scope == 'mmdet':
        import mmdet.registry as reg
    else:
        import mmseg.registry as reg
    with DefaultScope.overwrite_default_scope(scope):
        for registry in (MODELS, reg.MODELS):
            m = registry.build(dict(type='CARAFE', in_channels=16))
            assert type(m) is CARAFE
            assert m(torch.randn(1, 16, 3, 3)).shape == (1, 16, 6, 6)


def test_mmcv_lowercase_carafe_untouched():
    import mmcv.ops  # noqa: F401  registers mmcv's 'carafe'
    assert MODELS.get('carafe').__name__ == 'CARAFEPack'
    assert MODELS.get('CARAFE') is CARAFE
