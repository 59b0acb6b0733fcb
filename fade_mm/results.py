"""Reading mmengine work dirs for a results table: runs, their evaluations, seeds, config
dumps (never executed) and complexity JSONs.

What ``tools/analysis_tools/results_table.py`` reads (its docstring says what a table
shows); :mod:`fade_mm.tables` renders the :class:`~fade_mm.tables.RunGroup` rows that
:func:`collect` returns. Per run directory ``work_dirs/<config_name>/`` (what an mmengine 0.10
``Runner`` writes):

- ``<config_name>.py``: the dumped config (else ``<timestamp>/vis_data/config.py``), read by
  :func:`read_config` **without executing it**: only assignments of literals are evaluated,
  and ``_base_`` is followed only into this repository's ``configs/`` or an installed
  package's (``mmdet::...``);
- ``<timestamp>/vis_data/scalars.json``: the metrics of every validation;
  ``<timestamp>/<timestamp>.json``: those of a test run; ``<timestamp>/<timestamp>.log``:
  the seed the Runner used;
- ``complexity.json``: the complexity JSON of :mod:`fade_mm.complexity` (``get_flops.py
  --json``) for the run's model.

Runs that differ only in their seed are grouped (:func:`group_runs`); a half-written run is
skipped or shown without what could not be read, with a one-line warning. ``mmengine`` is
imported inside the functions: ``import fade_mm.results`` adds nothing to ``import fade_mm``.
"""
from __future__ import annotations

import ast
import collections
import json
import operator
import os
import os.path as osp
import re
import warnings
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple

from . import cli, complexity, tools
from .tables import TASKS, Evaluation, Run, RunGroup, lookup

if TYPE_CHECKING:
    from mmengine.config import Config

__all__ = ['COMPLEXITY_FILE', 'CONFIGS_DIR', 'read_config', 'task_of', 'find_runs', 'read_run',
           'experiment_key', 'group_runs', 'read_complexity', 'complexity_sources',
           'run_model_key', 'add_complexity', 'assign_baselines', 'collect']

#: This checkout's ``configs/`` (next to the package): dumps' ``_base_`` entries are followed
#: into it (and into installed packages' configs) only.
CONFIGS_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs')
TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')
SCOPE_TASK = {'mmdet': 'det', 'mmseg': 'seg'}
# Keys of a config that say where and how a run was launched, not what it trained: seeds of
# one experiment started apart (own work dir, another launcher, resumed) still group.
LAUNCH_KEYS = ('work_dir', 'launcher', 'resume')
# `seed: N` in the "Runtime environment" block an mmengine Runner logs at start.
LOG_SEED = re.compile(r'^\s*seed: (-?\d+)\s*$')
# Only the head of a log holds that block: training logs grow to gigabytes.
LOG_HEAD_LINES = 400
MIT = {(32, (2, 2, 2, 2)): 'B0', (64, (2, 2, 2, 2)): 'B1', (64, (3, 4, 6, 3)): 'B2',
       (64, (3, 4, 18, 3)): 'B3', (64, (3, 8, 27, 3)): 'B4', (64, (3, 6, 40, 3)): 'B5'}
# The complexity JSON of a run, in its directory (get_flops.py --json).
COMPLEXITY_FILE = 'complexity.json'
# Largest complexity JSON read (one entry is ~1 kB; a directory of them stays small).
MAX_COMPLEXITY_BYTES = 16 * 2 ** 20


# ----------------------------------------------------------------------------- reading

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


# Tasks told from metric keys alone, most specific first (an instance segmentation record
# holds box AP too).
GUESS_ORDER = ('pan', 'ins', 'det', 'seg')


def _evaluator_types(cfg: Config) -> List[Dict[str, Any]]:
    evaluators = cfg.get('val_evaluator') or cfg.get('test_evaluator') or []
    return [e for e in (evaluators if isinstance(evaluators, (list, tuple)) else [evaluators])
            if isinstance(e, dict)]


