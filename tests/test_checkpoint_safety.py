"""Crash-safe checkpoints, resume fallback and the model-key check of
:class:`fade_mm.engine.SafeCheckpointHook`.

* A save interrupted half-way (simulated in-process; and real ``kill -9`` at random moments,
  ``slow``) leaves ``last_checkpoint`` naming an intact checkpoint, also with
  ``max_keep_ckpts=1`` -- where mmengine's own ``CheckpointHook`` has already removed the
  old checkpoint and leaves a truncated new one.
* ``--resume`` with an empty, dangling or truncated ``last_checkpoint`` falls back to the
  newest intact checkpoint with a warning; with none intact it stops with one clear error.
* A checkpoint of another model (FADE weights into a CARAFE config) is refused with the keys
  and both upsampler types named, unless ``strict_keys=False``; with the STOCK mmseg
  ``tools/test.py`` (``slow``) too.
"""
from __future__ import annotations

import os
import os.path as osp
import random
import signal
import subprocess
import sys
import textwrap
import time
import types

import pytest
import torch
import torch.nn as nn

from runs import run_python, stock_tool
from test_exact_resume import toy_runner

pytestmark = pytest.mark.threads

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TESTS = osp.join(ROOT, 'tests')
DEMO = osp.join(ROOT, 'configs', 'demo')


def _hook(**kwargs):
    from fade_mm.engine import SafeCheckpointHook
    return SafeCheckpointHook(by_epoch=False, interval=1, **kwargs)


def _resuming_runner(work_dir: str, model: nn.Module = None):
    """What SafeCheckpointHook.before_run / after_load_checkpoint read of a Runner."""
    from mmengine import Config
    return types.SimpleNamespace(work_dir=work_dir, cfg=Config(dict(resume=True)), _resume=True,
                                 _load_from=None, model=model)


def _ckpt(path: str) -> str:
    torch.save(dict(state_dict={'w': torch.arange(1000.)}, meta=dict(iter=1)), path)
    return path


def _truncate(path: str) -> None:
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])


@pytest.fixture
def warnings_logged(monkeypatch):
    """The messages SafeCheckpointHook logs (still forwarded to mmengine's logger)."""
    from fade_mm.engine import checkpoint_hook
    logged, print_log = [], checkpoint_hook.print_log

    def record(msg, *args, **kwargs):
        logged.append(msg)
        print_log(msg, *args, **kwargs)

    monkeypatch.setattr(checkpoint_hook, 'print_log', record)
    return logged


# ---------------------------------------------------------------- resume fallback
@pytest.mark.parametrize('case, pointer, expected, problem', [
    ('empty', '', 'iter_4.pth', 'is empty'),
    ('dangling', 'iter_6.pth', 'iter_4.pth', 'does not exist'),
    ('truncated', 'iter_4.pth', 'iter_2.pth', 'truncated'),
    ('missing', None, 'iter_4.pth', 'is missing'),
    ('intact', 'iter_2.pth', 'iter_2.pth', None),  # an intact choice is left alone
])
def test_resume_falls_back_to_newest_intact(tmp_path, warnings_logged, case, pointer,
                                            expected, problem):
    work = str(tmp_path)
    _ckpt(osp.join(work, 'iter_2.pth'))
    _ckpt(osp.join(work, 'iter_4.pth'))
    _ckpt(osp.join(work, 'best_mIoU_iter_9.pth'))  # not a resumable checkpoint: ignored
    if case == 'truncated':
        _truncate(osp.join(work, 'iter_4.pth'))
    last = osp.join(work, 'last_checkpoint')
    if pointer is not None:
        with open(last, 'w') as f:
            f.write(osp.join(work, pointer) if pointer else '')
    _hook().before_run(_resuming_runner(work))
    with open(last) as f:
        assert f.read() == osp.join(work, expected)
    if problem is None:
        assert warnings_logged == []
    else:
        (msg,) = warnings_logged
        assert problem in msg and osp.join(work, expected) in msg


def test_resume_without_intact_checkpoint_is_one_clear_error(tmp_path):
    work = str(tmp_path)
    for step in (2, 4):
        _truncate(_ckpt(osp.join(work, f'iter_{step}.pth')))
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work, 'iter_4.pth'))
    with pytest.raises(RuntimeError) as err:
        _hook().before_run(_resuming_runner(work))
    assert work in str(err.value) and 'iter_4.pth' in str(err.value) \
        and 'iter_2.pth' in str(err.value)

    with open(osp.join(work, 'last_checkpoint'), 'w'):
        pass  # empty, and no checkpoint at all
    for step in (2, 4):
        os.remove(osp.join(work, f'iter_{step}.pth'))
    with pytest.raises(RuntimeError, match='no intact checkpoint in the work dir'):
        _hook().before_run(_resuming_runner(work))


def test_resume_with_nothing_saved_starts_from_scratch(tmp_path):
    _hook().before_run(_resuming_runner(str(tmp_path)))  # as mmengine: no error
    assert os.listdir(str(tmp_path)) == []


