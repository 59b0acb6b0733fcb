"""Small, explicit fixes that let the stock mmengine 0.10.7 ``Runner`` work on this stack.

This module needs torch and mmengine only (never mmdet or mmseg), so it is safe to import
from anywhere. Importing ``fade_mm.det`` or ``fade_mm.seg`` -- which every config of this
repository does through ``custom_imports`` -- calls :func:`install_safe_checkpoint_loading`,
so the stock ``tools/train.py`` / ``tools/test.py`` of mmdet and mmseg get it too.

Checkpoints
-----------
torch >= 2.6 made ``torch.load(weights_only=True)`` the default. mmengine 0.10.7 calls
``torch.load(filename, map_location=...)`` and its runner checkpoints are pickles of more
than tensors (``message_hub`` holds ``mmengine.logging.HistoryBuffer`` objects, numpy
arrays, dtypes and scalars), so ``load_checkpoint``, ``Runner.resume`` (``--resume``),
``load_from`` and a ``Pretrained`` init_cfg all fail there with::

    _pickle.UnpicklingError: Weights only load failed. ... Unsupported global: GLOBAL
    mmengine.logging.history_buffer.HistoryBuffer was not an allowed global by default.

* :func:`install_safe_checkpoint_loading` keeps ``weights_only=True`` and allow-lists
  (``torch.serialization.add_safe_globals``) exactly what runner checkpoints contain
  beyond torch's own safe set -- :data:`RUNNER_CHECKPOINT_GLOBALS`: ``HistoryBuffer``, the
  numpy globals that rebuild arrays, dtypes and scalars (numeric dtypes only; no object
  arrays), and ``builtins.getattr`` restricted to :func:`history_buffer_getattr` (pickle
  protocol 2 stores ``HistoryBuffer.min`` & co., which a buffer's state holds, as
  ``getattr(HistoryBuffer, 'min')``; any other ``getattr`` is refused). It also replaces
  mmengine's loader of local files (the catch-all ``''`` scheme of ``CheckpointLoader``)
  by :func:`load_from_safe_local`, which loads with ``weights_only=True`` on every torch
  that has an allow-list (>= 2.4) and turns a refusal into one line that names the file
  and the globals it would need (:class:`UntrustedCheckpointError`).
* :func:`trust_local_checkpoints` is the explicit opt-in for a trusted file that needs
  more (``--trust-checkpoint`` in this repository's tools): local files are then
  unpickled in full (``weights_only=False``), which can run any code the pickle holds.
  With the stock tools, torch's own ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` does the same
  (the safe loader leaves ``weights_only`` at torch's default where that is ``True``).

Distributed runs without CUDA
-----------------------------
:func:`adapt_to_cpu` / :func:`init_dist_without_cuda` -- mmengine assumes a GPU whenever it
is distributed (``nccl``, ``torch.cuda.set_device``, DDP ``device_ids=[LOCAL_RANK]``); on a
machine without CUDA these switch to gloo and CPU DDP so that ``torchrun`` works there too.
"""
from __future__ import annotations

import contextlib
import inspect
import os.path as osp
import pickle
import re
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['RUNNER_CHECKPOINT_GLOBALS', 'UntrustedCheckpointError', 'runner_checkpoint_globals',
           'history_buffer_getattr',
           'install_safe_checkpoint_loading', 'load_from_safe_local', 'load_from_trusted_local',
           'trust_local_checkpoints', 'restore_checkpoint_loading',
           'local_checkpoints_trusted', 'adapt_to_cpu', 'init_dist_without_cuda']

# The scheme prefix under which mmengine registers `load_from_local`: the fallback for every
# path that no URL-like prefix claims, i.e. local files.
_LOCAL_SCHEME = ''

