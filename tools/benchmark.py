#!/usr/bin/env python
"""Speed and memory of fade_mm's pure-PyTorch CARAFE against the naive formulation.

Both are measured in this run, on this machine, each in a fresh worker process so the peak
resident memory of one cannot hide the other's. The naive reference is the formulation of
the official pure-PyTorch FADE: unfold the low-resolution features, repeat them s*s times to
full resolution (a k*k*C*sH*sW tensor) and contract with the kernels by einsum.

    python tools/benchmark.py                 # C=256, 64x64 -> 128x128, B=2, k=5, float32
    python tools/benchmark.py --size 32       # smaller, quicker

Prints median forward+backward time, peak memory above the inputs, and the ratios against
the reference, then FADE / FADE-Lite whole-module time against bilinear interpolation.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
import torch.nn.functional as F

from fade_mm.ops import carafe
from fade_mm.profiling import median_time, peak_rss_mb, rss_mb

TARGET_SPEEDUP, TARGET_MEMORY = 10.0, 1 / 8


def naive_carafe(x, masks, k, s):
    """Unfold, repeat to full resolution, einsum (the official pure-PyTorch FADE)."""
    b, c, h, w = x.shape
    cols = F.unfold(x, k, padding=(k - 1) // 2).view(b, c, k * k, h, w).transpose(1, 2)
    cols = cols.repeat_interleave(s, 3).repeat_interleave(s, 4)  # (B, k*k, C, sH, sW)
    return torch.einsum('bkchw,bkhw->bchw', cols, masks)


def _inputs(args, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    s, k = args.scale, args.kernel
    x = torch.randn(args.batch, args.channels, args.size, args.size, generator=g, dtype=dtype)
    m = torch.randn(args.batch, k * k, s * args.size, s * args.size, generator=g, dtype=dtype)
    grad = torch.randn(args.batch, args.channels, s * args.size, s * args.size, generator=g,
                       dtype=dtype)
    return x.requires_grad_(), m.softmax(1).detach().requires_grad_(), grad


def worker(args) -> None:
    """Run in a child process: measure one implementation, print JSON."""
    x, m, grad = _inputs(args)
    if args.worker == 'naive':
        fwd = lambda: naive_carafe(x, m, args.kernel, args.scale)  # noqa: E731
    else:
        fwd = lambda: carafe(x, m, args.kernel, 1, args.scale)  # noqa: E731

    def step():
        x.grad = m.grad = None
        fwd().backward(grad)

    base = rss_mb()
    step()  # first call: its high-water mark is the peak memory of one forward+backward
    peak = peak_rss_mb() - base
    with torch.no_grad():
        checksum = float(fwd().double().sum())
    fwd_t = median_time(lambda: fwd(), args.repeats)
    total_t = median_time(step, args.repeats)
    print(json.dumps(dict(fwd=fwd_t, total=total_t, peak_mb=peak, checksum=checksum)))


def run_worker(name, args):
    cmd = [sys.executable, __file__, '--worker', name, '--size', str(args.size),
           '--channels', str(args.channels), '--batch', str(args.batch),
           '--kernel', str(args.kernel), '--scale', str(args.scale),
           '--repeats', str(args.repeats), '--threads', str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def modules(args) -> None:
    from mmengine.registry import MODELS
    c, s, n = args.channels, args.scale, args.size
    x = torch.randn(args.batch, c, n, n, requires_grad=True)
    guide = torch.randn(args.batch, c, s * n, s * n, requires_grad=True)

    def timed(fn):
        def step():
            x.grad = guide.grad = None
            fn().square().mean().backward()
        step()
        return median_time(step, args.repeats)

    base = timed(lambda: F.interpolate(x, scale_factor=s, mode='bilinear',
                                       align_corners=False))
    print(f'\nWhole modules, forward+backward, x {args.batch}x{c}x{n}x{n} -> {s * n}x{s * n}:')
    print('| module | params | median time (s) | x bilinear |')
    print('|---|---:|---:|---:|')
    print(f'| bilinear (F.interpolate) | 0 | {base:.4f} | 1.0 |')
    for label, cfg in (('FADE (L2H)', dict(type='FADE', semi_shift_impl='l2h')),
                       ('FADE (H2L)', dict(type='FADE', semi_shift_impl='h2l')),
                       ('FADE-Lite', dict(type='FADELite'))):
        m = MODELS.build(dict(cfg, in_channels=c, scale_factor=s))
        t = timed(lambda: m(x, guide))
        params = sum(p.numel() for p in m.parameters())
        print(f'| {label} | {params:,} | {t:.4f} | {t / base:.1f} |')


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=64, help='low-res side h=w (64)')
    p.add_argument('--channels', type=int, default=256)
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--kernel', type=int, default=5)
    p.add_argument('--scale', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5, help='timed repetitions (median)')
    p.add_argument('--threads', type=int, default=torch.get_num_threads())
    p.add_argument('--skip-modules', action='store_true', help='only the carafe comparison')
    p.add_argument('--worker', choices=['naive', 'fade_mm'], help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        worker(args)
        return 0

    print(f'CARAFE forward+backward, C={args.channels}, {args.size}x{args.size} -> '
          f'{args.scale * args.size}x{args.scale * args.size}, B={args.batch}, k={args.kernel}, '
          f'float32, CPU, {args.threads} threads, median of {args.repeats}')
    ref = run_worker('naive', args)
    ours = run_worker('fade_mm', args)
    rel = abs(ours['checksum'] - ref['checksum']) / max(1.0, abs(ref['checksum']))
    print('| implementation | forward (s) | fwd+bwd (s) | peak memory (MB) |')
    print('|---|---:|---:|---:|')
    for name, r in (('naive unfold+repeat+einsum', ref), ('fade_mm.ops.carafe', ours)):
        print(f"| {name} | {r['fwd']:.4f} | {r['total']:.4f} | {r['peak_mb']:.1f} |")
    speed = ref['total'] / ours['total']
    mem = ours['peak_mb'] / max(ref['peak_mb'], 1e-9)
    print(f"forward speed-up: {ref['fwd'] / ours['fwd']:.1f}x")
    print(f'forward+backward speed-up: {speed:.1f}x (target >= {TARGET_SPEEDUP:.0f}x): '
          f"{'PASS' if speed >= TARGET_SPEEDUP else 'FAIL'}")
    print(f'peak memory ratio: {mem:.3f} = 1/{1 / max(mem, 1e-9):.0f} of the reference '
          f"(target <= 1/8): {'PASS' if mem <= TARGET_MEMORY else 'FAIL'}")
    print(f'outputs agree: relative checksum difference {rel:.1e}')
    if not args.skip_modules:
        modules(args)
    return 0 if speed >= TARGET_SPEEDUP and mem <= TARGET_MEMORY and rel < 1e-4 else 1


if __name__ == '__main__':
    sys.exit(main())
