#!/usr/bin/env python
"""Paper-style results table (Markdown, LaTeX/booktabs or CSV) from mmengine work dirs.

Reads what an mmengine 0.10 ``Runner`` writes for each run ``work_dirs/<config_name>/``:

- ``<config_name>.py``: the dumped config (else ``<timestamp>/vis_data/config.py``);
- ``<timestamp>/vis_data/scalars.json`` (same lines as ``vis_data/<timestamp>.json``): one
  JSON object per line -- training logs and, after every validation, its metrics;
- ``<timestamp>/<timestamp>.json``: the metrics of ``runner.test()`` / ``tools/test.py``.

Timestamps of one run (a resumed training) are read in order. Per run it reports the
upsampler (from the config's ``upsample_cfg``), the backbone, parameters and GFLOPs
(multiply-adds, counted as ``get_flops.py`` does, at ``--shape``: default 512x512 for both
tasks, as 800x1333 detection inputs take long on CPU) and the metrics -- COCO box AP, AP50,
AP75, APS, APM, APL (``coco/bbox_mAP*``, shown x100) for detection, mIoU and bIoU (plus aAcc,
mAcc on request) for segmentation -- of two evaluations: **best** (the evaluation with the
highest AP / mIoU, all its columns from that same evaluation) and **final** (the last one;
a test run when there was no validation). Deltas are to the baseline row: by default the
nearest / bilinear run of the same task and backbone.

Examples::

    python tools/analysis_tools/results_table.py work_dirs
    python tools/analysis_tools/results_table.py work_dirs/segformer_* --format latex \\
        --baseline segformer_mit-b1_bilinear_1xb16-160k_ade20k-512x512 --metrics mIoU bIoU mAcc
    python tools/analysis_tools/results_table.py work_dirs --format csv --no-flops
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import os.path as osp
import re
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # get_flops.py, next to this file
import get_flops  # noqa: E402  (also puts the repository on sys.path)

from mmengine.config import Config  # noqa: E402

TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')


@dataclass(frozen=True)
class Metric:
    """One metric column: its label, the key mmengine logs, scale and decimals shown."""

    label: str
    key: str
    scale: float
    decimals: int


TASKS: Dict[str, Dict[str, Any]] = {
    'det': dict(
        metrics=[Metric('AP', 'coco/bbox_mAP', 100, 1), Metric('AP50', 'coco/bbox_mAP_50', 100, 1),
                 Metric('AP75', 'coco/bbox_mAP_75', 100, 1),
                 Metric('APS', 'coco/bbox_mAP_s', 100, 1),
                 Metric('APM', 'coco/bbox_mAP_m', 100, 1),
                 Metric('APL', 'coco/bbox_mAP_l', 100, 1)],
        default=['AP', 'AP50', 'AP75', 'APS', 'APM', 'APL'], baselines=('Nearest',),
        title='Detection (COCO box AP)'),
    'seg': dict(
        metrics=[Metric('mIoU', 'mIoU', 1, 2), Metric('bIoU', 'bIoU', 1, 2),
                 Metric('aAcc', 'aAcc', 1, 2), Metric('mAcc', 'mAcc', 1, 2)],
        default=['mIoU', 'bIoU'], baselines=('Bilinear', 'Nearest'),
        title='Semantic segmentation'),
}
SCOPE_TASK = {'mmdet': 'det', 'mmseg': 'seg'}

# Row order of the papers' tables (a label sorts by its longest prefix listed here).
METHOD_ORDER = ['Nearest', 'Bilinear', 'Deconv', 'PixelShuffle', 'CARAFE', 'IndexNet', 'A2U',
                'SAPA', 'DySample', 'FADE', 'FADE-Lite']
LABELS = {'nearest': 'Nearest', 'nearestupsample': 'Nearest', 'bilinear': 'Bilinear',
          'bilinearupsample': 'Bilinear', 'deconv': 'Deconv', 'deconvupsample': 'Deconv',
          'pixel_shuffle': 'PixelShuffle', 'pixelshuffleupsample': 'PixelShuffle',
          'carafe': 'CARAFE', 'indexnet': 'IndexNet', 'a2u': 'A2U', 'sapa': 'SAPA',
          'dysample': 'DySample', 'fade': 'FADE', 'fadelite': 'FADE-Lite'}
MIT = {(32, (2, 2, 2, 2)): 'B0', (64, (2, 2, 2, 2)): 'B1', (64, (3, 4, 6, 3)): 'B2',
       (64, (3, 4, 18, 3)): 'B3', (64, (3, 8, 27, 3)): 'B4', (64, (3, 6, 40, 3)): 'B5'}
DASH = '–'


@dataclass
class Evaluation:
    """The metrics of one validation (or test) pass."""

    metrics: Dict[str, float]
    step: Optional[int]
    timestamp: str


@dataclass
class Run:
    """One ``work_dirs/<config_name>`` directory, read."""

    name: str
    path: str
    task: Optional[str]
    config: Optional[Config]
    config_path: Optional[str]
    method: str
    backbone: str
    vals: List[Evaluation] = field(default_factory=list)
    tests: List[Evaluation] = field(default_factory=list)
    biou_ratio: Optional[float] = None
    params: Optional[int] = None
    macs: Optional[int] = None
    baseline: Optional['Run'] = None

    @property
    def evaluations(self) -> List[Evaluation]:
        return self.vals or self.tests

    def best(self) -> Optional[Evaluation]:
        primary = TASKS[self.task]['metrics'][0]
        scored = [(value_of(e, primary), i, e) for i, e in enumerate(self.evaluations)]
        scored = [s for s in scored if s[0] is not None]
        # the earliest evaluation wins ties: the one a "save_best" checkpoint would hold
        return max(scored, key=lambda s: (s[0], -s[1]))[2] if scored else None

    def final(self) -> Optional[Evaluation]:
        return self.evaluations[-1] if self.evaluations else None


# ----------------------------------------------------------------------------- reading

def lookup(metrics: Dict[str, Any], key: str) -> Optional[float]:
    """``metrics[key]``, also under another evaluator prefix (``'x/bIoU'``); None if absent."""
    if key in metrics:
        return metrics[key]
    base = key.split('/')[-1]
    for k, v in metrics.items():
        if k.split('/')[-1] == base:
            return v
    return None


def value_of(ev: Evaluation, metric: Metric) -> Optional[float]:
    """The metric in display units; None when absent or undefined (COCO logs -1 for a size
    range without ground truth)."""
    v = lookup(ev.metrics, metric.key)
    if not isinstance(v, (int, float)) or v < 0 or (isinstance(v, float) and math.isnan(v)):
        return None
    return v * metric.scale


def _read_json_lines(path: str) -> List[Dict[str, Any]]:
    records = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                # a run killed mid-write leaves a truncated last line; the rest is still good
                warnings.warn(f'results_table: skipping unreadable line {n} of {path}')
    return records


def _is_evaluation(rec: Dict[str, Any], task: Optional[str]) -> bool:
    tasks = [task] if task else list(TASKS)
    return any(lookup(rec, TASKS[t]['metrics'][0].key) is not None for t in tasks)


def _find_config(run_dir: str, stamps: List[str]) -> Optional[str]:
    own = osp.join(run_dir, osp.basename(osp.normpath(run_dir)) + '.py')
    if osp.isfile(own):
        return own
    dumped = sorted(f for f in os.listdir(run_dir) if f.endswith('.py'))
    if len(dumped) == 1:
        return osp.join(run_dir, dumped[0])
    for stamp in reversed(stamps):
        path = osp.join(run_dir, stamp, 'vis_data', 'config.py')
        if osp.isfile(path):
            return path
    return None


def is_run_dir(path: str) -> bool:
    """True for ``work_dirs/<config_name>``: it holds ``<timestamp>/`` log folders."""
    return osp.isdir(path) and any(TIMESTAMP.match(d) and osp.isdir(osp.join(path, d))
                                   for d in os.listdir(path))


def find_runs(paths: Iterable[str]) -> List[str]:
    """Run directories among ``paths`` and their immediate children, sorted, no duplicates."""
    found: List[str] = []
    for path in paths:
        if is_run_dir(path):
            found.append(path)
        elif osp.isdir(path):
            found += [osp.join(path, d) for d in sorted(os.listdir(path))
                      if is_run_dir(osp.join(path, d))]
        else:
            raise FileNotFoundError(f'results_table: {path!r} is not a directory')
    seen, runs = set(), []
    for r in found:
        key = osp.realpath(r)
        if key not in seen:
            seen.add(key)
            runs.append(r)
    return runs


def method_label(cfg: Config, task: str) -> str:
    """The upsampler's name in the papers' tables, from the model's ``upsample_cfg``."""
    found, up = get_flops.find_upsample_cfg(cfg.model)
    if not found or up is None:
        # mmdet's FPN interpolates with nearest, mmseg's heads with bilinear
        return 'Nearest' if task == 'det' else 'Bilinear'
    up = dict(up)
    kind = str(up.pop('type', up.pop('mode', '?')))
    for k in ('_delete_', 'in_channels', 'scale_factor', 'align_corners'):
        up.pop(k, None)
    label = LABELS.get(kind.lower(), kind)
    if label == 'SAPA':
        label += '-' + str(up.pop('variant', 'B'))
    elif label == 'DySample':
        label += ('-S' if up.pop('style', 'lp') == 'pl' else '') + (
            '+' if up.pop('dyscope', False) else '')
        if up.get('groups') == 4:
            up.pop('groups')
    elif label.startswith('FADE'):
        fusion = up.pop('fusion', 'gate')
        label += {'gate': '', 'none': ' w/o gate'}.get(fusion, f' ({fusion})')
    if up:  # anything else that was set: the row must not pass for the default module
        label += ' (' + ', '.join(f'{k}={v}' for k, v in sorted(up.items())) + ')'
    return label


