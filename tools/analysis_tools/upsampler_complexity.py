#!/usr/bin/env python
"""Complexity of every registered upsampler: params, FLOPs, latency and peak memory.

The setting of the DySample paper's table: x2 upsampling of a 256-channel 120x120 map (the
guide, for guided upsamplers, is 256x240x240). FLOPs are multiply-adds counted at dispatch
level (see :mod:`fade_mm.profiling`): reassembly and grid sampling are counted, not scored
zero. Each upsampler is measured in a fresh worker process so peak memory is its own.

    python tools/analysis_tools/upsampler_complexity.py                 # CPU (+ CUDA if present)
    python tools/analysis_tools/upsampler_complexity.py --size 60 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import subprocess
import sys
from typing import List, Optional, Sequence, Tuple

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # usable from a checkout without `pip install -e .`

import fade_mm  # noqa: E402  (registers the upsamplers in mmengine's MODELS)
from fade_mm import cli  # noqa: E402
from fade_mm.profiling import count_flops, median_time, peak_rss_mb, rss_mb  # noqa: E402
from fade_mm.tools import upsampler_label  # noqa: E402

# Row order of the papers' complexity tables; any other registered upsampler follows. Rows
# are named as results_table.py names them (fade_mm.tools.upsampler_label).
ROWS = [
    dict(type='NearestUpsample'),
    dict(type='BilinearUpsample'),
    dict(type='DeconvUpsample'),
    dict(type='PixelShuffleUpsample'),
    dict(type='CARAFEUpsample'),
    dict(type='IndexNet'),
    dict(type='A2U'),
    dict(type='SAPA', variant='I'),
    dict(type='SAPA', variant='B'),
    dict(type='SAPA', variant='G'),
    dict(type='DySample', style='lp'),
    dict(type='DySample', style='lp', dyscope=True),
    dict(type='DySample', style='pl'),
    dict(type='DySample', style='pl', dyscope=True),
    dict(type='FADE'),
    dict(type='FADELite'),
]


#: Registered names that only alias a listed class (old configs' `type='CARAFE'`).
ALIASES = {'CARAFE'}


def all_rows() -> List[Tuple[str, dict]]:
    """``(label, upsample_cfg)`` of every row: :data:`ROWS`, then the other upsamplers."""
    listed = {cfg['type'] for cfg in ROWS} | ALIASES
    extra = [dict(type=name) for name in fade_mm.upsamplers.__all__
             if name not in listed and isinstance(getattr(fade_mm.upsamplers, name), type)]
    return [(upsampler_label(cfg), cfg) for cfg in ROWS + extra]


def _sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def worker(cfg: dict, args: argparse.Namespace) -> dict:
    from mmengine.registry import MODELS

    dev = args.device
    m = MODELS.build(dict(cfg, in_channels=args.channels, scale_factor=2)).to(dev)
    n, c = args.size, args.channels
    x = torch.randn(1, c, n, n, device=dev, requires_grad=True)
    guide = torch.randn(1, c, 2 * n, 2 * n, device=dev, requires_grad=True)
    params = sum(p.numel() for p in m.parameters())
    # counted on CPU only: mmcv's CUDA carafe kernel is opaque to the dispatcher
    flops = count_flops(lambda: m(x, guide)) if dev == 'cpu' else None

    def fwd():
        with torch.no_grad():
            m(x, guide)
        _sync(dev)

    def step():
        x.grad = guide.grad = None
        m.zero_grad(set_to_none=True)
        m(x, guide).square().mean().backward()
        _sync(dev)

    if dev == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
        step()
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
    else:
        base = rss_mb()
        step()
        peak = peak_rss_mb() - base
    fwd()
    return dict(params=params, flops=flops, fwd=median_time(fwd, args.repeats),
                total=median_time(step, args.repeats), peak_mb=peak)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = cli.ArgumentParser(prog='upsampler_complexity.py',
                           description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=120, help='input side (120)')
    p.add_argument('--channels', type=int, default=256)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--device', choices=['cpu', 'cuda', 'all'], default='all',
                   help="'all': CPU, then CUDA when available")
    p.add_argument('--worker', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker), args)))
        return 0
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    if args.device != 'all':
        devices = [args.device]
    flops = {}
    for dev in devices:
        print(f'\nx2 upsampling of 1x{args.channels}x{args.size}x{args.size} on {dev} '
              f'({torch.get_num_threads()} threads), median of {args.repeats}; FLOPs are '
              'multiply-adds')
        print('| upsampler | params | GFLOPs | forward (ms) | fwd+bwd (ms) | peak memory (MB) |')
        print('|---|---:|---:|---:|---:|---:|')
        for name, cfg in all_rows():
            cmd = [sys.executable, __file__, '--worker', json.dumps(cfg), '--size',
                   str(args.size), '--channels', str(args.channels), '--repeats',
                   str(args.repeats), '--device', dev]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode:
                print(f'| {name} | failed: {run.stderr.strip().splitlines()[-1]} |')
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            flops.setdefault(name, r['flops'])
            g = flops[name]
            print(f"| {name} | {r['params']:,} | {g / 1e9:.3f} | {r['fwd'] * 1e3:.1f} | "
                  f"{r['total'] * 1e3:.1f} | {r['peak_mb']:.1f} |", flush=True)
    return 0


if __name__ == '__main__':
    cli.run_cli(main, prog='upsampler_complexity.py')
