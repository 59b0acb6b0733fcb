"""Exact resume with :class:`fade_mm.engine.RNGStateHook`.

An interrupted run resumed with ``--resume`` must end with the same weights, BN buffers and
optimizer state, bit for bit, as the uninterrupted run. Without the hook it does not: mmengine
0.10 checkpoints hold no RNG state, so dropout masks, RPN/RoI samplers and random transforms
draw other numbers after the resume (each test checks that the hook-less resume differs, so
the comparison can fail); and validation during training draws from the training stream (the
toy test checks that the hook's validation isolation is needed too).

Fast tests run a toy mmengine model in-process (both loop types); the ``slow`` ones run the
shipped demo configs with the STOCK mmseg / mmdet ``tools/train.py`` in subprocesses.
"""
from __future__ import annotations

import os.path as osp
import random
import uuid
from typing import List

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from runs import run_python, stock_tool

pytestmark = pytest.mark.threads

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs', 'demo')


# ---------------------------------------------------------------- toy model, in-process
def _toy_classes():
    from mmengine.evaluator import BaseMetric
    from mmengine.model import BaseModel

    class ToyModel(BaseModel):
        """Linear 'backbone', BN 'neck' (buffers), dropout head: every RNG matters."""

        def __init__(self, width: int = 16) -> None:
            super().__init__()
            self.backbone = nn.Linear(4, width)
            self.neck = nn.BatchNorm1d(width)
            self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(width, 1))

        def forward(self, inputs, data_samples=None, mode='tensor'):
            y = self.head(self.neck(self.backbone(torch.stack(inputs))).relu())
            if mode == 'loss':
                return dict(loss=(y - 1).pow(2).mean())
            torch.rand(1)  # validation draws from the global torch RNG too
            return [dict(pred=v) for v in y]

    class ToyData(Dataset):
        """A random 'augmentation' with numpy and Python RNGs, as mmcv transforms draw."""

        def __init__(self, n: int) -> None:
            self.x = torch.linspace(-1, 1, n * 4).view(n, 4)

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int) -> dict:
            noise = np.random.rand(4) * 0.1 + random.random() * 0.1
            return dict(inputs=self.x[i] + torch.from_numpy(noise).float())

    class ToyMetric(BaseMetric):
        def process(self, data_batch, data_samples):
            self.results += [float(s['pred']) for s in data_samples]

        def compute_metrics(self, results):
            return dict(score=sum(results))

    return ToyModel, ToyData, ToyMetric


def toy_runner(work_dir: str, by_epoch: bool, length: int, rng_hook: dict = None,
               interval: int = 2, max_keep_ckpts: int = -1, checkpoint_type='SafeCheckpointHook',
               val_interval: int = None, extra_hooks=(), **kwargs):
    """A Runner of the toy model: ``length`` epochs (checkpoint and validation after each) or
    iterations (checkpoint every ``interval``, validation every ``val_interval``, by default
    ``interval``). ``rng_hook``: the RNGStateHook config, None for none; ``extra_hooks``: more
    custom hooks. ``kwargs``: Runner arguments (``resume``, ``load_from``)."""
    from mmengine.runner import Runner

    import fade_mm.engine  # noqa: F401  (registers the hooks)
    from fade_mm.compat import install_safe_checkpoint_loading

    install_safe_checkpoint_loading()  # runner checkpoints under torch's weights_only default
    ToyModel, ToyData, ToyMetric = _toy_classes()
    loader = dict(batch_size=2, num_workers=0, collate_fn=dict(type='pseudo_collate'))
    train_cfg = (dict(by_epoch=True, max_epochs=length, val_interval=1) if by_epoch else
                 dict(by_epoch=False, max_iters=length, val_interval=val_interval or interval))
    torch.manual_seed(0)  # the model is built here, before the Runner seeds
    return Runner(
        model=ToyModel(), work_dir=work_dir, experiment_name=uuid.uuid4().hex,
        train_dataloader=dict(loader, dataset=ToyData(6), sampler=dict(
            type='DefaultSampler' if by_epoch else 'InfiniteSampler', shuffle=True)),
        val_dataloader=dict(loader, dataset=ToyData(3),
                            sampler=dict(type='DefaultSampler', shuffle=False)),
        val_evaluator=[ToyMetric()], val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        train_cfg=train_cfg,
        default_hooks=dict(checkpoint=dict(type=checkpoint_type, by_epoch=by_epoch,
                                           interval=1 if by_epoch else interval,
                                           max_keep_ckpts=max_keep_ckpts)),
        custom_hooks=([rng_hook] if rng_hook else []) + list(extra_hooks),
        randomness=dict(seed=0), **kwargs)


