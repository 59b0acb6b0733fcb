"""The rows of a results table and their rendering as Markdown, LaTeX/booktabs or CSV.

Standard library only (no torch or OpenMMLab code runs here): :mod:`fade_mm.results` reads
work dirs and complexity JSONs into :class:`Run` / :class:`RunGroup` objects, this module
computes each row's cells (mean ± std over seeds, deltas to the baseline, the overlap mark)
and renders them. Every renderer takes the groups and explicit keyword arguments::

    render(groups, 'markdown', metrics=None, evals=('best', 'final'), flops=True,
           exclude_sampling=False, per_run=False)

Tasks (:data:`TASKS`): ``det`` (COCO box AP), ``ins`` (instance segmentation: box AP and
mask AP), ``pan`` (COCO panoptic PQ, SQ, RQ, things / stuff), ``seg`` (mIoU, bIoU). A row's
parameters, multiply-adds, the part of the model those cover and the input shape they were
counted for are its runs' ``params``, ``macs``, ``counted`` and ``shape`` (None: not known,
shown as a dash).
"""
from __future__ import annotations

import csv
import io
import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ['Metric', 'TASKS', 'METHOD_ORDER', 'Evaluation', 'Run', 'RunGroup', 'Stat', 'Cell',
           'lookup', 'value_of', 'metric_stat', 'within_spread', 'metric_cells',
           'select_metrics', 'metric_labels', 'by_task', 'render_markdown', 'render_latex',
           'render_csv', 'RENDERERS', 'render', 'latex_escape', 'UnknownMetricError',
           'COUNTED_NOTES']

DASH = '–'
WITHIN_SPREAD = '†'


@dataclass(frozen=True)
class Metric:
    """One metric column: its label, the key mmengine logs, scale and decimals shown."""

    label: str
    key: str
    scale: float
    decimals: int


def _coco(prefix: str, label: str) -> List[Metric]:
    """COCO AP, AP50, AP75, APS, APM, APL of ``coco/<prefix>_mAP*`` (logged as 0-1)."""
    return [Metric(f'{label}{s}', f'coco/{prefix}_mAP{k}', 100, 1)
            for s, k in (('', ''), ('50', '_50'), ('75', '_75'), ('S', '_s'), ('M', '_m'),
                         ('L', '_l'))]


def _pq() -> List[Metric]:
    """mmdet's CocoPanopticMetric: ``coco_panoptic/PQ`` ... ``RQ_st``, logged x100 already."""
    return [Metric(f'{q}{part}', f'coco_panoptic/{q}{part}', 1, 1)
            for part in ('', '_th', '_st') for q in ('PQ', 'SQ', 'RQ')]


# The first metric of a task is its primary one: it picks a run's "best" evaluation and
# tells an evaluation record of that task.
TASKS: Dict[str, Dict[str, Any]] = {
    'det': dict(
        metrics=_coco('bbox', 'AP'), default=['AP', 'AP50', 'AP75', 'APS', 'APM', 'APL'],
        baselines=('Nearest',), title='Detection (COCO box AP)'),
    'ins': dict(
        metrics=_coco('segm', 'maskAP') + _coco('bbox', 'AP'),
        default=['AP', 'AP50', 'AP75', 'maskAP', 'maskAP50', 'maskAP75'],
        baselines=('Nearest',), title='Instance segmentation (COCO box AP and mask AP)'),
    'pan': dict(
        metrics=_pq(), default=['PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'], baselines=('Nearest',),
        title='Panoptic segmentation (COCO PQ)'),
    'seg': dict(
        metrics=[Metric('mIoU', 'mIoU', 1, 2), Metric('bIoU', 'bIoU', 1, 2),
                 Metric('aAcc', 'aAcc', 1, 2), Metric('mAcc', 'mAcc', 1, 2)],
        default=['mIoU', 'bIoU'], baselines=('Bilinear', 'Nearest'),
        title='Semantic segmentation'),
}
TASK_NOTES = {
    'det': 'AP: COCO box mAP x100 (IoU 0.50:0.95); – where COCO reports -1.',
    'ins': 'AP: COCO box mAP, maskAP: COCO mask mAP, x100 (IoU 0.50:0.95); – where COCO '
           'reports -1.',
    'pan': 'PQ, SQ, RQ: COCO panoptic quality, segmentation and recognition quality (x100); '
           '_th: things, _st: stuff.',
}

# What a row's GFLOPs cover (Run.counted), as the notes say it.
COUNTED_NOTES = {'backbone+neck': 'backbone and neck (heads not counted)',
                 'whole model': 'the whole model'}

