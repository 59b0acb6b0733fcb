import importlib

import pytest
import torch
import torch.nn.functional as F

from fade_mm.ops import carafe, carafe_output_flops
from fade_mm.profiling import allocation_profile, count_ops
from reference import carafe_ref

carafe_mod = importlib.import_module('fade_mm.ops.carafe')  # the module, not the function


def _inputs(b, c, h, w, k, g, s, dtype=torch.float64, softmax=False):
    x = torch.randn(b, c, h, w, dtype=dtype)
    m = torch.randn(b, g * k * k, s * h, s * w, dtype=dtype)
    if softmax:
        m = m.view(b, g, k * k, s * h, s * w).softmax(2).view_as(m)
    return x, m


@pytest.mark.parametrize('k', [1, 3, 5, 7])
@pytest.mark.parametrize('s', [2, 3, 4])
@pytest.mark.parametrize('g', [1, 2, 4])
def test_matches_loop_reference(k, s, g):
    x, m = _inputs(2, 8, 5, 3, k, g, s)  # odd, non-square
    out = carafe(x, m, k, g, s)
    assert out.shape == (2, 8, 5 * s, 3 * s)
    torch.testing.assert_close(out, carafe_ref(x, m, k, g, s), rtol=1e-12, atol=1e-12)


def test_scale_one_and_float32():
    x, m = _inputs(1, 4, 6, 7, 3, 1, 1)
    torch.testing.assert_close(carafe(x, m, 3, 1, 1), carafe_ref(x, m, 3, 1, 1))
    x32, m32 = x.float(), m.float()
    out32 = carafe(x32, m32, 3, 1, 1)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), carafe_ref(x, m, 3, 1, 1), rtol=1e-4, atol=1e-5)


def test_partition_of_unity_reproduces_nearest():
    # A one-hot kernel on the centre tap is nearest-neighbour upsampling.
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    m = torch.zeros(1, 9, 8, 10, dtype=torch.float64)
    m[:, 4] = 1
    torch.testing.assert_close(carafe(x, m, 3, 1, 2),
                               x.repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_layout_independent():
    x, m = _inputs(2, 8, 6, 5, 5, 2, 2)
    want = carafe(x, m, 5, 2, 2)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    m_nc = m.transpose(2, 3).contiguous().transpose(2, 3)  # non-contiguous strides
    torch.testing.assert_close(carafe(x_cl, m_nc, 5, 2, 2), want, rtol=0, atol=0)


@pytest.mark.parametrize('k,g,s', [(3, 2, 2), pytest.param(5, 1, 3, marks=pytest.mark.slow),
                                   (1, 1, 2), (3, 1, 1)])
def test_gradcheck(k, g, s):
    x, m = _inputs(2, 4, 3, 4, k, g, s)
    x.requires_grad_()
    m.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: carafe(a, b, k, g, s), (x, m))


def test_grad_of_one_input_only_and_sum_gradient():
    # sum() hands backward an expanded (zero-stride) gradient.
    x, m = _inputs(1, 4, 5, 5, 3, 1, 2)
    x.requires_grad_()
    carafe(x, m, 3, 1, 2).sum().backward()
    xr = x.detach().clone().requires_grad_()
    carafe_ref(xr, m, 3, 1, 2).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


