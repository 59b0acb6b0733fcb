#!/usr/bin/env python
"""Speed and memory of fade_mm's CARAFE paths, on a busy machine, and of FADE in real models.

Everything is measured in this one run, on this machine's CPU, each measurement in a fresh
worker process (one measurement's peak memory cannot hide another's, and no allocator state
carries over). Parts, chosen with ``--parts`` (comma-separated, default all):

ops      The naive reference -- the official pure-PyTorch FADE: unfold the low-resolution
         features, repeat them s*s times to full resolution (a k*k*C*sH*sW tensor), einsum --
         against the training path (``impl='rows'``, a custom autograd function of a few
         large batched products) and the export path (``impl='shift'``, loop-free,
         static-size ops): forward, forward+backward, peak memory (resident set and exact
         tensor allocations), the number of aten kernel calls in one forward+backward, and
         the ratios. Targets: training path >= 20x faster than the reference forward+backward
         at C=256, 64x64 -> 128x128, B=2; export path within 3x of the training path.
load     The reference and the training path again while 1 (and 2, ``--busy``) other CPU-bound
         processes run (each a 2-thread torch matmul loop, like a data-loader worker or a
         second job): quiet and loaded ratios side by side. Target: >= 15x with one busy
         process.
modules  FADE (L2H and H2L semi-shift), FADE-Lite and bilinear interpolation as modules,
         forward+backward at the operator's size, and FADE's cost split into its kernel
         generation and its reassembly (the shares behind the model ratios below).
models   One training step (forward, backward, SGD step) of SegFormer-B1 and UPerNet-R50
         (mmseg) and Faster R-CNN R50 (mmdet), built from this repository's configs, with
         FADE against each baseline (bilinear / nearest): median time and peak memory (tensor
         memory a step allocates above weights, gradients and optimizer state), and their
         ratios. Defaults: batch 2; SegFormer-B1 at 512x512, UPerNet-R50 at 256x256, Faster
         R-CNN at 256x320 in the FPN_CARAFE topology of the published FADE row (``--det-neck
         fpn`` for mmdet's standard FPN). FADE's FLOP share in SegFormer-B1 at 512x512 is
         (15.91 + 2.65) / 15.91 = x1.17: the aim is a time ratio not above it.
with_cp  SegFormer-B1 with FADE, one training step with and without gradient checkpointing
         (``model.decode_head.with_cp=True``): the peak-memory saving and its time cost.
cuda     On a CUDA GPU (skipped without one), in this process: the reassembly (naive
         reference, training path, export path, mmcv's kernel when this mmcv has one) and
         whole upsampler modules (bilinear, FADE, FADE-Lite, CARAFE, DySample), forward and
         forward+backward, float32 and float16/bfloat16 autocast, timed with CUDA events, peak
         memory from the CUDA allocator. Sizes: ``--cuda-sizes`` (B,C,h: 2,256,64 and
         8,256,128). Targets: training path faster than the naive reference and within 3x of
         mmcv's kernel where present.

    python tools/benchmark.py                        # everything, full size (~15 min, 2 cores)
    python tools/benchmark.py --quick                # small sizes: a few minutes
    python tools/benchmark.py --parts ops,load       # the operator only
    python tools/benchmark.py --parts models --seg-size 256 --json bench.json

The timings are only as good as the machine is quiet: the load average is printed with every
part, and ``--json PATH`` writes all figures (with the settings and the load) for comparison.
"""
from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import platform
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fade_mm.ops import carafe  # noqa: E402
from fade_mm.profiling import allocation_profile, count_ops, median_time, peak_rss_mb, rss_mb  # noqa: E402

#: Targets from the issue (quiet and one-busy-process speed-ups over the naive reference,
#: export path against training path, training path peak memory against the reference).
TARGET_QUIET, TARGET_LOADED, TARGET_EXPORT, TARGET_MEMORY = 20.0, 15.0, 3.0, 1 / 8
#: FADE's FLOP share in SegFormer-B1 at 512x512 (published: 15.91 GFLOPs, FADE +2.65).
SEGFORMER_FLOP_RATIO = (15.91 + 2.65) / 15.91
#: The parts of a run, in order.
PARTS = ('ops', 'load', 'modules', 'models', 'with_cp', 'cuda')
#: Marks the result line a worker prints (libraries may print before it).
RESULT = 'BENCHMARK-RESULT '
#: (family, config pattern, baseline, FADE) of the model part; {} is the upsampler.
MODELS = {
    'segformer_b1': ('seg', 'configs/segformer/segformer_mit-b1_{}_8xb2-160k_ade20k-512x512.py',
                     'bilinear', 'fade'),
    'upernet_r50': ('seg', 'configs/upernet/upernet_r50_{}_4xb4-80k_ade20k-512x512.py',
                    'bilinear', 'fade'),
    'faster_rcnn_r50': ('det', 'configs/faster_rcnn/faster-rcnn_r50_{neck}-{}_8xb2-1x_coco.py',
                        'nearest', 'fade'),
}
#: The busy process: a 2-thread (``--busy-threads``) matmul loop; it says when it spins, and
#: stops when stopped or when its parent is gone (a benchmark killed mid-run leaves nothing).
BUSY_CODE = ('import os\nparent = {parent}\nimport torch\ntorch.set_num_threads({threads})\n'
             'a = torch.randn(512, 512)\nb = torch.empty(512, 512)\n'
             'torch.mm(a, a, out=b)\nprint("ready", flush=True)\n'
             'while os.getppid() == parent:\n    torch.mm(a, a, out=b)\n')


