"""tools/train.py, tools/test.py, tools/dist_*.sh and fade_mm.compat, end to end on CPU.

The tools run as subprocesses (``sys.executable``) on tiny synthetic data for a few
iterations, as a user would run them, from a temporary working directory (mmengine's
distributed evaluation writes ``.dist_test/`` into the current directory). One SegFormer-B0
FADE training run (module fixture) is shared: its checkpoints feed the test-tool, resume and
checkpoint-loading tests.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import pickle
import runpy
import shutil
import socket
import subprocess
import sys
from types import SimpleNamespace
from typing import Dict, List, Optional

import pytest
import torch

pytestmark = pytest.mark.threads

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(ROOT, 'tools')
SEG_CFG = osp.join(ROOT, 'configs', 'segformer',
                   'segformer_mit-b0_fade_1xb16-160k_ade20k-512x512.py')
DET_CFG = osp.join(ROOT, 'configs', 'faster_rcnn', 'faster-rcnn_r50_fpncarafe-fade_8xb2-1x_coco.py')
TIMEOUT = 900  # seconds per tool run: a hang must fail the test, not the CI job

# Deterministic, short SegFormer runs. mmengine 0.10.7 does not checkpoint RNG states, so
# stochastic depth and dropout would draw different masks after a resume: switch them off to
# compare an interrupted run with an uninterrupted one bit for bit.
SEG_OPTS = ['randomness.seed=0', 'randomness.deterministic=True',
            'model.backbone.drop_path_rate=0.0', 'model.decode_head.dropout_ratio=0.0',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
            'train_cfg.val_interval=4', 'default_hooks.checkpoint.interval=2',
            'default_hooks.logger.interval=1']
METRIC_KEYS = ('aAcc', 'mIoU', 'mAcc', 'bIoU')


def _run(args: List[str], cwd: str, env: Optional[Dict[str, str]] = None) -> str:
    """Runs a command, fails the test with its output tail when it fails; returns output."""
    # One intra-op thread per process: on 2 shared cores OpenMP threads that wait for a busy
    # core made a 4-iteration run 3x slower. It also keeps the thread count, and so the
    # floating-point reduction order, identical between the runs that are compared.
    env = dict(os.environ if env is None else env, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f'{" ".join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}')
    return proc.stdout


def _tool(name: str, *args: str, cwd: str) -> str:
    return _run([sys.executable, osp.join(TOOLS, name), *args], cwd=cwd)


def _train_metrics(work_dir: str) -> List[dict]:
    """The scalars a training run logged (``work_dir`` holds one run, or is its log dir)."""
    (path,) = (glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
               or glob.glob(osp.join(work_dir, 'vis_data', 'scalars.json')))
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return records


def _test_metrics(work_dir: str) -> dict:
    """The metrics test.py dumped to WORK_DIR/TIMESTAMP/TIMESTAMP.json."""
    (path,) = [p for p in glob.glob(osp.join(work_dir, '*', '*.json'))
               if osp.basename(p)[:-5] == osp.basename(osp.dirname(p))]
    with open(path) as f:
        return json.load(f)


def _load(path: str) -> dict:
    return torch.load(path, map_location='cpu', weights_only=False)  # our own test files


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def seg_data(tmp_path_factory) -> str:
    from fade_mm.datasets.synthetic_seg import make_synthetic_ade
    root = str(tmp_path_factory.mktemp('seg') / 'data')
    make_synthetic_ade(root, num_train=8, num_val=3, seed=0)
    return root


@pytest.fixture(scope='module')
def seg_run(tmp_path_factory, seg_data) -> str:
    """Uninterrupted run: 4 iterations, checkpoints at 2 and 4, validation at 4."""
    base = tmp_path_factory.mktemp('seg_run')
    work = str(base / 'work')
    _tool('train.py', SEG_CFG, '--synthetic', seg_data, '--work-dir', work,
          '--cfg-options', 'train_cfg.max_iters=4', *SEG_OPTS, cwd=str(base))
    return work


def test_help_says_checkpoints_must_be_trusted(capsys):
    for name in ('train.py', 'test.py'):
        tool = runpy.run_path(osp.join(TOOLS, name), run_name='fade_mm_tool')
        with pytest.raises(SystemExit):
            tool['parse_args'](['--help'])
        out = ' '.join(capsys.readouterr().out.split())
        assert 'trusted local files' in out and '--synthetic' in out and '--launcher' in out


def test_adapt_to_cpu_switches_to_gloo_and_cpu_ddp():
    from mmengine.config import Config

    from fade_mm.compat import adapt_to_cpu
    cfg = Config(dict(launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='nccl')),
                      model=dict(type='M', head=dict(norm_cfg=dict(type='SyncBN')),
                                 blocks=[dict(norm_cfg=dict(type='SyncBN'))]),
                      sync_bn='torch'))
    changed = adapt_to_cpu(cfg)
    if torch.cuda.is_available():
        assert not changed and cfg.env_cfg.dist_cfg.backend == 'nccl'
        return
    assert changed and cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model.head.norm_cfg.type == 'BN' and cfg.model.blocks[0].norm_cfg.type == 'BN'
    assert 'sync_bn' not in cfg
    single = Config(dict(launcher='none', env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    adapt_to_cpu(single)
    assert single.env_cfg.dist_cfg.backend == 'gloo' and 'model_wrapper_cfg' not in single


def test_only_the_main_process_dumps_test_metrics(monkeypatch):
    """mmengine's LoggerHook dumps the test metrics to WORK_DIR/TIMESTAMP/TIMESTAMP.json in
    every rank, all to one file, at the same moment: two writers left the tail of the longer
    dump behind the shorter one (invalid JSON, the once-flaky dist test below). test.py
    leaves the dump to rank 0."""
    import mmengine.dist.utils
    from mmengine.hooks import LoggerHook

    from fade_mm.runner import dump_test_metrics_on_main_process

    dumps = []

    class Logger(LoggerHook):
        def after_test_epoch(self, runner, metrics=None):
            dumps.append(metrics)

    for rank, expected in ((1, []), (0, [{'mIoU': 1.0}])):
        dumps.clear()
        monkeypatch.setattr(mmengine.dist.utils, 'get_rank', lambda group=None, r=rank: r)
        runner = SimpleNamespace(hooks=[Logger()])
        dump_test_metrics_on_main_process(runner)
        runner.hooks[0].after_test_epoch(runner, metrics={'mIoU': 1.0})
        assert dumps == expected, rank


class _Payload:
    """Something a runner checkpoint never holds: unpickling it must be refused."""


@pytest.mark.slow
def test_safe_checkpoint_loading(seg_run, tmp_path):
    """Bare mmengine's load_checkpoint fails on a runner checkpoint on torch >= 2.6; the
    allow-list installed by the plugin loads it with weights_only=True; anything else is
    refused in one line naming the file and the global, unless explicitly trusted."""
    from mmengine.runner import load_checkpoint
    from mmengine.runner.checkpoint import CheckpointLoader, load_from_local

    from fade_mm import compat

    ckpt = osp.join(seg_run, 'iter_4.pth')
    others = {k: v for k, v in CheckpointLoader._schemes.items() if k != ''}
    torch_load = torch.load
    # bare mmengine: its loader, and none of the allow-list (process-wide once the plugin
    # was imported, e.g. by an earlier test)
    allowed = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    CheckpointLoader.register_scheme('', load_from_local, force=True)
    try:
        if torch.__version__ >= '2.6':
            with pytest.raises(pickle.UnpicklingError, match='Weights only load failed') as err:
                load_checkpoint(torch.nn.Module(), ckpt, strict=False)
            assert 'HistoryBuffer' in str(err.value)
    finally:
        CheckpointLoader.register_scheme('', compat.load_from_safe_local, force=True)
        torch.serialization.add_safe_globals(allowed)
    compat.install_safe_checkpoint_loading()  # idempotent (the plugin import did it)
    assert CheckpointLoader._schemes[''] is compat.load_from_safe_local
    loaded = load_checkpoint(torch.nn.Module(), ckpt, strict=False)
    assert loaded['meta']['iter'] == 4
    assert 'message_hub' in loaded and 'optimizer' in loaded
    assert any(k.startswith('decode_head.') for k in loaded['state_dict'])
    assert {k: v for k, v in CheckpointLoader._schemes.items() if k != ''} == others
    assert torch.load is torch_load  # no global override
    with pytest.raises(FileNotFoundError):
        load_checkpoint(torch.nn.Module(), str(tmp_path / 'missing.pth'))

    # A pickle with a global outside the allow-list: one line, file and global named.
    evil = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'x': _Payload()}}, evil)
    with pytest.raises(compat.UntrustedCheckpointError) as err:
        load_checkpoint(torch.nn.Module(), evil, strict=False)
    text = str(err.value)
    assert '\n' not in text and evil in text and '_Payload' in text
    assert '--trust-checkpoint' in text
    # getattr is allowed for HistoryBuffer's statistics only.
    from mmengine.logging import HistoryBuffer
    assert compat.history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        compat.history_buffer_getattr(os, 'system')

    # The explicit opt-in unpickles in full, reversibly and idempotently.
    with compat.local_checkpoints_trusted():
        assert CheckpointLoader._schemes[''] is compat.load_from_trusted_local
        assert isinstance(load_checkpoint(torch.nn.Module(), evil, strict=False)['meta']['x'],
                          _Payload)
    assert CheckpointLoader._schemes[''] is compat.load_from_safe_local
    assert compat.trust_local_checkpoints() is True
    assert compat.trust_local_checkpoints() is False
    compat.restore_checkpoint_loading()
    assert CheckpointLoader._schemes[''] is compat.load_from_safe_local


@pytest.mark.slow
def test_seg_test_tool_reproduces_final_validation(seg_run, seg_data, tmp_path):
    records = _train_metrics(seg_run)
    (val,) = [r for r in records if 'mIoU' in r]
    assert val['step'] == 4
    work = str(tmp_path / 'test')
    out = _tool('test.py', SEG_CFG, osp.join(seg_run, 'iter_4.pth'), '--synthetic', seg_data,
                '--work-dir', work, '--cfg-options', *SEG_OPTS, cwd=str(tmp_path))
    assert 'Loads checkpoint by safe_local backend' in out
    test = _test_metrics(work)
    assert {k: test[k] for k in METRIC_KEYS} == {k: val[k] for k in METRIC_KEYS}
    assert 0 < test['mIoU'] <= 100 and 0 < test['bIoU'] <= 100


@pytest.mark.slow
def test_interrupted_and_resumed_run_matches_uninterrupted(seg_run, seg_data, tmp_path):
    work = str(tmp_path / 'work')
    # The "interrupted" run stops after the checkpoint at iteration 2 ...
    _tool('train.py', SEG_CFG, '--synthetic', seg_data, '--work-dir', work,
          '--cfg-options', 'train_cfg.max_iters=2', *SEG_OPTS, cwd=str(tmp_path))
    assert osp.isfile(osp.join(work, 'iter_2.pth')) and not osp.exists(osp.join(work, 'iter_4.pth'))
    first_logs = set(os.listdir(work))
    # ... and `--resume` alone picks up its latest checkpoint and trains on to 4.
    out = _tool('train.py', SEG_CFG, '--synthetic', seg_data, '--work-dir', work, '--resume',
                '--cfg-options', 'train_cfg.max_iters=4', *SEG_OPTS, cwd=str(tmp_path))
    assert 'Loads checkpoint by safe_local backend' in out
    assert 'resumed epoch: 0, iter: 2' in out and 'Advance dataloader 2 steps' in out

    # Only iterations 3 and 4 were trained by the second run (it did not start over).
    # (checkpoints aside: iter_4.pth and the best-mIoU one of save_best)
    (second,) = {n for n in set(os.listdir(work)) - first_logs if not n.endswith('.pth')}
    second_records = _train_metrics(osp.join(work, second))
    assert [r['step'] for r in second_records if 'loss' in r] == [3, 4]

    straight, resumed = _load(osp.join(seg_run, 'iter_4.pth')), _load(osp.join(work,
                                                                            'iter_4.pth'))
    assert resumed['meta']['iter'] == straight['meta']['iter'] == 4
    assert straight['state_dict'].keys() == resumed['state_dict'].keys()
    for key, value in straight['state_dict'].items():
        assert torch.equal(value, resumed['state_dict'][key]), key
    # Training did move the weights between the two checkpoints (the check is not vacuous).
    at_2 = _load(osp.join(seg_run, 'iter_2.pth'))['state_dict']
    assert any(not torch.equal(v, at_2[k]) for k, v in straight['state_dict'].items())
    # AdamW moments and schedulers continue exactly too.
    for a, b in zip(straight['optimizer']['state'].values(),
                    resumed['optimizer']['state'].values()):
        assert torch.equal(a['exp_avg'], b['exp_avg'])
        assert torch.equal(a['exp_avg_sq'], b['exp_avg_sq'])
    assert straight['param_schedulers'] == resumed['param_schedulers']
    val_a = [r for r in _train_metrics(seg_run) if 'mIoU' in r][-1]
    val_b = [r for r in second_records if 'mIoU' in r][-1]
    assert {k: val_a[k] for k in METRIC_KEYS} == {k: val_b[k] for k in METRIC_KEYS}


@pytest.mark.slow
def test_dist_train_and_test_two_gloo_ranks(seg_data, tmp_path):
    work = str(tmp_path / 'work')
    env = dict(os.environ, PORT=str(_free_port()), PYTHON=sys.executable)
    _run(['bash', osp.join(TOOLS, 'dist_train.sh'), SEG_CFG, '2', '--synthetic', seg_data,
          '--work-dir', work, '--cfg-options', 'train_cfg.max_iters=2',
          'train_cfg.val_interval=2', 'train_dataloader.batch_size=1',
          'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1'],
         cwd=str(tmp_path), env=env)
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    (log,) = glob.glob(osp.join(work, '*', '*.log'))
    with open(log) as f:
        text = f.read()
    assert 'Distributed training: True' in text and 'GPU number: 2' in text  # world size 2
    assert "backend='gloo'" in text or 'backend="gloo"' in text
    # Each rank evaluated 2 of the 3 validation images (one padded); rank 0's metric saw all 3.
    assert 'Boundary IoU per class (ratio=0.02, d=5 px, 3 images)' in text
    (val,) = [r for r in _train_metrics(work) if 'mIoU' in r]
    assert set(METRIC_KEYS) <= set(val) and val['step'] == 2

    # dist_test.sh (2 ranks) and test.py (1 process) agree on the checkpoint. (Not with the
    # training-time validation: on CPU SyncBN runs as per-rank BN, so rank 1 validated with
    # its own running statistics while the checkpoint holds rank 0's.)
    ckpt = osp.join(work, 'iter_2.pth')
    env['PORT'] = str(_free_port())
    _run(['bash', osp.join(TOOLS, 'dist_test.sh'), SEG_CFG, ckpt, '2', '--synthetic', seg_data,
          '--work-dir', str(tmp_path / 'dist_test')], cwd=str(tmp_path), env=env)
    single = str(tmp_path / 'test')
    _tool('test.py', SEG_CFG, ckpt, '--synthetic', seg_data, '--work-dir', single,
          cwd=str(tmp_path))
    dist_metrics, single_metrics = _test_metrics(str(tmp_path / 'dist_test')), \
        _test_metrics(single)
    assert {k: dist_metrics[k] for k in METRIC_KEYS} == \
        {k: single_metrics[k] for k in METRIC_KEYS}


@pytest.mark.slow
def test_det_train_then_test_tool(tmp_path):
    from fade_mm.datasets.synthetic_det import make_synthetic_coco
    data = str(tmp_path / 'data')
    make_synthetic_coco(data, num_train=2, num_val=2, image_size=((96, 128), (96, 128)),
                        seed=0)
    work = str(tmp_path / 'work')
    # mmdet's epoch-based 1x schedule, cut to one epoch: 2 images, batch 2 = 1 iteration.
    # --synthetic must turn the overlay's InfiniteSampler into a finite one, or it never ends.
    _tool('train.py', DET_CFG, '--synthetic', data, '--work-dir', work, '--cfg-options',
          'train_cfg.max_epochs=1', 'train_dataloader.batch_size=2', 'randomness.seed=0',
          cwd=str(tmp_path))
    (val,) = [r for r in _train_metrics(work) if 'coco/bbox_mAP' in r]
    test_work = str(tmp_path / 'test')
    preds = str(tmp_path / 'preds.pkl')
    _tool('test.py', DET_CFG, osp.join(work, 'epoch_1.pth'), '--synthetic', data,
          '--work-dir', test_work, '--out', preds, cwd=str(tmp_path))
    test = _test_metrics(test_work)
    keys = [k for k in val if k.startswith('coco/bbox_mAP')]
    assert len(keys) == 6
    assert {k: test[k] for k in keys} == {k: val[k] for k in keys}
    with open(preds, 'rb') as f:
        dumped = pickle.load(f)
    assert len(dumped) == 2 and all('pred_instances' in d for d in dumped)
    shutil.rmtree(work)  # ~0.5 GB of R50 checkpoints with optimizer state