def backbone_label(cfg: Config) -> str:
    """``R-50``, ``MiT-B1``, ... as in the papers; the type name otherwise."""
    bb = cfg.model.get('backbone') or {}
    kind = str(bb.get('type', '?'))
    if kind.startswith('ResNet') and 'depth' in bb:
        return f"R-{bb['depth']}"
    if kind == 'MixVisionTransformer':
        key = (bb.get('embed_dims'), tuple(bb.get('num_layers', ())))
        if key in MIT:
            return 'MiT-' + MIT[key]
    return kind


def _biou_ratio(cfg: Config) -> Optional[float]:
    evaluators = cfg.get('val_evaluator') or cfg.get('test_evaluator') or []
    for ev in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
        if isinstance(ev, dict) and ev.get('type') == 'BoundaryIoUMetric':
            return float(ev.get('ratio', 0.02))
    return None


def read_run(run_dir: str) -> Run:
    """Config, method, backbone and every evaluation of one run directory."""
    stamps = sorted(d for d in os.listdir(run_dir)
                    if TIMESTAMP.match(d) and osp.isdir(osp.join(run_dir, d)))
    name = osp.basename(osp.normpath(run_dir))
    config_path = _find_config(run_dir, stamps)
    cfg = task = None
    if config_path is not None:
        cfg = Config.fromfile(config_path)
        task = SCOPE_TASK.get(cfg.get('default_scope'))
    vals: List[Evaluation] = []
    tests: List[Evaluation] = []
    for stamp in stamps:
        vis = osp.join(run_dir, stamp, 'vis_data')
        # scalars.json and vis_data/<stamp>.json carry the same lines: read one of them
        for fname in ('scalars.json', stamp + '.json'):
            if osp.isfile(osp.join(vis, fname)):
                vals += [Evaluation(r, r.get('step'), stamp)
                         for r in _read_json_lines(osp.join(vis, fname))
                         if _is_evaluation(r, task)]
                break
        test_log = osp.join(run_dir, stamp, stamp + '.json')
        if osp.isfile(test_log):
            tests += [Evaluation(r, None, stamp) for r in _read_json_lines(test_log)
                      if _is_evaluation(r, task)]
    if task is None:  # no readable config: guess from the metric keys
        for t in TASKS:
            if any(_is_evaluation(e.metrics, t) for e in vals + tests):
                task = t
                break
    run = Run(name=name, path=run_dir, task=task, config=cfg, config_path=config_path,
              method=method_label(cfg, task) if cfg is not None else name,
              backbone=backbone_label(cfg) if cfg is not None else '?', vals=vals,
              tests=tests, biou_ratio=_biou_ratio(cfg) if cfg is not None else None)
    return run