# Row order of the papers' tables (a label sorts by its longest prefix listed here).
METHOD_ORDER = ['Nearest', 'Bilinear', 'Deconv', 'PixelShuffle', 'CARAFE', 'IndexNet', 'A2U',
                'SAPA', 'DySample', 'FADE', 'FADE-Lite']


class UnknownMetricError(ValueError):
    """``metrics`` names a column no task has."""


# ----------------------------------------------------------------------------- rows

@dataclass
class Evaluation:
    """The metrics of one validation (or test) pass."""

    metrics: Dict[str, float]
    step: Optional[int]
    timestamp: str


@dataclass
class Run:
    """One ``work_dirs/<config_name>`` directory, read.

    ``params`` / ``macs`` / ``shape``: the model's parameters, multiply-adds and the
    ``(H, W)`` input they were counted for (None when not known); ``counted``: what ``macs``
    cover (``'backbone+neck'`` or ``'whole model'``, see :mod:`fade_mm.complexity`).
    """

    name: str
    path: str
    task: Optional[str]
    config: Any
    config_path: Optional[str]
    method: str
    backbone: str
    vals: List[Evaluation] = field(default_factory=list)
    tests: List[Evaluation] = field(default_factory=list)
    biou_ratio: Optional[float] = None
    params: Optional[int] = None
    macs: Optional[int] = None
    seed: Optional[int] = None
    shape: Optional[Tuple[int, int]] = None
    counted: Optional[str] = None

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


SEED_SUFFIX = re.compile(r'[_-]seed\d+$')


@dataclass
class RunGroup:
    """One table row: the runs of one experiment that differ only in their seed (n >= 1).

    Task, method, backbone and complexity are the same for all of them (their configs are
    equal but for the seed); they are read from the first run.
    """

    runs: List[Run]
    baseline: Optional['RunGroup'] = None

    @property
    def name(self) -> str:
        """The run directory's name; for several runs their common name without
        ``_seed<N>``, else the first one's."""
        if len(self.runs) == 1:
            return self.runs[0].name
        stems = {SEED_SUFFIX.sub('', r.name) for r in self.runs}
        return stems.pop() if len(stems) == 1 else self.runs[0].name

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> List[Optional[int]]:
        return [r.seed for r in self.runs]

    @property
    def task(self) -> Optional[str]:
        return self.runs[0].task

    @property
    def method(self) -> str:
        return self.runs[0].method

    @property
    def backbone(self) -> str:
        return self.runs[0].backbone

    @property
    def biou_ratio(self) -> Optional[float]:
        return self.runs[0].biou_ratio

    @property
    def params(self) -> Optional[int]:
        return self.runs[0].params

    @property
    def macs(self) -> Optional[int]:
        return self.runs[0].macs

    @property
    def shape(self) -> Optional[Tuple[int, int]]:
        return self.runs[0].shape

    @property
    def counted(self) -> Optional[str]:
        return self.runs[0].counted

    def names(self) -> List[str]:
        """Every name the group answers to (``--baseline``), lower case."""
        return [self.name.lower()] + [r.name.lower() for r in self.runs]


# ----------------------------------------------------------------------------- statistics

@dataclass(frozen=True)
class Stat:
    """A metric over the runs of a group: mean, sample std (None for one run), count."""

    mean: float
    std: Optional[float]
    n: int


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
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 \
            or (isinstance(v, float) and math.isnan(v)):
        return None
    return v * metric.scale


def metric_stat(group: RunGroup, which: str, metric: Metric) -> Optional[Stat]:
    """Mean and sample std (n - 1) of one metric over the group's runs, each at its own
    ``which`` evaluation (``'best'`` / ``'final'``); runs without the value are left out."""
    values = []
    for run in group.runs:
        ev = getattr(run, which)()
        v = value_of(ev, metric) if ev else None
        if v is not None:
            values.append(v)
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else None
    return Stat(statistics.fmean(values), std, len(values))


def within_spread(a: Stat, b: Stat) -> Optional[bool]:
    """Whether the mean ± std intervals of ``a`` and ``b`` overlap; None when neither has a
    spread (two single runs). A single run counts as a point."""
    if a.std is None and b.std is None:
        return None
    return abs(a.mean - b.mean) <= (a.std or 0.0) + (b.std or 0.0)