def task_of(cfg: Config) -> Optional[str]:
    """The run's task from its config: ``seg`` for mmseg; for mmdet ``pan`` with a
    ``CocoPanopticMetric``, ``ins`` with a ``CocoMetric`` that evaluates ``segm``, else
    ``det``; None for another scope."""
    task = SCOPE_TASK.get(cfg.get('default_scope'))
    if task != 'det':
        return task
    for ev in _evaluator_types(cfg):
        if ev.get('type') == 'CocoPanopticMetric':
            return 'pan'
        metric = ev.get('metric', 'bbox')
        if 'segm' in ([metric] if isinstance(metric, str) else list(metric or [])):
            return 'ins'
    return 'det'


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


def _trusted_base(base: Any, dump: str, configs_dir: str
                  ) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """``(path, scope, problem)`` of one ``_base_`` entry of a dump: followed only into
    ``configs_dir`` (this repository's ``configs/``) or an installed package's configs
    (``mmdet::...``)."""
    from mmengine.config import Config

    if not isinstance(base, str):
        return None, None, f'_base_ entry {base!r} (not a path)'
    try:
        path, scope = Config._get_cfg_path(base, dump)  # no config is read (mmengine 0.10)
    except Exception as err:  # noqa: BLE001  (package not installed, no such config)
        return None, None, f'_base_ {base!r} ({cli._one_line(str(err))[:120]})'
    if scope is None:
        trusted = configs_dir
    else:
        from mmengine.utils import get_installed_path
        trusted = get_installed_path(base.partition('::')[0])
    if not osp.realpath(path).startswith(osp.realpath(trusted) + os.sep):
        return None, None, (f"_base_ {base!r} (outside this repository's and the installed "
                            "packages' configs: not followed)")
    if not osp.isfile(path):
        return None, None, f'_base_ {base!r} (no such file)'
    return path, scope, None


def _read_bases(bases: Any, dump: str, problems: List[str],
                configs_dir: str) -> Dict[str, Any]:
    """The merged bases of a dump, as mmengine 0.10's ``Config._file2dict`` merges them."""
    from mmengine.config import Config, ConfigDict

    merged = ConfigDict()
    for base in bases if isinstance(bases, (list, tuple)) else [bases]:
        path, scope, problem = _trusted_base(base, dump, configs_dir)
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


def read_config(path: str, configs_dir: Optional[str] = None
                ) -> Tuple[Optional['Config'], List[str]]:
    """Reads a config dump **without executing it**.

    The file is parsed with :mod:`ast`; each top-level ``NAME = value`` whose value is
    made of literals (see :func:`_literal`) is evaluated, everything else -- imports,
    function definitions, calls, any other statement -- is skipped and reported. ``_base_``
    is followed into trusted configs only (:func:`_trusted_base`), read as mmengine reads
    them, and the dump's values are merged over them as mmengine merges them.

    The mmengine 0.10 calls that do this are its ``Config`` internals (``_get_cfg_path``,
    ``_file2dict``, ``_dict_to_config_dict``, ``_parse_scope``, ``_merge_a_into_b``): the
    public ``Config.fromfile`` would execute the dump, and the model config must come out
    exactly as ``fromfile`` makes it (complexity JSONs are matched by
    :func:`fade_mm.complexity.model_key` of it).

    Args:
        path: the dump.
        configs_dir: the repository's ``configs/`` whose files a ``_base_`` may name
            (default :data:`CONFIGS_DIR`).

    Returns:
        ``(config, problems)``: the config (None when the file cannot be parsed at all) and
        one short note per skipped statement, value or base.
    """
    from mmengine.config import Config

    configs_dir = configs_dir or CONFIGS_DIR
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
        names[name] = (_read_bases(value, path, problems, configs_dir) if name == '_base_'
                       else value)
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
    """The upsampler's name in the papers' tables (:func:`fade_mm.tools.method_label`)."""
    return tools.method_label(cfg, 'mmseg' if task == 'seg' else 'mmdet')


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
    for ev in _evaluator_types(cfg):
        if ev.get('type') in BIOU_METRICS:
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


