"""One-line errors for fade_mm's command-line tools (``tools/``).

A tool's entry point is ``run_cli(main, prog='train.py')``: it calls ``main(argv)`` and turns
an exception into **one line** on stderr, ``train.py: error: <what is wrong and the fix>``,
with exit status 2 for a usage error (:class:`UsageError`, argparse) and 1 otherwise.
``--debug`` (every tool has it) shows the full traceback instead. The tools' ``main``
functions still raise, so they stay usable (and testable) from Python.

:func:`explain` maps the exceptions that misuse typically ends in -- an unknown registry
type, a typo'd key of a config dict, a missing dataset or file, a damaged checkpoint, a
syntax error in a config -- to their one-line message; anything else is reported by its
own first line. The checks (:func:`check_config_file`, :func:`check_checkpoint`,
:func:`check_launcher`) let a tool refuse a bad argument before it builds anything.

Only the standard library is imported here; mmengine and torch are imported when needed.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import inspect
import os
import os.path as osp
import re
import sys
import traceback
import warnings
import zipfile
from typing import Any, Callable, List, NoReturn, Optional, Sequence, Tuple

__all__ = ['CLIError', 'UsageError', 'ArgumentParser', 'DictAction', 'run_cli', 'explain',
           'closest', 'upsampler_names', 'check_config_file', 'check_checkpoint',
           'check_launcher']

DEBUG_HELP = 'on an error, show the full traceback instead of one line'
MAX_MESSAGE = 600  # characters of a reported message
# Notices the tools silence (unless --debug): upstream ones that every run prints whatever
# the user does. setuptools < 81 is pinned for mmcv's use of pkg_resources (scripts/setup.sh),
# whose deprecation notice mmengine triggers on every package look-up (pyproject.toml
# silences it for pytest too); mmseg notes its own internal deprecations and defaults on
# every model build (the loss is built even to count FLOPs), dataset and visualisation hook;
# torch notes mmdet's call of meshgrid without `indexing` (RTMDet / YOLOX point priors).
QUIET_WARNINGS = ('pkg_resources is deprecated', '``build_loss`` would be deprecated soon',
                  'Default ``avg_non_ignore`` is False', '`reduce_zero_label` will be deprecated',
                  'The draw is False, it means that the hook for visualization will not',
                  'torch.meshgrid: in an upcoming release, it will be required to pass the '
                  'indexing argument')


class CLIError(Exception):
    """An error a tool reports as its one line, as it is; exit status :attr:`status`."""

    status = 1


class UsageError(CLIError, ValueError):
    """A wrong argument or option (exit status 2, as argparse's usage errors); a
    ``ValueError`` too, for callers of a tool's functions."""

    status = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``prog: error: ... (see --help)``, status 2) and
    the ``--debug`` option of every tool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument('--debug', action='store_true', help=DEBUG_HELP)

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f'{self.prog}: error: {_one_line(message)} (see --help)\n')


class DictAction(argparse.Action):
    """mmengine's ``DictAction`` (``KEY=VALUE`` pairs into a dict), with a usage error for an
    item without ``=`` instead of a ``ValueError`` traceback."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        from mmengine.config import DictAction as MMDictAction

        options = dict(getattr(namespace, self.dest, None) or {})
        for item in values or []:
            key, sep, value = item.partition('=')
            if not sep or not key:
                raise argparse.ArgumentError(
                    self, f'expected KEY=VALUE pairs (e.g. train_cfg.max_iters=100, no '
                    f'spaces around =), got {item!r}')
            options[key] = MMDictAction._parse_iterable(value)
        setattr(namespace, self.dest, options)


# ----------------------------------------------------------------------------- running

def run_cli(main: Callable[[List[str]], Any], argv: Optional[Sequence[str]] = None,
            prog: Optional[str] = None) -> NoReturn:
    """Runs a tool's ``main(argv)`` and exits: with its status (an int it returns, else 0),
    or with one error line on stderr (:func:`explain`; 2 for usage errors, 1 otherwise).

    With ``--debug`` in ``argv`` the exception propagates (full traceback). Warnings are
    printed as one line each (``prog: warning: ...``) unless ``--debug``; the warning
    settings are restored on return. Ctrl-C ends the tool with status 130 and the line
    ``prog: interrupted``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or osp.basename(sys.argv[0])
    debug = '--debug' in argv
    formatwarning = warnings.formatwarning
    with warnings.catch_warnings():
        if not debug:
            warnings.formatwarning = _warning_formatter(prog)
            for text in QUIET_WARNINGS:
                warnings.filterwarnings('ignore', message=text, category=UserWarning)
        try:
            status = main(argv)
        except KeyboardInterrupt:
            if debug:
                raise
            print(f'{prog}: interrupted', file=sys.stderr, flush=True)
            raise SystemExit(130) from None
        except Exception as err:  # noqa: BLE001  (SystemExit, e.g. argparse's, passes)
            if debug:
                raise
            message, code = explain(err)
            message = _unprefixed(message, prog)
            sys.stdout.flush()
            print(f'{prog}: error: {message}', file=sys.stderr, flush=True)
            raise SystemExit(code) from None
        finally:
            warnings.formatwarning = formatwarning
    raise SystemExit(status if isinstance(status, int) else 0)