# ----------------------------------------------------------------------------- complexity

def add_complexity(runs: List[Run], shape: Sequence[int], flops: bool, device: str = 'auto',
                   exclude_sampling: bool = False) -> None:
    """Fills ``params`` (and ``macs`` when ``flops``) of every run with a config.

    Args:
        runs: the runs; those without a readable config are left alone.
        shape: ``(H, W)`` of the dummy input (see ``get_flops.measure``).
        flops: count multiply-adds too (else only build the model for its parameters).
        device: ``'auto'``, ``'meta'`` or ``'cpu'`` (see ``get_flops.measure``).
        exclude_sampling: leave interpolation / grid sampling out of ``macs``.
    """
    # runs of one model config (seeds, schedules) share one measurement
    cache: Dict[Tuple[str, bool], Tuple[int, Optional[int]]] = {}
    for run in runs:
        if run.config is None:
            continue
        key = (json.dumps(run.config.model.to_dict(), sort_keys=True, default=str), flops)
        if key not in cache:
            if flops:
                res = get_flops.measure(run.config, shape, device, run.config_path)
                cache[key] = (res.params,
                              res.macs - (res.sampling_macs if exclude_sampling else 0))
            else:
                model = get_flops.build_model(run.config)
                cache[key] = (sum(p.numel() for p in model.parameters()), None)
                del model
        run.params, run.macs = cache[key]