def read_run(run_dir: str, configs_dir: Optional[str] = None) -> Run:
    """Config, method, backbone and every evaluation of one run directory.

    The config dump is read without running it (:func:`read_config`, ``configs_dir`` as
    there); what it holds beyond literals is left out with a warning, and a run whose dump
    cannot be read at all is shown without config (method: the directory name).
    """
    stamps = sorted(d for d in os.listdir(run_dir)
                    if TIMESTAMP.match(d) and osp.isdir(osp.join(run_dir, d)))
    name = osp.basename(osp.normpath(run_dir))
    config_path = _find_config(run_dir, stamps)
    cfg = task = None
    if config_path is not None:
        cfg, problems = read_config(config_path, configs_dir)
        if problems:
            warnings.warn(f'results_table: {config_path}: '
                          f'{"not read" if cfg is None else "partly read, left out"}: '
                          f'{"; ".join(problems[:4])}{" ..." if len(problems) > 4 else ""}')
        if cfg is not None and not isinstance(cfg.get('model'), dict):
            cfg = None  # nothing to tell the method, backbone or experiment by
        task = task_of(cfg) if cfg is not None else None
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
        for t in GUESS_ORDER:
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

def _shape_of(entry: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    shape = entry.get('shape')
    if isinstance(shape, (list, tuple)) and len(shape) == 2 \
            and all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        return int(shape[0]), int(shape[1])
    return None


def _complexity_entry(obj: Any) -> Optional[Dict[str, Any]]:
    """``obj`` if it is a complexity record (:func:`fade_mm.complexity.to_json`: params,
    macs, shape)."""
    if not isinstance(obj, dict):
        return None
    if not all(isinstance(obj.get(k), int) and not isinstance(obj.get(k), bool)
               for k in ('params', 'macs')) or _shape_of(obj) is None:
        return None
    return obj


def read_complexity(path: str) -> List[Dict[str, Any]]:
    """The complexity records of one JSON file (``get_flops.py --json``): an object, a list
    of objects, or one object a line. Unreadable files and records are skipped with a
    warning."""
    try:
        if osp.getsize(path) > MAX_COMPLEXITY_BYTES:
            raise ValueError(f'larger than {MAX_COMPLEXITY_BYTES // 2 ** 20} MiB')
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except (OSError, UnicodeDecodeError, ValueError) as err:
        warnings.warn(f'results_table: {path}: complexity JSON not read ({err})')
        return []
    try:
        data = json.loads(text)
        items = data if isinstance(data, list) else [data]
    except ValueError:
        items = []
        for line in text.splitlines():
            try:
                items.append(json.loads(line))
            except ValueError:
                if line.strip():
                    items.append(None)
    entries = [e for e in map(_complexity_entry, items) if e is not None]
    if len(entries) < len(items):
        warnings.warn(f'results_table: {path}: {len(items) - len(entries)} of {len(items)} '
                      'records are not complexity records of get_flops.py --json (params, '
                      'macs, shape): skipped')
    return entries


def complexity_sources(paths: Sequence[str]) -> List[Dict[str, Any]]:
    """The records of ``--complexity`` files and directories (their ``*.json``)."""
    entries: List[Dict[str, Any]] = []
    for path in paths:
        if osp.isdir(path):
            files = sorted(osp.join(path, f) for f in os.listdir(path) if f.endswith('.json'))
        elif osp.isfile(path):
            files = [path]
        else:
            raise cli.UsageError(f'argument --complexity: no such file or directory: {path}')
        for file in files:
            entries += [dict(e, _source=file) for e in read_complexity(file)]
    return entries


def run_model_key(run: Run) -> Optional[str]:
    """:func:`fade_mm.complexity.model_key` of the run's model config (None without a
    config)."""
    if run.config is None or not isinstance(run.config.get('model'), dict):
        return None
    return complexity.model_key(run.config.model)


def _own_complexity(run: Run) -> Optional[Dict[str, Any]]:
    path = osp.join(run.path, COMPLEXITY_FILE)
    if not osp.isfile(path):
        return None
    entries = read_complexity(path)
    if not entries:
        return None
    entry = dict(entries[0], _source=path)
    key = run_model_key(run)
    if key is not None and entry.get('model_key') not in (None, key):
        warnings.warn(f'results_table: {path}: counted for another model config than the '
                      "run's dump (count it with get_flops.py on the run's dumped config); "
                      'used as it is')
    return entry


def add_complexity(runs: List[Run], shape: Optional[Sequence[int]] = None, flops: bool = True,
                   device: str = 'auto', exclude_sampling: bool = False, count: bool = False,
                   sources: Sequence[Dict[str, Any]] = ()) -> None:
    """Fills ``params``, ``macs`` and ``counted`` (when ``flops``) and ``shape`` of the
    runs.

    From complexity records first: the run's own ``complexity.json``, else a record of
    ``sources`` (:func:`complexity_sources`) with the run's model key. GFLOPs are taken from
    records of ``shape`` only; with ``shape`` None, from those of each task's most common
    shape (so that a table compares like with like). Runs left without numbers are counted
    with :func:`fade_mm.complexity.measure` when ``count`` (at ``shape``, else the task's
    shape or 512x512), else keep None. ``counted`` is what a record's ``macs`` cover (a
    record written before get_flops.py said so counted the whole model); a warning says when
    one task's rows cover different parts.

    Args:
        runs: the runs; those without a readable config get nothing from ``sources`` and
            are not counted.
        shape: ``(H, W)`` the GFLOPs must be for (None: see above).
        flops: fill ``macs`` (else parameters only).
        device: ``'auto'``, ``'meta'`` or ``'cpu'`` for counting (see
            :func:`fade_mm.complexity.measure`).
        exclude_sampling: leave interpolation / grid sampling out of ``macs``.
        count: build and count the models without a usable record.
        sources: complexity records from ``--complexity``.
    """
    by_key: Dict[str, Dict[str, Any]] = {}
    for entry in sources:
        key = entry.get('model_key')
        if isinstance(key, str):
            by_key.setdefault(key, entry)  # the first named wins
    found: Dict[int, Dict[str, Any]] = {}
    for i, run in enumerate(runs):
        entry = _own_complexity(run)
        if entry is None:
            key = run_model_key(run)
            entry = by_key.get(key) if key else None
        if entry is not None:
            found[i] = entry
    wanted: Dict[Optional[str], Optional[Tuple[int, int]]] = {}
    for task in {r.task for r in runs}:
        if shape is not None:
            wanted[task] = (int(shape[0]), int(shape[1]))
            continue
        shapes = collections.Counter(_shape_of(found[i]) for i, r in enumerate(runs)
                                     if i in found and r.task == task)
        wanted[task] = shapes.most_common(1)[0][0] if shapes else None
    # runs of one model config (seeds, schedules) share one measurement
    cache: Dict[Tuple[str, Any, bool], Tuple[Optional[int], Optional[int], Optional[str]]] = {}
    for i, run in enumerate(runs):
        entry, want = found.get(i), wanted[run.task]
        if entry is not None:
            run.params = entry['params']
            if flops and _shape_of(entry) == want:
                run.macs = entry['macs'] - (int(entry.get('sampling_macs') or 0)
                                            if exclude_sampling else 0)
                run.shape = want
                run.counted = _counted_of(entry)
                continue
            if not flops:
                continue
            if not count:
                warnings.warn(f"results_table: {entry['_source']}: counted at "
                              f"{'x'.join(map(str, _shape_of(entry)))}, the table's "
                              f"{run.task} rows at {'x'.join(map(str, want))}: no GFLOPs for "
                              f'{run.name} (--count counts it at that shape)')
                continue
        if not count or run.config is None or not run.config.get('model'):
            continue
        at = want or tuple(complexity.DEFAULT_SHAPE)
        key = (json.dumps(run.config.model.to_dict(), sort_keys=True, default=str), at, flops)
        if key not in cache:
            cache[key] = (None, None, None)
            try:
                if flops:
                    res = complexity.measure(run.config, at, device, run.config_path)
                    cache[key] = (res.params,
                                  res.macs - (res.sampling_macs if exclude_sampling else 0),
                                  res.counted)
                else:
                    model = tools.build_model(run.config)
                    cache[key] = (sum(p.numel() for p in model.parameters()), None, None)
                    del model
            except Exception as err:  # noqa: BLE001  (a model this install cannot build)
                warnings.warn(f'results_table: {run.path}: model not measured, no '
                              f'params/GFLOPs ({cli.explain(err)[0][:300]})')
        run.params, run.macs, run.counted = cache[key]
        run.shape = at if run.macs is not None else None
    for task in sorted({r.task for r in runs if r.task}):
        parts = collections.defaultdict(list)
        for run in runs:
            if run.task == task and run.macs is not None and run.counted:
                parts[run.counted].append(run.name)
        if len(parts) > 1:
            warnings.warn(f'results_table: the {task} rows\' GFLOPs cover different parts of '
                          'their models (' + '; '.join(
                              f'{part}: {", ".join(names)}' for part, names in sorted(
                                  parts.items())) + '): count them again with get_flops.py '
                          '(detectors: backbone+neck)')


def _counted_of(entry: Dict[str, Any]) -> str:
    """What a complexity record's ``macs`` cover; records written before get_flops.py said
    so counted the whole model."""
    counted = entry.get('counted')
    return counted if isinstance(counted, str) and counted else 'whole model'


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


def collect(work_dirs: Sequence[str], *, per_run: bool = False, baseline: Optional[str] = None,
            shape: Optional[Sequence[int]] = None, flops: bool = True, device: str = 'auto',
            exclude_sampling: bool = False, count: bool = False,
            complexity_paths: Sequence[str] = (),
            configs_dir: Optional[str] = None) -> List[RunGroup]:
    """Reads the runs under ``work_dirs`` and their complexity, groups the seeds of each
    experiment into one row (unless ``per_run``) and assigns baselines.

    Runs without any evaluation (e.g. a training that crashed early) are skipped with a
    warning.

    Args:
        work_dirs: run directories or folders of them (:func:`find_runs`).
        per_run: one row per run directory instead of one per experiment.
        baseline: the baseline row's name (:func:`assign_baselines`; None: nearest /
            bilinear).
        shape, flops, device, exclude_sampling, count: as :func:`add_complexity`.
        complexity_paths: complexity JSON files or directories (:func:`complexity_sources`).
        configs_dir: as :func:`read_config`.

    Raises:
        fade_mm.cli.UsageError: a missing work dir or complexity path, a ``baseline`` that
            matches no run.
        fade_mm.cli.CLIError: no run with evaluation results.
    """
    runs = []
    for run_dir in find_runs(work_dirs):
        try:
            runs.append(read_run(run_dir, configs_dir))
        except Exception as err:  # noqa: BLE001  (e.g. a log that is a directory)
            warnings.warn(f'results_table: {run_dir}: unreadable, skipped '
                          f'({type(err).__name__}: {cli._one_line(str(err))[:200]})')
    skipped = [r for r in runs if r.task is None or not r.evaluations]
    for r in skipped:
        warnings.warn(f'results_table: {r.path}: no evaluation results found, skipped')
    runs = [r for r in runs if r not in skipped]
    if not runs:
        raise cli.CLIError('results_table: no run with evaluation results under '
                           + ', '.join(work_dirs))
    groups = group_runs(runs, by_seed=not per_run)
    assign_baselines(groups, baseline)  # a --baseline matching nothing fails first
    add_complexity(runs, shape, flops, device, exclude_sampling, count=count,
                   sources=complexity_sources(complexity_paths))
    return groups
