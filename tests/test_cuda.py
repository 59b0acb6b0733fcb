"""CUDA: mixed precision, low-precision modules, the export path and mmcv's kernel.

Every test is marked ``cuda`` and skipped on a machine without a CUDA GPU (``pytest -m cuda``
selects them there). The policy under test is the CPU one of tests/test_mixed_precision.py:
convolutions in the autocast dtype, softmax in float32, the reassembly in the features' dtype.
On CUDA, :func:`fade_mm.ops.carafe` uses mmcv's compiled kernel when mmcv has one
(``use_mmcv_cuda=True``) and its own row-blocked path otherwise; both must agree with each
other and with the loop-free export path (``impl='shift'``).
"""
import pytest
import torch

from fade_mm.ops import carafe, local_similarity
from zoo import IDS, ZOO, build

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')]

DEVICE = 'cuda'
#: Output error relative to float32 (norm ratio): bf16 keeps 8 mantissa bits, fp16 11.
REL = {torch.bfloat16: 3e-2, torch.float16: 5e-3}
#: Gradient error relative to float32 (inputs; all parameters together): a backward pass
#: rounds once more per layer. Worst seen under CPU autocast with these shapes: inputs 6e-3
#: (bf16) / 7e-4 (fp16), parameters 6e-2 / 4e-3 (IndexNet, A2U).
GRAD_REL = {torch.bfloat16: 6e-2, torch.float16: 1e-2}
PARAM_GRAD_REL = {torch.bfloat16: 0.15, torch.float16: 2e-2}


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def _inputs(dtype=torch.float32):
    x = torch.randn(2, 8, 5, 6, device=DEVICE, dtype=dtype)
    g = torch.randn(2, 8, 9, 12, device=DEVICE, dtype=dtype)
    return x, g


def _softmax_masks(b, g, k, h, w, dtype=torch.float32):
    m = torch.randn(b, g, k * k, h, w, device=DEVICE, dtype=dtype).softmax(2)
    return m.view(b, g * k * k, h, w)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['fp16', 'bf16'])
@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_autocast_forward_backward_close_to_float32(name, cls, kwargs, dtype):
    m = build(cls, kwargs).to(DEVICE)
    x, g = _inputs()
    x32, g32 = x.clone().requires_grad_(), g.clone().requires_grad_()
    ref = m(x32, g32)
    ref.square().mean().backward()
    ref_grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad()

    xx, gg = x.clone().requires_grad_(), g.clone().requires_grad_()
    with torch.autocast(DEVICE, dtype=dtype):
        out = m(xx, gg)
    assert out.shape == ref.shape
    assert _rel(out, ref) < REL[dtype]
    out.float().square().mean().backward()
    assert torch.isfinite(xx.grad).all()
    assert _rel(xx.grad, x32.grad) < GRAD_REL[dtype]
    for n, p in m.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), n
    # parameters take float32 gradients, close to the float32 run's in total
    if ref_grads:
        got = torch.cat([m.get_parameter(n).grad.flatten() for n in ref_grads])
        want = torch.cat([v.flatten() for v in ref_grads.values()])
        assert _rel(got, want) < PARAM_GRAD_REL[dtype]


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['fp16', 'bf16'])
@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_module_converted_to_low_precision(name, cls, kwargs, dtype):
    m = build(cls, kwargs).to(DEVICE)
    x, g = _inputs()
    with torch.no_grad():
        ref = m(x, g)
    low = m.half() if dtype == torch.float16 else m.bfloat16()
    xx = x.to(dtype).requires_grad_()
    out = low(xx, g.to(dtype))
    assert out.dtype == dtype
    assert _rel(out, ref) < REL[dtype]
    out.float().sum().backward()
    assert torch.isfinite(xx.grad).all() and xx.grad.abs().sum() > 0


@pytest.mark.parametrize('k,g,s', [(5, 1, 2), (3, 2, 2), (5, 4, 3), (1, 1, 2), (7, 2, 4)])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32], ids=['fp64', 'fp32'])
def test_carafe_export_path_equals_training_path(k, g, s, dtype):
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    x = torch.randn(2, 8, 4, 5, device=DEVICE, dtype=dtype, requires_grad=True)
    m = _softmax_masks(2, g, k, s * 4, s * 5, dtype).requires_grad_()
    rows = carafe(x, m, k, g, s, use_mmcv_cuda=False, impl='rows')
    shift = carafe(x, m, k, g, s, impl='shift')
    torch.testing.assert_close(shift, rows, **tol)
    go = torch.randn_like(rows)
    for a, b in zip(torch.autograd.grad(rows, (x, m), go),
                    torch.autograd.grad(shift, (x, m), go)):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize('k,s', [(5, 2), (3, 3), (1, 2)])
def test_similarity_export_path_equals_training_path(k, s):
    q = torch.randn(2, s * 4, s * 5, 6, device=DEVICE, dtype=torch.float64,
                    requires_grad=True)
    key = torch.randn(2, 4, 5, 6, device=DEVICE, dtype=torch.float64, requires_grad=True)
    a = local_similarity(q, key, k, s, impl='rows')
    b = local_similarity(q, key, k, s, impl='shift')
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    go = torch.randn_like(a)
    for u, v in zip(torch.autograd.grad(a, (q, key), go), torch.autograd.grad(b, (q, key), go)):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_traced_upsampler_equals_eager(name, cls, kwargs):
    """Tracing selects the loop-free path (graph_capture): same numbers as eager on CUDA."""
    m = build(cls, kwargs).to(DEVICE).eval()
    x, g = _inputs()
    with torch.no_grad():
        traced = torch.jit.trace(m, (x, g), check_trace=False)
        x2, g2 = torch.randn(1, 8, 7, 4, device=DEVICE), torch.randn(1, 8, 13, 8,
                                                                     device=DEVICE)
        for args in ((x, g), (x2, g2)):
            torch.testing.assert_close(traced(*args), m(*args), rtol=1e-5, atol=1e-5)