def assign_baselines(runs: List[Run], name: Optional[str]) -> None:
    """Sets each run's baseline: the ``name`` match (run dir or method, case-insensitive) in
    its task and backbone, else the only match in its task; by default the nearest /
    bilinear run of the same task and backbone."""
    def matches(r: Run) -> bool:
        if name is not None:
            return name.lower() in (r.name.lower(), r.method.lower())
        return r.method in TASKS[r.task]['baselines']

    cands = [r for r in runs if r.task is not None and matches(r)]
    if name is not None and not cands:
        raise ValueError(f'results_table: --baseline {name!r} matches no run (runs: '
                         f'{", ".join(r.name for r in runs)}; methods: '
                         f'{", ".join(sorted({r.method for r in runs}))})')
    for run in runs:
        same = [c for c in cands if c.task == run.task and c.backbone == run.backbone]
        if not same and name is not None:
            same = [c for c in cands if c.task == run.task]
            same = same if len(same) == 1 else []
        if same:
            # the baseline kind listed first wins (bilinear over nearest for segmentation)
            kinds = list(TASKS[run.task]['baselines'])
            same.sort(key=lambda c: (kinds.index(c.method) if c.method in kinds else 0, c.name))
            run.baseline = same[0]


def _order(run: Run) -> Tuple:
    prefixes = [m for m in METHOD_ORDER if run.method.startswith(m)]
    idx = METHOD_ORDER.index(max(prefixes, key=len)) if prefixes else len(METHOD_ORDER)
    return (run.backbone, run.baseline is not run, idx, run.method, run.name)


# ----------------------------------------------------------------------------- formatting

@dataclass
class Cell:
    """A value and its delta to the baseline (None: not applicable)."""

    value: Optional[float]
    delta: Optional[float]
    decimals: int


def _num(v: float, decimals: int, sign: bool = False) -> str:
    s = f'{v:+.{decimals}f}' if sign else f'{v:.{decimals}f}'
    return s.replace('-', '−') if sign else s


def _cell_text(c: Cell) -> str:
    if c.value is None:
        return DASH
    text = _num(c.value, c.decimals)
    return text if c.delta is None else f'{text} ({_num(c.delta, c.decimals, True)})'


def metric_cells(run: Run, metrics: List[Metric], which: str) -> List[Cell]:
    """Cells of one evaluation kind (``'best'`` / ``'final'``) with deltas to the baseline
    run's evaluation of the same kind."""
    ev = getattr(run, which)()
    base = getattr(run.baseline, which)() if run.baseline not in (None, run) else None
    cells = []
    for m in metrics:
        v = value_of(ev, m) if ev else None
        b = value_of(base, m) if base else None
        # deltas of the rounded numbers, so that a reader's subtraction agrees with them
        d = None if v is None or b is None else round(round(v, m.decimals) -
                                                      round(b, m.decimals), m.decimals)
        cells.append(Cell(v, d, m.decimals))
    return cells


