"""Counting and timing helpers shared by the analysis tools (torch only).

FLOPs follow the convention of the published upsampler tables (mmcv/fvcore): one
multiply-add counts as one FLOP. They are counted at dispatch level with
``torch.utils.flop_counter``, so whatever actually runs is seen -- the matrix products of
:func:`fade_mm.ops.carafe` included (mmengine's tracer scores custom autograd functions as
zero), counted on its loop-free path, whose product is exactly the op's arithmetic -- plus
formulas for the sampling ops it does not know:
``grid_sampler_2d`` and bilinear interpolation cost four multiply-adds per output element.
:func:`count_flops_by_op` gives the same count per aten operator (e.g. the sampling share:
the :data:`SAMPLING_OPS` entries).
"""
from __future__ import annotations

import resource
import statistics
import time
from collections import Counter
from typing import Any, Callable, Dict, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from .ops.carafe import exact_work

aten = torch.ops.aten


def _four_taps(*args, out_shape=None, **kwargs) -> int:
    # FlopCounterMode works in FLOPs (2 per multiply-add); 4 multiply-adds per output.
    n = 1
    for d in out_shape:
        n *= d
    return 2 * 4 * n


# The in-place baddbmm_ (an accumulating product, e.g. in carafe's backward) is a separate
# op packet from baddbmm and would otherwise count as zero.
def _baddbmm(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    batch, m, k = a_shape
    return 2 * batch * m * k * b_shape[-1]


_EXTRA = {aten.grid_sampler_2d: _four_taps, aten.upsample_bilinear2d: _four_taps,
          aten.baddbmm_: _baddbmm}

#: The sampling ops, priced at four multiply-adds per output element: bilinear interpolation
#: and grid sampling. Hook-based counters (mmcv's, fvcore's, behind the published tables)
#: score their functional forms as zero; ``sum(by_op.get(op, 0) for op in SAMPLING_OPS)`` of
#: :func:`count_flops_by_op` is that difference.
SAMPLING_OPS = (aten.upsample_bilinear2d, aten.grid_sampler_2d)


def count_flops_by_op(fn: Callable[[], object]) -> Dict[Any, int]:
    """Multiply-adds of one call of ``fn()`` (forward only) per aten operator.

    Returns:
        ``{op packet: multiply-adds}`` (e.g. ``torch.ops.aten.convolution``) of the ops that
        cost any, from ``FlopCounterMode.get_flop_counts()['Global']`` halved: torch's
        formulas count a multiply-add as two FLOPs (every formula, ours included, gives an
        even number). The values add up to :func:`count_flops`.
    """
    # (not under no_grad: the counter's module tracker needs grad_fns on module inputs)
    # exact_work: carafe runs the path whose products are exactly the op's arithmetic, not
    # the training path that also computes (and drops) its padding positions.
    with exact_work(), FlopCounterMode(display=False, custom_mapping=_EXTRA) as counter:
        fn()
    return {op: flops // 2 for op, flops in counter.get_flop_counts().get('Global', {}).items()
            if flops}


def count_flops(fn: Callable[[], object]) -> int:
    """Multiply-adds of one call of ``fn()`` (forward only), as an int."""
    return sum(count_flops_by_op(fn).values())


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


def _allocation_events(prof) -> list:
    """``(time_ns, bytes)`` of every allocation (+) and free (-) the CPU profiler saw."""
    events = []
    results = getattr(prof.profiler, 'kineto_results', None)
    if results is not None and hasattr(results, 'events'):
        for e in results.events():
            if e.name() == '[memory]':
                events.append((e.start_ns(), e.nbytes()))
        return sorted(events)
    # Older/other builds: the same events from the exported Chrome trace.
    import json
    import os
    import tempfile
    fd, path = tempfile.mkstemp(suffix='.json')
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            trace = json.load(f)
    finally:
        os.remove(path)
    for e in trace.get('traceEvents', []):
        if e.get('name') == '[memory]':
            events.append((float(e['ts']), int(e['args']['Bytes'])))
    return sorted(events)


def allocation_profile(fn: Callable[[], object]) -> Tuple[int, int]:
    """Tensor memory allocated while ``fn()`` runs: ``(peak, largest)`` in bytes.

    ``peak`` is the high-water mark of bytes held by tensors allocated during the call
    (torch's CPU allocator, as seen by ``torch.profiler`` with ``profile_memory``), above
    what was held before; ``largest`` is the biggest single allocation. Unlike the resident
    set size this is exact and repeatable: it does not depend on what the allocator kept
    from earlier calls, and strided views (which allocate nothing) do not count.
    """
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    held = peak = largest = 0
    for _, nbytes in _allocation_events(prof):
        held += nbytes
        peak = max(peak, held)
        largest = max(largest, nbytes)
    return peak, largest


def count_ops(fn: Callable[[], object], views: bool = False) -> Counter:
    """How many times each aten operator runs during ``fn()`` (forward and backward alike),
    keyed by overload name, e.g. ``'bmm.default'``: one dispatch is one kernel call, each a
    potential parallel region (a thread hand-off). View and alias ops (``as_strided``,
    ``permute``, ...), which launch nothing, are left out unless ``views``."""
    from torch.utils._python_dispatch import TorchDispatchMode
    counts: Counter = Counter()

    class _Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if views or not func.is_view:
                counts[func.__name__] += 1
            return func(*args, **(kwargs or {}))

    with _Count():
        fn()
    return counts
