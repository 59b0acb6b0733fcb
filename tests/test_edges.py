"""API edge cases shared by every upsampler and the operators, adapters and metric around them:
empty batches, empty maps, non-finite inputs, double backward, numpy integers, conflicting
configs, bad ratios and empty result lists (issue #12, item 6)."""
import math

import numpy as np
import pytest
import torch

from fade_mm.ops import carafe, local_similarity, semi_shift_conv
from fade_mm.upsamplers import DySample
from zoo import IDS, ZOO, build

F64 = torch.float64
#: The zoo plus DySample's gather sampler (the deterministic CUDA path, any device here).
SAMPLERS = [('dysample_gather', DySample, {'sampler': 'gather'}),
            ('dysample_pl_gather', DySample, {'style': 'pl', 'sampler': 'gather'})]
ALL = ZOO + SAMPLERS
ALL_IDS = IDS + [z[0] for z in SAMPLERS]


def _inputs(b=2, c=8, h=3, w=4, big=(5, 8), dtype=F64):
    x = torch.randn(b, c, h, w, dtype=dtype, requires_grad=True)
    guide = torch.randn(b, c, *big, dtype=dtype, requires_grad=True)
    return x, guide


# ------------------------------------------------------------------------- empty inputs
@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_empty_batch_gives_empty_output_and_gradient(name, cls, kwargs):
    m = build(cls, kwargs).double()
    x, guide = _inputs(b=0)  # odd guide: the output takes its size
    out = m(x, guide)
    assert out.shape == (0, 8, 5, 8) and out.dtype == F64
    out.sum().backward()
    assert x.grad.shape == x.shape
    if cls.uses_guide:
        assert guide.grad.shape == guide.shape
    else:
        assert m(x).shape == (0, 8, 6, 8)


@pytest.mark.parametrize('shape', [(2, 8, 0, 4), (2, 8, 3, 0), (0, 8, 0, 0)])
@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_empty_map_is_refused_with_one_message(name, cls, kwargs, shape):
    m = build(cls, kwargs).double()
    x = torch.randn(*shape, dtype=F64)
    guide = torch.randn(shape[0], 8, 2 * shape[2], 2 * shape[3], dtype=F64)
    want = (f'{cls.__name__}: `x` must have a non-empty spatial size (H, W >= 1), got shape '
            f'{shape}')
    with pytest.raises(ValueError) as err:
        m(x, guide)
    assert str(err.value) == want


@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_empty_guide_is_refused(name, cls, kwargs):
    m = build(cls, kwargs).double()
    x = torch.randn(2, 8, 3, 4, dtype=F64)
    with pytest.raises(ValueError, match=r'`guide` must have a non-empty spatial size '
                                         r'\(H, W >= 1\), got shape \(2, 8, 0, 8\)'):
        m(x, torch.randn(2, 8, 0, 8, dtype=F64))


def test_operators_on_empty_inputs():
    # carafe: every empty map gives an empty output, backward included (both paths)
    for b, h, w in ((0, 3, 4), (2, 0, 4), (2, 3, 0)):
        for impl in ('rows', 'shift'):
            x = torch.randn(b, 4, h, w, requires_grad=True)
            masks = torch.rand(b, 9, 2 * h, 2 * w, requires_grad=True)
            out = carafe(x, masks, 3, 1, 2, impl=impl)
            assert out.shape == (b, 4, 2 * h, 2 * w)
            out.sum().backward()
            assert x.grad.shape == x.shape and masks.grad.shape == masks.shape
    q, k = torch.randn(0, 6, 8, 3), torch.randn(0, 3, 4, 3)
    assert local_similarity(q, k, 3, 2).shape == (0, 9, 6, 8)
    weight = torch.randn(9, 4, 3, 3)
    for impl in ('l2h', 'h2l'):
        out = semi_shift_conv(torch.randn(0, 4, 5, 8), torch.randn(0, 4, 3, 4), weight,
                              scale_factor=2, impl=impl)
        assert out.shape == (0, 9, 5, 8)
    with pytest.raises(ValueError, match='`enc` must have a non-empty spatial size'):
        semi_shift_conv(torch.randn(1, 4, 0, 8), torch.randn(1, 4, 0, 4), weight)


