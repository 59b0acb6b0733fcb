"""Counting and timing helpers shared by the analysis tools (torch only).

FLOPs follow the convention of the published upsampler tables (mmcv/fvcore): one
multiply-add counts as one FLOP. They are counted at dispatch level with
``torch.utils.flop_counter``, so whatever actually runs is seen -- the batched matrix products
inside :func:`fade_mm.ops.carafe` included (mmengine's tracer scores custom autograd
functions as zero) -- plus formulas for the sampling ops it does not know:
``grid_sampler_2d`` and bilinear interpolation cost four multiply-adds per output element.
"""
from __future__ import annotations

import resource
import statistics
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _four_taps(*args, out_shape=None, **kwargs) -> int:
    # FlopCounterMode works in FLOPs (2 per multiply-add); 4 multiply-adds per output.
    n = 1
    for d in out_shape:
        n *= d
    return 2 * 4 * n


# The in-place baddbmm_ (carafe's CPU path accumulates into its output) is a separate op
# packet from baddbmm and would otherwise count as zero.
def _baddbmm(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    batch, m, k = a_shape
    return 2 * batch * m * k * b_shape[-1]


_EXTRA = {aten.grid_sampler_2d: _four_taps, aten.upsample_bilinear2d: _four_taps,
          aten.baddbmm_: _baddbmm}


def count_flops(fn: Callable[[], object]) -> int:
    """Multiply-adds of one call of ``fn()`` (forward only), as an int."""
    # (not under no_grad: the counter's module tracker needs grad_fns on module inputs)
    with FlopCounterMode(display=False, custom_mapping=_EXTRA) as counter:
        fn()
    return counter.get_total_flops() // 2


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time in seconds of ``repeats`` calls of ``fn()``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rss_mb() -> float:
    """Current resident set size of this process, in MiB (Linux)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    """High-water mark of the resident set size of this process, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
