import pytest
import torch

from fade_mm.ops import semi_shift_conv
from reference import semi_shift_ref


@pytest.mark.parametrize('impl', ['l2h', 'h2l'])
@pytest.mark.parametrize('s,big_h,big_w', [(2, 8, 10), (2, 7, 9), (2, 5, 12), (3, 9, 7),
                                           (4, 13, 8)])
@pytest.mark.parametrize('groups,kc', [(1, 3), (6, 3), (1, 5)])
def test_matches_formula(impl, s, big_h, big_w, groups, kc):
    d, out_c = 6, 12
    enc = torch.randn(2, d, big_h, big_w, dtype=torch.float64)
    dec = torch.randn(2, d, -(-big_h // s), -(-big_w // s), dtype=torch.float64)
    weight = torch.randn(out_c, d // groups, kc, kc, dtype=torch.float64)
    bias = torch.randn(out_c, dtype=torch.float64)
    got = semi_shift_conv(enc, dec, weight, bias, s, impl, groups)
    torch.testing.assert_close(got, semi_shift_ref(enc, dec, weight, bias, s, groups))


def test_h2l_equals_l2h_including_gradients():
    enc = torch.randn(2, 8, 11, 14, dtype=torch.float64, requires_grad=True)
    dec = torch.randn(2, 8, 6, 7, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(25, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(25, dtype=torch.float64, requires_grad=True)
    grads = []
    for impl in ('l2h', 'h2l'):
        out = semi_shift_conv(enc, dec, weight, bias, 2, impl)
        grads.append((out, *torch.autograd.grad(out.square().sum(), (enc, dec, weight, bias))))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_bad_sizes_and_impl():
    enc, w = torch.randn(1, 4, 8, 8), torch.randn(9, 4, 3, 3)
    with pytest.raises(ValueError, match=r'`dec` must be .*got \(1, 4, 5, 4\)'):
        semi_shift_conv(enc, torch.randn(1, 4, 5, 4), w)
    with pytest.raises(ValueError, match='`impl` must be one of'):
        semi_shift_conv(enc, torch.randn(1, 4, 4, 4), w, impl='fast')
