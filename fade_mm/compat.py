"""Small, explicit fixes that let the stock mmengine 0.10.7 ``Runner`` work on this stack.

Used by ``tools/train.py`` and ``tools/test.py``; nothing here runs on import. This module
needs torch and mmengine only (never mmdet or mmseg), so it is safe to import from anywhere.

* :func:`trust_local_checkpoints` — torch ≥ 2.6 made ``torch.load(weights_only=True)`` the
  default. mmengine 0.10.7 calls ``torch.load(filename, map_location=...)`` without the
  argument, and its runner checkpoints are full pickles (``message_hub`` holds
  ``mmengine.logging.HistoryBuffer`` objects and numpy arrays/scalars), so
  ``load_checkpoint``, ``Runner.resume`` (``--resume``) and test-time loading
  (``tools/test.py CONFIG CKPT``) all fail with::

      _pickle.UnpicklingError: Weights only load failed. ... WeightsUnpickler error:
      Unsupported global: GLOBAL mmengine.logging.history_buffer.HistoryBuffer was not an
      allowed global by default. ...

  The fix replaces mmengine's loader for *local paths only* (the catch-all ``''`` scheme of
  ``mmengine.runner.checkpoint.CheckpointLoader``) by one that passes ``weights_only=False``.
  URL, ``open-mmlab://``, ``torchvision://``, s3/petrel … loaders and ``torch.load`` itself
  are left untouched. Unpickling runs arbitrary code: only load checkpoints you produced or
  otherwise trust.
* :func:`adapt_to_cpu` / :func:`init_dist_without_cuda` — mmengine assumes a GPU whenever it
  is distributed (``nccl``, ``torch.cuda.set_device``, DDP ``device_ids=[LOCAL_RANK]``); on a
  machine without CUDA these switch to gloo and CPU DDP so that ``torchrun`` works there too.
"""
from __future__ import annotations

import contextlib
import inspect
import os.path as osp
from typing import Any, Callable, Dict, Iterator, Optional

import torch
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['trust_local_checkpoints', 'restore_checkpoint_loading', 'local_checkpoints_trusted',
           'adapt_to_cpu', 'init_dist_without_cuda']

# The scheme prefix under which mmengine registers `load_from_local`: the fallback for every
# path that no URL-like prefix claims, i.e. local files.
_LOCAL_SCHEME = ''
# The loader that was registered before `trust_local_checkpoints` (restored on demand).
_previous_loader: Optional[Callable[..., Any]] = None


def load_from_trusted_local(filename: str, map_location: Any = None) -> Any:
    """Loads a local checkpoint as a full pickle (``torch.load(..., weights_only=False)``).

    The name starts with ``load_from_`` because ``CheckpointLoader`` logs ``name[10:]`` as the
    backend ("Loads checkpoint by trusted_local backend"), which makes the fix visible in logs.

    Args:
        filename: Path of a local checkpoint file (``~`` is expanded).
        map_location: As in :func:`torch.load`.

    Returns:
        The unpickled checkpoint (a dict for runner checkpoints).

    Raises:
        FileNotFoundError: If ``filename`` is not an existing file (same as mmengine's).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if 'weights_only' in inspect.signature(torch.load).parameters:
        return torch.load(filename, map_location=map_location, weights_only=False)
    return torch.load(filename, map_location=map_location)  # torch < 1.13: always a full load


def trust_local_checkpoints() -> bool:
    """Makes mmengine load *local* checkpoint files with ``weights_only=False``.

    Re-registers the local (``''``) scheme of ``mmengine.runner.checkpoint.CheckpointLoader``,
    through which ``load_checkpoint``, ``_load_checkpoint``, ``Runner.load_checkpoint``,
    ``Runner.resume`` and ``init_cfg=dict(type='Pretrained', checkpoint=<local path>)`` all
    load files. Every other scheme (http(s), ``open-mmlab://``, ``torchvision://``, s3 …) keeps
    torch's default. Idempotent. Only call it when the local checkpoints that will be loaded
    are trusted: unpickling can execute arbitrary code.

    Returns:
        True if the trusted loader was installed by this call, False if it already was.
    """
    global _previous_loader
    current = CheckpointLoader._schemes.get(_LOCAL_SCHEME)
    if current is load_from_trusted_local:
        return False
    _previous_loader = current
    CheckpointLoader.register_scheme(_LOCAL_SCHEME, load_from_trusted_local, force=True)
    return True


def restore_checkpoint_loading() -> None:
    """Undoes :func:`trust_local_checkpoints` (puts mmengine's own local loader back)."""
    global _previous_loader
    if CheckpointLoader._schemes.get(_LOCAL_SCHEME) is load_from_trusted_local \
            and _previous_loader is not None:
        CheckpointLoader.register_scheme(_LOCAL_SCHEME, _previous_loader, force=True)
    _previous_loader = None


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
