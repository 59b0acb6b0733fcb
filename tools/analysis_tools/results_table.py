#!/usr/bin/env python
"""Paper-style results table (Markdown, LaTeX/booktabs or CSV) from mmengine work dirs.

Reads what an mmengine 0.10 ``Runner`` writes for each run ``work_dirs/<config_name>/``:

- ``<config_name>.py``: the dumped config (else ``<timestamp>/vis_data/config.py``);
- ``<timestamp>/vis_data/scalars.json`` (same lines as ``vis_data/<timestamp>.json``): one
  JSON object per line -- training logs and, after every validation, its metrics;
- ``<timestamp>/<timestamp>.json``: the metrics of ``runner.test()`` / ``tools/test.py``;

and, for parameters and GFLOPs, the **complexity JSON** that ``get_flops.py --json`` writes
(see below). Timestamps of one run (a resumed training) are read in order. Per run it reports
the upsampler (from the config's ``upsample_cfg``), the backbone, parameters and GFLOPs
(multiply-adds) and the metrics of its task, told by the config's evaluator:

- ``det``: COCO box AP, AP50, AP75, APS, APM, APL (``coco/bbox_mAP*``, shown x100);
- ``ins`` (a ``CocoMetric`` with ``segm``): box AP and mask AP (``coco/segm_mAP*``:
  ``maskAP``, ``maskAP50``, ... ``maskAPL``);
- ``pan`` (``CocoPanopticMetric``): PQ, SQ, RQ, PQ_th, PQ_st (also SQ_th, RQ_th, SQ_st, RQ_st
  on request; ``coco_panoptic/*``, logged x100 already);
- ``seg``: mIoU and bIoU (plus aAcc, mAcc on request);

of two evaluations: **best** (the evaluation with the highest mask AP / AP / PQ / mIoU, all
its columns from that same evaluation) and **final** (the last one; a test run when there
was no validation). Deltas are to the baseline row: by default the nearest / bilinear run
of the same task and backbone.

**Complexity.** Nothing is built to count FLOPs unless asked: parameters and multiply-adds
come from complexity JSONs, ``get_flops.py CONFIG --json PATH``:

- ``<run_dir>/complexity.json`` belongs to that run (count it on the run's dumped config,
  ``get_flops.py work_dirs/X/X.py --json work_dirs/X/complexity.json``, which is what
  ``tools/demo.py`` does);
- ``--complexity FILE_OR_DIR ...``: JSON files (a directory: its ``*.json``) whose entries
  apply to every run whose model config equals the one counted (``model_key``).

GFLOPs are for the input shape recorded in the JSON and cover what it records (``counted``:
backbone and neck for detectors, the whole model for segmentors; a JSON written before it
said so counted the whole model, and a warning says when one task's rows mix the two);
``--shape`` keeps the entries of that shape only (the others give parameters alone).
``--count`` builds and counts the models that have no such entry (at ``--shape``, default
512x512), as ``get_flops.py`` does; without it, their ΔParams / ΔGFLOPs show a dash.
``--no-flops`` drops the GFLOPs column.

**Seeds.** Runs of one experiment that differ only in their seed make one row: each metric
shows the mean and the sample standard deviation (n - 1) over them, ``44.31 ± 0.21``, and the
``n`` column their number (one run: its value, n=1). Runs are grouped by their dumped configs,
compared without ``randomness.seed`` and without the keys that say where and how a run was
launched (``work_dir``, ``launcher``, ``resume``, and ``load_from`` of a resumed run) -- not
by directory names, so ``x_seed0`` / ``x_seed1`` group and a run whose schedule or learning
rate differs does not, whatever the names say. The seed shown (CSV) is the one the Runner
logged (``seed: N`` under "Runtime environment" in ``<timestamp>/<timestamp>.log``), else the
config's ``randomness.seed``. A delta whose two mean ± std intervals overlap is marked ``†``:
the difference is within run-to-run spread (a single run counts as a point).
``--per-run`` shows one row per run directory instead.

Nothing in a work dir is executed. Config dumps are Python, and ``mmengine.Config.fromfile``
would run them: they are parsed instead (:func:`read_config`, Python's ``ast``) and only
assignments of literals -- numbers, strings, ``None``/``True``/``False``, lists, tuples,
dicts, ``dict(...)``/``list(...)``/``tuple(...)``, arithmetic on numbers, names assigned
before -- are evaluated, which is all a Runner's dump holds; any other statement or value
is skipped with a warning. A dump's ``_base_`` is followed only into this repository's
``configs/`` or an installed package's (``mmdet::...``), configs that ship with the code.
Seeds are read from the logs.

A half-written run (an unreadable config, log or scalars file) does not stop the table: it
is skipped, or shown without what could not be read, with a one-line warning.

The reading is :mod:`fade_mm.results`, the counting :mod:`fade_mm.complexity` (what
``get_flops.py`` runs) and the rendering :mod:`fade_mm.tables`; this file is their command
line.

Examples::

    python tools/analysis_tools/results_table.py work_dirs
    python tools/analysis_tools/results_table.py work_dirs/segformer_* --format latex \\
        --baseline segformer_mit-b1_bilinear_1xb16-160k_ade20k-512x512 --metrics mIoU bIoU mAcc
    python tools/analysis_tools/results_table.py work_dirs --count --shape 512 512
    python tools/analysis_tools/results_table.py work_dirs --format csv --no-flops
    python tools/analysis_tools/results_table.py work_dirs/demo/*_seed* --eval final
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # usable from a checkout without `pip install -e .`

from fade_mm import cli, complexity, results, tables  # noqa: E402
from fade_mm.results import assign_baselines, read_config  # noqa: E402,F401  (re-exported)
from fade_mm.tables import RunGroup  # noqa: E402

CONFIGS_DIR = osp.join(REPO_ROOT, 'configs')


def collect(args: argparse.Namespace) -> List[RunGroup]:
    """The rows for ``args`` (:func:`parse_args`): :func:`fade_mm.results.collect`."""
    return results.collect(
        args.work_dirs, per_run=args.per_run, baseline=args.baseline, shape=args.shape,
        flops=not args.no_flops, device=args.device, exclude_sampling=args.exclude_sampling,
        count=getattr(args, 'count', False),
        complexity_paths=getattr(args, 'complexity', None) or [], configs_dir=CONFIGS_DIR)


def render_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The keyword arguments of :func:`fade_mm.tables.render` that ``args`` asks for."""
    return dict(metrics=args.metrics,
                evals=['best', 'final'] if args.eval == 'both' else [args.eval],
                flops=not args.no_flops, exclude_sampling=args.exclude_sampling,
                per_run=args.per_run)