def _complexity_text(run: Run, flops: bool) -> Tuple[str, str]:
    base = run.baseline if run.baseline not in (None, run) else None
    if run.params is None:
        p = DASH
    elif base is not None and base.params is not None:
        p = _num((run.params - base.params) / 1e6, 2, True) + 'M'
    else:
        p = f'{run.params / 1e6:.2f}M'
    if not flops or run.macs is None:
        g = DASH
    elif base is not None and base.macs is not None:
        g = _num((run.macs - base.macs) / 1e9, 2, True)
    else:
        g = f'{run.macs / 1e9:.2f}'
    return p, g


def _groups(runs: List[Run]) -> List[Tuple[str, List[Run]]]:
    out = []
    for task in TASKS:
        rows = sorted((r for r in runs if r.task == task), key=_order)
        if rows:
            out.append((task, rows))
    return out


def _headers(metrics: List[Metric], evals: List[str], ratios: Sequence[float]) -> List[str]:
    names = []
    for m in metrics:
        label = m.label
        if m.label == 'bIoU' and ratios:
            label += ' (r=' + '/'.join(f'{r:g}' for r in sorted(set(ratios))) + ')'
        names.append(label)
    if len(evals) == 1:
        return names
    return [f'{e} {n}' for e in evals for n in names]


def _notes(task: str, metrics: List[Metric], evals: List[str], args: argparse.Namespace,
           ratios: Sequence[float]) -> List[str]:
    primary = TASKS[task]['metrics'][0].label
    notes = []
    if not args.no_flops:
        conv = ('bilinear interpolation and grid sampling excluded' if args.exclude_sampling
                else 'incl. CARAFE reassembly, 4 per output of bilinear interpolation / grid '
                'sampling')
        notes.append(f'GFLOPs: multiply-adds for one {args.shape[0]}x{args.shape[1]} input '
                     f'({conv}).')
    notes.append(('ΔParams' if args.no_flops else 'ΔParams / ΔGFLOPs') +
                 ': totals on the baseline row (and rows without one), differences to the '
                 'baseline elsewhere; metric deltas in parentheses.')
    if 'best' in evals:
        notes.append(f'best: the evaluation with the highest {primary} of each run (all '
                     'its columns); final: the last evaluation.')
    if any(m.label == 'bIoU' for m in metrics) and ratios:
        notes.append('bIoU: boundary IoU, band = ' + ', '.join(
            f'{100 * r:g}%' for r in sorted(set(ratios))) + ' of the image diagonal.')
    if task == 'det':
        notes.append('AP: COCO box mAP x100 (IoU 0.50:0.95); – where COCO reports -1.')
    return notes


def _rows(rows: List[Run], metrics: List[Metric], evals: List[str],
          args: argparse.Namespace) -> List[List[str]]:
    out = []
    for r in rows:
        p, g = _complexity_text(r, not args.no_flops)
        cells = [c for e in evals for c in metric_cells(r, metrics, e)]
        line = [r.method, r.backbone, p]
        if not args.no_flops:
            line.append(g)
        out.append(line + [str(len(r.evaluations))] + [_cell_text(c) for c in cells])
    return out


def render_markdown(runs: List[Run], args: argparse.Namespace) -> str:
    blocks = []
    for task, rows in _groups(runs):
        metrics, evals = _metrics(task, args), _evals(args)
        ratios = [r.biou_ratio for r in rows if r.biou_ratio is not None]
        head = ['Method', 'Backbone', 'ΔParams'] + ([] if args.no_flops else ['ΔGFLOPs'])
        head += ['Evals'] + _headers(metrics, evals, ratios)
        align = ['---', '---'] + ['---:'] * (len(head) - 2)
        lines = [f"**{TASKS[task]['title']}**", '',
                 '| ' + ' | '.join(head) + ' |', '|' + '|'.join(align) + '|']
        lines += ['| ' + ' | '.join(row) + ' |' for row in _rows(rows, metrics, evals, args)]
        lines += [''] + _notes(task, metrics, evals, args, ratios)
        blocks.append('\n'.join(lines))
    return '\n\n'.join(blocks)


_LATEX_ESCAPES = {'\\': r'\textbackslash{}', '&': r'\&', '%': r'\%', '$': r'\$', '#': r'\#',
                  '_': r'\_', '{': r'\{', '}': r'\}', '~': r'\textasciitilde{}',
                  '^': r'\textasciicircum{}', '–': '--', '−': '$-$', 'Δ': r'$\Delta$'}


