#!/usr/bin/env python
"""Parameters and GFLOPs of an mmdet or mmseg model built from a config (no dataset needed).

FLOPs are **multiply-adds** (1 GFLOP = 1e9 multiply-adds), the convention of the published
upsampler tables, counted at dispatch level (:mod:`fade_mm.complexity`, with
:func:`fade_mm.profiling.count_flops_by_op`): convolutions, linear layers and matrix products
(attention, CARAFE reassembly inside :func:`fade_mm.ops.carafe`) plus four multiply-adds per
output element of bilinear interpolation and grid sampling. Normalisation, activations,
softmax and other element-wise ops count zero. Unlike mmengine's counter (which scores custom
autograd ops such as mmcv's carafe as zero) and mmseg 1.2.2's ``get_flops.py`` (which raises
with mmengine >= 0.8), the upsamplers' reassembly and sampling are counted.

**What the GFLOPs cover** (the report's ``counted`` line, the JSON's ``counted``): a
segmentor's whole ``mode='tensor'`` forward; a detector's **backbone and neck**
(``model.extract_feat``), where the upsamplers of every detection config of this repository
live (FPN / PAFPN necks): its heads cost what an untrained RPN or NMS happens to keep, so
they are not run. Parameters are always the whole model's.

The model is built from the config alone (no pretrained download: ``init_weights`` is never
called) and fed one dummy image of ``--shape`` through its data preprocessor (so padding such
as mmdet's ``pad_size_divisor`` applies). It runs on the ``meta`` device when it can --
shapes only, no arithmetic, well under a second even for a detector at 800x1333 -- and on
CPU otherwise.

The report also gives the **upsamplers' share**: their parameters and the multiply-adds of
their calls (each call counted again on its own), as totals and fractions of the counted
ones. ``--json PATH`` writes all of it (:func:`fade_mm.complexity.to_json`) as the
**complexity JSON** that ``results_table.py`` reads instead of building every model itself;
``model_key`` ties it to the model config it was counted for.

Examples::

    python tools/analysis_tools/get_flops.py \\
        configs/segformer/segformer_mit-b1_fade_1xb16-160k_ade20k-512x512.py \\
        --compare configs/segformer/segformer_mit-b1_bilinear_1xb16-160k_ade20k-512x512.py
    python tools/analysis_tools/get_flops.py \\
        configs/faster_rcnn/faster-rcnn_r50_fpn-fade_8xb2-1x_coco.py --shape 800 1333
    python tools/analysis_tools/get_flops.py work_dirs/X/X.py --json work_dirs/X/complexity.json
    python tools/analysis_tools/get_flops.py work_dirs/*/*.py --shape 256 \\
        --json '{config_dir}/complexity.json'
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # usable from a checkout without `pip install -e .`

from fade_mm import cli, complexity  # noqa: E402

# Placeholders of --json PATH with several configs: one file per config.
PLACEHOLDERS = ('{config_dir}', '{config_stem}')


def parse_shape(parser: argparse.ArgumentParser, shape: List[int]) -> List[int]:
    """``--shape``: ``H W``, or one number for a square; exits with a one-line usage error
    otherwise (see :func:`fade_mm.complexity.check_shape`)."""
    try:
        return list(complexity.check_shape(shape))
    except cli.UsageError as err:
        parser.error(str(err))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = cli.ArgumentParser(
        prog='get_flops.py',
        description='Parameters and GFLOPs (multiply-adds) of an mmdet/mmseg config: the '
        "whole model's parameters; the GFLOPs of a segmentor's whole forward, of a "
        "detector's backbone and neck.",
        epilog='--json PATH writes what results_table.py reads: '
        + complexity.JSON_FIELDS_HELP + '. '
        'For a run of a work dir, count its dumped config: get_flops.py work_dirs/X/X.py '
        '--json work_dirs/X/complexity.json; for several, --json '
        "'{config_dir}/complexity.json' writes one next to each config.")
    p.add_argument('config', nargs='+', help='mmdet or mmseg config file(s)')
    h, w = complexity.DEFAULT_SHAPE
    p.add_argument('--shape', type=int, nargs='+', default=[h, w], metavar='N',
                   help=f'input H W, or one number for a square (default: {h} {w} for both '
                   'tasks)')
    p.add_argument('--compare', metavar='BASE_CONFIG',
                   help='also measure BASE_CONFIG and print the delta to it (one config only)')
    p.add_argument('--device', choices=['auto', 'meta', 'cpu'], default='auto',
                   help="'auto' (default): meta device (shapes only, fast), CPU when the "
                   'model needs real values')
    p.add_argument('--json', nargs='?', const='-', metavar='PATH',
                   help='JSON instead of the report: one object a config, printed (no PATH, '
                   'or -) or written to PATH (a list for several configs, or one file each '
                   'when PATH holds {config_dir} or {config_stem})')
    p.add_argument('--cfg-options', nargs='+', action=cli.DictAction, metavar='KEY=VALUE',
                   help='override settings of the config(s), e.g. '
                   'model.decode_head.upsample_cfg.type=FADELite')
    args = p.parse_args(argv)
    args.shape = parse_shape(p, args.shape)
    if args.compare and len(args.config) > 1:
        p.error('--compare takes one config, got several')
    if args.json not in (None, '-'):
        if args.json.endswith('.py'):
            p.error(f'argument --json: {args.json} is a .py file: name a .json file, or put '
                    '--json after the config')
        if len(args.config) > 1 and args.json.endswith(os.sep):
            p.error(f'argument --json: {args.json} is a directory')
    for path in args.config + ([args.compare] if args.compare else []):
        try:
            cli.check_config_file(path, '--compare' if path == args.compare else 'config')
        except cli.UsageError as err:
            p.error(str(err))
    return args


def json_path(template: str, config: str) -> str:
    """``--json PATH`` for one config: ``{config_dir}`` / ``{config_stem}`` filled in."""
    return (template.replace('{config_dir}', osp.dirname(osp.abspath(config)))
            .replace('{config_stem}', osp.splitext(osp.basename(config))[0]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    base = None
    if args.compare:
        base = complexity.measure(complexity.load_config(args.compare, args.cfg_options),
                                  args.shape, args.device, config_path=args.compare)
    results = []
    for path in args.config:
        cfg = complexity.load_config(path, args.cfg_options)
        results.append((path, complexity.measure(cfg, args.shape, args.device,
                                                 config_path=path)))
    if args.json is None:
        print('\n\n'.join(complexity.report(res, base) for _, res in results))
    elif args.json == '-':
        for _, res in results:
            print(json.dumps(complexity.to_json(res, base)))
    elif any(p in args.json for p in PLACEHOLDERS):
        for path, res in results:
            out = json_path(args.json, path)
            complexity.write_json(out, complexity.to_json(res, base))
            print(f'{path}: {out}')
    else:
        data = [complexity.to_json(res, base) for _, res in results]
        complexity.write_json(args.json, data[0] if len(data) == 1 else data)
        print(f'{", ".join(p for p, _ in results)}: {args.json}')
    return 0


if __name__ == '__main__':
    cli.run_cli(main, prog='get_flops.py')
