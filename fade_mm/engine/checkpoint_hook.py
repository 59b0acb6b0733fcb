"""A ``CheckpointHook`` that a kill cannot leave without a usable checkpoint, and that refuses
a checkpoint of another model.

mmengine 0.10's ``CheckpointHook`` removes the checkpoint beyond ``max_keep_ckpts`` *before*
writing the new one, writes it in place and then overwrites ``last_checkpoint``: a kill
during the save leaves a truncated file that ``last_checkpoint`` may name, or (with
``max_keep_ckpts=1``) no intact checkpoint at all; ``--resume`` then fails
(``FileNotFoundError:  can not be found.`` for an empty ``last_checkpoint``). And
``load_from`` / ``tools/test.py`` accept any checkpoint: weights of a FADE model loaded into a
CARAFE config only log a warning and evaluate random upsamplers.
"""
from __future__ import annotations

import glob
import logging
import os
import os.path as osp
import re
import zipfile
from typing import Any, Iterable, List, Optional, Sequence

import torch.nn as nn
from mmengine.dist import barrier, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .. import upsamplers as _upsamplers

__all__ = ['SafeCheckpointHook', 'atomic_write_text', 'is_intact_checkpoint',
           'upsampler_types_in_config']

#: upsampler classes of fade_mm (what ``dict(type=...)`` can name in an ``upsample_cfg``)
_UPSAMPLER_CLASSES = tuple(
    obj for obj in (getattr(_upsamplers, n) for n in _upsamplers.__all__)
    if isinstance(obj, type) and issubclass(obj, nn.Module))
_UPSAMPLER_NAMES = frozenset(cls.__name__ for cls in _UPSAMPLER_CLASSES)
# `type='FADE'` as configs write it, `'type': 'FADE'` as dict reprs do
_TYPE_RE = re.compile(r"""['"]?\btype['"]?\s*[=:]\s*['"](\w+)['"]""")
# keys that may differ between models of the same architecture family (a backbone loaded
# from elsewhere, the preprocessor's buffers)
_IGNORED_PREFIXES = ('backbone.', 'data_preprocessor.')
_SHOW_KEYS = 5


def _fsync_dir(path: str) -> None:
    # makes the rename itself durable; directories cannot be opened on some platforms
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_path(path: str) -> str:
    # hidden and not *.pth: never taken for a checkpoint, one per target name
    head, tail = osp.split(path)
    return osp.join(head, f'.{tail}.tmp')


