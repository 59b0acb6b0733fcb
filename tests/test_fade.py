import math

import pytest
import torch
import torch.nn.functional as F

from fade_mm.upsamplers import FADE, FADELite
from reference import carafe_ref, semi_shift_ref


def _count(m):
    return sum(p.numel() for p in m.parameters())


def _pair(c=8, h=5, w=6, big_h=None, big_w=None, dtype=torch.float64):
    big_h = 2 * h if big_h is None else big_h
    big_w = 2 * w if big_w is None else big_w
    return torch.randn(2, c, h, w, dtype=dtype), torch.randn(2, c, big_h, big_w, dtype=dtype)


def test_published_parameter_counts():
    assert _count(FADE(256)) == 47_514
    assert _count(FADELite(256)) == 13_332
    # no gate: the 257 parameters of the gate conv go away
    assert _count(FADE(256, fusion='none')) == 47_514 - 257


def _up_crop(t, s, big_h, big_w):
    return t.repeat_interleave(s, 2).repeat_interleave(s, 3)[:, :, :big_h, :big_w]


def _fade_ref(m, x, g):
    """FADE written from the paper's equations with the float64 references."""
    s, k = m.scale_factor, m.up_kernel
    big_h, big_w = g.shape[-2:]
    e = F.conv2d(g, m.compressor_enc.weight, m.compressor_enc.bias)
    q = F.conv2d(x, m.compressor_dec.weight)
    ce = m.content_encoder
    logits = semi_shift_ref(e, q, ce.weight, ce.bias, s, ce.groups)
    kern = logits.softmax(1)
    kern = F.pad(kern, (0, s * x.shape[-1] - big_w, 0, s * x.shape[-2] - big_h))
    u = carafe_ref(x, kern, k, 1, s)[:, :, :big_h, :big_w]
    gate = torch.sigmoid(_up_crop(F.conv2d(x, m.gate.weight, m.gate.bias), s, big_h, big_w))
    return gate * g + (1 - gate) * u


@pytest.mark.parametrize('cls', [FADE, FADELite])
@pytest.mark.parametrize('impl', ['l2h', 'h2l'])
@pytest.mark.parametrize('size', [(5, 6, 10, 12), (5, 6, 9, 11), (4, 3, 7, 6)])
def test_forward_matches_paper_equations(cls, impl, size):
    h, w, big_h, big_w = size
    m = cls(8, semi_shift_impl=impl).double()
    for p in m.parameters():  # non-trivial biases too
        torch.nn.init.normal_(p, std=0.3)
    x, g = _pair(8, h, w, big_h, big_w)
    out = m(x, g)
    assert out.shape == g.shape
    torch.testing.assert_close(out, _fade_ref(m, x, g))


@pytest.mark.parametrize('cls', [FADE, FADELite])
def test_h2l_equals_l2h_module(cls):
    m = cls(8).double()
    x, g = _pair(8, 6, 5, 11, 10)
    x.requires_grad_()
    outs = []
    for impl in ('l2h', 'h2l'):
        m.semi_shift_impl = impl
        m.zero_grad()
        out = m(x, g)
        gx, = torch.autograd.grad(out.square().sum(), x)
        outs.append((out, gx))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])


def test_scale_three_and_other_kernel_sizes():
    m = FADE(8, scale_factor=3, up_kernel=3, embedding_dim=16).double()
    x, g = _pair(8, 4, 3, 11, 8)
    torch.testing.assert_close(m(x, g), _fade_ref(m, x, g))


def test_gradcheck_module():
    m = FADE(4, embedding_dim=4, up_kernel=3).double()
    x, g = _pair(4, 3, 3, 5, 6)
    x.requires_grad_()
    g.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: m(a, b), (x, g))


def test_ablation_decoder_only_kernels_ignore_guide():
    m = FADE(8, kernel_source='decoder', fusion='none').double()
    x, g = _pair()
    torch.testing.assert_close(m(x, g), m(x, torch.randn_like(g)), rtol=0, atol=0)
    assert not hasattr(m, 'compressor_enc')
    # CARAFE-like: s*s*k*k channels at low resolution, pixel-shuffled -> one kernel per
    # sub-pixel, so the result is not plain nearest smoothing
    assert m.content_encoder.out_channels == 4 * 25


def test_ablation_encoder_only_kernels_ignore_decoder():
    m = FADE(8, kernel_source='encoder').double()
    x, g = _pair()
    torch.testing.assert_close(m.kernel_logits(x, g), m.kernel_logits(torch.randn_like(x), g))
    assert not hasattr(m, 'compressor_dec')