def _mmcv_cuda_carafe():
    """mmcv's ``carafe`` if this mmcv can run it on CUDA, else skip the test."""
    try:
        from mmcv.ops import carafe as mmcv_carafe
    except Exception as err:  # mmcv absent, or built without compiled ops
        pytest.skip(f'mmcv.ops unavailable: {err}')
    try:
        mmcv_carafe(torch.zeros(1, 4, 2, 2, device=DEVICE), _softmax_masks(1, 1, 3, 4, 4),
                    3, 1, 2)
    except RuntimeError as err:  # e.g. "carafe_forward_impl: implementation for device cuda
        pytest.skip(f'mmcv has no CUDA carafe: {err}')  # not found" (a CPU-only build)
    return mmcv_carafe


@pytest.mark.parametrize('k,g,s', [(5, 1, 2), (3, 2, 2), (5, 4, 3), (1, 1, 2), (7, 2, 4)])
def test_pure_pytorch_path_equals_mmcv_kernel(k, g, s):
    mmcv_carafe = _mmcv_cuda_carafe()
    x = torch.randn(2, 16, 9, 11, device=DEVICE, requires_grad=True)
    m = _softmax_masks(2, g, k, s * 9, s * 11).requires_grad_()
    ours = carafe(x, m, k, g, s, use_mmcv_cuda=False)
    theirs = mmcv_carafe(x, m, k, g, s)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    go = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, (x, m), go),
                    torch.autograd.grad(theirs, (x, m), go)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # the default (use_mmcv_cuda=True) dispatches to the kernel: the same numbers
    torch.testing.assert_close(carafe(x, m, k, g, s), theirs, rtol=0, atol=0)


@pytest.mark.parametrize('name', ['fade', 'carafe', 'dysample'])
def test_inductor_on_cuda_equals_eager(name):
    """Inductor generates Triton kernels for the loop-free path: values and gradients as eager
    (float32; the compiled graph only sums in another order)."""
    _, cls, kwargs = next(z for z in ZOO if z[0] == name)
    torch._dynamo.reset()
    m = build(cls, kwargs).to(DEVICE)
    compiled = torch.compile(m, backend='inductor')
    x, g = _inputs()
    outs, grads = [], []
    for fn in (m, compiled):
        xx, gg = x.clone().requires_grad_(), g.clone().requires_grad_()
        out = fn(xx, gg)
        out.square().mean().backward()
        outs.append(out.detach())
        grads.append([xx.grad] + [p.grad.clone() for p in m.parameters() if p.grad is not None])
        m.zero_grad(set_to_none=True)
    torch._dynamo.reset()
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    assert len(grads[0]) == len(grads[1])
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_nan_pixel_never_gives_finite_children_on_cuda(name, cls, kwargs):
    """CUDA's grid_sample clamps NaN positions like the CPU's: DySample must still mark them."""
    m = build(cls, kwargs).to(DEVICE)
    x, g = _inputs()
    x[0, :, 1, 2] = float('nan')
    with torch.no_grad():
        out = m(x, g)
    assert not out[0, :, 2:4, 4:6].isfinite().any()


@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_double_backward_on_cuda_equals_cpu(name, cls, kwargs):
    """A gradient penalty (second derivatives) on CUDA: the CPU's numbers, float64.

    DySample's ``grid_sample`` path needs a torch whose ``grid_sampler_2d_backward`` has a
    derivative (torch 2.11 has none, on either device): it is tried and skipped with torch's
    reason where missing; the gather sampler works on every version."""
    variants = [kwargs]
    if 'dysample' in name:
        variants.append(dict(kwargs, sampler='gather'))
    for variant in variants:
        try:
            cpu, cuda = _double_backward_results(cls, variant)
        except RuntimeError as err:
            if 'grid_sampler_2d_backward is not implemented' not in str(err) \
                    or variant.get('sampler') == 'gather':
                raise
            continue  # this torch lacks it (on CPU too): the gather variant must work
        for a, b in zip(cpu, cuda):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(b, a, rtol=1e-7, atol=1e-9)


def _double_backward_results(cls, kwargs):
    m = build(cls, kwargs).double()
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    g = torch.randn(1, 8, 6, 7, dtype=torch.float64)
    results = []
    for device in ('cpu', DEVICE):
        mm = m.to(device)
        xx = x.to(device).requires_grad_()
        (grad,) = torch.autograd.grad(mm(xx, g.to(device)).square().sum(), xx,
                                      create_graph=True)
        params = [p for p in mm.parameters() if p.requires_grad]
        penalty = grad.square().sum()
        second = torch.autograd.grad(penalty, [xx] + params, allow_unused=True)
        results.append([t.cpu() if t is not None else None for t in (penalty, *second)])
        mm.zero_grad(set_to_none=True)
    return results