def _replace_durably(tmp: str, path: str) -> None:
    with open(tmp, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(osp.dirname(path) or '.')


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` so that a reader sees the old or the new content, never a
    partial one (temporary file in the same directory, fsync, ``os.replace``)."""
    tmp = _tmp_path(path)
    with open(tmp, 'w') as f:
        f.write(text)
    _replace_durably(tmp, path)


def is_intact_checkpoint(path: str) -> bool:
    """True if ``path`` is a complete torch zip checkpoint (every member's CRC checks out).

    Reads the file once without unpickling anything; a truncated or partly written file
    fails (its zip central directory, written last, is missing or wrong)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def upsampler_types_in_config(text: Optional[str]) -> Optional[List[str]]:
    """The fade_mm upsampler types that a config text names (``type='FADE'``), sorted;
    None when there is no config text."""
    if not text:
        return None
    return sorted(set(_TYPE_RE.findall(text)) & _UPSAMPLER_NAMES)


def _model_upsampler_types(model: nn.Module) -> List[str]:
    return sorted({type(m).__name__ for m in model.modules() if isinstance(m, _UPSAMPLER_CLASSES)})


def _describe(types: Optional[Sequence[str]]) -> str:
    if types is None:
        return 'unknown'
    return ', '.join(types) if types else 'none (interpolation)'


def _some(keys: Iterable[str]) -> str:
    keys = list(keys)
    more = f', ... ({len(keys)} in all)' if len(keys) > _SHOW_KEYS else ''
    return ', '.join(keys[:_SHOW_KEYS]) + more


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with crash-safe saving, resume fallback and a model-key check.

    Everything else (arguments, intervals, ``save_best``, ``max_keep_ckpts``, publishing)
    is mmengine's ``CheckpointHook``. Additions:

    * Saving (local directories): the checkpoint is written to a hidden temporary file in the
      same directory, fsynced and ``os.replace``-d into place; then ``last_checkpoint`` is
      replaced the same way; only then are checkpoints beyond ``max_keep_ckpts`` removed. A
      kill at any moment leaves ``last_checkpoint`` naming an intact checkpoint (or, before
      the first save, no ``last_checkpoint``). Other storage backends save as mmengine does.
    * Resume (``resume=True`` without ``load_from``), in ``before_run``, i.e. before
      ``Runner.load_or_resume``: if the work dir's ``last_checkpoint`` is missing, empty,
      dangling or names a truncated/unreadable file, the newest intact checkpoint of the
      checkpoint directory (by its number in ``filename_tmpl``) is used instead, with a
      warning, and ``last_checkpoint`` is rewritten to name it. If there are checkpoints
      (or a ``last_checkpoint``) but none is intact: a ``RuntimeError`` naming the work dir
      and the files tried. With nothing at all, mmengine starts from scratch, as before.
    * Loading (``load_from``, ``tools/test.py CHECKPOINT``, resume), in
      ``after_load_checkpoint``, before the weights reach the model: checkpoint keys missing
      from the model or model keys missing from the checkpoint outside the backbone (neck,
      heads and their upsamplers; ``data_preprocessor.`` keys ignored) raise a
      ``ValueError`` naming up to five of each and the upsampler types of model and
      checkpoint. ``strict_keys=False`` allows deliberate partial loading
      (``--cfg-options default_hooks.checkpoint.strict_keys=False``).

    Args:
        strict_keys (bool): Refuse checkpoints whose non-backbone keys differ from the
            model's. Defaults to True.
        **kwargs: ``CheckpointHook``'s arguments.
    """

    def __init__(self, *args: Any, strict_keys: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.strict_keys = strict_keys

    # ---- saving
    def _is_local(self) -> bool:
        # file_backend is set in before_train; a FileClient (deprecated file_client_args) or a
        # remote backend keeps mmengine's own saving
        return isinstance(getattr(self, 'file_backend', None), LocalBackend)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._is_local() and is_main_process():
            # left by a kill during a save (see _tmp_path)
            tmp = _tmp_path(glob.escape(self.filename_tmpl).replace('{}', '*'))
            for stale in glob.glob(osp.join(glob.escape(self.out_dir), tmp)):
                os.remove(stale)

    def _save_checkpoint_with_step(self, runner, step, meta):
        """mmengine's ``CheckpointHook._save_checkpoint_with_step`` (0.10.7), reordered: save
        to a temporary file, replace, update ``last_checkpoint``, then remove old ones.

        Relies on these private ``CheckpointHook`` attributes, all set by its ``__init__`` /
        ``before_train``: ``keep_ckpt_ids`` (deque of kept steps, mirrored in the message
        hub), ``file_backend``, ``out_dir``, ``filename_tmpl``, ``file_client_args``,
        ``backend_args``, ``args`` (extra ``save_checkpoint`` kwargs), ``last_ckpt``.
        """
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        outdated = None
        if self.max_keep_ckpts > 0:
            # _save_checkpoint and _save_best_checkpoint may both save the same step
            if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    outdated = self.file_backend.join_path(
                        self.out_dir, self.filename_tmpl.format(self.keep_ckpt_ids.popleft()))
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        tmp = _tmp_path(self.last_ckpt)
        runner.save_checkpoint(  # master_only: writes on rank 0 only
            self.out_dir, osp.relpath(tmp, self.out_dir), self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        _replace_durably(tmp, self.last_ckpt)
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if outdated is not None and outdated != self.last_ckpt:
            if osp.isfile(outdated):
                os.remove(outdated)
            elif osp.isdir(outdated):  # checkpoints saved by deepspeed are directories
                self.file_backend.rmtree(outdated)

    # ---- resume fallback
    def _ckpt_dir(self, runner) -> str:
        # where before_train will put the checkpoints (it has not run yet)
        out_dir = self.out_dir or runner.work_dir
        if out_dir != runner.work_dir:
            out_dir = osp.join(out_dir, osp.basename(runner.work_dir.rstrip(osp.sep)))
        return out_dir

    def before_run(self, runner) -> None:
        # Runner._resume / _load_from are what Runner.load_or_resume reads (private)
        resume = getattr(runner, '_resume', runner.cfg.get('resume', False))
        load_from = getattr(runner, '_load_from', runner.cfg.get('load_from'))
        if resume and load_from is None:
            if is_main_process():
                self._fall_back_to_intact(runner)
            barrier()  # other ranks read last_checkpoint after rank 0 repaired it

    def _fall_back_to_intact(self, runner) -> None:
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        named = None
        if osp.isfile(pointer):
            with open(pointer) as f:
                named = f.read().strip()
            if named and (osp.isdir(named) or is_intact_checkpoint(named)):
                return  # intact (or a deepspeed directory): mmengine resumes from it
        dirs = [self._ckpt_dir(runner)]
        if named and osp.dirname(named) not in dirs:
            dirs.append(osp.dirname(named))
        pattern = re.compile(re.escape(self.filename_tmpl).replace(r'\{\}', r'(\d+)') + '$')
        steps = {}
        for d in dirs:
            for name in os.listdir(d) if osp.isdir(d) else ():
                m = pattern.match(name)
                if m and osp.isfile(osp.join(d, name)):
                    steps[osp.join(d, name)] = int(m.group(1))
        candidates = sorted(steps, key=steps.get, reverse=True)
        if named is None and not candidates:
            return  # nothing was ever saved: mmengine starts from scratch
        if named is None:
            problem = 'is missing'
        elif not named:
            problem = 'is empty'
        elif not osp.exists(named):
            problem = f'names {named}, which does not exist'
        else:
            problem = f'names {named}, which is truncated or unreadable'
        for path in candidates:
            if path != named and is_intact_checkpoint(path):
                print_log(f'SafeCheckpointHook: {pointer} {problem}; resuming from {path}, the '
                          'newest intact checkpoint', logger='current', level=logging.WARNING)
                atomic_write_text(pointer, path)
                return
        tried = ([named] if named else []) + [p for p in candidates if p != named]
        raise RuntimeError(
            f'--resume: no intact checkpoint in the work dir {runner.work_dir}; tried '
            f'{", ".join(tried) or "nothing (last_checkpoint is empty, no checkpoint files)"}')

    # ---- key check
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.strict_keys:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        # as mmengine's _load_checkpoint_to_model: 'state_dict' if present, 'module.' stripped
        state = checkpoint.get('state_dict', checkpoint)
        ckpt_keys = {re.sub(r'^module\.', '', k) for k in state}
        model_keys = set(model.state_dict())
        missing = sorted(k for k in model_keys - ckpt_keys if not k.startswith(_IGNORED_PREFIXES))
        unexpected = sorted(k for k in ckpt_keys - model_keys
                            if not k.startswith(_IGNORED_PREFIXES))
        if not missing and not unexpected:
            return
        meta = checkpoint.get('meta')
        ckpt_types = upsampler_types_in_config(meta.get('cfg') if isinstance(meta, dict) else None)
        parts = []
        if missing:
            parts.append(f'{len(missing)} model keys missing from the checkpoint: '
                         f'{_some(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} checkpoint keys the model does not have: '
                         f'{_some(unexpected)}')
        raise ValueError(
            'The checkpoint does not fit the model outside its backbone: '
            + '; '.join(parts)
            + f'. Upsamplers of the model: {_describe(_model_upsampler_types(model))}; of the '
            f'checkpoint: {_describe(ckpt_types)}. To load it partially on purpose (fine-tuning)'
            ', set strict_keys=False on the checkpoint hook '
            '(--cfg-options default_hooks.checkpoint.strict_keys=False).')
