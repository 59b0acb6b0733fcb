"""The stock mmseg / mmdet tools on our configs, through ``custom_imports`` alone.

Runs the ``train.py`` / ``test.py`` shipped inside the installed packages
(``<pkg>/.mim/tools/``), as a researcher who clones us next to mmsegmentation or mmdetection
would: no fade_mm tool, no environment variable, torch's default ``weights_only=True``.
Training, testing (mmseg's ``--out`` too), ``--resume`` and ``load_from`` must work, which on
torch >= 2.6 needs the plugin's allow-list of runner-checkpoint globals
(:func:`fade_mm.compat.install_safe_checkpoint_loading`).

The demo configs are self-contained (their data settings point at ``data/synthetic/...``
relative to the working directory), so each test generates the data there and runs the
tool from it.
"""
from __future__ import annotations

import glob
import json
import os.path as osp

import pytest

from runs import run_python, stock_tool

pytestmark = [pytest.mark.threads, pytest.mark.slow]

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CFG = osp.join(ROOT, 'configs', 'demo', 'segformer-head_r18-tiny_fade_synthetic.py')
DET_CFG = osp.join(ROOT, 'configs', 'demo', 'faster-rcnn_r18-tiny_fpn-fade_synthetic.py')
# short runs; no visualisation hook (it only draws pictures)
COMMON = ['custom_hooks=[]', 'default_hooks.logger.interval=1',
          'default_hooks.checkpoint.interval=1', 'train_dataloader.batch_size=2']


def _last_metrics(work_dir: str) -> dict:
    """The metrics test.py dumped to WORK_DIR/TIMESTAMP/TIMESTAMP.json."""
    (path,) = [p for p in glob.glob(osp.join(work_dir, '*', '*.json'))
               if osp.basename(p)[:-5] == osp.basename(osp.dirname(p))]
    with open(path) as f:
        return json.load(f)


def test_stock_mmseg_train_test_out_resume_load_from(tmp_path):
    from fade_mm.datasets.synthetic_seg import make_synthetic_ade
    cwd = str(tmp_path)
    make_synthetic_ade(osp.join(cwd, 'data', 'synthetic', 'seg'), num_train=6, num_val=2,
                       seed=0)
    train, test = stock_tool('mmseg', 'train.py'), stock_tool('mmseg', 'test.py')
    work = osp.join(cwd, 'work')
    opts = COMMON + ['train_cfg.val_interval=2']
    run_python([train, SEG_CFG, '--work-dir', work, '--cfg-options', 'train_cfg.max_iters=2',
                *opts], cwd)
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)

    out_dir = osp.join(cwd, 'pred')
    log = run_python([test, SEG_CFG, ckpt, '--work-dir', osp.join(cwd, 'test'), '--out', out_dir],
                     cwd)
    assert 'Loads checkpoint by safe_local backend' in log
    metrics = _last_metrics(osp.join(cwd, 'test'))
    assert {'aAcc', 'mIoU', 'mAcc', 'bIoU'} <= set(metrics)
    assert 0 < metrics['mIoU'] <= 100 and 0 <= metrics['bIoU'] <= 100
    assert len(glob.glob(osp.join(out_dir, '*.png'))) == 2  # one prediction per val image

    log = run_python([train, SEG_CFG, '--work-dir', work, '--resume', '--cfg-options',
                      'train_cfg.max_iters=3', *opts], cwd)
    assert 'resumed epoch: 0, iter: 2' in log
    assert osp.isfile(osp.join(work, 'iter_3.pth'))

    log = run_python([train, SEG_CFG, '--work-dir', osp.join(cwd, 'finetune'), '--cfg-options',
                      f'load_from={ckpt}', 'train_cfg.max_iters=1', *opts], cwd)
    assert f'Load checkpoint from {ckpt}' in log


def test_stock_mmdet_train_test_resume(tmp_path):
    from fade_mm.datasets.synthetic_det import make_synthetic_coco
    cwd = str(tmp_path)
    make_synthetic_coco(osp.join(cwd, 'data', 'synthetic', 'det'), num_train=4, num_val=2,
                        image_size=((96, 128), (96, 128)), seed=0)
    train, test = stock_tool('mmdet', 'train.py'), stock_tool('mmdet', 'test.py')
    work = osp.join(cwd, 'work')
    opts = COMMON + ['train_cfg.val_interval=2']
    run_python([train, DET_CFG, '--work-dir', work, '--cfg-options', 'train_cfg.max_iters=2',
                *opts], cwd)
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)

    preds = osp.join(cwd, 'preds.pkl')
    log = run_python([test, DET_CFG, ckpt, '--work-dir', osp.join(cwd, 'test'), '--out', preds],
                     cwd)
    assert 'Loads checkpoint by safe_local backend' in log
    metrics = _last_metrics(osp.join(cwd, 'test'))
    assert 'coco/bbox_mAP' in metrics and osp.isfile(preds)

    log = run_python([train, DET_CFG, '--work-dir', work, '--resume', '--cfg-options',
                      'train_cfg.max_iters=3', *opts], cwd)
    assert 'resumed epoch: 0, iter: 2' in log
    assert osp.isfile(osp.join(work, 'iter_3.pth'))