def test_ablation_naive_generator_is_conv_of_concat():
    m = FADE(8, kernel_generator='naive').double()
    x, g = _pair(8, 5, 6, 9, 12)
    e = m.compressor_enc(g)
    q_up = _up_crop(m.compressor_dec(x), 2, 9, 12)
    want = F.conv2d(torch.cat([e, q_up], 1), m.content_encoder.weight,
                    m.content_encoder.bias, padding=1)
    torch.testing.assert_close(m.kernel_logits(x, g), want)
    assert m.content_encoder.in_channels == 128
    # and differs from the semi-shift generator with the same weights on each half
    ss = FADE(8).double()
    ss.compressor_enc.load_state_dict(m.compressor_enc.state_dict())
    ss.compressor_dec.load_state_dict(m.compressor_dec.state_dict())
    assert not torch.allclose(ss.kernel_logits(x, g), want)


def test_fusions_and_gate():
    gated = FADE(8).double()
    x, g = _pair(8, 5, 6, 9, 11)
    plain = FADE(8, fusion='none').double()
    skip = FADE(8, fusion='skip').double()
    sd = {k: v for k, v in gated.state_dict().items() if not k.startswith('gate.')}
    plain.load_state_dict(sd)
    skip.load_state_dict(sd)
    u = plain(x, g)
    torch.testing.assert_close(skip(x, g), u + g)
    gmap = gated.gate_map(x, 9, 11)
    torch.testing.assert_close(gated(x, g), gmap * g + (1 - gmap) * u)
    # the gate weights matter only when the gate is on
    with torch.no_grad():
        gated.gate.bias.fill_(50.0)
    torch.testing.assert_close(gated(x, g), g)
    with torch.no_grad():
        gated.gate.bias.fill_(-50.0)
    torch.testing.assert_close(gated(x, g), u)
    assert not any(k.startswith('gate') for k in plain.state_dict())


def test_xavier_uniform_init():
    m = FADE(256)
    for conv in (m.compressor_enc, m.compressor_dec, m.content_encoder, m.gate):
        fan_in = conv.weight[0].numel()
        fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert conv.weight.abs().max() <= bound
        assert conv.weight.abs().max() > 0.8 * bound
        if conv.bias is not None:
            assert torch.count_nonzero(conv.bias) == 0


def test_float32_close_to_float64():
    m = FADE(8)
    x, g = _pair(dtype=torch.float32)
    want = m.double()(x.double(), g.double())
    torch.testing.assert_close(m.float()(x, g).double(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('cls', [FADE, FADELite])
def test_repr_shows_options(cls):
    r = repr(cls(16, fusion='skip', semi_shift_impl='h2l'))
    for part in ('in_channels=16', "fusion='skip'", "semi_shift_impl='h2l'", 'up_kernel=5',
                 'scale_factor=2'):
        assert part in r


@pytest.mark.parametrize('x,g,match', [
    (torch.rand(8, 5, 6), torch.rand(2, 8, 10, 12), r'`x` must be 4-D .*got shape \(8, 5, 6\)'),
    (torch.rand(2, 4, 5, 6), torch.rand(2, 8, 10, 12), r'`x` must have 8 channels'),
    (torch.rand(2, 8, 5, 6), torch.rand(2, 4, 10, 12), r'`guide` must have 8 channels'),
    (torch.rand(2, 8, 5, 6), torch.rand(2, 8, 12, 12), r'`guide` must have shape .*H in \[9, 10\]'
                                                       r'.*got \(2, 8, 12, 12\)'),
    (torch.rand(2, 8, 5, 6), torch.rand(2, 8, 8, 12), r'`guide` must have shape'),
    (torch.rand(2, 8, 5, 6), torch.rand(1, 8, 10, 12), r'`guide` must have shape \(B=2'),
    (torch.ones(2, 8, 5, 6, dtype=torch.int64), torch.rand(2, 8, 10, 12), '`x` must be a float'),
    (torch.rand(2, 8, 5, 6), torch.ones(2, 8, 10, 12, dtype=torch.uint8), '`guide` must be a fl'),
    (torch.rand(2, 8, 5, 6), torch.rand(2, 8, 10, 12).double(), '`guide` must match `x`'),
    (torch.rand(2, 8, 5, 6), None, '`guide` .* is required'),
])
def test_bad_inputs(x, g, match):
    with pytest.raises(ValueError, match=match):
        FADE(8)(x, g)


@pytest.mark.parametrize('kwargs,match', [
    (dict(up_kernel=4), '`up_kernel` must be an odd int'),
    (dict(encoder_kernel=2), '`encoder_kernel` must be an odd int'),
    (dict(scale_factor=0), '`scale_factor`'),
    (dict(kernel_source='both_ways'), '`kernel_source` must be one of'),
    (dict(fusion='concat'), '`fusion` must be one of'),
    (dict(semi_shift_impl='x'), '`semi_shift_impl` must be one of'),
    (dict(kernel_source='encoder', kernel_generator='semi_shift'), 'semi_shift.* needs'),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FADE(8, **kwargs)