# --------------------------------------------------------------------------- the operator
def naive_carafe(x, masks, k, s):
    """Unfold, repeat to full resolution, einsum (the official pure-PyTorch FADE)."""
    b, c, h, w = x.shape
    cols = F.unfold(x, k, padding=(k - 1) // 2).view(b, c, k * k, h, w).transpose(1, 2)
    cols = cols.repeat_interleave(s, 3).repeat_interleave(s, 4)  # (B, k*k, C, sH, sW)
    return torch.einsum('bkchw,bkhw->bchw', cols, masks)


def _op_inputs(spec):
    g = torch.Generator().manual_seed(0)
    b, c, n, k, s = spec['batch'], spec['channels'], spec['size'], spec['kernel'], spec['scale']
    x = torch.randn(b, c, n, n, generator=g)
    m = torch.randn(b, k * k, s * n, s * n, generator=g)
    grad = torch.randn(b, c, s * n, s * n, generator=g)
    return x.requires_grad_(), m.softmax(1).detach().requires_grad_(), grad


def op_worker(spec) -> dict:
    """One implementation of the reassembly: times, peak memory, kernel calls, checksum."""
    x, m, grad = _op_inputs(spec)
    k, s = spec['kernel'], spec['scale']
    if spec['impl'] == 'naive':
        fwd = lambda: naive_carafe(x, m, k, s)  # noqa: E731
    else:
        fwd = lambda: carafe(x, m, k, 1, s, impl=spec['impl'])  # noqa: E731

    def step():
        x.grad = m.grad = None
        fwd().backward(grad)

    res = {}
    base = rss_mb()
    step()  # the first call's high-water mark is the peak of one forward+backward
    res['peak_rss_mb'] = peak_rss_mb() - base
    if not spec.get('time_only'):
        peak, largest = allocation_profile(step)
        res['peak_alloc_mb'], res['largest_alloc_mb'] = peak / 2**20, largest / 2**20
        ops = count_ops(step)
        res['kernel_calls'] = sum(ops.values())
        res['matmul_calls'] = sum(v for name, v in ops.items()
                                  if name.split('.')[0] in ('bmm', 'baddbmm', 'baddbmm_', 'mm',
                                                            'addmm', 'matmul'))
        with torch.no_grad():
            res['checksum'] = float(fwd().double().sum())
            res['fwd_s'] = median_time(fwd, spec['repeats'])
    res['total_s'] = median_time(step, spec['repeats'])
    return res


# ----------------------------------------------------------------------------- the modules
def module_worker(spec) -> dict:
    """One upsampler module (or one part of FADE), forward+backward: median time."""
    from fade_mm.upsamplers import FADE, FADELite
    g = torch.Generator().manual_seed(0)
    b, c, n, s = spec['batch'], spec['channels'], spec['size'], spec['scale']
    x = torch.randn(b, c, n, n, generator=g).requires_grad_()
    guide = torch.randn(b, c, s * n, s * n, generator=g).requires_grad_()
    name, params = spec['module'], 0
    if name == 'bilinear':
        fn = lambda: F.interpolate(x, scale_factor=s, mode='bilinear',  # noqa: E731
                                   align_corners=False)
    else:
        torch.manual_seed(0)
        module = (FADELite(c, scale_factor=s) if name == 'fade-lite' else
                  FADE(c, scale_factor=s, semi_shift_impl='h2l' if name == 'fade-h2l' else 'l2h'))
        params = sum(p.numel() for p in module.parameters())
        if name == 'fade-kernels':  # kernel generation only: compressors, semi-shift, softmax
            fn = lambda: module.kernels(x, guide)  # noqa: E731
        elif name == 'fade-reassembly':  # the CARAFE of FADE alone, kernels given
            kernels = module.kernels(x, guide).detach().requires_grad_()
            fn = lambda: carafe(x, kernels, module.up_kernel, 1, s)  # noqa: E731
        else:
            fn = lambda: module(x, guide)  # noqa: E731

    def step():
        x.grad = guide.grad = None
        fn().square().mean().backward()

    step()
    return dict(params=params, total_s=median_time(step, spec['repeats']))


# ------------------------------------------------------------------------------ the models
def _build_model(spec):
    """A model from one of this repository's configs, SyncBN reverted to BN (CPU).

    Built by :func:`fade_mm.tools.build_model` from the seed 0, with the modules' own
    initialisation (no ``init_weights``, nothing pretrained: the weights do not change the
    timings); the worker's default scope is the config's, as the steps need no more.
    """
    from mmengine.config import Config

    from fade_mm.tools import build_model, register_scope, scope_of

    cfg = Config.fromfile(os.path.join(ROOT, spec['config']))
    register_scope(scope_of(cfg), init_default_scope=True)
    if spec.get('cfg_options'):
        cfg.merge_from_dict(spec['cfg_options'])
    if spec.get('upsampler_options'):  # e.g. with_cp for FADE when the head has no switch
        key = 'decode_head' if spec['family'] == 'seg' else 'neck'
        cfg.model[key].upsample_cfg.update(spec['upsampler_options'])
    torch.manual_seed(0)
    return build_model(cfg)  # in eval mode: model_worker switches to train()


def _seg_batch(model, batch, h, w):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g))
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             pad_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, h, w), generator=g))
        samples.append(sample)
    model.data_preprocessor.size = None  # the images are the training size already
    model.data_preprocessor.size_divisor = 32
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)


