"""RNG states in runner checkpoints, so that a resumed run continues bit for bit.

mmengine 0.10 checkpoints hold weights, optimizer, schedulers and message hub, but no RNG
state: after ``--resume``, dropout masks, drop-path, RPN/RoI samplers and random transforms
draw different numbers than the uninterrupted run would have. Two more things shift the
stream: mmengine's ``IterBasedTrainLoop`` skips the already-trained batches on resume by
fetching them through the pipeline (random transforms draw numpy / Python numbers), and every
validation during training creates a DataLoader iterator, which draws a base seed from the
global torch RNG.
"""
from __future__ import annotations

import logging
import random
from typing import Any, Callable, Dict, Iterator, Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

__all__ = ['RNGStateHook', 'get_rng_states', 'set_rng_states']

CHECKPOINT_KEY = 'rng_states'


def get_rng_states() -> Dict[str, Any]:
    """Python ``random``, numpy, torch CPU and (when available) CUDA RNG states.

    Only tensors, ints, floats, strings, None and lists, so a checkpoint holding them still
    loads with ``torch.load(weights_only=True)`` (numpy arrays would need allow-listing).
    """
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states: Dict[str, Any] = {
        'python': [version, torch.tensor(mt, dtype=torch.int64), gauss],
        'numpy': [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state_all()  # one per device
    return states


def set_rng_states(states: Dict[str, Any]) -> None:
    """Restores what :func:`get_rng_states` returned (tensors may sit on any device)."""
    version, mt, gauss = states['python']
    random.setstate((version, tuple(mt.tolist()), gauss))
    name, keys, pos, has_gauss, cached = states['numpy']
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states['torch'].cpu())
    cuda = states.get('cuda')
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            print_log(f'RNGStateHook: the checkpoint has CUDA RNG states of {len(cuda)} devices, '
                      f'this process sees {torch.cuda.device_count()}; restoring the common ones',
                      logger='current', level=logging.WARNING)
        for device, state in enumerate(cuda[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state.cpu(), device)


class _RestoreAfterSkip:
    """Stands in for ``IterBasedTrainLoop.dataloader_iterator`` during the resume skip.

    mmengine fetches ``runner.iter`` batches to skip them, then the next one to train on. The
    RNG states must be restored between the two: after the skip (which consumed numbers the
    uninterrupted run had consumed before the checkpoint) and before the first new batch.
    """

    def __init__(self, loop: Any, skip: int, restore: Callable[[], None]) -> None:
        self._loop, self._inner, self._left, self._restore = (loop, loop.dataloader_iterator,
                                                              skip, restore)

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        batch = next(self._inner)
        self._left -= 1
        if self._left == 0:
            self._loop.dataloader_iterator = self._inner  # mmengine's own iterator from now on
            self._restore()
        return batch

    def __getattr__(self, name: str) -> Any:  # e.g. _dataloader, _epoch of mmengine's iterator
        if name == '_inner':  # not set yet (e.g. copy.copy): no endless recursion
            raise AttributeError(name)
        return getattr(self._inner, name)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves the RNG states in every checkpoint and restores them exactly on resume.

    * ``before_save_checkpoint``: stores Python ``random``, numpy, torch CPU and CUDA (every
      device) RNG states under ``checkpoint['rng_states']``, with the loop position they
      belong to (``iter`` / ``epoch`` of the checkpoint's meta). Plain tensors and numbers:
      the checkpoint still loads with ``torch.load(weights_only=True)``.
    * On resume -- the runner's ``iter`` and ``epoch`` equal the checkpoint's, which a
      ``load_from`` fine-tuning start (iteration 0) never does -- the states are restored
      where the uninterrupted run was when it saved them: for ``IterBasedTrainLoop`` right
      after mmengine's skip of the already-trained batches (before the first new batch), for
      ``EpochBasedTrainLoop`` in the first ``before_train_epoch`` (before the epoch's
      DataLoader iterator is created).
    * Validation (and testing) during training runs on its own: the training states are saved
      in ``before_val`` and restored in ``after_val``, so a run that validates at iteration N
      and one resumed after N draw the same numbers. A checkpoint written during validation
      (``save_best``) stores the training states saved in ``before_val``.

    What stays non-exact:

    * DataLoader workers (``num_workers > 0``) keep their own RNGs, seeded when the workers
      start; the checkpoint does not hold them. Iteration-based loops replay them through the
      resume skip; with ``persistent_workers=True`` an epoch-based loop does not.
    * Non-deterministic kernels (CUDA atomics in scatter/index_add, cuDNN autotuning, ...):
      use ``randomness=dict(deterministic=True)`` where they matter.
    * Distributed runs: the checkpoint holds rank 0's states and every rank restores those;
      exact only where the ranks' streams were identical.
    * An epoch-based loop resumed from a checkpoint saved within an epoch (mmengine restarts
      that epoch, so its batches differ anyway).
    * Hooks that draw random numbers after the checkpoint hook in ``after_train_iter`` /
      ``after_train_epoch`` (the stock hooks do not).

    Args:
        isolate_val (bool): Run validation/testing during training on its own RNG stream.
            Defaults to True.
    """

    # after every other hook: in after_val the restore is the last thing that happens
    priority = 'LOWEST'

    def __init__(self, isolate_val: bool = True) -> None:
        self.isolate_val = isolate_val
        self._outside_states: Optional[Dict[str, Any]] = None  # saved in before_val
        self._loaded: Optional[Dict[str, Any]] = None  # rng_states of the loaded checkpoint
        self._loaded_pos: Optional[tuple] = None  # (iter, epoch) of the loaded checkpoint
        self._restore_in_epoch = False

    # ---- saving
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta', {})
        # during validation (save_best) the live states are validation's, not training's
        states = self._outside_states or get_rng_states()
        checkpoint[CHECKPOINT_KEY] = dict(states, iter=meta.get('iter', runner.iter),
                                          epoch=meta.get('epoch', runner.epoch))

    # ---- resuming
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else {}
        self._loaded = checkpoint.get(CHECKPOINT_KEY)
        self._loaded_pos = (meta.get('iter'), meta.get('epoch'))

    def before_train(self, runner) -> None:
        if self._loaded_pos is None or self._loaded_pos != (runner.iter, runner.epoch) \
                or runner.iter == 0:
            self._loaded = None  # load_from (fine-tuning) or nothing loaded: not a resume
            return
        if self._loaded is None:
            print_log('RNGStateHook: the resumed checkpoint has no RNG states (saved without '
                      'this hook); the run continues with other random numbers than an '
                      'uninterrupted one', logger='current', level=logging.WARNING)
            return
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop: skips runner.iter batches
            loop.dataloader_iterator = _RestoreAfterSkip(loop, runner.iter,
                                                         lambda: self._restore(runner))
        else:  # EpochBasedTrainLoop
            self._restore_in_epoch = True

    def before_train_epoch(self, runner) -> None:
        if self._restore_in_epoch:
            self._restore_in_epoch = False
            self._restore(runner)

    def _restore(self, runner) -> None:
        states, self._loaded = self._loaded, None
        set_rng_states(states)
        print_log(f'RNGStateHook: restored the RNG states of iteration {states["iter"]} '
                  f'(epoch {states["epoch"]})', logger='current')

    # ---- validation/testing during training on their own stream
    def before_val(self, runner) -> None:
        if self.isolate_val:
            self._outside_states = get_rng_states()

    def after_val(self, runner) -> None:
        if self._outside_states is not None:
            states, self._outside_states = self._outside_states, None
            set_rng_states(states)

    before_test = before_val
    after_test = after_val