# ------------------------------------------------------------------- non-finite inputs
@pytest.mark.parametrize('value', [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize('name,cls,kwargs', ALL, ids=ALL_IDS)
def test_non_finite_pixel_never_gives_finite_children(name, cls, kwargs, value):
    m = build(cls, kwargs).double()
    x = torch.randn(1, 8, 4, 5, dtype=F64)
    guide = torch.randn(1, 8, 8, 10, dtype=F64)
    x[0, :, 1, 2] = value
    out = m(x, guide)
    # the s*s children of pixel (1, 2); content-aware upsamplers may spread it further
    assert not out[0, :, 2:4, 4:6].isfinite().any()
    if cls.uses_guide:  # a non-finite guide pixel: its output pixel
        x[0, :, 1, 2] = 0
        guide[0, :, 3, 5] = value
        assert not m(x, guide)[0, :, 3, 5].isfinite().any()


@pytest.mark.parametrize('sampler', ['grid_sample', 'gather'])
def test_dysample_non_finite_offset_gives_nan_exactly_where_it_is_used(sampler):
    """Sampling clamps a NaN position to the border (a finite value from elsewhere); the
    output of exactly that offset's (group, child) is NaN instead, nothing else changes."""
    m = DySample(8, groups=2, sampler=sampler).double()
    x = torch.randn(1, 8, 3, 4, dtype=F64)
    offsets = m.offsets(x).detach()
    ref = m.sample(x, offsets)
    # channel xy*G*s*s + g*s*s + i*s + j: y of group 1, child (i, j) = (0, 1), pixel (2, 3)
    offsets[0, 1 * 8 + 1 * 4 + 0 * 2 + 1, 2, 3] = math.nan
    out = m.sample(x, offsets)
    bad = torch.zeros_like(out, dtype=torch.bool)
    bad[0, 4:8, 2 * 2 + 0, 2 * 3 + 1] = True
    assert out[bad].isnan().all()
    torch.testing.assert_close(out[~bad], ref[~bad], rtol=0, atol=0)


# ---------------------------------------------------------------------- double backward
@pytest.mark.parametrize('name,cls,kwargs', ALL, ids=ALL_IDS)
def test_double_backward(name, cls, kwargs):
    m = build(cls, kwargs, channels=4).double()
    x = torch.randn(1, 4, 2, 3, dtype=F64, requires_grad=True)
    guide = torch.randn(1, 4, 3, 5, dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, g: m(a, g), (x, guide), fast_mode=True)


@pytest.mark.slow
@pytest.mark.parametrize('impl', ['rows', 'shift'])
def test_operators_double_backward(impl):
    x = torch.randn(1, 3, 2, 3, dtype=F64, requires_grad=True)
    masks = torch.rand(1, 2 * 9, 4, 6, dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: carafe(a, b, 3, 1, 2, impl=impl),
                                        (x, masks[:, :9]))
    x6 = torch.randn(1, 6, 2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: carafe(a, b, 3, 2, 2, impl=impl),
                                        (x6, masks))
    q = torch.randn(1, 4, 6, 3, dtype=F64, requires_grad=True)
    k = torch.randn(1, 2, 3, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: local_similarity(a, b, 3, 2, impl=impl),
                                        (q, k))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_mmcv_cuda_kernel_double_backward_equals_pure_pytorch():
    """mmcv's kernel has a non-differentiable backward: with create_graph=True the loop-free
    reassembly is differentiated instead, so second derivatives are those of the pure path."""
    from fade_mm.ops.carafe import _mmcv_cuda_carafe
    fn = _mmcv_cuda_carafe()
    x = torch.randn(2, 8, 5, 6, device='cuda', requires_grad=True)
    masks = torch.randn(2, 9, 10, 12, device='cuda').softmax(1).requires_grad_()
    try:
        fn(x.detach(), masks.detach(), 3, 1, 2)
    except (TypeError, RuntimeError) as err:  # no mmcv, or a CPU-only build of it
        pytest.skip(f'mmcv has no CUDA carafe: {err}')
    go = torch.randn(2, 8, 10, 12, device='cuda')

    def second(use_mmcv_cuda):
        out = carafe(x, masks, 3, 1, 2, use_mmcv_cuda=use_mmcv_cuda)
        grad_x, = torch.autograd.grad((out * go).sum(), x, create_graph=True)
        return torch.autograd.grad(grad_x.square().sum(), masks)[0]

    torch.testing.assert_close(second(True), second(False), rtol=1e-4, atol=1e-5)


def test_double_backward_gives_a_gradient_penalty():
    """A gradient penalty through FADE trains: second derivatives reach its parameters."""
    m = build(*ZOO[IDS.index('fade')][1:]).double()
    x, guide = _inputs()
    grad_x, = torch.autograd.grad(m(x, guide).square().sum(), x, create_graph=True)
    grad_x.square().sum().backward()
    assert m.content_encoder.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------- integer args
@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_numpy_integers_are_ints(name, cls, kwargs):
    m = cls(np.int64(8), scale_factor=np.int32(2), **kwargs)
    assert type(m.in_channels) is int and type(m.scale_factor) is int
    x, guide = _inputs(big=(6, 8), dtype=torch.float32)
    assert m(x, guide).shape == (2, 8, 6, 8)


@pytest.mark.parametrize('value,kind', [(16.0, 'float'), (True, 'bool'), ('16', 'str'),
                                        (np.float64(16), 'float64'), (np.bool_(True), 'bool')])
@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_non_integers_are_refused(name, cls, kwargs, value, kind):
    with pytest.raises(ValueError, match=rf'`in_channels` must be an int >= 1, got .* '
                                         rf'\({kind}'):
        cls(value, **kwargs)


def test_integer_options_take_numpy_integers():
    from fade_mm.upsamplers import A2U, CARAFE, FADE, SAPA, DeconvUpsample, PixelShuffleUpsample
    i = np.int64
    ups = [CARAFE(i(8), up_kernel=i(3), up_group=i(2), encoder_kernel=i(3),
                  encoder_dilation=i(1), compressed_channels=i(4)),
           FADE(i(8), up_kernel=i(3), embedding_dim=i(4), encoder_kernel=i(3),
                guide_channels=i(6)),
           SAPA(i(8), up_kernel=i(3), embedding_dim=i(4), norm='group', norm_groups=i(2)),
           A2U(i(8), up_kernel=i(3), encoder_kernel=i(4), rank=i(2), norm_groups=i(4)),
           DySample(i(8), groups=i(2)), DeconvUpsample(i(8), kernel_size=i(3)),
           PixelShuffleUpsample(i(8), upsample_kernel=i(3))]
    for m in ups:
        ints = {k: v for k, v in vars(m).items() if isinstance(v, (int, np.integer))}
        assert all(type(v) in (int, bool) for v in ints.values()), (type(m).__name__, ints)
    with pytest.raises(ValueError, match=r'`up_kernel` must be an odd int >= 1, got 3.0 '
                                         r'\(float\)'):
        CARAFE(8, up_kernel=3.0)
    x = torch.randn(1, 4, 3, 3)
    masks = torch.rand(1, 9, 6, 6)
    torch.testing.assert_close(carafe(x, masks, i(3), i(1), i(2)), carafe(x, masks, 3, 1, 2))


# ---------------------------------------------------------------------- semi_shift_conv
def test_semi_shift_conv_validates_its_arguments():
    enc, dec, weight = torch.randn(2, 4, 6, 8), torch.randn(2, 4, 3, 4), torch.randn(9, 4, 3, 3)
    for bad_dec, what in ((torch.randn(1, 4, 3, 4), r'\(1, 4, 3, 4\)'),   # batch mismatch
                          (torch.randn(2, 5, 3, 4), r'\(2, 5, 3, 4\)')):  # channel mismatch
        with pytest.raises(ValueError, match=r'`dec` must be \(B, d, ceil\(H/2\), ceil\(W/2\)\)'
                                             r' = \(2, 4, 3, 4\) .*got ' + what):
            semi_shift_conv(enc, bad_dec, weight)
    with pytest.raises(ValueError, match='`weight` must be'):
        semi_shift_conv(enc, dec, torch.randn(9, 3, 3, 3))
    for s in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match='`scale_factor` must be an int >= 1'):
            semi_shift_conv(enc, dec, weight, scale_factor=s)
    with pytest.raises(ValueError, match='`groups` must be an int >= 1'):
        semi_shift_conv(enc, dec, weight, groups=0)
    with pytest.raises(ValueError, match='`enc` must be 4-D'):
        semi_shift_conv(enc[0], dec, weight)
    assert semi_shift_conv(enc, dec, weight, scale_factor=np.int64(2)).shape == (2, 9, 6, 8)


# ------------------------------------------------------------- necks and heads: configs
def _fpn(**up):
    from mmdet.registry import MODELS

    import fade_mm.det  # noqa: F401
    return MODELS.build(dict(type='UpsamplerFPN', in_channels=[8, 16], out_channels=8,
                             num_outs=2, upsample_cfg=dict(type='CARAFE', **up)))


def _seg_head(kind, **up):
    from mmseg.registry import MODELS

    import fade_mm.seg  # noqa: F401
    return MODELS.build(dict(type=kind, in_channels=[8, 16, 32, 64], in_index=[0, 1, 2, 3],
                             channels=8, num_classes=3, norm_cfg=dict(type='BN'),
                             align_corners=False, upsample_cfg=dict(type='CARAFE', **up)))


BUILDERS = {'UpsamplerFPN': _fpn,
            'UpsamplerUPerHead': lambda **up: _seg_head('UpsamplerUPerHead', **up),
            'UpsamplerSegformerHead': lambda **up: _seg_head('UpsamplerSegformerHead', **up)}


@pytest.mark.parametrize('owner', list(BUILDERS))
def test_conflicting_upsample_cfg_is_refused(owner):
    from mmengine.registry import DefaultScope
    scope = 'mmdet' if owner == 'UpsamplerFPN' else 'mmseg'
    # mmengine builds through the current default scope's registry: name ours explicitly
    with DefaultScope.overwrite_default_scope(scope):
        _conflicting_upsample_cfg_is_refused(owner)


def _conflicting_upsample_cfg_is_refused(owner):
    build_it = BUILDERS[owner]
    for key, value, need in (('in_channels', 16, 8), ('scale_factor', 4, 2)):
        with pytest.raises(ValueError, match=rf'{owner}: `upsample_cfg` sets {key}={value}, '
                                             rf'but its upsamplers need {key}={need}'):
            build_it(**{key: value})
    # the values it needs anyway are fine, numpy integers too
    ups = build_it(in_channels=np.int64(8), scale_factor=2).upsamplers
    assert all(u.in_channels == 8 and u.scale_factor == 2 for u in ups)


# ------------------------------------------------------------------------ bIoU metric
@pytest.mark.parametrize('ratio', [math.inf, math.nan, -0.1, 0, 1.5, True, '0.02', None])
def test_biou_ratio_is_validated(ratio):
    from fade_mm.seg.biou_metric import BoundaryIoUMetric, IoUBoundaryMetric, boundary_width
    with pytest.raises(ValueError, match=r'BoundaryIoUMetric: `ratio` must be a number in '
                                         r'\(0, 1\]'):
        BoundaryIoUMetric(ratio=ratio)
    with pytest.raises(ValueError, match='IoUBoundaryMetric: `boundary_ratio` must be'):
        IoUBoundaryMetric(boundary_ratio=ratio)
    with pytest.raises(ValueError, match='boundary_width: `ratio` must be'):
        boundary_width(10, 10, ratio)


def test_biou_ratio_bounds_accepted():
    from fade_mm.seg.biou_metric import BoundaryIoUMetric, boundary_width
    assert BoundaryIoUMetric(ratio=1).ratio == 1.0
    assert BoundaryIoUMetric(ratio=np.float32(0.5)).ratio == 0.5
    assert boundary_width(30, 40, 1) == 50 and boundary_width(30, 40, 1e-9) == 1


def test_biou_empty_results_raise_a_clear_error():
    from fade_mm.seg.biou_metric import BoundaryIoUMetric, IoUBoundaryMetric, reduce_boundary_iou
    metric = BoundaryIoUMetric()
    metric.dataset_meta = dict(classes=('a', 'b'))
    with pytest.raises(ValueError, match='BoundaryIoUMetric: no results to compute bIoU'):
        metric.compute_metrics([])
    with pytest.raises(ValueError, match='no results to compute bIoU'):
        reduce_boundary_iou([], ['a', 'b'], 0.02)
    both = IoUBoundaryMetric()
    both.dataset_meta = dict(classes=('a', 'b'))
    with pytest.raises(ValueError, match='IoUBoundaryMetric: no results to compute bIoU'):
        both.compute_metrics([])