def _ascii(text: str) -> str:
    # comments too: a pdflatex without utf8 input still reads them
    return text.replace('Δ', 'Delta ').replace('–', '-').replace('−', '-')


def latex_escape(text: str) -> str:
    return ''.join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def render_latex(runs: List[Run], args: argparse.Namespace) -> str:
    blocks = []
    for task, rows in _groups(runs):
        metrics, evals = _metrics(task, args), _evals(args)
        ratios = [r.biou_ratio for r in rows if r.biou_ratio is not None]
        fixed = ['Method', 'Backbone', 'ΔParams'] + ([] if args.no_flops else ['ΔGFLOPs'])
        fixed.append('Evals')
        names = _headers(metrics, [evals[0]], ratios)
        lines = [f"% {TASKS[task]['title']} -- tools/analysis_tools/results_table.py",
                 *('% ' + _ascii(n) for n in _notes(task, metrics, evals, args, ratios)),
                 r'\begin{tabular}{ll' + 'r' * (len(fixed) - 2) +
                 'c' * (len(metrics) * len(evals)) + '}', r'\toprule']
        if len(evals) > 1:
            spans, rules, col = [], [], len(fixed) + 1
            for e in evals:
                title = 'Best' if e == 'best' else 'Final'
                spans.append(rf'\multicolumn{{{len(metrics)}}}{{c}}{{{title}}}')
                rules.append(rf'\cmidrule(lr){{{col}-{col + len(metrics) - 1}}}')
                col += len(metrics)
            lines.append(' & ' * len(fixed) + ' & '.join(spans) + r' \\')
            lines.append(''.join(rules))
            names = names * len(evals)
        lines.append(' & '.join(latex_escape(h) for h in fixed + names) + r' \\')
        lines.append(r'\midrule')
        for row in _rows(rows, metrics, evals, args):
            lines.append(' & '.join(latex_escape(c) for c in row) + r' \\')
        lines += [r'\bottomrule', r'\end{tabular}']
        blocks.append('\n'.join(lines))
    return '\n\n'.join(blocks)


def render_csv(runs: List[Run], args: argparse.Namespace) -> str:
    """One CSV for all runs: exact numbers, one column per value and per delta."""
    evals = _evals(args)
    cols = ['task', 'run', 'method', 'backbone', 'baseline', 'params', 'params_delta']
    if not args.no_flops:
        cols += ['shape', 'gflops', 'gflops_delta']
    cols += ['evals', 'best_step', 'final_step']
    groups = _groups(runs)
    metric_cols: List[str] = []
    for task, _ in groups:
        for e in evals:
            for m in _metrics(task, args):
                metric_cols += [f'{m.label}_{e}', f'{m.label}_{e}_delta']
    if any(task == 'seg' for task, _ in groups):
        metric_cols.append('biou_ratio')
    buf = io.StringIO()
    writer = csv.DictWriter(buf, cols + metric_cols, lineterminator='\n')
    writer.writeheader()
    for task, rows in groups:
        metrics = _metrics(task, args)
        for r in rows:
            base = r.baseline if r.baseline not in (None, r) else None
            row: Dict[str, Any] = dict(task=task, run=r.name, method=r.method,
                                       backbone=r.backbone,
                                       baseline=r.baseline.name if r.baseline else '',
                                       params=r.params, evals=len(r.evaluations))
            if base is not None and r.params is not None and base.params is not None:
                row['params_delta'] = r.params - base.params
            if not args.no_flops:
                row['shape'] = f'{args.shape[0]}x{args.shape[1]}'
                if r.macs is not None:
                    row['gflops'] = f'{r.macs / 1e9:.4f}'
                    if base is not None and base.macs is not None:
                        row['gflops_delta'] = f'{(r.macs - base.macs) / 1e9:+.4f}'
            best, final = r.best(), r.final()
            row['best_step'] = best.step if best and best.step is not None else ''
            row['final_step'] = final.step if final and final.step is not None else ''
            for e in evals:
                for m, c in zip(metrics, metric_cells(r, metrics, e)):
                    row[f'{m.label}_{e}'] = '' if c.value is None else _num(c.value, c.decimals)
                    row[f'{m.label}_{e}_delta'] = ('' if c.delta is None else
                                                  f'{c.delta:+.{c.decimals}f}')
            if task == 'seg':
                row['biou_ratio'] = '' if r.biou_ratio is None else f'{r.biou_ratio:g}'
            writer.writerow({k: ('' if v is None else v) for k, v in row.items()})
    return buf.getvalue().rstrip('\n')