def _unprefixed(text: str, prog: str) -> str:
    """``text`` without a leading ``'<tool>: '``: the line names the tool already."""
    stem = osp.splitext(prog)[0] + ': '
    return text[len(stem):] if text.startswith(stem) else text


def _warning_formatter(prog: str) -> Callable[..., str]:
    def formatwarning(message: Any, category: type, filename: str, lineno: int,
                      line: Optional[str] = None) -> str:
        return f'{prog}: warning: {_unprefixed(_one_line(str(message)), prog)}\n'
    return formatwarning


def _one_line(text: str) -> str:
    text = ' '.join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + '…'


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]  # str(KeyError) quotes it
    return str(err)


def explain(err: BaseException) -> Tuple[str, int]:
    """The one-line message and exit status for an exception that ended a tool."""
    if isinstance(err, CLIError):
        return _one_line(str(err)), err.status
    for rule in _RULES:
        message = rule(err)
        if message:
            return _one_line(message), 1
    text = _message(err).strip()
    if isinstance(err, (ValueError, RuntimeError, OSError)) and text:
        return _one_line(text), 1  # the tools' and libraries' own messages
    return _one_line(f'{type(err).__name__}: {text}' if text else type(err).__name__) + \
        ' (rerun with --debug for the traceback)', 1


# ----------------------------------------------------------------------------- helpers

def closest(word: str, names: Sequence[str]) -> Optional[str]:
    """The name in ``names`` most like ``word`` (difflib), or None when none is close;
    case is ignored in the comparison."""
    lower = {str(n).lower(): str(n) for n in names}
    hits = difflib.get_close_matches(str(word).lower(), list(lower), n=1, cutoff=0.6)
    return lower[hits[0]] if hits else None


def _did_you_mean(word: str, names: Sequence[str]) -> str:
    hit = closest(word, names)
    return f" (did you mean '{hit}'?)" if hit else ''


def upsampler_names() -> List[str]:
    """The upsamplers ``upsample_cfg=dict(type=...)`` can name: the classes of
    ``fade_mm.upsamplers.__all__``."""
    from fade_mm import upsamplers
    return [n for n in upsamplers.__all__ if isinstance(getattr(upsamplers, n), type)]


def _tb_frames(err: BaseException) -> List[Any]:
    """The frames of ``err``'s traceback, outermost first."""
    return [frame for frame, _ in traceback.walk_tb(err.__traceback__)]


def _valid_keys(cls: Any) -> List[str]:
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _registry_names(registry: Any) -> List[str]:
    """The names ``registry.get`` finds: its own and its parents' (root) modules."""
    names: List[str] = []
    while registry is not None:
        try:
            registry.import_from_location()  # a scope's modules not imported yet
        except Exception:  # noqa: BLE001  (best effort: only for the suggestion)
            pass
        names += [n for n in registry.module_dict if n not in names]
        registry = getattr(registry, 'parent', None)
    return names


def _via_upsamplers(frames: List[Any]) -> bool:
    # fade_mm.registry.build_upsamplers builds every upsample_cfg of the necks and heads
    return any(f.f_code.co_name == 'build_upsamplers' for f in frames)