def render(groups: List[RunGroup], args: argparse.Namespace) -> str:
    """The table of ``groups`` (see :func:`collect`) in ``args.format``."""
    try:
        return tables.render(groups, args.format, **render_options(args))
    except tables.UnknownMetricError as err:
        raise cli.UsageError(str(err)) from None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = cli.ArgumentParser(
        prog='results_table.py',
        description='Paper-style results table from mmengine work_dirs.')
    p.add_argument('work_dirs', nargs='*', default=['work_dirs'],
                   help='run directories (work_dirs/<config_name>) or folders of them '
                   '(default: work_dirs)')
    p.add_argument('--format', choices=sorted(tables.RENDERERS), default='markdown')
    p.add_argument('--baseline', metavar='NAME',
                   help='baseline run (directory name) or method (e.g. FADE); default: the '
                   'nearest/bilinear run of the same task and backbone')
    p.add_argument('--eval', choices=['best', 'final', 'both'], default='both',
                   help='which evaluation(s) of each run to show (default: both)')
    p.add_argument('--metrics', nargs='+', metavar='M',
                   help='metric columns, e.g. mIoU bIoU aAcc mAcc (segmentation; default mIoU '
                   'bIoU), AP AP50 AP75 APS APM APL (detection; default all), maskAP '
                   'maskAP50 ... maskAPL (instance segmentation; default AP AP50 AP75 '
                   'maskAP maskAP50 maskAP75), PQ SQ RQ PQ_th SQ_th RQ_th PQ_st SQ_st RQ_st '
                   '(panoptic; default PQ SQ RQ PQ_th PQ_st)')
    p.add_argument('--complexity', nargs='+', metavar='PATH',
                   help='complexity JSONs of get_flops.py --json (files, or directories of '
                   '*.json): each applies to the runs of the model config it was counted for; '
                   f"a run's own RUN_DIR/{results.COMPLEXITY_FILE} is always read")
    p.add_argument('--count', action='store_true',
                   help='build and count the models without a complexity JSON (slow: every '
                   'model is built, as get_flops.py does)')
    p.add_argument('--shape', type=int, nargs='+', metavar='N',
                   help='H W (or one number) the GFLOPs must be for: complexity JSONs of '
                   'another shape give parameters only; --count counts at it (default: the '
                   "JSONs' shape, else 512 512)")
    p.add_argument('--no-flops', action='store_true', help='skip the GFLOPs column')
    p.add_argument('--exclude-sampling', action='store_true',
                   help='leave bilinear interpolation / grid sampling out of GFLOPs (the '
                   'convention of hook-based counters behind the published tables)')
    p.add_argument('--per-run', action='store_true',
                   help='one row per run directory (default: runs whose configs differ only '
                   'in randomness.seed make one row, mean ± std)')
    p.add_argument('--device', choices=['auto', 'meta', 'cpu'], default='auto',
                   help='where --count counts FLOPs (see get_flops.py)')
    args = p.parse_args(argv)
    if args.shape is not None:
        try:
            args.shape = list(complexity.check_shape(args.shape))
        except cli.UsageError as err:
            p.error(str(err))
    labels = tables.metric_labels()
    unknown = [w for w in args.metrics or [] if w.lower() not in map(str.lower, labels)]
    if unknown:
        p.error(f'argument --metrics: unknown {unknown} (choose from {labels})')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    print(render(collect(args), args))
    return 0


if __name__ == '__main__':
    cli.run_cli(main, prog='results_table.py')