def _metrics(task: str, args: argparse.Namespace) -> List[Metric]:
    """The requested metric columns that apply to ``task``; its defaults if none does (a
    mixed work_dirs asked for ``--metrics mIoU mAcc`` still gets its detection table)."""
    known = {m.label.lower(): m for m in TASKS[task]['metrics']}
    every = {m.label.lower() for t in TASKS.values() for m in t['metrics']}
    unknown = [w for w in args.metrics or [] if w.lower() not in every]
    if unknown:
        raise ValueError(f'results_table: unknown --metrics {unknown} (choose from '
                         f"{[m.label for t in TASKS.values() for m in t['metrics']]})")
    wanted = [w for w in args.metrics or [] if w.lower() in known]
    return [known[w.lower()] for w in wanted or TASKS[task]['default']]


def _evals(args: argparse.Namespace) -> List[str]:
    return ['best', 'final'] if args.eval == 'both' else [args.eval]


RENDER = {'markdown': render_markdown, 'latex': render_latex, 'csv': render_csv}


def collect(args: argparse.Namespace) -> List[Run]:
    """Reads the runs named by ``args.work_dirs``, measures them and assigns baselines.

    Runs without any evaluation (e.g. a training that crashed early) are skipped with a
    warning.
    """
    runs = [read_run(d) for d in find_runs(args.work_dirs)]
    skipped = [r for r in runs if r.task is None or not r.evaluations]
    for r in skipped:
        warnings.warn(f'results_table: {r.path}: no evaluation results found, skipped')
    runs = [r for r in runs if r not in skipped]
    if not runs:
        raise SystemExit('results_table: no run with evaluation results under '
                         + ', '.join(args.work_dirs))
    add_complexity(runs, args.shape, not args.no_flops, args.device, args.exclude_sampling)
    assign_baselines(runs, args.baseline)
    return runs


def render(runs: List[Run], args: argparse.Namespace) -> str:
    """The table of ``runs`` in ``args.format``."""
    return RENDER[args.format](runs, args)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='Paper-style results table from mmengine work_dirs.')
    p.add_argument('work_dirs', nargs='*', default=['work_dirs'],
                   help='run directories (work_dirs/<config_name>) or folders of them '
                   '(default: work_dirs)')
    p.add_argument('--format', choices=sorted(RENDER), default='markdown')
    p.add_argument('--baseline', metavar='NAME',
                   help='baseline run (directory name) or method (e.g. FADE); default: the '
                   'nearest/bilinear run of the same task and backbone')
    p.add_argument('--eval', choices=['best', 'final', 'both'], default='both',
                   help='which evaluation(s) of each run to show (default: both)')
    p.add_argument('--metrics', nargs='+', metavar='M',
                   help='metric columns, e.g. mIoU bIoU aAcc mAcc (segmentation; default mIoU '
                   'bIoU) or AP AP50 AP75 APS APM APL (detection; default all)')
    p.add_argument('--shape', type=int, nargs='+', default=list(get_flops.DEFAULT_SHAPE),
                   metavar='N', help='H W (or one number) of the input FLOPs are counted for '
                   '(default: 512 512 for both tasks; 800 1333 is slow on CPU for detectors)')
    p.add_argument('--no-flops', action='store_true', help='skip the GFLOPs column')
    p.add_argument('--exclude-sampling', action='store_true',
                   help='leave bilinear interpolation / grid sampling out of GFLOPs (the '
                   'convention of hook-based counters behind the published tables)')
    p.add_argument('--device', choices=['auto', 'meta', 'cpu'], default='auto',
                   help='where FLOPs are counted (see get_flops.py)')
    args = p.parse_args(argv)
    args.shape = get_flops.parse_shape(p, args.shape)
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    print(render(collect(args), args))
    return 0


if __name__ == '__main__':
    sys.exit(main())