def _det_batch(model, batch, h, w):
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    packed = demo_mm_inputs(batch_size=batch, image_shapes=[(3, h, w)] * batch,
                            num_classes=80, num_items=[3] * batch)
    return model.data_preprocessor(packed, True)


def model_worker(spec) -> dict:
    """One training step of one model: median time, peak memory, saved activations."""
    model = _build_model(spec)
    model.train()
    h, w = spec['hw']
    make = _seg_batch if spec['family'] == 'seg' else _det_batch
    data = make(model, spec['batch'], h, w)
    optim = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step():
        # Gradients stay allocated between steps, like the optimizer state: the peak of a
        # step above that steady state is the activations and temporaries.
        optim.zero_grad(set_to_none=False)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        loss.backward()
        optim.step()
        return loss

    res = dict(params=sum(p.numel() for p in model.parameters()))
    base = rss_mb()
    res['loss'] = float(step())
    res['peak_rss_mb'] = peak_rss_mb() - base
    peak, _ = allocation_profile(step)
    res['peak_alloc_mb'] = peak / 2**20
    try:
        from fade_mm.upsamplers import saved_tensor_bytes
        res['saved_activations_mb'] = saved_tensor_bytes(
            lambda: model.parse_losses(model(**data, mode='loss'))[0]) / 2**20
    except ImportError:  # an older fade_mm without the helper
        pass
    res['step_s'] = median_time(step, spec['repeats'])
    return res


# ------------------------------------------------------------------------------ the driver
def run_worker(spec: dict, args) -> dict:
    """Run one measurement in a fresh interpreter, return its result dict."""
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', json.dumps(spec),
           '--threads', str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          timeout=args.worker_timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    raise RuntimeError(f'benchmark worker failed ({spec}):\n{proc.stdout[-2000:]}\n'
                       f'{proc.stderr[-4000:]}')


class Busy:
    """``n`` CPU-bound background processes for the duration of a ``with`` block."""

    def __init__(self, n: int, threads: int):
        self.n, self.threads = n, threads
        self.procs: List[subprocess.Popen] = []

    def __enter__(self):
        code = BUSY_CODE.format(threads=self.threads, parent=os.getpid())
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, '-c', code], text=True,
                                               stdout=subprocess.PIPE,
                                               stderr=subprocess.DEVNULL))
        for p in self.procs:  # importing torch takes seconds on a loaded machine
            p.stdout.readline()
        time.sleep(1.0)  # and let the scheduler settle
        return self

    def __exit__(self, *exc):
        for p in self.procs:  # only the processes started here, by their handles
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.stdout.close()
        self.procs = []