# What an mmengine 0.10 runner checkpoint pickles besides what torch allows by default,
# found with torch.serialization.get_unsafe_globals_in_checkpoint on checkpoints of
# mmdet/mmseg runs (tests/test_stock_tools.py checks that nothing else is needed):
#   message_hub.log_scalars: HistoryBuffer objects holding numpy arrays;
#   message_hub.runtime_info / meta: numpy scalars (e.g. mmseg's mIoU as best_score);
#   HistoryBuffer.__getstate__ adds its statistics methods (min, max, mean, current), which
#   protocol 2 pickles as builtins.getattr(HistoryBuffer, 'min'): allowed through
#   history_buffer_getattr only.
RUNNER_CHECKPOINT_GLOBALS = (
    'mmengine.logging.history_buffer.HistoryBuffer',
    'builtins.getattr',  # -> history_buffer_getattr, see runner_checkpoint_globals()
    'numpy.core.multiarray._reconstruct',  # ndarray.__reduce__ (numpy 1.x pickles)
    'numpy._core.multiarray._reconstruct',  # the same, as numpy 2.x pickles name it
    'numpy.ndarray',
    'numpy.dtype',  # dtype.__reduce__
    'numpy.core.multiarray.scalar',  # numpy scalar.__reduce__ (numpy 1.x pickles)
    'numpy._core.multiarray.scalar',  # (numpy 2.x pickles)
    # + the class of every numeric numpy dtype (dtype.__setstate__ is called on it), e.g.
    #   numpy.dtypes.Float64DType; see runner_checkpoint_globals()
)
# numeric dtypes only: an object dtype would let arrays of arbitrary objects through
_NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32',
                 'uint64', 'float16', 'float32', 'float64', 'longdouble', 'complex64',
                 'complex128')

_installed = False


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs globals outside the allow-list (one-line message: file, globals,
    how to opt in). A subclass of ``pickle.UnpicklingError``, which torch raises too."""


def _resolve(path: str) -> Optional[Any]:
    module, _, name = path.rpartition('.')
    try:
        mod = __import__(module, fromlist=[name])
    except ImportError:
        return None
    return getattr(mod, name, None)


# what a HistoryBuffer's pickled state may fetch with getattr (its built-in statistics)
_HISTORY_BUFFER_METHODS = ('min', 'max', 'mean', 'current')


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as runner checkpoints use it, and nothing more.

    Allow-listed under the name ``builtins.getattr`` for weights-only loading: returns
    ``HistoryBuffer.<name>`` for the buffer's built-in statistics methods and refuses every
    other ``getattr`` (which could reach arbitrary objects from allowed ones).

    Raises:
        pickle.UnpicklingError: for any other object or attribute.
    """
    from mmengine.logging import HistoryBuffer

    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({getattr(obj, "__qualname__", type(obj).__name__)}, {name!r}) is not '
        f'allowed (only getattr(HistoryBuffer, m) for m in {_HISTORY_BUFFER_METHODS})')


def runner_checkpoint_globals() -> List[Tuple[Any, str]]:
    """``(object, 'module.name')`` pairs of everything :func:`install_safe_checkpoint_loading`
    allow-lists: :data:`RUNNER_CHECKPOINT_GLOBALS` that exist in this numpy/mmengine, under
    the names pickles use (``builtins.getattr`` as :func:`history_buffer_getattr`), and the
    classes of the numeric numpy dtypes."""
    import numpy as np

    pairs: List[Tuple[Any, str]] = []
    for path in RUNNER_CHECKPOINT_GLOBALS:
        obj = history_buffer_getattr if path == 'builtins.getattr' else _resolve(path)
        if obj is not None:
            pairs.append((obj, path))
    for name in _NUMPY_DTYPES:
        cls = type(np.dtype(name))
        pairs.append((cls, f'{cls.__module__}.{cls.__qualname__}'))
    return pairs


def _weights_only_by_default() -> bool:
    param = inspect.signature(torch.load).parameters.get('weights_only')
    # torch >= 2.6: default None, resolved to True (unless TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD)
    return param is not None and param.default is None


def _has_allow_list() -> bool:
    return hasattr(torch.serialization, 'add_safe_globals')  # torch >= 2.4


def _unsafe_globals(filename: str, err: Exception) -> List[str]:
    """The globals that kept ``filename`` from loading, best effort."""
    try:
        found = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(filename))
    except Exception:  # legacy (non-zip) format or torch < 2.5
        found = []
    if found:
        return found
    text = str(err)
    return sorted(set(re.findall(r'GLOBAL (\S+) was not an allowed global', text))) or \
        [m.strip() for m in re.findall(r'WeightsUnpickler error: ([^\n]+)', text)[:1]]