def test_runner_resumes_from_intact_after_truncated_last(tmp_path, warnings_logged):
    """End to end through Runner.load_or_resume: the newest checkpoint is truncated."""
    work = str(tmp_path / 'work')
    toy_runner(work, False, 4, None).train()
    _truncate(osp.join(work, 'iter_4.pth'))
    runner = toy_runner(work, False, 6, None, resume=True)
    runner.train()
    assert any('resuming from' in m and 'iter_2.pth' in m for m in warnings_logged)
    assert runner.iter == 6
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work, 'iter_6.pth')


# ---------------------------------------------------------------- interrupted saving
class _Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing in mmengine catches it."""


@pytest.mark.parametrize('hook', ['SafeCheckpointHook', 'CheckpointHook'])
def test_save_interrupted_halfway_keeps_an_intact_checkpoint(tmp_path, monkeypatch, hook):
    """The 3rd save dies half-way through writing. SafeCheckpointHook: iter_2.pth (the only
    one kept) is intact and named by last_checkpoint. mmengine's CheckpointHook, for the
    record: iter_2.pth already removed, iter_3.pth truncated, nothing to resume from."""
    from mmengine.fileio import LocalBackend

    from fade_mm.engine import is_intact_checkpoint
    put, calls = LocalBackend.put, []

    def dying_put(self, obj, filepath):
        calls.append(filepath)
        if len(calls) == 3:
            put(self, obj[:len(obj) // 2], filepath)
            raise _Killed
        put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', dying_put)
    work = str(tmp_path)
    runner = toy_runner(work, False, 5, None, interval=1, val_interval=100, max_keep_ckpts=1,
                        checkpoint_type=hook)
    with pytest.raises(_Killed):
        runner.train()
    with open(osp.join(work, 'last_checkpoint')) as f:
        named = f.read()
    assert named == osp.join(work, 'iter_2.pth')
    if hook == 'SafeCheckpointHook':
        assert is_intact_checkpoint(named)
        assert not osp.exists(osp.join(work, 'iter_3.pth'))  # only its hidden temporary file
        assert osp.isfile(osp.join(work, '.iter_3.pth.tmp'))
        # the resumed run removes the temporary file and continues from iteration 2
        monkeypatch.setattr(LocalBackend, 'put', put)
        resumed = toy_runner(work, False, 5, None, interval=1, val_interval=100,
                             max_keep_ckpts=1, resume=True)
        resumed.train()
        assert sorted(n for n in os.listdir(work) if n.endswith(('.pth', '.tmp'))) == \
            ['iter_5.pth']
    else:
        assert not osp.exists(named)
        assert not is_intact_checkpoint(osp.join(work, 'iter_3.pth'))


_CHILD = textwrap.dedent('''
    import sys
    sys.path.insert(0, {tests!r})
    import torch
    from mmengine.hooks import Hook
    from test_exact_resume import toy_runner

    class Progress(Hook):
        """Appends runner.iter at the start of every iteration; makes checkpoints big
        enough (8 MB) that a kill often lands inside a save."""
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            with open({progress!r}, 'a') as f:
                f.write(f'{{runner.iter}}\\n')
        def before_save_checkpoint(self, runner, checkpoint):
            checkpoint['ballast'] = torch.rand(2 ** 21)

    toy_runner({work!r}, False, 100000, dict(type='RNGStateHook'), interval=1,
               val_interval=10 ** 9, max_keep_ckpts=1, resume=True,
               extra_hooks=[Progress()]).train()
''')


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_an_intact_checkpoint(tmp_path):
    """A training process that checkpoints every iteration (``max_keep_ckpts=1``) is killed
    with SIGKILL at random moments (seeded), then resumed in the same work dir, a few times.
    After every kill ``last_checkpoint`` names an intact checkpoint no older than the last
    iteration that had begun (at most the interrupted interval is lost)."""
    from fade_mm.engine import is_intact_checkpoint
    work, progress = str(tmp_path / 'work'), str(tmp_path / 'progress')
    script = str(tmp_path / 'child.py')
    with open(script, 'w') as f:
        f.write(_CHILD.format(tests=TESTS, progress=progress, work=work))
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    rng = random.Random(0)
    resumed_from = 0
    for cycle in range(5):
        if osp.exists(progress):
            os.remove(progress)
        with open(str(tmp_path / f'child{cycle}.log'), 'w') as log:
            child = subprocess.Popen([sys.executable, script], env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
            deadline = time.time() + 300
            while not osp.exists(progress):  # wait for training to start
                assert child.poll() is None and time.time() < deadline, \
                    open(log.name).read()[-4000:]
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
            child.send_signal(signal.SIGKILL)
            child.wait()
        with open(progress) as f:
            begun = [int(line) for line in f.read().split()]
        # the resumed run started where the previous checkpoint left off
        assert begun[0] == resumed_from
        with open(osp.join(work, 'last_checkpoint')) as f:
            named = f.read()
        assert is_intact_checkpoint(named), (cycle, named, os.listdir(work))
        step = int(osp.basename(named)[len('iter_'):-len('.pth')])
        assert step >= begun[-1], (cycle, step, begun[-1])
        # at most the kept checkpoint, the new one not yet removed, and a temporary file
        assert len([n for n in os.listdir(work) if n.endswith('.pth')]) <= 2
        resumed_from = step


# ---------------------------------------------------------------- model-key check
class _Head(nn.Module):
    def __init__(self, up: str) -> None:
        super().__init__()
        from fade_mm import upsamplers
        self.conv = nn.Conv2d(8, 8, 1)
        self.upsamplers = (nn.ModuleList([getattr(upsamplers, up)(in_channels=8)])
                           if up else None)


class _Model(nn.Module):
    def __init__(self, up: str, width: int = 8) -> None:
        super().__init__()
        self.data_preprocessor = nn.Module()
        self.data_preprocessor.register_buffer('mean', torch.zeros(3))
        self.backbone = nn.Conv2d(3, width, 3)
        self.decode_head = _Head(up)


def _checkpoint_of(model: nn.Module, cfg_text=None, prefix: str = '') -> dict:
    state = {prefix + k: v for k, v in model.state_dict().items()}
    return dict(state_dict=state, meta=dict(cfg=cfg_text)) if cfg_text is not None else state


FADE_CFG = "model = dict(decode_head=dict(upsample_cfg=dict(type='FADE', up_kernel=5)))"


def test_checkpoint_of_another_upsampler_is_refused():
    runner = _resuming_runner('.', _Model('CARAFE'))
    with pytest.raises(ValueError) as err:
        _hook().after_load_checkpoint(runner, _checkpoint_of(_Model('FADE'), FADE_CFG))
    msg = str(err.value)
    assert 'Upsamplers of the model: CARAFE; of the checkpoint: FADE' in msg
    assert 'decode_head.upsamplers.0.' in msg and 'missing from the checkpoint' in msg \
        and 'the model does not have' in msg and 'strict_keys=False' in msg
    # at most five keys of each side are named
    assert msg.count('decode_head.upsamplers.0.') <= 10

    _hook(strict_keys=False).after_load_checkpoint(
        runner, _checkpoint_of(_Model('FADE'), FADE_CFG))  # deliberate partial loading


def test_key_check_describes_unknown_and_interpolation():
    # a bare state dict (no meta): the checkpoint's upsamplers are unknown; bilinear head
    with pytest.raises(ValueError, match=r'model: none \(interpolation\); of the checkpoint: '
                                         r'unknown'):
        _hook().after_load_checkpoint(_resuming_runner('.', _Model(None)),
                                      _checkpoint_of(_Model('FADE')))


def test_key_check_allows_backbone_preprocessor_and_module_prefix():
    model = _Model('FADE')
    ckpt = _checkpoint_of(model, FADE_CFG, prefix='module.')  # saved from a DDP model
    del ckpt['state_dict']['module.backbone.weight']  # e.g. a backbone trained elsewhere
    del ckpt['state_dict']['module.data_preprocessor.mean']
    ckpt['state_dict']['module.backbone.extra'] = torch.zeros(1)
    _hook().after_load_checkpoint(_resuming_runner('.', model), ckpt)


@pytest.mark.slow
def test_stock_mmseg_test_refuses_fade_checkpoint_for_carafe_config(tmp_path):
    """FADE weights, CARAFE demo config, STOCK mmseg ``tools/test.py``: a non-zero exit that
    names keys and both upsamplers (mmengine alone evaluates random CARAFE upsamplers and
    exits 0); ``strict_keys=False`` loads it partially."""
    from mmengine import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from fade_mm.datasets.synthetic_seg import make_synthetic_ade
    cwd = str(tmp_path)
    make_synthetic_ade(osp.join(cwd, 'data', 'synthetic', 'seg'), num_train=2, num_val=1,
                       seed=0)
    fade = Config.fromfile(osp.join(DEMO, 'segformer-head_r18-tiny_fade_synthetic.py'))
    init_default_scope('mmseg')
    model = MODELS.build(fade.model)
    ckpt = str(tmp_path / 'fade.pth')
    torch.save(dict(meta=dict(cfg=fade.pretty_text), state_dict=model.state_dict()), ckpt)

    test = stock_tool('mmseg', 'test.py')
    carafe = osp.join(DEMO, 'segformer-head_r18-tiny_carafe_synthetic.py')
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, test, carafe, ckpt, '--work-dir', 'refused'],
                          cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=900)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert 'Upsamplers of the model: CARAFE; of the checkpoint: FADE' in proc.stdout
    assert 'decode_head.upsamplers.0.' in proc.stdout

    run_python([test, carafe, ckpt, '--work-dir', 'partial', '--cfg-options',
                'default_hooks.checkpoint.strict_keys=False'], cwd)
