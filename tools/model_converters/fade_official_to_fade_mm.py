#!/usr/bin/env python
"""Convert a checkpoint holding official FADE / FADE-Lite modules (github.com/poppinace/fade)
to fade_mm's key names and bias parametrisation.

    python tools/model_converters/fade_official_to_fade_mm.py IN.pth OUT.pth [--kind auto]

Every official module found, under any prefix, is converted by
:func:`fade_mm.upsamplers.convert.convert_official_checkpoint` (its docstring lists the
official variants and the re-parametrisation), e.g.
``decode_head.upsamplers.0.ker_generator.compressor_en.weight`` ->
``decode_head.upsamplers.0.compressor_enc.weight``; other keys are kept unchanged, so the
rest of the model must use the official names too.

IN may be a bare state dict or a dict with a ``'state_dict'`` or ``'model'`` entry. OUT has
the same layout; of the other top-level entries only ``'meta'`` is kept (optimizer and
scheduler states refer to the old parameters). IN is read with ``weights_only=True``.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from typing import Any, Dict, Optional

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # run from a checkout without `pip install -e .` too

from fade_mm.upsamplers.convert import (  # noqa: E402
    KINDS,
    convert_official_checkpoint,
    detect_official_kind,
    find_official_modules,
)

WRAPPERS = ('state_dict', 'model')  # where checkpoints keep the model's weights
KEPT = ('meta',)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', metavar='IN', help='official checkpoint (.pth)')
    parser.add_argument('dst', metavar='OUT', help='where to write the converted checkpoint')
    parser.add_argument('--kind', default='auto', choices=KINDS,
                        help="official variant of every FADE module; 'auto' detects each")
    parser.add_argument('--no-strict', action='store_true',
                        help='leave out, with a warning, keys under a FADE module that the '
                             'converter does not understand (default: error)')
    return parser.parse_args(argv)


def main(argv: Optional[list] = None) -> None:
    args = parse_args(argv)
    try:
        ckpt = torch.load(args.src, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises several types for pickles it will not load
        sys.exit(f'error: cannot load {args.src} with weights_only=True ({err}); re-save its '
                 f'state dict from a session you trust')
    wrapper = next((w for w in WRAPPERS if isinstance(ckpt, dict) and w in ckpt), None)
    state_dict = ckpt[wrapper] if wrapper else ckpt
    try:
        converted = convert_official_checkpoint(state_dict, args.kind,
                                                strict=not args.no_strict)
    except ValueError as err:
        sys.exit(f'error: {args.src}: {err}')

    for prefix in find_official_modules(state_dict):
        sub = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        kind = args.kind if args.kind != 'auto' else detect_official_kind(sub)
        print(f'converted {prefix or "<root>"!s} ({kind})')
    out: Dict[str, Any] = converted
    if wrapper:
        out = {wrapper: converted, **{k: ckpt[k] for k in KEPT if k in ckpt}}
        dropped = sorted(str(k) for k in ckpt if k not in out)
        if dropped:
            print(f'dropped top-level entries: {dropped}')
    torch.save(out, args.dst)
    print(f'saved {args.dst}')


if __name__ == '__main__':
    main()