# ----------------------------------------------------------------------------- rules
# Each rule returns the message for the exceptions it knows, else None.

_NOT_IN_REGISTRY = re.compile(r"^(\S+) is not in the (\S+) registry")


def _unknown_type(err: BaseException) -> Optional[str]:
    """KeyError of mmengine's build_from_cfg: ``X is not in the mmdet::model registry``."""
    match = _NOT_IN_REGISTRY.match(_message(err)) if isinstance(err, KeyError) else None
    if not match:
        return None
    name, where = match.groups()
    frames = _tb_frames(err)
    if _via_upsamplers(frames):
        ups = upsampler_names()
        return (f"unknown upsampler type '{name}' in an upsample_cfg"
                f'{_did_you_mean(name, ups)}; registered upsamplers: {", ".join(ups)}')
    registry = next((f.f_locals['registry'] for f in reversed(frames)
                     if f.f_code.co_name == 'build_from_cfg' and 'registry' in f.f_locals),
                    None)
    names = _registry_names(registry) if registry is not None else []
    hint = _did_you_mean(name, names) or (
        ' (no similar name is registered: is its module imported through custom_imports?)'
        if names else '')
    return f"unknown type '{name}' in the {where} registry{hint}"


_UNEXPECTED = re.compile(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")


def _find_class(frames: List[Any], name: str) -> Any:
    """The class whose ``__init__`` (its own or the inherited ``name.__init__``) refused a
    key. The call that failed is in the innermost frame: mmengine's build_from_cfg holds the
    class as ``obj_cls`` (e.g. FADELite, with FADE's ``__init__``); a direct call (the
    Runner's ``EpochBasedTrainLoop(**cfg)``) names it."""
    for frame in reversed(frames):
        for value in [frame.f_locals.get('obj_cls'), *frame.f_locals.values(),
                      frame.f_globals.get(name)]:
            if inspect.isclass(value) and name in (c.__name__ for c in value.__mro__):
                return value
    return None


def _unexpected_key(err: BaseException) -> Optional[str]:
    """TypeError ``X.__init__() got an unexpected keyword argument 'k'``: a typo'd key in
    the config dict that builds X."""
    match = _UNEXPECTED.search(str(err)) if isinstance(err, TypeError) else None
    if not match:
        return None
    name, key = match.groups()
    frames = _tb_frames(err)
    cls = _find_class(frames, name)
    name = cls.__name__ if cls is not None else name
    keys = _valid_keys(cls)
    what = (f'upsampler {name} (upsample_cfg)' if _via_upsamplers(frames)
            and name in upsampler_names() else name)
    valid = f'; valid keys: {", ".join(keys)}' if keys else ''
    return f"{what} has no key '{key}'{_did_you_mean(key, keys)}{valid}"


_NO_TYPE = re.compile(r'must contain the key "type", but got (\{.*?\})', re.S)


def _missing_type(err: BaseException) -> Optional[str]:
    """KeyError of build_from_cfg for a dict without ``type``: usually a key that does not
    exist in the config (a typo), so that merging the option made a new, partial dict."""
    match = _NO_TYPE.search(_message(err)) if isinstance(err, KeyError) else None
    if not match:
        return None
    for frame in _tb_frames(err):
        if frame.f_code.co_name == 'register_default_hooks':
            hooks = frame.f_locals.get('hooks') or {}
            names = list(frame.f_locals.get('default_hooks') or hooks)
            bad = [k for k, v in hooks.items() if isinstance(v, dict) and 'type' not in v]
            if bad:
                known = [n for n in names if n not in bad]
                return (f"default_hooks.{bad[0]} is not a hook of the config (no 'type')"
                        f'{_did_you_mean(bad[0], known)}; default hooks: {", ".join(known)}')
    return (f"a config dict without 'type': {' '.join(match.group(1).split())} -- often a "
            'misspelt key in the config or --cfg-options, which adds a new partial dict')


_DATASET_CODE = (f'{os.sep}mmengine{os.sep}dataset{os.sep}', f'{os.sep}mmdet{os.sep}datasets',
                 f'{os.sep}mmseg{os.sep}datasets', f'{os.sep}fade_mm{os.sep}datasets')
_CHECKPOINT_CODE = ('load_checkpoint', '_load_checkpoint', 'load_from_safe_local',
                    'load_from_trusted_local', 'load_from_local', 'resume')
_QUOTED_PATH = re.compile(r'''["']([^"']+)["']''')


def _missing_file(err: BaseException) -> Optional[str]:
    """FileNotFoundError: a dataset file (with the ``--synthetic`` hint), a checkpoint or
    another file."""
    if not isinstance(err, FileNotFoundError):
        return None
    path = err.filename
    if path is None:
        quoted = _QUOTED_PATH.search(str(err))
        path = quoted.group(1) if quoted else str(err).replace(' can not be found.', '')
    frames = _tb_frames(err)
    files = [f.f_code.co_filename for f in frames]
    if any(code in name for name in files for code in _DATASET_CODE):
        return (f'dataset file not found: {path} -- point data_root (or ann_file) at the '
                'dataset, or run on fade_mm\'s synthetic data with --synthetic DATA_ROOT')
    if any(f.f_code.co_name in _CHECKPOINT_CODE for f in frames):
        return f'checkpoint not found: {path}'
    return f'no such file: {path}'


def _bad_checkpoint(err: BaseException) -> Optional[str]:
    """torch.load failing on a damaged file (empty, truncated, not a checkpoint)."""
    frames = _tb_frames(err)
    load = next((f for f in reversed(frames) if f.f_code.co_name == 'load'
                 and f.f_code.co_filename.endswith(osp.join('torch', 'serialization.py'))),
                None)
    if load is None:
        return None
    path = load.f_locals.get('f')
    problem = _checkpoint_problem(os.fspath(path)) if isinstance(path, (str, os.PathLike)) \
        else None
    return f'checkpoint {path}: {problem or _one_line(str(err))}'


_SYNTAX = re.compile(r'syntax errors in config file (\S+): (.*) \((\S+), line (\d+)\)$')


def _syntax_error(err: BaseException) -> Optional[str]:
    """A config with a syntax error (mmengine reports it against a temporary copy)."""
    if not isinstance(err, SyntaxError):
        return None
    match = _SYNTAX.search(' '.join(str(err).split()))
    if match:
        path, what, _, line = match.groups()
        return f'{path}:{line}: syntax error in config: {what}'
    if err.filename:
        return f'{err.filename}:{err.lineno}: syntax error: {err.msg}'
    return None


_RULES = (_unknown_type, _unexpected_key, _missing_type, _missing_file, _bad_checkpoint,
          _syntax_error)


# ----------------------------------------------------------------------------- checks

def check_config_file(path: str, what: str = 'config') -> None:
    """Refuses a config file that does not exist (:class:`UsageError`) or does not parse
    (:class:`CLIError`, naming the line). Bases are checked when mmengine reads them."""
    if not osp.isfile(path):
        raise UsageError(f'argument {what}: no such file: {path}' if not osp.exists(path)
                         else f'argument {what}: not a file: {path}')
    if path.endswith('.py'):
        with open(path, encoding='utf-8', errors='replace') as f:
            text = f.read()
        try:
            ast.parse(text, filename=path)
        except SyntaxError as err:
            raise CLIError(f'{path}:{err.lineno}: syntax error in config: {err.msg}') from None


def _is_local(path: str) -> bool:
    return '://' not in path and not path.startswith(('open-mmlab:', 'torchvision:',
                                                      'mmcls:', 'pavi:', 's3:'))


def _checkpoint_problem(path: str) -> Optional[str]:
    """What is wrong with the file as a torch checkpoint, from its bytes; None if nothing
    (legacy non-zip files are not inspected)."""
    try:
        size = osp.getsize(path)
        with open(path, 'rb') as f:
            head = f.read(8)
    except OSError as err:
        return f'cannot be read ({err.strerror})'
    if size == 0:
        return 'empty file (0 bytes)'
    if head.startswith(b'PK'):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return (f'truncated or corrupt ({size} bytes, the zip archive torch.save writes '
                    'is incomplete): save or copy it again')
        if not any(n.endswith('/data.pkl') or n == 'data.pkl' for n in names):
            return 'a zip archive, but not a torch checkpoint (no data.pkl in it)'
        return None
    if head[:1] == b'\x80':  # a pickle: torch's legacy (pre-1.6) format
        return None
    return f'not a torch checkpoint (it starts with {head!r})'


def check_checkpoint(path: str, what: str = 'checkpoint', resume: bool = False) -> None:
    """Refuses a local checkpoint that is missing (:class:`UsageError`), empty, truncated,
    not a torch checkpoint, or without ``state_dict`` (:class:`CLIError`), before a tool
    builds anything. URLs are left to the loader.

    The content is read with ``torch.load(mmap=True, weights_only=True)`` (the runner
    allow-list of :mod:`fade_mm.compat`): cheap, and nothing is unpickled beyond it; a file
    that needs more is left to the loader (which refuses it, or loads it with
    ``--trust-checkpoint``).

    Args:
        path: The file.
        what: How the tool names the argument (``'CHECKPOINT'``, ``'--resume'``, ...).
        resume: The file resumes a training: it must hold ``state_dict`` and ``meta``
            (else a bare state dict of tensors is accepted, as mmengine loads it).
    """
    if not _is_local(path):
        return
    path = osp.expanduser(path)
    if not osp.exists(path):
        raise UsageError(f'{what}: no such file: {path}')
    if not osp.isfile(path):
        raise UsageError(f'{what}: not a file: {path}')
    problem = _checkpoint_problem(path)
    if problem is None and zipfile.is_zipfile(path):
        problem = _content_problem(path, resume)
    if problem:
        raise CLIError(f'{what} {path}: {problem}')


def _content_problem(path: str, resume: bool) -> Optional[str]:
    import pickle

    import torch

    from fade_mm.compat import install_safe_checkpoint_loading
    install_safe_checkpoint_loading()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            ckpt = torch.load(path, map_location='cpu', mmap=True, weights_only=True)
    except (pickle.UnpicklingError, AttributeError, ImportError, ModuleNotFoundError):
        return None  # needs globals outside the allow-list: the loader reports that
    except (RuntimeError, EOFError, KeyError) as err:
        return f'cannot be loaded ({_one_line(str(err))[:200]})'
    if not isinstance(ckpt, dict):
        return f'not a checkpoint dict (it holds a {type(ckpt).__name__})'
    need = ('state_dict', 'meta') if resume else ('state_dict',)
    missing = [k for k in need if k not in ckpt]
    if not missing:
        return None
    if not resume and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return None  # a bare state dict
    keys = ', '.join(map(str, list(ckpt)[:8])) + (', ...' if len(ckpt) > 8 else '')
    kind = 'a runner checkpoint to resume' if resume else 'a checkpoint'
    return (f"missing {' and '.join(repr(k) for k in missing)}, which {kind} holds "
            f'(top-level keys: {keys or "none"})')


# the environment each launcher's process group is initialised from (mmengine.dist)
LAUNCHER_ENV = {
    'pytorch': ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
    'slurm': ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
    'mpi': ('OMPI_COMM_WORLD_LOCAL_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_RANK'),
}
LAUNCH_WITH = {
    'pytorch': 'launch with torchrun (`torchrun --nproc_per_node=N tools/train.py CONFIG '
               '--launcher pytorch`) or `bash tools/dist_train.sh CONFIG N`',
    'slurm': 'launch with srun (`bash tools/slurm_train.sh PARTITION JOB CONFIG`)',
    'mpi': 'launch with mpirun',
}


def check_launcher(launcher: str) -> None:
    """Refuses ``--launcher pytorch|slurm|mpi`` outside the launcher that sets the process
    group's environment (:class:`UsageError`); ``none`` always passes."""
    missing = [k for k in LAUNCHER_ENV.get(launcher, ()) if k not in os.environ]
    if missing:
        raise UsageError(f'--launcher {launcher}: {", ".join(missing)} not set, so this is '
                         f'not a distributed launch: {LAUNCH_WITH[launcher]}; or drop '
                         '--launcher for one process')
