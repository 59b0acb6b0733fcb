"""``tools/train.py --amp`` without CUDA: bfloat16 CPU autocast (fade_mm.amp).

mmengine 0.10.7's ``AmpOptimWrapper`` asserts a GPU; on a CPU-only machine ``--amp`` switches
to :class:`fade_mm.amp.CPUAmpOptimWrapper`. The demo SegFormer-head FADE config trains a
few iterations with it, as a user runs the tool, and its loss goes down.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.threads

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAIN = osp.join(ROOT, 'tools', 'train.py')
DEMO_CFG = osp.join(ROOT, 'configs', 'demo', 'segformer-head_r18-tiny_fade_synthetic.py')
ITERS = 10


def test_wrapper_runs_the_step_under_cpu_bf16_autocast():
    from mmengine.registry import OPTIM_WRAPPERS

    import fade_mm.amp  # noqa: F401  (registers the wrapper)

    model = torch.nn.Linear(4, 2)
    wrapper = OPTIM_WRAPPERS.build(dict(type='CPUAmpOptimWrapper',
                                        optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    assert not torch.is_autocast_enabled('cpu')
    wrapper.update_params(out.float().square().mean())
    assert model.weight.dtype == torch.float32  # float32 master weights and gradients
    with pytest.raises(ValueError, match=r"`dtype` must be 'bfloat16'.*got 'float16'"):
        OPTIM_WRAPPERS.build(dict(type='CPUAmpOptimWrapper', dtype='float16',
                                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='with CUDA --amp is mmengine\'s '
                    'AmpOptimWrapper (float16)')
def test_train_amp_on_cpu_runs_and_loss_decreases(tmp_path):
    from fade_mm.datasets.synthetic_seg import make_synthetic_ade
    data = str(tmp_path / 'data')
    make_synthetic_ade(data, num_train=4, num_val=1, seed=0)
    work = str(tmp_path / 'work')
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, TRAIN, DEMO_CFG, '--amp', '--synthetic', data, '--work-dir', work,
         '--cfg-options', f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
         'train_dataloader.batch_size=2',
         'param_scheduler.0.start_factor=1.0',  # no warm-up: a few steps must show progress
         'default_hooks.logger.interval=1', f'default_hooks.checkpoint.interval={ITERS}',
         'custom_hooks=[]', 'randomness.seed=0'],
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert '--amp without CUDA: training steps run under CPU bfloat16 autocast' in proc.stdout
    (scalars,) = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    with open(scalars) as f:
        losses = [r['loss'] for r in map(json.loads, f) if 'loss' in r]
    print('losses:', ' '.join(f'{v:.4f}' for v in losses))
    assert len(losses) == ITERS and all(v == v for v in losses)  # logged, finite
    assert sum(losses[-3:]) / 3 < 0.97 * sum(losses[:3]) / 3, losses  # measured: 0.94
    # the dumped config names the wrapper and imports its module (stock tools can reuse it)
    (dumped,) = glob.glob(osp.join(work, '*', 'vis_data', 'config.py')) or \
        glob.glob(osp.join(work, '*.py'))
    with open(dumped) as f:
        text = f.read()
    assert "'CPUAmpOptimWrapper'" in text and "'fade_mm.amp'" in text
