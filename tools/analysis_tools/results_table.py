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

Examples::

    python tools/analysis_tools/results_table.py work_dirs
    python tools/analysis_tools/results_table.py work_dirs/segformer_* --format latex \\
        --baseline segformer_mit-b1_bilinear_1xb16-160k_ade20k-512x512 --metrics mIoU bIoU mAcc
    python tools/analysis_tools/results_table.py work_dirs --format csv --no-flops
    python tools/analysis_tools/results_table.py work_dirs/demo/*_seed* --eval final
"""
from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import math
import operator
import os
import os.path as osp
import re
import statistics
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # get_flops.py, next to this file
import get_flops  # noqa: E402  (also puts the repository on sys.path)

from mmengine.config import Config  # noqa: E402

from fade_mm import cli  # noqa: E402

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
# Keys of a config that say where and how a run was launched, not what it trained: seeds of
# one experiment started apart (own work dir, another launcher, resumed) still group.
LAUNCH_KEYS = ('work_dir', 'launcher', 'resume')
# `seed: N` in the "Runtime environment" block an mmengine Runner logs at start.
LOG_SEED = re.compile(r'^\s*seed: (-?\d+)\s*$')
# Only the head of a log holds that block: training logs grow to gigabytes.
LOG_HEAD_LINES = 400
SEED_SUFFIX = re.compile(r'[_-]seed\d+$')
MIT = {(32, (2, 2, 2, 2)): 'B0', (64, (2, 2, 2, 2)): 'B1', (64, (3, 4, 6, 3)): 'B2',
       (64, (3, 4, 18, 3)): 'B3', (64, (3, 8, 27, 3)): 'B4', (64, (3, 6, 40, 3)): 'B5'}
DASH = '–'
WITHIN_SPREAD = '†'


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
    seed: Optional[int] = None

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

    def names(self) -> List[str]:
        """Every name the group answers to (``--baseline``), lower case."""
        return [self.name.lower()] + [r.name.lower() for r in self.runs]


@dataclass(frozen=True)
class Stat:
    """A metric over the runs of a group: mean, sample std (None for one run), count."""

    mean: float
    std: Optional[float]
    n: int


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
    """The JSON objects of a log of one object a line; unreadable lines are skipped with
    one warning for the file (a run killed mid-write leaves a truncated last line)."""
    records, bad = [], []
    with open(path, encoding='utf-8', errors='replace') as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                bad.append(n)
    if bad:
        more = ', ...' if len(bad) > 5 else ''
        where = (f'line {bad[0]}' if len(bad) == 1 else
                 f'{len(bad)} lines ({", ".join(map(str, bad[:5]))}{more})')
        warnings.warn(f'results_table: skipping unreadable {where} of {path}')
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


# ----------------------------------------------------------------------------- config dumps

# Bounds of what a dump may build: a Runner's dump of a detector config is ~30 kB and holds
# a few thousand values.
MAX_DUMP_BYTES = 4 * 2 ** 20
MAX_VALUES = 200_000
_CALLS = {'dict', 'list', 'tuple'}
_NUMBER_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
               ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv,
               ast.Mod: operator.mod}


class _NotLiteral(Exception):
    """A value :func:`read_config` does not evaluate (the message says what it is)."""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bounded(value: Any) -> Any:
    """``value``, unless it holds more than :data:`MAX_VALUES` values (names assigned before
    can nest one value many times over)."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        count += 1 + (len(item) // 64 if isinstance(item, str) else 0)
        if count > MAX_VALUES:
            raise _NotLiteral(f'more than {MAX_VALUES} values')
        if isinstance(item, dict):
            stack += item.values()
        elif isinstance(item, (list, tuple)):
            stack += item
    return value


def _literal(node: ast.AST, names: Dict[str, Any]) -> Any:
    """The value of an expression of literals, ``dict``/``list``/``tuple`` calls, arithmetic
    on numbers, ``+`` of strings/lists/tuples, names in ``names`` and ``_base_.a.b``.

    Raises:
        _NotLiteral: for anything else (calls of other functions, attributes, ...).
    """
    if isinstance(node, ast.Constant):
        if node.value is None or isinstance(node.value, (str, int, float, bool)):
            return node.value
        raise _NotLiteral(f'a {type(node.value).__name__} constant')
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, names) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        out: Dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values):
            if key is None:  # {**other}
                out.update(_mapping(_literal(value, names)))
            else:
                out[_hashable(_literal(key, names))] = _literal(value, names)
        return out
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in _CALLS and node.func.id not in names:
        args = [_literal(a, names) for a in node.args]
        kwargs: Dict[str, Any] = {}
        for kw in node.keywords:
            kwargs.update({kw.arg: _literal(kw.value, names)} if kw.arg else
                          _mapping(_literal(kw.value, names)))
        if len(args) > 1 or (args and not isinstance(args[0], (dict, list, tuple))):
            raise _NotLiteral(f'{node.func.id}() of {len(args)} arguments')
        if node.func.id == 'dict':
            return dict(_mapping(args[0]) if args else {}, **kwargs)
        if kwargs:
            raise _NotLiteral(f'{node.func.id}() with keywords')
        return (list if node.func.id == 'list' else tuple)(args[0] if args else ())
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, names)
        if not _number(value):
            raise _NotLiteral('a sign on a non-number')
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _NUMBER_OPS:
        left, right = _literal(node.left, names), _literal(node.right, names)
        if _number(left) and _number(right):
            try:
                value = _NUMBER_OPS[type(node.op)](left, right)
            except ArithmeticError as err:
                raise _NotLiteral(str(err)) from None
            if isinstance(value, int) and value.bit_length() > 128:
                raise _NotLiteral('a huge number')
            return value
        if isinstance(node.op, ast.Add) and type(left) is type(right) \
                and isinstance(left, (str, list, tuple)):
            if len(left) + len(right) > MAX_VALUES:
                raise _NotLiteral(f'more than {MAX_VALUES} values')
            return _bounded(left + right)
        raise _NotLiteral(f'{type(node.op).__name__} of {type(left).__name__} and '
                          f'{type(right).__name__}')
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise _NotLiteral(f'the name {node.id!r}')
    if isinstance(node, ast.Attribute):  # _base_.model.backbone: a variable of the bases
        path, inner = [node.attr], node.value
        while isinstance(inner, ast.Attribute):
            path.append(inner.attr)
            inner = inner.value
        if isinstance(inner, ast.Name) and inner.id == '_base_' and '_base_' in names:
            value = names['_base_']
            for attr in reversed(path):
                if not isinstance(value, dict) or attr not in value:
                    raise _NotLiteral(f'_base_.{".".join(reversed(path))} (not in the bases)')
                value = value[attr]
            return value
    what = type(node).__name__
    if isinstance(node, ast.Call):
        what = f'a call of {ast.unparse(node.func)[:40]}'
    raise _NotLiteral(what)


def _mapping(value: Any) -> dict:
    if not isinstance(value, dict):
        raise _NotLiteral(f'** of a {type(value).__name__}')
    return value


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        raise _NotLiteral(f'a {type(value).__name__} as a dict key') from None
    return value


def _trusted_base(base: Any, dump: str) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """``(path, scope, problem)`` of one ``_base_`` entry of a dump: followed only into this
    repository's ``configs/`` or an installed package's configs (``mmdet::...``)."""
    if not isinstance(base, str):
        return None, None, f'_base_ entry {base!r} (not a path)'
    try:
        path, scope = Config._get_cfg_path(base, dump)  # no config is read (mmengine 0.10)
    except Exception as err:  # noqa: BLE001  (package not installed, no such config)
        return None, None, f'_base_ {base!r} ({cli._one_line(str(err))[:120]})'
    if scope is None:
        trusted = osp.join(get_flops.REPO_ROOT, 'configs')
    else:
        from mmengine.utils import get_installed_path
        trusted = get_installed_path(base.partition('::')[0])
    if not osp.realpath(path).startswith(osp.realpath(trusted) + os.sep):
        return None, None, (f"_base_ {base!r} (outside this repository's and the installed "
                            "packages' configs: not followed)")
    if not osp.isfile(path):
        return None, None, f'_base_ {base!r} (no such file)'
    return path, scope, None


def _read_bases(bases: Any, dump: str, problems: List[str]) -> Dict[str, Any]:
    """The merged bases of a dump, as mmengine 0.10's ``Config._file2dict`` merges them."""
    from mmengine.config import ConfigDict

    merged = ConfigDict()
    for base in bases if isinstance(bases, (list, tuple)) else [bases]:
        path, scope, problem = _trusted_base(base, dump)
        if problem:
            problems.append(problem)
            continue
        try:
            # a shipped config of this repository or an installed package: run as the
            # tools run it
            cfg_dict = Config._file2dict(path)[0]
        except Exception as err:  # noqa: BLE001
            problems.append(f'_base_ {base!r} ({type(err).__name__}: '
                            f'{cli._one_line(str(err))[:120]})')
            continue
        merged.update(Config._dict_to_config_dict(cfg_dict, scope))
    return merged


def read_config(path: str) -> Tuple[Optional[Config], List[str]]:
    """Reads a config dump **without executing it**.

    The file is parsed with :mod:`ast`; each top-level ``NAME = value`` whose value is
    made of literals (see :func:`_literal`) is evaluated, everything else -- imports,
    function definitions, calls, any other statement -- is skipped and reported. ``_base_``
    is followed into trusted configs only (:func:`_trusted_base`), read as mmengine reads
    them, and the dump's values are merged over them as mmengine merges them.

    Returns:
        ``(config, problems)``: the config (None when the file cannot be parsed at all) and
        one short note per skipped statement, value or base.
    """
    problems: List[str] = []
    try:
        if osp.getsize(path) > MAX_DUMP_BYTES:
            return None, [f'larger than {MAX_DUMP_BYTES // 2 ** 20} MiB']
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError,
            MemoryError) as err:
        if isinstance(err, SyntaxError):
            return None, [f'syntax error at line {err.lineno}: {err.msg}']
        return None, [f'{type(err).__name__}: {cli._one_line(str(err))[:160]}']
    names: Dict[str, Any] = {}
    statements = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                and isinstance(stmt.value.value, str):
            continue  # a docstring
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name):
            statements.append((stmt.targets[0].id, stmt))
        else:
            problems.append(f'line {stmt.lineno}: {type(stmt).__name__.lower()} statement '
                            '(not an assignment: not run)')
    # `_base_` first, as mmengine does, whatever its line
    for name, stmt in sorted(statements, key=lambda s: s[0] != '_base_'):
        try:
            value = _bounded(_literal(stmt.value, names))
        except (_NotLiteral, RecursionError) as err:
            names.pop(name, None)
            problems.append(f'{name} (line {stmt.lineno}: '
                            f'{err if isinstance(err, _NotLiteral) else "nested too deeply"}'
                            ': not evaluated)')
            continue
        names[name] = _read_bases(value, path, problems) if name == '_base_' else value
    base = names.pop('_base_', None)
    cfg_dict = {k: v for k, v in names.items()
                if not k.startswith('__') and k not in ('filename', 'text', 'pretty_text',
                                                         'env_variables')}
    try:
        if base:
            for value in cfg_dict.values():
                Config._parse_scope(value)
            cfg_dict = Config._merge_a_into_b(cfg_dict, base)
        return Config(cfg_dict, filename=path), problems
    except Exception as err:  # noqa: BLE001  (e.g. a list merged into a dict)
        return None, problems + [f'{type(err).__name__}: {cli._one_line(str(err))[:160]}']


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
            raise cli.UsageError(f'argument work_dirs: no such directory: {path}')
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


# bIoU evaluators of fade_mm.seg and their band-width argument (both default to 0.02): the
# stand-alone metric, and the IoUMetric subclass that also computes mIoU
BIOU_METRICS = {'BoundaryIoUMetric': 'ratio', 'IoUBoundaryMetric': 'boundary_ratio'}


def _biou_ratio(cfg: Config) -> Optional[float]:
    evaluators = cfg.get('val_evaluator') or cfg.get('test_evaluator') or []
    for ev in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
        if isinstance(ev, dict) and ev.get('type') in BIOU_METRICS:
            return float(ev.get(BIOU_METRICS[ev['type']], 0.02))
    return None


def _logged_seed(log_path: str) -> Optional[int]:
    """The seed an mmengine Runner logged under "Runtime environment"; None if not there."""
    in_env = False
    with open(log_path, errors='replace') as f:
        for n, line in enumerate(f):
            if n >= LOG_HEAD_LINES:
                break
            # only inside that block: the config printed later may hold "seed" too
            if 'Runtime environment:' in line:
                in_env = True
            elif in_env:
                m = LOG_SEED.match(line)
                if m:
                    return int(m.group(1))
                if line.startswith('---'):  # end of the block
                    in_env = False
    return None


def read_seed(run_dir: str, stamps: List[str], cfg: Optional[Config]) -> Optional[int]:
    """The run's seed: the one its first log records (the Runner logs the seed it used, also
    a random one drawn for ``seed=None``), else the dumped config's ``randomness.seed``."""
    for stamp in stamps:
        log = osp.join(run_dir, stamp, stamp + '.log')
        if osp.isfile(log):
            seed = _logged_seed(log)
            if seed is not None:
                return seed
    seed = ((cfg.get('randomness') or {}).get('seed') if cfg is not None else None)
    return seed if isinstance(seed, int) else None


def read_run(run_dir: str) -> Run:
    """Config, method, backbone and every evaluation of one run directory.

    The config dump is read without running it (:func:`read_config`); what it holds beyond
    literals is left out with a warning, and a run whose dump cannot be read at all is
    shown without config (method: the directory name).
    """
    stamps = sorted(d for d in os.listdir(run_dir)
                    if TIMESTAMP.match(d) and osp.isdir(osp.join(run_dir, d)))
    name = osp.basename(osp.normpath(run_dir))
    config_path = _find_config(run_dir, stamps)
    cfg = task = None
    if config_path is not None:
        cfg, problems = read_config(config_path)
        if problems:
            warnings.warn(f'results_table: {config_path}: '
                          f'{"not read" if cfg is None else "partly read, left out"}: '
                          f'{"; ".join(problems[:4])}{" ..." if len(problems) > 4 else ""}')
        if cfg is not None and not isinstance(cfg.get('model'), dict):
            cfg = None  # nothing to tell the method, backbone or experiment by
        task = SCOPE_TASK.get(cfg.get('default_scope')) if cfg is not None else None
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
              tests=tests, biou_ratio=_biou_ratio(cfg) if cfg is not None else None,
              seed=read_seed(run_dir, stamps, cfg))
    return run


def experiment_key(run: Run) -> str:
    """What runs of one experiment share: the config without its seed and launch keys (see
    the module docstring); a run without a readable config is an experiment of its own."""
    if run.config is None:
        return 'run:' + osp.realpath(run.path)
    cfg = run.config.to_dict()
    if cfg.get('resume') or cfg.get('load_from') is None:
        # a resumed run's: the checkpoint it restarted from; None is no setting either
        cfg.pop('load_from', None)
    for key in LAUNCH_KEYS:
        cfg.pop(key, None)
    randomness = dict(cfg.pop('randomness', None) or {})
    randomness.pop('seed', None)
    if randomness:  # deterministic=True, diff_rank_seed ... do tell experiments apart
        cfg['randomness'] = randomness
    return json.dumps(cfg, sort_keys=True, default=str)


def group_runs(runs: List[Run], by_seed: bool = True) -> List[RunGroup]:
    """Groups runs that differ only in their seed (``by_seed``), else one group per run.

    Warns about a group with a seed twice (its spread is then not the seeds' spread) and
    about one whose runs ended at different steps (one may be unfinished).
    """
    groups: Dict[str, List[Run]] = {}
    for run in runs:
        key = experiment_key(run) if by_seed else 'run:' + osp.realpath(run.path)
        groups.setdefault(key, []).append(run)
    out = []
    for members in groups.values():
        members.sort(key=lambda r: (r.seed is None, r.seed or 0, r.name))
        group = RunGroup(members)
        seeds = [r.seed for r in members if r.seed is not None]
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            names = ', '.join(r.name for r in members if r.seed in twice)
            warnings.warn(f'results_table: {group.name}: seed {", ".join(map(str, twice))} '
                          f'in more than one run ({names}); they are averaged as separate '
                          'runs, so the std is not the spread over seeds')
        steps = [r.final().step for r in members]
        if None not in steps and len(set(steps)) > 1:
            warnings.warn(f'results_table: {group.name}: last evaluations at different steps '
                          f'({", ".join(map(str, steps))}); a run may be unfinished')
        out.append(group)
    return out


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
    cache: Dict[Tuple[str, bool], Tuple[Optional[int], Optional[int]]] = {}
    for run in runs:
        if run.config is None or not run.config.get('model'):
            continue
        key = (json.dumps(run.config.model.to_dict(), sort_keys=True, default=str), flops)
        if key not in cache:
            cache[key] = (None, None)
            try:
                if flops:
                    res = get_flops.measure(run.config, shape, device, run.config_path)
                    cache[key] = (res.params,
                                  res.macs - (res.sampling_macs if exclude_sampling else 0))
                else:
                    model = get_flops.build_model(run.config)
                    cache[key] = (sum(p.numel() for p in model.parameters()), None)
                    del model
            except Exception as err:  # noqa: BLE001  (a model this install cannot build)
                warnings.warn(f'results_table: {run.path}: model not measured, no '
                              f'params/GFLOPs ({cli.explain(err)[0][:300]})')
        run.params, run.macs = cache[key]


def assign_baselines(groups: List[RunGroup], name: Optional[str]) -> None:
    """Sets each row's baseline: the ``name`` match (run dir, seed-less group name or method,
    case-insensitive) in its task and backbone, else the only match in its task; by default
    the nearest / bilinear row of the same task and backbone."""
    def matches(g: RunGroup) -> bool:
        if name is not None:
            return name.lower() in g.names() + [g.method.lower()]
        return g.method in TASKS[g.task]['baselines']

    cands = [g for g in groups if g.task is not None and matches(g)]
    if name is not None and not cands:
        raise cli.UsageError(f'results_table: --baseline {name!r} matches no run (runs: '
                         f'{", ".join(r.name for g in groups for r in g.runs)}; methods: '
                         f'{", ".join(sorted({g.method for g in groups}))})')
    for group in groups:
        group.baseline = None
        same = [c for c in cands if c.task == group.task and c.backbone == group.backbone]
        if not same and name is not None:
            same = [c for c in cands if c.task == group.task]
            same = same if len(same) == 1 else []
        if same:
            # the baseline kind listed first wins (bilinear over nearest for segmentation);
            # then the row with more seeds, the better-measured reference
            kinds = list(TASKS[group.task]['baselines'])
            same.sort(key=lambda c: (kinds.index(c.method) if c.method in kinds else 0,
                                     -c.n, c.name))
            group.baseline = same[0]


def _order(group: RunGroup) -> Tuple:
    prefixes = [m for m in METHOD_ORDER if group.method.startswith(m)]
    idx = METHOD_ORDER.index(max(prefixes, key=len)) if prefixes else len(METHOD_ORDER)
    return (group.backbone, group.baseline is not group, idx, group.method, -group.n,
            group.name)


# ----------------------------------------------------------------------------- statistics

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


# ----------------------------------------------------------------------------- formatting

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


def metric_cells(group: RunGroup, metrics: List[Metric], which: str) -> List[Cell]:
    """Cells of one evaluation kind (``'best'`` / ``'final'``) with deltas to the baseline
    row's evaluation of the same kind (differences of the means)."""
    base = group.baseline if group.baseline not in (None, group) else None
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


def _complexity_text(group: RunGroup, flops: bool) -> Tuple[str, str]:
    base = group.baseline if group.baseline not in (None, group) else None
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


def _by_task(groups: List[RunGroup]) -> List[Tuple[str, List[RunGroup]]]:
    out = []
    for task in TASKS:
        rows = sorted((g for g in groups if g.task == task), key=_order)
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


def _fixed_headers(args: argparse.Namespace) -> List[str]:
    return (['Method', 'Backbone', 'ΔParams'] + ([] if args.no_flops else ['ΔGFLOPs'])
            + ['n', 'Evals'])


def _any_within_spread(rows: List[RunGroup], metrics: List[Metric], evals: List[str]) -> bool:
    return any(c.within_spread for g in rows for e in evals for c in metric_cells(g, metrics, e))


def _notes(task: str, rows: List[RunGroup], metrics: List[Metric], evals: List[str],
           args: argparse.Namespace) -> List[str]:
    primary = TASKS[task]['metrics'][0].label
    ratios = _ratios(rows)
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
    if args.per_run:
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
    if task == 'det':
        notes.append('AP: COCO box mAP x100 (IoU 0.50:0.95); – where COCO reports -1.')
    return notes


def _ratios(rows: List[RunGroup]) -> List[float]:
    return [g.biou_ratio for g in rows if g.biou_ratio is not None]


def _rows(rows: List[RunGroup], metrics: List[Metric], evals: List[str],
          args: argparse.Namespace) -> List[List[str]]:
    out = []
    for g in rows:
        p, gf = _complexity_text(g, not args.no_flops)
        cells = [c for e in evals for c in metric_cells(g, metrics, e)]
        line = [g.method, g.backbone, p]
        if not args.no_flops:
            line.append(gf)
        line += [str(g.n), _per_run([len(r.evaluations) for r in g.runs])]
        out.append(line + [_cell_text(c) for c in cells])
    return out


def render_markdown(groups: List[RunGroup], args: argparse.Namespace) -> str:
    blocks = []
    for task, rows in _by_task(groups):
        metrics, evals = _metrics(task, args), _evals(args)
        head = _fixed_headers(args) + _headers(metrics, evals, _ratios(rows))
        align = ['---', '---'] + ['---:'] * (len(head) - 2)
        lines = [f"**{TASKS[task]['title']}**", '',
                 '| ' + ' | '.join(head) + ' |', '|' + '|'.join(align) + '|']
        lines += ['| ' + ' | '.join(row) + ' |' for row in _rows(rows, metrics, evals, args)]
        lines += [''] + _notes(task, rows, metrics, evals, args)
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


def render_latex(groups: List[RunGroup], args: argparse.Namespace) -> str:
    blocks = []
    for task, rows in _by_task(groups):
        metrics, evals = _metrics(task, args), _evals(args)
        fixed = _fixed_headers(args)
        names = _headers(metrics, [evals[0]], _ratios(rows))
        lines = [f"% {TASKS[task]['title']} -- tools/analysis_tools/results_table.py",
                 *('% ' + _ascii(n) for n in _notes(task, rows, metrics, evals, args)),
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


def render_csv(groups: List[RunGroup], args: argparse.Namespace) -> str:
    """One CSV for all rows: exact numbers, one column per value, spread and delta.

    ``run`` is the row's name, ``runs`` / ``seeds`` its run directories and their seeds
    (``;``-separated, ``?`` for an unknown seed; ``evals`` and the steps likewise where the
    runs differ). Per metric: the mean (``<M>_<eval>``), its sample std (empty for one
    value), the number of runs with a value, the delta of the means to the baseline and
    whether the mean ± std intervals overlap (``within_spread``: true / false; empty without
    a spread or a baseline).
    """
    evals = _evals(args)
    cols = ['task', 'run', 'method', 'backbone', 'baseline', 'n', 'runs', 'seeds', 'params',
            'params_delta']
    if not args.no_flops:
        cols += ['shape', 'gflops', 'gflops_delta']
    cols += ['evals', 'best_step', 'final_step']
    by_task = _by_task(groups)
    metric_cols: List[str] = []
    for task, _ in by_task:
        for e in evals:
            for m in _metrics(task, args):
                metric_cols += [f'{m.label}_{e}{x}' for x in
                                ('', '_std', '_n', '_delta', '_within_spread')]
    if any(task == 'seg' for task, _ in by_task):
        metric_cols.append('biou_ratio')
    buf = io.StringIO()
    writer = csv.DictWriter(buf, cols + metric_cols, lineterminator='\n')
    writer.writeheader()
    for task, rows in by_task:
        metrics = _metrics(task, args)
        for g in rows:
            base = g.baseline if g.baseline not in (None, g) else None
            row: Dict[str, Any] = dict(
                task=task, run=g.name, method=g.method, backbone=g.backbone,
                baseline=g.baseline.name if g.baseline else '', n=g.n,
                runs=';'.join(r.name for r in g.runs),
                seeds=';'.join('?' if s is None else str(s) for s in g.seeds),
                params=g.params, evals=_per_run([len(r.evaluations) for r in g.runs], ';'))
            if base is not None and g.params is not None and base.params is not None:
                row['params_delta'] = g.params - base.params
            if not args.no_flops:
                row['shape'] = f'{args.shape[0]}x{args.shape[1]}'
                if g.macs is not None:
                    row['gflops'] = f'{g.macs / 1e9:.4f}'
                    if base is not None and base.macs is not None:
                        row['gflops_delta'] = f'{(g.macs - base.macs) / 1e9:+.4f}'
            for which in ('best', 'final'):
                evs = [getattr(r, which)() for r in g.runs]
                row[f'{which}_step'] = _per_run([e.step if e else None for e in evs], ';')
            for e in evals:
                for m, c in zip(metrics, metric_cells(g, metrics, e)):
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


def _metrics(task: str, args: argparse.Namespace) -> List[Metric]:
    """The requested metric columns that apply to ``task``; its defaults if none does (a
    mixed work_dirs asked for ``--metrics mIoU mAcc`` still gets its detection table)."""
    known = {m.label.lower(): m for m in TASKS[task]['metrics']}
    every = {m.label.lower() for t in TASKS.values() for m in t['metrics']}
    unknown = [w for w in args.metrics or [] if w.lower() not in every]
    if unknown:
        raise cli.UsageError(f'results_table: unknown --metrics {unknown} (choose from '
                             f"{[m.label for t in TASKS.values() for m in t['metrics']]})")
    wanted = [w for w in args.metrics or [] if w.lower() in known]
    return [known[w.lower()] for w in wanted or TASKS[task]['default']]


def _evals(args: argparse.Namespace) -> List[str]:
    return ['best', 'final'] if args.eval == 'both' else [args.eval]


RENDER = {'markdown': render_markdown, 'latex': render_latex, 'csv': render_csv}


def collect(args: argparse.Namespace) -> List[RunGroup]:
    """Reads the runs named by ``args.work_dirs``, measures them, groups the seeds of each
    experiment into one row (unless ``args.per_run``) and assigns baselines.

    Runs without any evaluation (e.g. a training that crashed early) are skipped with a
    warning.
    """
    runs = []
    for run_dir in find_runs(args.work_dirs):
        try:
            runs.append(read_run(run_dir))
        except Exception as err:  # noqa: BLE001  (e.g. a log that is a directory)
            warnings.warn(f'results_table: {run_dir}: unreadable, skipped '
                          f'({type(err).__name__}: {cli._one_line(str(err))[:200]})')
    skipped = [r for r in runs if r.task is None or not r.evaluations]
    for r in skipped:
        warnings.warn(f'results_table: {r.path}: no evaluation results found, skipped')
    runs = [r for r in runs if r not in skipped]
    if not runs:
        raise cli.CLIError('results_table: no run with evaluation results under '
                           + ', '.join(args.work_dirs))
    groups = group_runs(runs, by_seed=not args.per_run)
    assign_baselines(groups, args.baseline)  # a --baseline matching nothing fails first
    add_complexity(runs, args.shape, not args.no_flops, args.device, args.exclude_sampling)
    return groups


def render(groups: List[RunGroup], args: argparse.Namespace) -> str:
    """The table of ``groups`` (see :func:`collect`) in ``args.format``."""
    return RENDER[args.format](groups, args)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = cli.ArgumentParser(
        prog='results_table.py',
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
    p.add_argument('--per-run', action='store_true',
                   help='one row per run directory (default: runs whose configs differ only '
                   'in randomness.seed make one row, mean ± std)')
    p.add_argument('--device', choices=['auto', 'meta', 'cpu'], default='auto',
                   help='where FLOPs are counted (see get_flops.py)')
    args = p.parse_args(argv)
    args.shape = get_flops.parse_shape(p, args.shape)
    labels = [m.label for t in TASKS.values() for m in t['metrics']]
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