@dataclass
class Cell:
    """A value (mean over the row's runs) and its delta to the baseline (None: not
    applicable)."""

    value: Optional[float]
    delta: Optional[float]
    decimals: int
    std: Optional[float] = None  # sample std over the runs; None for a single value
    n: int = 1  # runs with a value
    partial: bool = False  # fewer values than the row has runs: n is shown in the cell
    within_spread: Optional[bool] = None  # delta inside the run-to-run spread (marked †)


def _baseline_of(group: RunGroup) -> Optional[RunGroup]:
    return group.baseline if group.baseline not in (None, group) else None


def metric_cells(group: RunGroup, metrics: List[Metric], which: str) -> List[Cell]:
    """Cells of one evaluation kind (``'best'`` / ``'final'``) with deltas to the baseline
    row's evaluation of the same kind (differences of the means)."""
    base = _baseline_of(group)
    cells = []
    for m in metrics:
        v = metric_stat(group, which, m)
        b = metric_stat(base, which, m) if base else None
        if v is None:
            cells.append(Cell(None, None, m.decimals, n=0))
            continue
        # deltas of the rounded numbers, so that a reader's subtraction agrees with them
        d = None if b is None else round(round(v.mean, m.decimals) -
                                         round(b.mean, m.decimals), m.decimals)
        cells.append(Cell(v.mean, d, m.decimals, std=v.std, n=v.n, partial=v.n < group.n,
                          within_spread=None if b is None else within_spread(v, b)))
    return cells


# ----------------------------------------------------------------------------- columns

def metric_labels() -> List[str]:
    """Every metric label of every task, once each, in :data:`TASKS` order."""
    out: List[str] = []
    for t in TASKS.values():
        out += [m.label for m in t['metrics'] if m.label not in out]
    return out


def select_metrics(task: str, wanted: Optional[Sequence[str]] = None) -> List[Metric]:
    """The metric columns of ``wanted`` (labels, any case) that apply to ``task``; its
    defaults if none does (a mixed work_dirs asked for ``mIoU mAcc`` still gets its
    detection table).

    Raises:
        UnknownMetricError: a label that no task has.
    """
    known = {m.label.lower(): m for m in TASKS[task]['metrics']}
    every = {label.lower() for label in metric_labels()}
    unknown = [w for w in wanted or [] if w.lower() not in every]
    if unknown:
        raise UnknownMetricError(f'results_table: unknown --metrics {unknown} (choose from '
                                 f'{metric_labels()})')
    chosen = [w for w in wanted or [] if w.lower() in known]
    return [known[w.lower()] for w in chosen or TASKS[task]['default']]


def _order(group: RunGroup) -> Tuple:
    prefixes = [m for m in METHOD_ORDER if group.method.startswith(m)]
    idx = METHOD_ORDER.index(max(prefixes, key=len)) if prefixes else len(METHOD_ORDER)
    return (group.backbone, group.baseline is not group, idx, group.method, -group.n,
            group.name)


def by_task(groups: List[RunGroup]) -> List[Tuple[str, List[RunGroup]]]:
    """The groups of each task (in :data:`TASKS` order), in the papers' row order."""
    out = []
    for task in TASKS:
        rows = sorted((g for g in groups if g.task == task), key=_order)
        if rows:
            out.append((task, rows))
    return out


# ----------------------------------------------------------------------------- cells

def _num(v: float, decimals: int, sign: bool = False) -> str:
    s = f'{v:+.{decimals}f}' if sign else f'{v:.{decimals}f}'
    return s.replace('-', '−') if sign else s


def _cell_text(c: Cell) -> str:
    if c.value is None:
        return DASH
    text = _num(c.value, c.decimals)
    if c.std is not None:
        text += f' ± {_num(c.std, c.decimals)}'
    if c.partial:
        text += f' (n={c.n})'
    if c.delta is not None:
        mark = WITHIN_SPREAD if c.within_spread else ''
        text += f' ({_num(c.delta, c.decimals, True)}{mark})'
    return text


def _complexity_text(group: RunGroup, flops: bool) -> Tuple[str, str]:
    base = _baseline_of(group)
    if group.params is None:
        p = DASH
    elif base is not None and base.params is not None:
        p = _num((group.params - base.params) / 1e6, 2, True) + 'M'
    else:
        p = f'{group.params / 1e6:.2f}M'
    if not flops or group.macs is None:
        g = DASH
    elif base is not None and base.macs is not None:
        g = _num((group.macs - base.macs) / 1e9, 2, True)
    else:
        g = f'{group.macs / 1e9:.2f}'
    return p, g


