"""Unguided baseline upsamplers against float64 references written from their formulas."""
import pytest
import torch
from mmengine.registry import MODELS, DefaultScope

from fade_mm.upsamplers.bilinear import BilinearUpsample
from fade_mm.upsamplers.deconv import DeconvUpsample
from fade_mm.upsamplers.nearest import NearestUpsample
from fade_mm.upsamplers.pixel_shuffle import PixelShuffleUpsample

F64 = torch.float64
ALL = [NearestUpsample, BilinearUpsample, DeconvUpsample, PixelShuffleUpsample]


def _n_params(m):
    return sum(p.numel() for p in m.parameters())


def _randomise(m):
    # Non-zero biases so that bias handling is tested too.
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    return m


# ---------------------------------------------------------------- references
def _linear_weights(n_in, n_out, s, align_corners):
    """(n_out, n_in) matrix of 1-D linear interpolation, from the sampling formula."""
    a = torch.zeros(n_out, n_in, dtype=F64)
    for o in range(n_out):
        if align_corners:
            src = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((o + 0.5) / s - 0.5, 0.0)
        i0 = min(int(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        t = src - i0
        a[o, i0] += 1 - t
        a[o, i1] += t
    return a


def bilinear_ref(x, s, align_corners=False):
    h, w = x.shape[-2:]
    ah = _linear_weights(h, s * h, s, align_corners)
    aw = _linear_weights(w, s * w, s, align_corners)
    return torch.einsum('Yy,bcyx,Xx->bcYX', ah, x, aw)


def deconv_ref(x, weight, bias, s, k, p):
    """Scatter a (C_in, C_out, k, k) stamp per input pixel onto a canvas, then cut padding."""
    b, c, h, w = x.shape
    canvas = torch.zeros(b, weight.shape[1], (h - 1) * s + k, (w - 1) * s + k, dtype=x.dtype)
    for y in range(h):
        for xx in range(w):
            canvas[:, :, s * y:s * y + k, s * xx:s * xx + k] += torch.einsum(
                'bc,cokl->bokl', x[:, :, y, xx], weight)
    return canvas[:, :, p:p + s * h, p:p + s * w] + bias[None, :, None, None]


def conv_ref(x, weight, bias):
    """Zero-padded 'same' convolution by an explicit loop over the kernel taps."""
    k = weight.shape[-1]
    r = k // 2
    h, w = x.shape[-2:]
    xp = torch.nn.functional.pad(x, (r, r, r, r))
    out = bias[None, :, None, None].expand(x.shape[0], -1, h, w).clone()
    for i in range(k):
        for j in range(k):
            out += torch.einsum('oc,bcyx->boyx', weight[:, :, i, j], xp[:, :, i:i + h, j:j + w])
    return out


def pixel_shuffle_ref(t, s):
    """out[b, c, s*y + i, s*x + j] = t[b, c*s*s + i*s + j, y, x]."""
    b, cs, h, w = t.shape
    c = cs // (s * s)
    out = torch.empty(b, c, s * h, s * w, dtype=t.dtype)
    for ch in range(c):
        for i in range(s):
            for j in range(s):
                out[:, ch, i::s, j::s] = t[:, ch * s * s + i * s + j]
    return out


# ---------------------------------------------------------------- formulas
@pytest.mark.parametrize('s', [1, 2, 3])
def test_nearest_is_repeat_interleave(s):
    x = torch.randn(2, 3, 5, 4, dtype=F64)
    out = NearestUpsample(3, s)(x)
    assert out.shape == (2, 3, 5 * s, 4 * s)
    torch.testing.assert_close(out, x.repeat_interleave(s, 2).repeat_interleave(s, 3),
                               rtol=0, atol=0)


@pytest.mark.parametrize('s', [1, 2, 3, 4])
@pytest.mark.parametrize('align_corners', [False, True])
def test_bilinear_formula(s, align_corners):
    x = torch.randn(2, 3, 5, 4, dtype=F64)
    out = BilinearUpsample(3, s, align_corners=align_corners)(x)
    torch.testing.assert_close(out, bilinear_ref(x, s, align_corners), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize('s,k,p', [(1, 1, 0), (2, 4, 1), (3, 5, 1), (4, 8, 2)])
def test_deconv_scatter(s, k, p):
    m = _randomise(DeconvUpsample(3, s)).double()
    assert m.deconv.kernel_size == (k, k) and m.deconv.padding == (p, p)
    x = torch.randn(2, 3, 5, 4, dtype=F64)
    out = m(x)
    assert out.shape == (2, 3, 5 * s, 4 * s)
    want = deconv_ref(x, m.deconv.weight.detach(), m.deconv.bias.detach(), s, k, p)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('s,kernel', [(2, 3), (3, 1), (2, 5)])
def test_pixel_shuffle_index_mapping(s, kernel):
    m = _randomise(PixelShuffleUpsample(3, s, upsample_kernel=kernel)).double()
    x = torch.randn(2, 3, 5, 4, dtype=F64)
    conv = m.upsample_conv
    want = pixel_shuffle_ref(conv_ref(x, conv.weight.detach(), conv.bias.detach()), s)
    torch.testing.assert_close(m(x), want, rtol=1e-12, atol=1e-12)


def test_pixel_shuffle_loads_mmcv_pack():
    from mmcv.cnn.bricks.upsample import PixelShufflePack
    pack = _randomise(PixelShufflePack(4, 4, 2, 3)).double()
    ours = PixelShuffleUpsample(4, 2, upsample_kernel=3).double()
    ours.load_state_dict(pack.state_dict(), strict=True)
    x = torch.randn(1, 4, 3, 5, dtype=F64)
    torch.testing.assert_close(ours(x), pack(x), rtol=0, atol=0)


def test_param_counts_at_256():
    assert _n_params(NearestUpsample(256)) == 0
    assert _n_params(BilinearUpsample(256)) == 0
    assert _n_params(DeconvUpsample(256)) == 256 * 256 * 16 + 256 == 1_048_832
    assert _n_params(PixelShuffleUpsample(256)) == 256 * 1024 * 9 + 1024 == 2_360_320


def test_init_xavier_zero_bias():
    for layer in (DeconvUpsample(8).deconv, PixelShuffleUpsample(8).upsample_conv):
        assert torch.count_nonzero(layer.bias) == 0
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(layer.weight)
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert 0.9 * bound < layer.weight.abs().max() <= bound


# ---------------------------------------------------------------- guide handling
@pytest.mark.parametrize('cls', ALL)
@pytest.mark.parametrize('big', [(9, 7), (10, 8), (9, 8), (10, 7)])
def test_guide_crops_the_full_result(cls, big):
    m = _randomise(cls(3)).double() if _n_params(cls(3)) else cls(3)
    x = torch.randn(2, 3, 5, 4, dtype=F64)
    full = m(x)
    # The guide's values and channel count do not matter, only its size.
    g1 = torch.randn(2, 7, *big, dtype=F64)
    g2 = torch.zeros(2, 3, *big, dtype=F64)
    out = m(x, g1)
    assert out.shape == (2, 3, *big)
    torch.testing.assert_close(out, full[:, :, :big[0], :big[1]], rtol=0, atol=0)
    torch.testing.assert_close(m(x, g2), out, rtol=0, atol=0)


@pytest.mark.parametrize('cls', ALL)
def test_interface(cls):
    assert cls.uses_guide is False
    m = cls(6, scale_factor=3)
    assert 'in_channels=6' in repr(m) and 'scale_factor=3' in repr(m)
    x = torch.randn(1, 6, 2, 3, requires_grad=True)
    out = m(x)
    assert out.shape == (1, 6, 6, 9) and out.dtype == torch.float32
    out.sum().backward()
    assert x.grad is not None


def test_extra_repr_options():
    assert 'align_corners=True' in repr(BilinearUpsample(4, align_corners=True))
    assert 'upsample_kernel=5' in repr(PixelShuffleUpsample(4, upsample_kernel=5))


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize('cls', ALL)
def test_bad_inputs_raise_naming_the_argument(cls):
    m = cls(4)
    x = torch.randn(1, 4, 5, 4)
    with pytest.raises(ValueError, match='`x` must be 4-D'):
        m(torch.randn(4, 5, 4))
    with pytest.raises(ValueError, match='`x` must have 4 channels'):
        m(torch.randn(1, 3, 5, 4))
    with pytest.raises(ValueError, match='`x` must be a floating-point'):
        m(torch.ones(1, 4, 5, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match='`x` must be a torch.Tensor'):
        m(x.numpy())
    for bad in ((11, 8), (8, 8), (10, 6), (10, 9)):
        with pytest.raises(ValueError, match=r'`guide` must have shape .*ceil\(H/2\)=5'):
            m(x, torch.randn(1, 4, *bad))
    with pytest.raises(ValueError, match='`guide` must have shape'):
        m(x, torch.randn(2, 4, 10, 8))  # batch mismatch
    with pytest.raises(ValueError, match='`guide` must be 4-D'):
        m(x, torch.randn(10, 8))
    with pytest.raises(ValueError, match='`guide` must be a floating-point'):
        m(x, torch.ones(1, 4, 10, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match='`guide` must match `x` in dtype'):
        m(x, torch.randn(1, 4, 10, 8, dtype=F64))


@pytest.mark.parametrize('cls', ALL)
def test_bad_constructor_args(cls):
    with pytest.raises(ValueError, match='`in_channels` must be an int >= 1'):
        cls(0)
    with pytest.raises(ValueError, match='`scale_factor` must be an int >= 1'):
        cls(4, scale_factor=0)
    with pytest.raises(ValueError, match='`scale_factor` must be an int >= 1'):
        cls(4, scale_factor=2.0)


def test_bad_options():
    with pytest.raises(ValueError, match='`upsample_kernel` must be an odd int'):
        PixelShuffleUpsample(4, upsample_kernel=2)
    with pytest.raises(ValueError, match='`align_corners` must be one of'):
        BilinearUpsample(4, align_corners='yes')


# ---------------------------------------------------------------- registry
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('cls', ALL)
def test_build_by_name_under_scope(scope, cls):
    if scope == 'mmdet':
        import mmdet.registry as reg
    else:
        import mmseg.registry as reg
    with DefaultScope.overwrite_default_scope(scope):
        for registry in (MODELS, reg.MODELS):
            m = registry.build(dict(type=cls.__name__, in_channels=4, scale_factor=2))
            assert type(m) is cls
    assert MODELS.get(cls.__name__) is cls


def test_mmcv_lowercase_names_untouched():
    import mmcv.cnn  # noqa: F401  registers mmcv's upsample layers
    import torch.nn as nn
    assert MODELS.get('nearest') is nn.Upsample
    assert issubclass(MODELS.get('deconv'), nn.ConvTranspose2d)
    assert MODELS.get('pixel_shuffle').__name__ == 'PixelShufflePack'