def load_from_safe_local(filename: str, map_location: Any = None) -> Any:
    """Loads a local checkpoint with ``weights_only=True`` and the runner allow-list.

    The name starts with ``load_from_`` because ``CheckpointLoader`` logs ``name[10:]`` as
    the backend ("Loads checkpoint by safe_local backend").

    Args:
        filename: Path of a local checkpoint file (``~`` is expanded).
        map_location: As in :func:`torch.load`.

    Returns:
        The unpickled checkpoint (a dict for runner checkpoints).

    Raises:
        FileNotFoundError: If ``filename`` is not an existing file (same as mmengine's).
        UntrustedCheckpointError: If the file needs a global outside the allow-list.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    kwargs: Dict[str, Any] = {}
    if _has_allow_list() and not _weights_only_by_default():
        kwargs['weights_only'] = True  # torch 2.4/2.5: opt in; >= 2.6: torch's default
    try:
        return torch.load(filename, map_location=map_location, **kwargs)
    except pickle.UnpicklingError as err:
        if 'weights_only' not in str(err) and 'Weights only' not in str(err):
            raise
        names = _unsafe_globals(filename, err)
        what = ', '.join(names) if names else str(err).strip().splitlines()[0]
        raise UntrustedCheckpointError(
            f'{filename}: refusing to unpickle {what} (not in fade_mm\'s allow-list of runner '
            'checkpoint globals; unpickling it could run code): if you trust this file, pass '
            '--trust-checkpoint to fade_mm\'s tools (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 with '
            'the stock ones)') from None


def load_from_trusted_local(filename: str, map_location: Any = None) -> Any:
    """Loads a local checkpoint as a full pickle (``torch.load(..., weights_only=False)``).

    Only for files the user explicitly trusts (:func:`trust_local_checkpoints`). The name
    makes mmengine log "Loads checkpoint by trusted_local backend".

    Raises:
        FileNotFoundError: If ``filename`` is not an existing file (same as mmengine's).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if 'weights_only' in inspect.signature(torch.load).parameters:
        return torch.load(filename, map_location=map_location, weights_only=False)
    return torch.load(filename, map_location=map_location)  # torch < 1.13: always a full load


def _mmengine_local_loader() -> Callable[..., Any]:
    from mmengine.runner.checkpoint import load_from_local
    return load_from_local


def install_safe_checkpoint_loading() -> bool:
    """Allow-lists the runner-checkpoint globals and installs :func:`load_from_safe_local`.

    Idempotent; called when ``fade_mm.det`` / ``fade_mm.seg`` are imported. On torch < 2.4
    (no allow-list) nothing changes: torch's default there unpickles in full anyway.

    Returns:
        True if this call installed it, False if it already was (or cannot be).
    """
    global _installed
    if _installed or not _has_allow_list():
        return False
    torch.serialization.add_safe_globals(runner_checkpoint_globals())
    if CheckpointLoader._schemes.get(_LOCAL_SCHEME) is not load_from_trusted_local:
        CheckpointLoader.register_scheme(_LOCAL_SCHEME, load_from_safe_local, force=True)
    _installed = True
    return True


def trust_local_checkpoints() -> bool:
    """Makes mmengine load *local* checkpoint files with ``weights_only=False``.

    The explicit opt-in for trusted files (``--trust-checkpoint``): re-registers the local
    (``''``) scheme of ``CheckpointLoader``, through which ``load_checkpoint``,
    ``Runner.resume``, ``load_from`` and ``Pretrained`` init_cfgs load files. Every other
    scheme (http(s), ``open-mmlab://``, ``torchvision://``, s3 ...) is untouched. Idempotent.
    Unpickling can execute arbitrary code: only for files you produced or otherwise trust.

    Returns:
        True if the trusted loader was installed by this call, False if it already was.
    """
    if CheckpointLoader._schemes.get(_LOCAL_SCHEME) is load_from_trusted_local:
        return False
    CheckpointLoader.register_scheme(_LOCAL_SCHEME, load_from_trusted_local, force=True)
    return True


def restore_checkpoint_loading() -> None:
    """Undoes :func:`trust_local_checkpoints`: the safe loader when it was installed,
    mmengine's own otherwise."""
    loader = load_from_safe_local if _installed else _mmengine_local_loader()
    CheckpointLoader.register_scheme(_LOCAL_SCHEME, loader, force=True)


@contextlib.contextmanager
def local_checkpoints_trusted() -> Iterator[None]:
    """Context manager form of :func:`trust_local_checkpoints` (restores on exit if it
    installed the loader)."""
    installed = trust_local_checkpoints()
    try:
        yield
    finally:
        if installed:
            restore_checkpoint_loading()


def adapt_to_cpu(cfg: Any) -> bool:
    """Lets a config meant for GPUs run distributed on a machine without CUDA.

    Without CUDA: ``env_cfg.dist_cfg.backend`` becomes ``'gloo'`` (nccl needs GPUs), and when
    ``cfg.launcher`` is not ``'none'``:

    * the DDP wrapper gets ``device_ids=None`` (mmengine passes ``[LOCAL_RANK]``, which
      torch's DDP rejects for CPU modules);
    * ``SyncBN`` norm layers in ``cfg.model`` become ``BN`` and ``cfg.sync_bn`` is dropped
      (DDP refuses SyncBatchNorm on CPU modules, and torch has no CPU SyncBatchNorm), so
      batch statistics and BN running statistics are per process there; checkpoints hold
      rank 0's, and validation during training uses each rank's own.

    With CUDA nothing changes; single-process runs only get the backend (mmengine already
    reverts SyncBN to BN when not distributed).

    Args:
        cfg: An ``mmengine.Config`` (modified in place).

    Returns:
        True if the config was changed for CPU.
    """
    if torch.cuda.is_available():
        return False
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if cfg.get('launcher', 'none') != 'none':
        wrapper = cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
        _sync_bn_to_bn(cfg.get('model'))
        cfg.pop('sync_bn', None)
    return True


def _sync_bn_to_bn(node: Any) -> None:
    # norm_cfg dicts sit at any depth of a model config (backbone, neck, heads, plugins).
    if isinstance(node, dict):
        if node.get('type') in ('SyncBN', 'MMSyncBN'):
            node['type'] = 'BN'
        for value in node.values():
            _sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _sync_bn_to_bn(value)


@contextlib.contextmanager
def _cuda_set_device_is_noop() -> Iterator[None]:
    # mmengine's pytorch/slurm/mpi initialisers call torch.cuda.set_device(local_rank)
    # unconditionally; on a CPU-only torch that raises. Only for the duration of init_dist.
    original = torch.cuda.set_device
    torch.cuda.set_device = lambda device: None  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.cuda.set_device = original  # type: ignore[assignment]


def init_dist_without_cuda(launcher: str, env_cfg: Optional[Dict[str, Any]] = None) -> bool:
    """Initialises torch.distributed with gloo when there is no CUDA, before the Runner does.

    ``Runner`` skips its own ``init_dist`` when a process group exists, so calling this first
    keeps mmengine's launcher handling (torchrun / slurm / mpi environment variables) while
    avoiding its CUDA-only calls. The multiprocessing settings are applied first, as the
    Runner's ``setup_env`` does, so that they are not changed behind its back.

    Args:
        launcher: ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        env_cfg: ``cfg.env_cfg`` (``mp_cfg``; ``dist_cfg`` such as ``timeout``; the backend is
            forced to gloo).

    Returns:
        True if a process group was initialised here.
    """
    import torch.distributed as torch_dist
    from mmengine.dist import init_dist
    from mmengine.utils.dl_utils import set_multi_processing

    if launcher == 'none' or torch.cuda.is_available() or not torch_dist.is_available() \
            or torch_dist.is_initialized():
        return False
    env_cfg = dict(env_cfg or {})
    set_multi_processing(**env_cfg.get('mp_cfg', {}), distributed=True)
    kwargs = dict(env_cfg.get('dist_cfg') or {})
    kwargs['backend'] = 'gloo'
    with _cuda_set_device_is_noop():
        init_dist(launcher, **kwargs)
    return True
