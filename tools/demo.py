#!/usr/bin/env python
"""fade_mm demo (foundation stage): FADE and FADE-Lite built from config under the mmdet and
mmseg scopes, one forward+backward pass each on CPU, parameter counts, then the benchmark.

    python tools/demo.py              # what `make demo` runs after the set-up
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

import fade_mm  # noqa: F401  (registers FADE, FADELite)

CONFIG = """
upsamplers = [
    dict(type='FADE', in_channels=256),                       # B6: the paper's FADE
    dict(type='FADE', in_channels=256, semi_shift_impl='h2l'),
    dict(type='FADE', in_channels=256, fusion='none'),        # FADE without gate
    dict(type='FADELite', in_channels=256),
]
"""


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split('\n')[0]).parse_args()
    import mmdet.registry  # noqa: F401  (creates the scoped registries)
    import mmseg.registry  # noqa: F401
    cfg = Config.fromstring(CONFIG, '.py')
    x = torch.randn(2, 256, 32, 33)
    guide = torch.randn(2, 256, 63, 66)  # odd guide height: ceil(63/2) = 32
    print(f'x {tuple(x.shape)} -> guide {tuple(guide.shape)}, CPU, {torch.get_num_threads()} '
          'threads')
    print('| scope | config | params | out shape | fwd+bwd (s) |')
    print('|---|---|---:|---|---:|')
    for scope in ('mmdet', 'mmseg'):
        with DefaultScope.overwrite_default_scope(scope):
            for up_cfg in cfg.upsamplers:
                m = MODELS.build(up_cfg)
                t0 = time.perf_counter()
                out = m(x, guide)
                out.square().mean().backward()
                dt = time.perf_counter() - t0
                opts = ', '.join(f'{k}={v}' for k, v in up_cfg.items() if k != 'in_channels')
                n = sum(q.numel() for q in m.parameters())
                print(f'| {scope} | {opts} | {n:,} | {tuple(out.shape)} | {dt:.3f} |')
    print()
    return subprocess.call([sys.executable, str(Path(__file__).with_name('benchmark.py'))])


if __name__ == '__main__':
    sys.exit(main())