def _states(runner) -> dict:
    """Weights, BN buffers and optimizer state (momentum buffers) of a runner."""
    opt = runner.optim_wrapper.optimizer
    out = {f'model.{k}': v.clone() for k, v in runner.model.state_dict().items()}
    for i, p in enumerate(p for g in opt.param_groups for p in g['params']):
        out[f'momentum.{i}'] = opt.state[p]['momentum_buffer'].clone()
    return out


def _equal(a: dict, b: dict) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


HOOK = dict(type='RNGStateHook')


@pytest.mark.parametrize('by_epoch', [False, True], ids=['iter_based', 'epoch_based'])
def test_toy_resume_is_exact(tmp_path, by_epoch):
    length, stop = (3, 2) if by_epoch else (6, 4)
    last = osp.join(str(tmp_path / 'interrupted'), 'epoch_2.pth' if by_epoch else 'iter_4.pth')

    straight = toy_runner(str(tmp_path / 'straight'), by_epoch, length, HOOK)
    straight.train()
    toy_runner(str(tmp_path / 'interrupted'), by_epoch, stop, HOOK).train()
    resumed = toy_runner(str(tmp_path / 'interrupted'), by_epoch, length, HOOK, resume=True)
    resumed.train()
    assert resumed.iter == straight.iter and osp.isfile(last)
    assert _equal(_states(straight), _states(resumed))

    # the same resume without the hook continues with other random numbers
    plain = toy_runner(str(tmp_path / 'plain'), by_epoch, length, None, resume=True,
                       load_from=last)
    plain.train()
    assert not _equal(_states(straight), _states(plain))


def test_toy_validation_isolation_is_needed(tmp_path):
    """Validation at the checkpoint iteration draws numbers the resumed run never draws:
    without ``isolate_val`` the resume is not exact."""
    hook = dict(type='RNGStateHook', isolate_val=False)
    straight = toy_runner(str(tmp_path / 'straight'), False, 6, hook)
    straight.train()
    toy_runner(str(tmp_path / 'interrupted'), False, 4, hook).train()
    resumed = toy_runner(str(tmp_path / 'interrupted'), False, 6, hook, resume=True)
    resumed.train()
    assert not _equal(_states(straight), _states(resumed))


def test_load_from_is_not_a_resume(tmp_path, monkeypatch):
    """Fine-tuning from a checkpoint (``load_from``, iteration 0) keeps the fresh seed's
    stream: the checkpoint's RNG states are not restored."""
    from fade_mm.engine import RNGStateHook
    toy_runner(str(tmp_path / 'a'), False, 2, HOOK).train()
    restored = []
    monkeypatch.setattr(RNGStateHook, '_restore', lambda self, runner: restored.append(runner))
    runner = toy_runner(str(tmp_path / 'b'), False, 2, HOOK,
                        load_from=str(tmp_path / 'a' / 'iter_2.pth'))
    runner.train()
    assert runner.iter == 2 and restored == []


def test_rng_states_round_trip_and_load_weights_only(tmp_path):
    """The states restore every generator, and a checkpoint holding them loads with
    ``torch.load(weights_only=True)`` with nothing allow-listed."""
    from fade_mm.engine import get_rng_states, set_rng_states

    def draw():
        return random.random(), float(np.random.rand()), np.random.randn(), float(torch.rand(1))

    np.random.randn()  # a cached Gaussian in numpy's state
    states = get_rng_states()
    first = draw()
    path = str(tmp_path / 'rng.pth')
    torch.save(dict(rng_states=states), path)
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()  # other tests may have allow-listed globals
    try:
        loaded = torch.load(path, weights_only=True)['rng_states']
    finally:
        torch.serialization.add_safe_globals(saved)
    set_rng_states(loaded)
    assert draw() == first


# ---------------------------------------------------------------- stock tools, demo configs
def _config(cwd: str, base: str, name: str, custom_hooks: str) -> str:
    """A config inheriting a demo config with other ``custom_hooks`` (no visualisation)."""
    path = osp.join(cwd, name)
    with open(path, 'w') as f:
        f.write(f'_base_ = {osp.join(DEMO, base)!r}\ncustom_hooks = {custom_hooks}\n')
    return path


