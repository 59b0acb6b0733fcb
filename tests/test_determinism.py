"""Determinism: every upsampler under ``torch.use_deterministic_algorithms(True)``.

On CPU every upsampler runs forward and backward under the flag (no op raises) and repeated
steps give bit-identical outputs and gradients, with torch's default thread count so that
parallel reductions take part. The CUDA-only hazards have CPU-checkable remedies: DySample's
gather-based sampling (``sampler='gather'``, taken automatically on CUDA under the flag,
where grid_sample's backward raises) equals grid_sample in float64, values and gradients;
A2U's matrix pooling equals ``adaptive_avg_pool2d``; and under the flag the kernel-based
upsamplers no longer hand the reassembly to mmcv's CUDA kernel (``atomicAdd`` backward).
"""
import importlib

import pytest
import torch
import torch.nn.functional as F

from fade_mm.upsamplers import DySample
from fade_mm.upsamplers._common import mmcv_cuda_allowed
from fade_mm.upsamplers.a2u import _adaptive_avg_pool_by_matrices
from fade_mm.upsamplers.dysample import bilinear_gather
from zoo import IDS, ZOO, build

# Inputs large enough for intra-op parallelism (torch splits work above ~32k elements).
pytestmark = pytest.mark.threads


@pytest.fixture
def deterministic():
    mode = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(mode, warn_only=warn_only)


def _step(model, x, g, weight):
    model.zero_grad(set_to_none=True)
    xx, gg = x.clone().requires_grad_(), g.clone().requires_grad_()
    out = model(xx, gg)
    (out * weight).sum().backward()
    grads = [xx.grad, gg.grad] + [p.grad for p in model.parameters()]
    return [out.detach()] + [t.clone() if t is not None else None for t in grads]


@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_repeated_steps_are_bit_identical(name, cls, kwargs, deterministic):
    model = build(cls, kwargs, channels=16)
    x, g = torch.randn(2, 16, 23, 25), torch.randn(2, 16, 45, 50)
    weight = torch.randn(2, 16, 45, 50)
    first = _step(model, x, g, weight)
    assert torch.isfinite(first[0]).all() and first[1].abs().sum() > 0
    for _ in range(2):
        again = _step(model, x, g, weight)
        for a, b in zip(first, again):
            assert (a is None) == (b is None)
            if a is not None:
                assert torch.equal(a, b)


def test_flag_is_restored_by_the_fixture():
    assert not torch.are_deterministic_algorithms_enabled()


def _dysample_pair(kwargs):
    a = DySample(8, sampler='grid_sample', **kwargs).double()
    b = DySample(8, sampler='gather', **kwargs).double()
    # Offsets of several pixels: many samples fall outside the map (border clamping).
    torch.nn.init.normal_(a.offset.weight, std=1.0)
    if kwargs.get('dyscope'):
        torch.nn.init.normal_(a.scope.weight, std=0.5)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize('kwargs', [{}, {'dyscope': True}, {'style': 'pl', 'groups': 2},
                                    {'groups': 1, 'scale_factor': 3}],
                         ids=['lp', 'lp_dyscope', 'pl', 'g1_s3'])
def test_gather_sampler_equals_grid_sample_float64(kwargs):
    a, b = _dysample_pair(kwargs)
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64, requires_grad=True)
    s = kwargs.get('scale_factor', 2)
    g = torch.randn(2, 8, 5 * s - 1, 7 * s - 1, dtype=torch.float64)  # odd crops
    out_a, out_b = a(x, g), b(x, g)
    torch.testing.assert_close(out_b, out_a, rtol=1e-12, atol=1e-12)
    go = torch.randn_like(out_a)
    grads_a = torch.autograd.grad(out_a, [x] + list(a.parameters()), go)
    grads_b = torch.autograd.grad(out_b, [x] + list(b.parameters()), go)
    for u, v in zip(grads_a, grads_b):
        torch.testing.assert_close(v, u, rtol=1e-12, atol=1e-12)


def test_bilinear_gather_matches_grid_sample_at_the_border():
    """Coordinates outside, on and inside the map; gradients of input and coordinates."""
    x = torch.randn(3, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    px = (torch.rand(3, 7, 9, dtype=torch.float64) * 9 - 2).requires_grad_()
    py = (torch.rand(3, 7, 9, dtype=torch.float64) * 10 - 2).requires_grad_()
    grid = torch.stack((2 * (px + 0.5) / 5 - 1, 2 * (py + 0.5) / 6 - 1), -1)
    ref = F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=False)
    out = bilinear_gather(x, px, py)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    go = torch.randn_like(ref)
    for u, v in zip(torch.autograd.grad(ref, (x, px, py), go),
                    torch.autograd.grad(out, (x, px, py), go)):
        torch.testing.assert_close(v, u, rtol=1e-12, atol=1e-12)


def test_auto_sampler_keeps_grid_sample_on_cpu(monkeypatch, deterministic):
    """CPU grid_sample is deterministic; 'auto' switches only for CUDA under the flag."""
    m = DySample(8)
    assert m._sampler(torch.randn(1, 8, 3, 3), torch.randn(1, 32, 3, 3)) == 'grid_sample'
    called = []
    monkeypatch.setattr(F, 'grid_sample', lambda *a, **k: called.append(1) or torch.zeros(
        a[0].shape[0], a[0].shape[1], *a[1].shape[1:3]))
    m(torch.randn(1, 8, 3, 3))
    assert called


def test_sampler_is_validated():
    with pytest.raises(ValueError, match='sampler'):
        DySample(8, sampler='nearest')
    assert "sampler='gather'" in repr(DySample(8, sampler='gather'))
    assert 'sampler' not in repr(DySample(8))


@pytest.mark.parametrize('size,out', [((9, 13), 6), ((6, 6), 6), ((5, 7), 6), ((12, 4), 3)])
def test_a2u_matrix_pooling_equals_adaptive_avg_pool(size, out):
    t = torch.randn(2, 3, *size, dtype=torch.float64)
    torch.testing.assert_close(_adaptive_avg_pool_by_matrices(t, out),
                               F.adaptive_avg_pool2d(t, out), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('module,cls_name', [('fade', 'FADE'), ('carafe', 'CARAFE'),
                                             ('sapa', 'SAPA'), ('a2u', 'A2U')])
def test_mmcv_cuda_kernel_is_declined_under_the_flag(module, cls_name, monkeypatch):
    """mmcv's CUDA CARAFE backward uses atomicAdd and does not report itself to the flag."""
    mod = importlib.import_module(f'fade_mm.upsamplers.{module}')
    seen = []
    real = mod.carafe

    def spy(*args, use_mmcv_cuda=True, **kwargs):
        seen.append(use_mmcv_cuda)
        return real(*args, use_mmcv_cuda=use_mmcv_cuda, **kwargs)

    monkeypatch.setattr(mod, 'carafe', spy)
    model = getattr(mod, cls_name)(8)
    x, g = torch.randn(1, 8, 3, 4), torch.randn(1, 8, 6, 7)
    model(x, g)
    mode = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert not mmcv_cuda_allowed()
        model(x, g)
    finally:
        torch.use_deterministic_algorithms(mode)
    assert seen == [True, False]