def _naive(x, m, k, s):
    """The official pure-PyTorch formulation: unfold, repeat to full resolution, einsum."""
    b, c, h, w = x.shape
    cols = F.unfold(x, k, padding=(k - 1) // 2).view(b, c, k * k, h, w).transpose(1, 2)
    cols = cols.repeat_interleave(s, 3).repeat_interleave(s, 4)
    return torch.einsum('bkchw,bkhw->bchw', cols, m)


@pytest.mark.slow
def test_no_full_resolution_unfold():
    """What forward + backward allocate: peak <= 1/8 of the naive formulation's, and no single
    buffer near the k*k*C*sH*sW of a full-resolution unfold. Measured on real allocations
    (the training path reads its windows through strided views, which allocate nothing)."""
    b, c, h, w, k, s = 2, 64, 32, 32, 5, 2
    x, m = _inputs(b, c, h, w, k, 1, s, dtype=torch.float32, softmax=True)
    x.requires_grad_()
    m.requires_grad_()
    peak, largest = allocation_profile(lambda: carafe(x, m, k, 1, s).sum().backward())
    naive_peak, _ = allocation_profile(lambda: _naive(x, m, k, s).sum().backward())
    full_unfold = b * k * k * c * s * h * s * w * 4  # bytes, float32
    assert largest <= full_unfold // 8, (largest, full_unfold)
    assert peak <= naive_peak // 8, (peak, naive_peak)


@pytest.mark.parametrize('budget', [1, 3000, 20000, 10**9])  # bands of 1 row .. whole batch
@pytest.mark.parametrize('b,c,h,w,k,g,s', [(3, 4, 7, 5, 5, 2, 2), (2, 6, 9, 4, 3, 3, 3),
                                            (1, 2, 5, 6, 7, 1, 2), (2, 2, 3, 3, 3, 1, 1)])
def test_blocks_of_rows_and_maps_match_reference(monkeypatch, budget, b, c, h, w, k, g, s):
    """The training path works block by block (bands of rows, or several maps at once): every
    split gives the loop reference's values and gradients."""
    monkeypatch.setattr(carafe_mod, 'BLOCK_BYTES', budget)
    x, m = _inputs(b, c, h, w, k, g, s)
    x.requires_grad_()
    m.requires_grad_()
    out = carafe(x, m, k, g, s)
    go = torch.randn_like(out)
    want = carafe_ref(x, m, k, g, s)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    grads = zip(torch.autograd.grad(out, (x, m), go), torch.autograd.grad(want, (x, m), go))
    for got, ref in grads:
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_kernel_calls_do_not_grow_with_the_image():
    """A handful of large batched products, not one per image row: the number of kernel
    calls of forward + backward is the same at 12x12 and 40x40 (one block each) and small."""
    calls = []
    for n in (12, 40):
        x, m = _inputs(2, 16, n, n, 5, 1, 2, dtype=torch.float32, softmax=True)
        x.requires_grad_()
        m.requires_grad_()
        ops = count_ops(lambda: carafe(x, m, 5, 1, 2).sum().backward())
        calls.append((sum(ops.values()), ops['bmm.default'] + ops['baddbmm_.default']))
    assert calls[0] == calls[1], calls
    assert calls[0][0] <= 80 and calls[0][1] <= 12, calls


@pytest.mark.parametrize('bad,match', [
    (dict(kernel_size=4), '`kernel_size` must be an odd int'),
    (dict(kernel_size=0), '`kernel_size`'),
    (dict(scale_factor=0), '`scale_factor`'),
    (dict(scale_factor=2.0), '`scale_factor`'),
    (dict(group_size=3), '`group_size` must divide the 8 channels'),
    (dict(masks=torch.rand(2, 25, 10, 12)), r'`masks` must have shape .*\(2, 25, 10, 10\)'),
    (dict(masks=torch.rand(2, 9, 10, 10)), r'`masks` must have shape .*got \(2, 9, 10, 10\)'),
    (dict(features=torch.rand(8, 5, 5)), r'`features` must be 4-D .*got shape \(8, 5, 5\)'),
    (dict(features=torch.ones(2, 8, 5, 5, dtype=torch.long)), '`features` must be a floating'),
    (dict(masks=torch.rand(2, 25, 10, 10, dtype=torch.float64)), '`masks` must match'),
])
def test_bad_input(bad, match):
    args = dict(features=torch.rand(2, 8, 5, 5), masks=torch.rand(2, 25, 10, 10),
                kernel_size=5, group_size=1, scale_factor=2)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        carafe(**args)


def test_flops_formula():
    assert carafe_output_flops(256, 128, 128, 5) == 2 * 25 * 256 * 128 * 128


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_matches_cpu_and_mmcv():
    x, m = _inputs(2, 16, 9, 7, 5, 2, 2, dtype=torch.float32, softmax=True)
    want = carafe(x, m, 5, 2, 2)
    xc, mc = x.cuda(), m.cuda()
    pure = carafe(xc, mc, 5, 2, 2, use_mmcv_cuda=False)
    torch.testing.assert_close(pure.cpu(), want, rtol=1e-4, atol=1e-5)
    fast = carafe(xc, mc, 5, 2, 2)
    torch.testing.assert_close(fast.cpu(), want, rtol=1e-4, atol=1e-5)
    half = carafe(xc.half(), mc.half(), 5, 2, 2, use_mmcv_cuda=False)
    torch.testing.assert_close(half.float().cpu(), want, rtol=1e-2, atol=1e-2)