def _load(path: str) -> dict:
    return torch.load(path, map_location='cpu', weights_only=False)  # our own test files


def _same_training_state(a: dict, b: dict) -> bool:
    """All weights and BN buffers, and every optimizer state tensor, bit-identical."""
    assert a['state_dict'].keys() == b['state_dict'].keys()
    same = all(torch.equal(v, b['state_dict'][k]) for k, v in a['state_dict'].items())
    for sa, sb in zip(a['optimizer']['state'].values(), b['optimizer']['state'].values()):
        same &= all(torch.equal(v, sb[k]) for k, v in sa.items() if torch.is_tensor(v))
    return same


def _interrupt_and_resume(train: str, cfg: str, cwd: str, opts: List[str]) -> str:
    """Uninterrupted to 6, and stopped at 4 then ``--resume``d to 6; returns the work dir
    of the interrupted run (``straight`` holds the other)."""
    run_python([train, cfg, '--work-dir', 'straight', '--cfg-options', 'train_cfg.max_iters=6',
                *opts], cwd)
    run_python([train, cfg, '--work-dir', 'resumed', '--cfg-options', 'train_cfg.max_iters=4',
                *opts], cwd)
    log = run_python([train, cfg, '--work-dir', 'resumed', '--resume', '--cfg-options',
                      'train_cfg.max_iters=6', *opts], cwd)
    assert 'resumed epoch: 0, iter: 4' in log
    assert 'RNGStateHook: restored the RNG states of iteration 4' in log
    return osp.join(cwd, 'resumed')


# checkpoints every 2 iterations, validation every 2: the uninterrupted run validates right
# after the checkpoint that the interrupted one resumes from (and at 2, mid-run)
STOCK_OPTS = ['train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
              'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2']


@pytest.mark.slow
def test_stock_mmseg_demo_resume_is_exact(tmp_path):
    """Demo SegFormer-head FADE config (dropout 0.1, random resize/crop/flip), stock mmseg
    ``train.py``: uninterrupted 6 iterations == 4, then ``--resume`` to 6. The hook-less resume
    from the same checkpoint differs."""
    from fade_mm.datasets.synthetic_seg import make_synthetic_ade
    cwd = str(tmp_path)
    make_synthetic_ade(osp.join(cwd, 'data', 'synthetic', 'seg'), num_train=6, num_val=2,
                       seed=0)
    train = stock_tool('mmseg', 'train.py')
    base = 'segformer-head_r18-tiny_fade_synthetic.py'
    cfg = _config(cwd, base, 'with_hook.py', "[dict(type='RNGStateHook')]")
    resumed = _interrupt_and_resume(train, cfg, cwd, STOCK_OPTS)
    straight = _load(osp.join(cwd, 'straight', 'iter_6.pth'))
    assert _same_training_state(straight, _load(osp.join(resumed, 'iter_6.pth')))

    plain = _config(cwd, base, 'without_hook.py', '[]')
    run_python([train, plain, '--work-dir', 'plain', '--resume', '--cfg-options',
                f'load_from={osp.join(resumed, "iter_4.pth")}', 'train_cfg.max_iters=6',
                *STOCK_OPTS], cwd)
    assert not _same_training_state(straight, _load(osp.join(cwd, 'plain', 'iter_6.pth')))


@pytest.mark.slow
def test_stock_mmdet_demo_resume_is_exact(tmp_path):
    """Demo Faster R-CNN FADE config (random flip, RPN/RoI random samplers), stock mmdet
    ``train.py``: uninterrupted 6 iterations == 4, then ``--resume`` to 6. (Without the hook
    the samplers draw other proposals after the resume; shown on the toy model and the
    segmentation demo, not repeated here to keep the run short.)"""
    from fade_mm.datasets.synthetic_det import make_synthetic_coco
    cwd = str(tmp_path)
    make_synthetic_coco(osp.join(cwd, 'data', 'synthetic', 'det'), num_train=4, num_val=2,
                        image_size=((96, 128), (96, 128)), seed=0)
    train = stock_tool('mmdet', 'train.py')
    cfg = _config(cwd, 'faster-rcnn_r18-tiny_fpn-fade_synthetic.py', 'with_hook.py',
                  "[dict(type='RNGStateHook')]")
    resumed = _interrupt_and_resume(train, cfg, cwd, STOCK_OPTS)
    assert _same_training_state(_load(osp.join(cwd, 'straight', 'iter_6.pth')),
                                _load(osp.join(resumed, 'iter_6.pth')))