def _load() -> List[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _verdict(ok: bool) -> str:
    return 'PASS' if ok else 'MISS'


def _op_spec(args, impl, **extra) -> dict:
    spec = dict(kind='op', impl=impl, size=args.size, channels=args.channels, batch=args.batch,
                kernel=args.kernel, scale=args.scale, repeats=args.repeats)
    spec.update(extra)
    return spec


def part_ops(args, report) -> Tuple[bool, bool]:
    print(f'\n## CARAFE: naive reference vs training path vs export path\n'
          f'C={args.channels}, {args.size}x{args.size} -> {args.scale * args.size}x'
          f'{args.scale * args.size}, B={args.batch}, k={args.kernel}, float32, CPU, '
          f'{args.threads} threads, median of {args.repeats}; load average {_load()}')
    res = {impl: run_worker(_op_spec(args, impl), args) for impl in ('naive', 'rows', 'shift')}
    print('| implementation | forward (s) | fwd+bwd (s) | peak RSS (MB) | peak allocated (MB) '
          '| kernel calls (matmuls) |')
    print('|---|---:|---:|---:|---:|---:|')
    names = dict(naive='naive unfold+repeat+einsum', rows="training path (impl='rows')",
                 shift="export path (impl='shift')")
    for impl, r in res.items():
        print(f"| {names[impl]} | {r['fwd_s']:.4f} | {r['total_s']:.4f} | "
              f"{r['peak_rss_mb']:.1f} | {r['peak_alloc_mb']:.1f} | {r['kernel_calls']} "
              f"({r['matmul_calls']}) |")
    naive, rows, shift = res['naive'], res['rows'], res['shift']
    ratios = dict(
        rows_speedup_fwd=naive['fwd_s'] / rows['fwd_s'],
        rows_speedup_total=naive['total_s'] / rows['total_s'],
        shift_speedup_total=naive['total_s'] / shift['total_s'],
        shift_over_rows_total=shift['total_s'] / rows['total_s'],
        rows_memory_fraction=rows['peak_alloc_mb'] / naive['peak_alloc_mb'],
        shift_memory_fraction=shift['peak_alloc_mb'] / naive['peak_alloc_mb'])
    agree = max(abs(res[i]['checksum'] - naive['checksum']) for i in ('rows', 'shift'))
    ratios['checksum_rel_diff'] = agree / max(1.0, abs(naive['checksum']))
    full = (args.channels, args.size, args.batch, args.kernel, args.scale) == (256, 64, 2, 5, 2)
    note = '' if full else ' [target set for C=256, 64x64, B=2, k=5, s=2]'
    checks = dict(quiet=ratios['rows_speedup_total'] >= TARGET_QUIET,
                  export=ratios['shift_over_rows_total'] <= TARGET_EXPORT,
                  memory=ratios['rows_memory_fraction'] <= TARGET_MEMORY)
    print(f"training path, forward: {ratios['rows_speedup_fwd']:.1f}x faster than the reference")
    print(f"training path, forward+backward: {ratios['rows_speedup_total']:.1f}x faster "
          f"(target >= {TARGET_QUIET:.0f}x): {_verdict(checks['quiet'])}{note}")
    print(f"export path / training path, forward+backward: {ratios['shift_over_rows_total']:.2f}x "
          f"(target <= {TARGET_EXPORT:.0f}x): {_verdict(checks['export'])}")
    print(f"peak allocated memory, training path: 1/{1 / ratios['rows_memory_fraction']:.0f} "
          f"of the reference (target <= 1/8): {_verdict(checks['memory'])}; export path: "
          f"1/{1 / ratios['shift_memory_fraction']:.0f}")
    print(f"outputs agree: relative checksum difference {ratios['checksum_rel_diff']:.1e}")
    report['ops'] = dict(results=res, ratios=ratios, checks=checks, load_average=_load())
    return ratios['checksum_rel_diff'] < 1e-4, all(checks.values())


def part_load(args, report) -> Tuple[bool, bool]:
    print(f'\n## Training path vs reference on a busy machine (forward+backward)\n'
          f'busy process = a {args.busy_threads}-thread torch matmul loop; median of '
          f'{args.load_repeats}; {args.threads} threads here')
    rows: Dict[str, dict] = {}
    if 'ops' in report:  # the quiet figures of the ops part, same sizes
        quiet = report['ops']['results']
        rows['quiet'] = dict(naive=quiet['naive']['total_s'], rows=quiet['rows']['total_s'],
                             load_average=report['ops']['load_average'])
    for n in [0] + args.busy:
        label = 'quiet' if n == 0 else f'{n} busy'
        if label in rows:
            continue
        with Busy(n, args.busy_threads):
            times = {impl: run_worker(_op_spec(args, impl, time_only=True,
                                               repeats=args.load_repeats), args)['total_s']
                     for impl in ('naive', 'rows')}
            rows[label] = dict(times, load_average=_load())
    quiet = rows['quiet']
    print('| condition | naive (s) | training path (s) | speed-up | naive slowdown | '
          'training-path slowdown | target | load average |')
    print('|---|---:|---:|---:|---:|---:|---|---|')
    ok = True
    for label, r in rows.items():
        r['speedup'] = r['naive'] / r['rows']
        r['naive_slowdown'] = r['naive'] / quiet['naive']
        r['rows_slowdown'] = r['rows'] / quiet['rows']
        target = dict(quiet=TARGET_QUIET, **{'1 busy': TARGET_LOADED}).get(label)
        verdict = ''
        if target is not None:
            verdict = f'>= {target:.0f}x: {_verdict(r["speedup"] >= target)}'
            ok &= r['speedup'] >= target
        print(f"| {label} | {r['naive']:.3f} | {r['rows']:.3f} | {r['speedup']:.1f}x | "
              f"{r['naive_slowdown']:.2f}x | {r['rows_slowdown']:.2f}x | {verdict} | "
              f"{r['load_average']} |")
    report['load'] = dict(results=rows, busy_threads=args.busy_threads)
    return True, ok


def part_modules(args, report) -> Tuple[bool, bool]:
    n, s = args.size, args.scale
    print(f'\n## Whole modules, forward+backward (loss: mean square), x {args.batch}x'
          f'{args.channels}x{n}x{n} -> {s * n}x{s * n}, median of {args.repeats}; load '
          f'average {_load()}')
    names = [('bilinear', 'bilinear (F.interpolate)'), ('fade', 'FADE (L2H)'),
             ('fade-h2l', 'FADE (H2L)'), ('fade-lite', 'FADE-Lite'),
             ('fade-kernels', '  FADE: kernel generation only'),
             ('fade-reassembly', '  FADE: reassembly (carafe) only')]
    res = {}
    for key, _ in names:
        spec = dict(kind='module', module=key, batch=args.batch, channels=args.channels,
                    size=n, scale=s, repeats=args.repeats)
        res[key] = run_worker(spec, args)
    base = res['bilinear']['total_s']
    print('| module | params | median time (s) | x bilinear |')
    print('|---|---:|---:|---:|')
    for key, label in names:
        r = res[key]
        r['vs_bilinear'] = r['total_s'] / base
        params = f"{r['params']:,}" if key in ('bilinear', 'fade', 'fade-h2l', 'fade-lite') else ''
        print(f"| {label} | {params} | {r['total_s']:.4f} | {r['vs_bilinear']:.2f} |")
    report['modules'] = res
    return True, True


def _with_cp_switch():
    """How to switch gradient checkpointing on for SegFormer-B1 + FADE, or None."""
    try:
        from fade_mm.seg import UpsamplerSegformerHead
        if 'with_cp' in inspect.signature(UpsamplerSegformerHead.__init__).parameters:
            return 'model.decode_head.with_cp', dict(cfg_options={'model.decode_head.with_cp':
                                                                  True})
    except ImportError:
        pass
    from fade_mm.upsamplers import FADE
    if 'with_cp' in inspect.signature(FADE.__init__).parameters:
        return 'FADE(with_cp=True)', dict(upsampler_options=dict(with_cp=True))
    return None


def _model_spec(args, name, up, **extra) -> dict:
    family, pattern, _, _ = MODELS[name]
    hw = dict(segformer_b1=args.seg_size, upernet_r50=args.uper_size,
              faster_rcnn_r50=args.det_size)[name]
    # UPerNet's pyramid pooling ends in a 1x1 map: batch norm needs 2 images to train.
    batch = max(2, args.model_batch) if name == 'upernet_r50' else args.model_batch
    return dict(kind='model', family=family, config=pattern.format(up, neck=args.det_neck),
                hw=hw, batch=batch, repeats=args.model_repeats, **extra)


def part_models(args, report) -> Tuple[bool, bool]:
    print(f'\n## FADE in training steps (forward, backward, SGD step), median of '
          f'{args.model_repeats}; load average {_load()}')
    print('(peak = tensor memory allocated during a step above weights, gradients and optimizer '
          'state)')
    print('| model | input | baseline step (s) | FADE step (s) | time ratio | baseline peak '
          '(MB) | FADE peak (MB) | memory ratio | extra params |')
    print('|---|---|---:|---:|---:|---:|---:|---:|---:|')
    out = {}
    for name in args.models:
        _, _, base_up, fade_up = MODELS[name]
        base = run_worker(_model_spec(args, name, base_up), args)
        fade = run_worker(_model_spec(args, name, fade_up), args)
        r = dict(baseline=base, fade=fade, time_ratio=fade['step_s'] / base['step_s'],
                 memory_ratio=fade['peak_alloc_mb'] / base['peak_alloc_mb'],
                 input=_model_spec(args, name, base_up)['hw'],
                 batch=_model_spec(args, name, base_up)['batch'])
        if name == 'segformer_b1':
            r['target_time_ratio'] = SEGFORMER_FLOP_RATIO
        out[name] = r
        h, w = r['input']
        print(f"| {name} | {r['batch']}x3x{h}x{w} | {base['step_s']:.3f} | "
              f"{fade['step_s']:.3f} | {r['time_ratio']:.3f} | {base['peak_alloc_mb']:.0f} | "
              f"{fade['peak_alloc_mb']:.0f} | {r['memory_ratio']:.3f} | "
              f"{fade['params'] - base['params']:+,} |")
    if 'segformer_b1' in out:
        r = out['segformer_b1']
        size_note = '' if tuple(r['input']) == (512, 512) else ' [FLOP share published at 512x512]'
        print(f"SegFormer-B1: FADE/bilinear time ratio {r['time_ratio']:.3f}, FLOP ratio "
              f"(15.91 + 2.65) / 15.91 = {SEGFORMER_FLOP_RATIO:.3f} (aim: not above): "
              f"{_verdict(r['time_ratio'] <= SEGFORMER_FLOP_RATIO)}{size_note}")
    report['models'] = out
    seg = out.get('segformer_b1')
    return True, seg is None or seg['time_ratio'] <= SEGFORMER_FLOP_RATIO


def part_with_cp(args, report) -> Tuple[bool, bool]:
    h, w = args.seg_size
    switch = _with_cp_switch()
    print(f'\n## Gradient checkpointing (with_cp) in SegFormer-B1 + FADE, batch {args.model_batch}'
          f' at {h}x{w}; load average {_load()}')
    if switch is None:
        print('no with_cp switch in this fade_mm (UpsamplerSegformerHead nor FADE): skipped')
        report['with_cp'] = dict(available=False)
        return True, True
    how, extra = switch
    off = run_worker(_model_spec(args, 'segformer_b1', 'fade'), args)
    on = run_worker(_model_spec(args, 'segformer_b1', 'fade', **extra), args)
    print(f'switch: {how}=True')
    print('| with_cp | step (s) | peak allocated (MB) | peak RSS (MB) | saved activations (MB) |')
    print('|---|---:|---:|---:|---:|')
    for label, r in (('False', off), ('True', on)):
        print(f"| {label} | {r['step_s']:.3f} | {r['peak_alloc_mb']:.1f} | "
              f"{r['peak_rss_mb']:.1f} | {r.get('saved_activations_mb', float('nan')):.1f} |")
    saving = off['peak_alloc_mb'] - on['peak_alloc_mb']
    print(f"peak-memory saving: {saving:.1f} MB ({100 * saving / off['peak_alloc_mb']:.1f}% of the "
          f"step's peak), time cost x{on['step_s'] / off['step_s']:.3f}")
    report['with_cp'] = dict(available=True, switch=how, off=off, on=on, saving_mb=saving,
                             time_ratio=on['step_s'] / off['step_s'])
    return True, saving > 0


# ------------------------------------------------------------------------------ CUDA
def _cuda_time(fn, repeats: int) -> Tuple[float, float]:
    """Median seconds of ``fn()`` over ``repeats`` CUDA-event-timed calls (3 warm-ups), and the
    peak allocated MiB of one call above what was allocated before it."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2], peak


def _cuda_op_rows(b, c, n, k, s, repeats):
    """Reassembly implementations on CUDA: {name: (fwd_s, total_s, peak_mb, checksum)}."""
    from fade_mm.ops.carafe import _mmcv_cuda_carafe
    g = torch.Generator(device='cuda').manual_seed(0)
    x = torch.randn(b, c, n, n, device='cuda', generator=g).requires_grad_()
    m = torch.randn(b, k * k, s * n, s * n, device='cuda', generator=g).softmax(1)
    m = m.detach().requires_grad_()
    grad = torch.randn(b, c, s * n, s * n, device='cuda', generator=g)
    impls = {'naive': lambda: naive_carafe(x, m, k, s),
             'rows': lambda: carafe(x, m, k, 1, s, use_mmcv_cuda=False, impl='rows'),
             'shift': lambda: carafe(x, m, k, 1, s, impl='shift')}
    if _mmcv_cuda_carafe() is not None:
        impls['mmcv'] = lambda: carafe(x, m, k, 1, s, use_mmcv_cuda=True, impl='rows')
    out = {}
    for name, fwd in impls.items():
        def step(fwd=fwd):
            x.grad = m.grad = None
            fwd().backward(grad)
        try:
            with torch.no_grad():
                fwd_s, _ = _cuda_time(fwd, repeats)
                checksum = float(fwd().double().sum())
            total_s, peak = _cuda_time(step, repeats)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            out[name] = None
            continue
        out[name] = dict(fwd_s=fwd_s, total_s=total_s, peak_mb=peak, checksum=checksum)
    return out


def _cuda_modules(b, c, n, s, repeats):
    """Upsampler modules fwd+bwd on CUDA in float32 and under fp16/bf16 autocast."""
    from fade_mm.upsamplers import CARAFE, FADE, DySample, FADELite
    g = torch.Generator(device='cuda').manual_seed(0)
    x = torch.randn(b, c, n, n, device='cuda', generator=g).requires_grad_()
    guide = torch.randn(b, c, s * n, s * n, device='cuda', generator=g).requires_grad_()
    torch.manual_seed(0)
    mods = {'bilinear': None, 'FADE': FADE(c, scale_factor=s),
            'FADE-Lite': FADELite(c, scale_factor=s), 'CARAFE': CARAFE(c, scale_factor=s),
            'DySample': DySample(c, scale_factor=s)}
    out = {}
    for name, mod in mods.items():
        if mod is None:
            fn = lambda: F.interpolate(x, scale_factor=s, mode='bilinear',  # noqa: E731
                                       align_corners=False)
        else:
            mod = mod.cuda()
            fn = functools.partial(mod, x, guide)
        row = {}
        for label, dtype in (('fp32', None), ('fp16', torch.float16), ('bf16', torch.bfloat16)):
            def step(fn=fn, dtype=dtype):
                x.grad = guide.grad = None
                with torch.autocast('cuda', dtype=dtype or torch.float16,
                                    enabled=dtype is not None):
                    y = fn()
                y.float().square().mean().backward()
            row[label], row[label + '_peak_mb'] = _cuda_time(step, repeats)
        out[name] = row
    return out


def part_cuda(args, report) -> Tuple[bool, bool]:
    if not torch.cuda.is_available():
        print('\n## CUDA: no CUDA GPU here, skipped')
        report['cuda'] = dict(available=False)
        return True, True
    name = torch.cuda.get_device_name()
    print(f'\n## CUDA ({name}, torch {torch.__version__}): median of {args.cuda_repeats} '
          f'CUDA-event-timed calls after 3 warm-ups; peak = allocator high-water mark of one '
          f'call above the inputs')
    res = dict(device=name, ops={}, modules={})
    correct, ok = True, True
    for b, c, n in args.cuda_sizes:
        k, s = args.kernel, args.scale
        rows = _cuda_op_rows(b, c, n, k, s, args.cuda_repeats)
        key = f'{b}x{c}x{n}x{n}'
        res['ops'][key] = rows
        print(f'\nreassembly, B={b}, C={c}, {n}x{n} -> {s * n}x{s * n}, k={k}, float32')
        print('| implementation | forward (ms) | fwd+bwd (ms) | peak (MB) | x naive (fwd+bwd) |')
        print('|---|---:|---:|---:|---:|')
        naive = rows.get('naive')
        for impl, r in rows.items():
            if r is None:
                print(f'| {impl} | out of memory | | | |')
                continue
            speed = f"{naive['total_s'] / r['total_s']:.1f}x" if naive else ''
            print(f"| {impl} | {1e3 * r['fwd_s']:.3f} | {1e3 * r['total_s']:.3f} | "
                  f"{r['peak_mb']:.0f} | {speed} |")
        if naive:
            for impl in ('rows', 'shift', 'mmcv'):
                if rows.get(impl):
                    rel = abs(rows[impl]['checksum'] - naive['checksum'])
                    correct &= rel / max(1.0, abs(naive['checksum'])) < 1e-4
            ok &= rows['rows'] is not None and rows['rows']['total_s'] < naive['total_s']
        if rows.get('mmcv') and rows.get('rows'):
            ratio = rows['rows']['total_s'] / rows['mmcv']['total_s']
            print(f'training path / mmcv kernel (fwd+bwd): {ratio:.2f}x (target <= 3x): '
                  f'{_verdict(ratio <= 3)}')
            ok &= ratio <= 3
        mods = _cuda_modules(b, c, n, s, args.cuda_repeats)
        res['modules'][key] = mods
        print(f'\nmodules, fwd+bwd (ms), B={b}, C={c}, {n}x{n} -> {s * n}x{s * n}')
        print('| module | fp32 | fp16 autocast | bf16 autocast | fp32 peak (MB) | '
              'x bilinear (fp32) |')
        print('|---|---:|---:|---:|---:|---:|')
        for mname, r in mods.items():
            print(f"| {mname} | {1e3 * r['fp32']:.3f} | {1e3 * r['fp16']:.3f} | "
                  f"{1e3 * r['bf16']:.3f} | {r['fp32_peak_mb']:.0f} | "
                  f"{r['fp32'] / mods['bilinear']['fp32']:.1f} |")
    report['cuda'] = res
    return correct, ok


def _triples(text: str):
    return [[int(v) for v in t.split(',')] for t in text.split(';') if t.strip()]


def _size_pair(text: str):
    h, _, w = text.partition('x')
    return [int(h), int(w or h)]


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--parts', default=','.join(PARTS),
                   help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    p.add_argument('--quick', action='store_true',
                   help='small sizes and few repeats everywhere (explicit flags still win)')
    p.add_argument('--size', type=int, help='low-res side h=w of the operator (64)')
    p.add_argument('--channels', type=int, help='operator channels (256)')
    p.add_argument('--batch', type=int, help='operator batch (2)')
    p.add_argument('--kernel', type=int, default=5)
    p.add_argument('--scale', type=int, default=2)
    p.add_argument('--repeats', type=int, help='timed repetitions of the operator (5)')
    p.add_argument('--load-repeats', type=int, help='timed repetitions under load (3)')
    p.add_argument('--busy', help='numbers of busy processes to measure with (1,2)')
    p.add_argument('--busy-threads', type=int, default=2, help='threads of a busy process (2)')
    p.add_argument('--models', help='subset of ' + ','.join(MODELS) + ' (all)')
    p.add_argument('--seg-size', type=_size_pair, help='SegFormer-B1 input HxW (512x512)')
    p.add_argument('--uper-size', type=_size_pair, help='UPerNet-R50 input HxW (256x256)')
    p.add_argument('--det-size', type=_size_pair, help='Faster R-CNN input HxW (256x320)')
    p.add_argument('--det-neck', choices=['fpncarafe', 'fpn'], default='fpncarafe',
                   help="Faster R-CNN topology: 'fpncarafe' (4 upsamplers, the published FADE "
                        "row) or mmdet's standard 'fpn' (3)")
    p.add_argument('--model-batch', type=int, help='images per training step (2)')
    p.add_argument('--model-repeats', type=int, help='timed training steps (3)')
    p.add_argument('--threads', type=int, default=torch.get_num_threads())
    p.add_argument('--cuda-sizes', type=_triples,
                   help='B,C,h of the CUDA part, ;-separated (2,256,64;8,256,128)')
    p.add_argument('--cuda-repeats', type=int, default=20, help='timed calls on CUDA (20)')
    p.add_argument('--json', metavar='PATH', help='also write every figure as JSON')
    p.add_argument('--strict', action='store_true',
                   help='exit 1 when a speed or memory target is missed (default: only when '
                        'the implementations disagree or a part fails)')
    p.add_argument('--worker-timeout', type=float, default=3600, help=argparse.SUPPRESS)
    p.add_argument('--worker', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    # A SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the busy processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.worker:
        spec = json.loads(args.worker)
        res = dict(op=op_worker, module=module_worker, model=model_worker)[spec['kind']](spec)
        print(RESULT + json.dumps(res), flush=True)
        return 0

    quick = args.quick
    defaults = dict(size=32 if quick else 64, channels=128 if quick else 256,
                    batch=1 if quick else 2, repeats=3 if quick else 5,
                    load_repeats=2 if quick else 3, busy='1' if quick else '1,2',
                    seg_size=[256, 256] if quick else [512, 512],
                    uper_size=[128, 128] if quick else [256, 256],
                    det_size=[128, 160] if quick else [256, 320],
                    model_batch=1 if quick else 2, model_repeats=2 if quick else 3,
                    cuda_sizes=[[2, 128, 32]] if quick else [[2, 256, 64], [8, 256, 128]],
                    models=','.join(MODELS))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.busy = [int(v) for v in str(args.busy).split(',') if v.strip()]
    args.models = [m.strip() for m in args.models.split(',') if m.strip()]
    parts = [q.strip() for q in args.parts.split(',') if q.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown or set(args.models) - set(MODELS):
        p.error(f'unknown parts {sorted(unknown)} or models '
                f'{sorted(set(args.models) - set(MODELS))}')

    report = dict(settings={k: v for k, v in vars(args).items() if k not in ('worker',)},
                  machine=dict(cpus=os.cpu_count(), threads=args.threads,
                               torch=torch.__version__, python=platform.python_version(),
                               processor=platform.processor() or platform.machine(),
                               load_average_start=_load()))
    print(f'fade_mm benchmark: torch {torch.__version__}, {os.cpu_count()} CPUs, '
          f'{args.threads} threads, load average {_load()}')
    correct, targets = True, True
    runners = dict(ops=part_ops, load=part_load, modules=part_modules, models=part_models,
                   with_cp=part_with_cp, cuda=part_cuda)
    for part in PARTS:
        if part in parts:
            agreed, met = runners[part](args, report)
            correct &= agreed
            targets &= met
    report['machine']['load_average_end'] = _load()
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
        print(f'\nwrote {args.json}')
    if not correct:
        print('the implementations disagree: see the checksums above')
        return 1
    return 1 if args.strict and not targets else 0


if __name__ == '__main__':
    sys.exit(main())