def _per_run(values: Sequence[Any], sep: str = '/') -> str:
    """One value when the runs agree, else each run's, ``sep``-separated."""
    texts = ['' if v is None else str(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else sep.join(texts)


def _shape_text(shape: Optional[Sequence[int]]) -> str:
    return '' if shape is None else f'{shape[0]}x{shape[1]}'


def _ratios(rows: List[RunGroup]) -> List[float]:
    return [g.biou_ratio for g in rows if g.biou_ratio is not None]


def _headers(metrics: List[Metric], evals: Sequence[str], ratios: Sequence[float]) -> List[str]:
    names = []
    for m in metrics:
        label = m.label
        if m.label == 'bIoU' and ratios:
            label += ' (r=' + '/'.join(f'{r:g}' for r in sorted(set(ratios))) + ')'
        names.append(label)
    if len(evals) == 1:
        return names
    return [f'{e} {n}' for e in evals for n in names]


def _fixed_headers(flops: bool) -> List[str]:
    return ['Method', 'Backbone', 'ΔParams'] + (['ΔGFLOPs'] if flops else []) + ['n', 'Evals']


def _any_within_spread(rows: List[RunGroup], metrics: List[Metric],
                       evals: Sequence[str]) -> bool:
    return any(c.within_spread for g in rows for e in evals for c in metric_cells(g, metrics, e))


def _notes(task: str, rows: List[RunGroup], metrics: List[Metric], evals: Sequence[str],
           flops: bool, exclude_sampling: bool, per_run: bool) -> List[str]:
    primary = TASKS[task]['metrics'][0].label
    ratios = _ratios(rows)
    notes = []
    if flops:
        conv = ('bilinear interpolation and grid sampling excluded' if exclude_sampling
                else 'incl. CARAFE reassembly, 4 per output of bilinear interpolation / grid '
                'sampling')
        shapes = sorted({tuple(g.shape) for g in rows if g.macs is not None and g.shape})
        size = (f' for one {_shape_text(shapes[0])} input' if len(shapes) == 1 else
                ' for one input of ' + ' / '.join(map(_shape_text, shapes)) if shapes else '')
        parts = sorted({g.counted for g in rows if g.macs is not None and g.counted})
        part = ' / '.join(COUNTED_NOTES.get(p, p) for p in parts)
        notes.append(f'GFLOPs: multiply-adds{size}{" through " + part if part else ""} '
                     f'({conv}).')
    notes.append(('ΔParams / ΔGFLOPs' if flops else 'ΔParams') +
                 ': totals on the baseline row (and rows without one), differences to the '
                 'baseline elsewhere; metric deltas in parentheses.')
    if any(g.params is None or (flops and g.macs is None) for g in rows):
        notes.append(f'{DASH} under ΔParams' + (' / ΔGFLOPs' if flops else '') +
                     ': not counted (no complexity JSON of get_flops.py --json for the run; '
                     'results_table.py --count builds the models instead).')
    if per_run:
        notes.append('n: one run per row (--per-run).')
    else:
        notes.append('n: runs of the row, configs equal but for the seed; n > 1: mean ± '
                     'sample std (n−1) over them, deltas between means.')
    if _any_within_spread(rows, metrics, evals):
        notes.append(f'{WITHIN_SPREAD}: difference within run-to-run spread (mean ± std '
                     'intervals overlap).')
    if 'best' in evals:
        notes.append(f'best: the evaluation with the highest {primary} of each run (all '
                     'its columns); final: the last evaluation.')
    if any(m.label == 'bIoU' for m in metrics) and ratios:
        notes.append('bIoU: boundary IoU, band = ' + ', '.join(
            f'{100 * r:g}%' for r in sorted(set(ratios))) + ' of the image diagonal.')
    if task in TASK_NOTES:
        notes.append(TASK_NOTES[task])
    return notes


def _rows(rows: List[RunGroup], metrics: List[Metric], evals: Sequence[str],
          flops: bool) -> List[List[str]]:
    out = []
    for g in rows:
        p, gf = _complexity_text(g, flops)
        cells = [c for e in evals for c in metric_cells(g, metrics, e)]
        line = [g.method, g.backbone, p] + ([gf] if flops else [])
        line += [str(g.n), _per_run([len(r.evaluations) for r in g.runs])]
        out.append(line + [_cell_text(c) for c in cells])
    return out


# ----------------------------------------------------------------------------- renderers

def _check_evals(evals: Sequence[str]) -> List[str]:
    evals = list(evals)
    if not evals or any(e not in ('best', 'final') for e in evals):
        raise ValueError(f"evals must be 'best' and/or 'final', got {evals}")
    return evals


def render_markdown(groups: List[RunGroup], *, metrics: Optional[Sequence[str]] = None,
                    evals: Sequence[str] = ('best', 'final'), flops: bool = True,
                    exclude_sampling: bool = False, per_run: bool = False) -> str:
    """One Markdown table per task, each with its notes.

    Args:
        groups: the rows (baselines assigned).
        metrics: metric labels to show (None: each task's defaults; see
            :func:`select_metrics`).
        evals: ``'best'`` and/or ``'final'``: which evaluation(s) of each run.
        flops: show the ΔGFLOPs column.
        exclude_sampling: the multiply-adds leave interpolation / grid sampling out (a
            note only: ``macs`` are counted so).
        per_run: the rows are single runs (a note only).
    """
    evals = _check_evals(evals)
    blocks = []
    for task, rows in by_task(groups):
        cols = select_metrics(task, metrics)
        head = _fixed_headers(flops) + _headers(cols, evals, _ratios(rows))
        align = ['---', '---'] + ['---:'] * (len(head) - 2)
        lines = [f"**{TASKS[task]['title']}**", '',
                 '| ' + ' | '.join(head) + ' |', '|' + '|'.join(align) + '|']
        lines += ['| ' + ' | '.join(row) + ' |' for row in _rows(rows, cols, evals, flops)]
        lines += [''] + _notes(task, rows, cols, evals, flops, exclude_sampling, per_run)
        blocks.append('\n'.join(lines))
    return '\n\n'.join(blocks)


_LATEX_ESCAPES = {'\\': r'\textbackslash{}', '&': r'\&', '%': r'\%', '$': r'\$', '#': r'\#',
                  '_': r'\_', '{': r'\{', '}': r'\}', '~': r'\textasciitilde{}',
                  '^': r'\textasciicircum{}', '–': '--', '−': '$-$', 'Δ': r'$\Delta$',
                  '±': r'$\pm$', WITHIN_SPREAD: r'$^\dagger$'}


def _ascii(text: str) -> str:
    # comments too: a pdflatex without utf8 input still reads them
    return (text.replace('Δ', 'Delta ').replace('–', '-').replace('−', '-')
            .replace('±', '+/-').replace(WITHIN_SPREAD, 'dagger'))


def latex_escape(text: str) -> str:
    return ''.join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def render_latex(groups: List[RunGroup], *, metrics: Optional[Sequence[str]] = None,
                 evals: Sequence[str] = ('best', 'final'), flops: bool = True,
                 exclude_sampling: bool = False, per_run: bool = False) -> str:
    """One booktabs ``tabular`` per task, its notes as comments above it (arguments as
    :func:`render_markdown`)."""
    evals = _check_evals(evals)
    blocks = []
    for task, rows in by_task(groups):
        cols = select_metrics(task, metrics)
        fixed = _fixed_headers(flops)
        names = _headers(cols, [evals[0]], _ratios(rows))
        notes = _notes(task, rows, cols, evals, flops, exclude_sampling, per_run)
        lines = [f"% {TASKS[task]['title']} -- tools/analysis_tools/results_table.py",
                 *('% ' + _ascii(n) for n in notes),
                 r'\begin{tabular}{ll' + 'r' * (len(fixed) - 2) +
                 'c' * (len(cols) * len(evals)) + '}', r'\toprule']
        if len(evals) > 1:
            spans, rules, col = [], [], len(fixed) + 1
            for e in evals:
                title = 'Best' if e == 'best' else 'Final'
                spans.append(rf'\multicolumn{{{len(cols)}}}{{c}}{{{title}}}')
                rules.append(rf'\cmidrule(lr){{{col}-{col + len(cols) - 1}}}')
                col += len(cols)
            lines.append(' & ' * len(fixed) + ' & '.join(spans) + r' \\')
            lines.append(''.join(rules))
            names = names * len(evals)
        lines.append(' & '.join(latex_escape(h) for h in fixed + names) + r' \\')
        lines.append(r'\midrule')
        for row in _rows(rows, cols, evals, flops):
            lines.append(' & '.join(latex_escape(c) for c in row) + r' \\')
        lines += [r'\bottomrule', r'\end{tabular}']
        blocks.append('\n'.join(lines))
    return '\n\n'.join(blocks)


def render_csv(groups: List[RunGroup], *, metrics: Optional[Sequence[str]] = None,
               evals: Sequence[str] = ('best', 'final'), flops: bool = True,
               exclude_sampling: bool = False, per_run: bool = False) -> str:
    """One CSV for all rows: exact numbers, one column per value, spread and delta
    (arguments as :func:`render_markdown`; ``exclude_sampling`` and ``per_run`` change
    nothing here).

    ``run`` is the row's name, ``runs`` / ``seeds`` its run directories and their seeds
    (``;``-separated, ``?`` for an unknown seed; ``evals`` and the steps likewise where the
    runs differ). ``shape`` is the input the GFLOPs were counted for, ``counted`` what they
    cover (``backbone+neck`` or ``whole model``). Per metric: the mean
    (``<M>_<eval>``), its sample std (empty for one value), the number of runs with a
    value, the delta of the means to the baseline and whether the mean ± std intervals
    overlap (``within_spread``: true / false; empty without a spread or a baseline).
    """
    del exclude_sampling, per_run
    evals = _check_evals(evals)
    cols = ['task', 'run', 'method', 'backbone', 'baseline', 'n', 'runs', 'seeds', 'params',
            'params_delta']
    if flops:
        cols += ['shape', 'gflops', 'gflops_delta', 'counted']
    cols += ['evals', 'best_step', 'final_step']
    tasks = by_task(groups)
    metric_cols: List[str] = []
    for task, _ in tasks:
        for e in evals:
            for m in select_metrics(task, metrics):
                metric_cols += [c for c in (f'{m.label}_{e}{x}' for x in
                                            ('', '_std', '_n', '_delta', '_within_spread'))
                                if c not in metric_cols]  # AP of det and of ins: one column
    if any(task == 'seg' for task, _ in tasks):
        metric_cols.append('biou_ratio')
    buf = io.StringIO()
    writer = csv.DictWriter(buf, cols + metric_cols, lineterminator='\n')
    writer.writeheader()
    for task, rows in tasks:
        chosen = select_metrics(task, metrics)
        for g in rows:
            base = _baseline_of(g)
            row: Dict[str, Any] = dict(
                task=task, run=g.name, method=g.method, backbone=g.backbone,
                baseline=g.baseline.name if g.baseline else '', n=g.n,
                runs=';'.join(r.name for r in g.runs),
                seeds=';'.join('?' if s is None else str(s) for s in g.seeds),
                params=g.params, evals=_per_run([len(r.evaluations) for r in g.runs], ';'))
            if base is not None and g.params is not None and base.params is not None:
                row['params_delta'] = g.params - base.params
            if flops:
                if g.macs is not None:
                    row['shape'] = _shape_text(g.shape)
                    row['gflops'] = f'{g.macs / 1e9:.4f}'
                    row['counted'] = g.counted
                    if base is not None and base.macs is not None:
                        row['gflops_delta'] = f'{(g.macs - base.macs) / 1e9:+.4f}'
            for which in ('best', 'final'):
                evs = [getattr(r, which)() for r in g.runs]
                row[f'{which}_step'] = _per_run([e.step if e else None for e in evs], ';')
            for e in evals:
                for m, c in zip(chosen, metric_cells(g, chosen, e)):
                    key = f'{m.label}_{e}'
                    row[key] = '' if c.value is None else _num(c.value, c.decimals)
                    row[key + '_std'] = '' if c.std is None else _num(c.std, c.decimals)
                    row[key + '_n'] = c.n
                    row[key + '_delta'] = ('' if c.delta is None else
                                           f'{c.delta:+.{c.decimals}f}')
                    row[key + '_within_spread'] = ('' if c.within_spread is None else
                                                   str(c.within_spread).lower())
            if task == 'seg':
                row['biou_ratio'] = '' if g.biou_ratio is None else f'{g.biou_ratio:g}'
            writer.writerow({k: ('' if v is None else v) for k, v in row.items()})
    return buf.getvalue().rstrip('\n')


RENDERERS: Dict[str, Callable[..., str]] = {
    'markdown': render_markdown, 'latex': render_latex, 'csv': render_csv}


def render(groups: List[RunGroup], fmt: str = 'markdown', **options: Any) -> str:
    """The table of ``groups`` in ``fmt`` (``'markdown'``, ``'latex'`` or ``'csv'``); the
    keyword arguments are those of :func:`render_markdown`."""
    if fmt not in RENDERERS:
        raise ValueError(f'unknown table format {fmt!r} (choose from {sorted(RENDERERS)})')
    return RENDERERS[fmt](groups, **options)
