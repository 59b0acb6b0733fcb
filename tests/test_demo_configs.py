"""The toy configs of configs/demo, their by-role bases and the synthetic-data tool options.

* Every demo config parses and builds, with the exact parameter count. The Faster R-CNN and
  SegFormer-head counts are those of the configs before they were restructured by role
  (they inherited the full COCO / ADE20K configs and copied the data settings), so the demo's
  models are unchanged.
* The dataset bases of ``configs/_base_/datasets/`` hold dataset keys only; the overlays of
  ``configs/_base_/`` are those bases plus the model fixes an overlay needs.
* ``tools/train.py``: the synthetic data is chosen per task, ``--regenerate``,
  ``--load-partial``.
* Slow: Mask R-CNN, Panoptic FPN and RTMDet toys with FADE train and evaluate a few
  iterations on tiny generated data (through ``tools/train.py --synthetic`` and the stock
  mmdet ``train.py``), and ``Runner.from_cfg`` runs a demo config with no tool at all.
"""
from __future__ import annotations

import ast
import glob
import json
import math
import os
import os.path as osp
import runpy
import subprocess
import sys
from typing import Dict, List

import pytest
import torch

from runs import TIMEOUT, run_python, stock_tool

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(ROOT, 'configs')
DEMO = osp.join(CONFIGS, 'demo')
TOOLS = osp.join(ROOT, 'tools')

UPSAMPLERS = {'nearest': 'NearestUpsample', 'bilinear': None, 'carafe': 'CARAFE',
              'fade': 'FADE', 'fade-lite': 'FADELite'}
# Parameters of every demo model. The faster-rcnn and segformer-head rows are the counts of
# the configs before the by-role restructuring (same models, same numbers).
PARAMS: Dict[str, int] = {
    'faster-rcnn_r18-tiny_fpn-nearest_synthetic.py': 1_888_308,
    'faster-rcnn_r18-tiny_fpn-carafe_synthetic.py': 2_135_748,
    'faster-rcnn_r18-tiny_fpn-fade_synthetic.py': 1_979_292,
    'faster-rcnn_r18-tiny_fpn-fade-lite_synthetic.py': 1_902_468,
    'segformer-head_r18-tiny_bilinear_synthetic.py': 734_884,
    'segformer-head_r18-tiny_carafe_synthetic.py': 1_106_044,
    'segformer-head_r18-tiny_fade_synthetic.py': 871_360,
    'segformer-head_r18-tiny_fade-lite_synthetic.py': 756_124,
    'mask-rcnn_r18-tiny_fpn-nearest_synthetic.py': 2_052_728,
    'mask-rcnn_r18-tiny_fpn-carafe_synthetic.py': 2_300_168,
    'mask-rcnn_r18-tiny_fpn-fade_synthetic.py': 2_143_712,
    'mask-rcnn_r18-tiny_fpn-fade-lite_synthetic.py': 2_066_888,
    'panoptic-fpn_r18-tiny_fpn-nearest_synthetic.py': 2_043_964,
    'panoptic-fpn_r18-tiny_fpn-carafe_synthetic.py': 2_229_544,
    'panoptic-fpn_r18-tiny_fpn-fade_synthetic.py': 2_112_202,
    'panoptic-fpn_r18-tiny_fpn-fade-lite_synthetic.py': 2_054_584,
    'rtmdet_tiny-toy_pafpn-nearest_synthetic.py': 550_684,
    'rtmdet_tiny-toy_pafpn-carafe_synthetic.py': 672_356,
    'rtmdet_tiny-toy_pafpn-fade_synthetic.py': 592_048,
    'rtmdet_tiny-toy_pafpn-fade-lite_synthetic.py': 556_132,
}
# what a dataset base may define (as mmdet's / mmseg's _base_/datasets files)
DATASET_KEYS = {'dataset_type', 'data_root', 'classes', 'scale', 'crop_size', 'img_ratios',
                'train_pipeline', 'test_pipeline', 'tta_pipeline', 'train_dataloader',
                'val_dataloader', 'test_dataloader', 'val_evaluator', 'test_evaluator'}
OVERLAYS = ('synthetic_coco', 'synthetic_coco_instance', 'synthetic_coco_panoptic',
            'synthetic_ade')


def _config(path: str):
    from mmengine.config import Config
    return Config.fromfile(path)


def _tool(name: str) -> dict:
    return runpy.run_path(osp.join(TOOLS, name), run_name='fade_mm_tool')


def test_every_demo_config_is_listed():
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(DEMO, '*.py'))) == sorted(PARAMS)


@pytest.mark.parametrize('name', sorted(PARAMS))
def test_demo_config_builds_with_its_parameter_count(name):
    from mmengine.registry import MODELS, init_default_scope

    from fade_mm.tools import register_scope

    cfg = _config(osp.join(DEMO, name))
    register_scope(cfg.default_scope)
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    # from scratch, offline, on the synthetic data, with fade_mm's hooks
    assert 'Pretrained' not in json.dumps(cfg.model.to_dict(), default=str)
    assert cfg.train_dataloader.dataset.data_root.startswith('data/synthetic/')
    assert cfg.train_dataloader.num_workers == 0
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.default_hooks.checkpoint.type == 'SafeCheckpointHook'
    assert cfg.default_hooks.checkpoint.interval == cfg.train_cfg.max_iters
    assert {h['type'] for h in cfg.custom_hooks} == {'UpsamplerVisHook', 'RNGStateHook'}
    up = name.split('_')[-2]  # fpn-fade-lite, pafpn-fade, bilinear, ...
    up = up.split('-', 1)[1] if up.startswith(('fpn-', 'pafpn-')) else up
    found = cfg.model.get('neck', {}).get('upsample_cfg') or \
        cfg.model.get('decode_head', {}).get('upsample_cfg')
    assert (found or {}).get('type') == UPSAMPLERS[up]


def _bases(path: str) -> List[str]:
    with open(path) as f:
        tree = ast.parse(f.read())
    (node,) = [n for n in tree.body if isinstance(n, ast.Assign)
               and [t.id for t in n.targets if isinstance(t, ast.Name)] == ['_base_']]
    bases = ast.literal_eval(node.value)
    return [bases] if isinstance(bases, str) else bases


def test_demo_configs_are_by_role():
    """Baselines: a dataset base of ours, a schedule base of ours, a runtime base of ours
    (``_base_/toy_runtime_*.py``, over mmdet's / mmseg's default_runtime), a model base of
    mmdet / mmseg or ours, no full COCO / ADE20K config; the upsampler files: three lines
    over their baseline."""
    for name in PARAMS:
        bases = _bases(osp.join(DEMO, name))
        if 'nearest' in name or 'bilinear' in name:
            assert all('_base_/' in b for b in bases), (name, bases)
            assert sum('../_base_/datasets/synthetic_' in b for b in bases) == 1
            assert sum('../_base_/schedules/toy_iter' in b for b in bases) == 1
            assert sum(b.startswith('../_base_/toy_runtime_') for b in bases) == 1
        else:
            with open(osp.join(DEMO, name)) as f:
                assert len(f.read().strip().splitlines()) == 3
            assert len(bases) == 1 and bases[0].startswith('./') and \
                ('nearest' in bases[0] or 'bilinear' in bases[0])


def test_dataset_bases_hold_dataset_keys_only():
    for path in sorted(glob.glob(osp.join(CONFIGS, '_base_', 'datasets', '*.py'))):
        keys = set(_config(path).keys())
        assert keys <= DATASET_KEYS, (path, keys - DATASET_KEYS)
        assert {'train_dataloader', 'val_dataloader', 'val_evaluator'} <= keys, path


@pytest.mark.parametrize('name', OVERLAYS)
def test_overlay_is_the_dataset_base_plus_model_fixes(name):
    over = _config(osp.join(CONFIGS, '_base_', f'{name}.py')).to_dict()
    base = _config(osp.join(CONFIGS, '_base_', 'datasets', f'{name}.py')).to_dict()
    model = over.pop('model')
    assert model['backbone'] == {'init_cfg': None}
    if name != 'synthetic_ade':  # over a COCO config: drop its AspectRatioBatchSampler
        assert over['train_dataloader'].pop('batch_sampler', 'absent') is None
    assert over == base


def test_overlay_model_fixes_apply_where_the_model_has_them():
    from fade_mm.configs import apply_overlay
    rtmdet = _config(osp.join(CONFIGS, 'rtmdet', 'rtmdet_tiny_pafpn-fade_8xb32-300e_coco.py'))
    apply_overlay(rtmdet, osp.join(CONFIGS, '_base_', 'synthetic_coco.py'))
    assert rtmdet.model.bbox_head.num_classes == 4 and 'roi_head' not in rtmdet.model
    faster = _config(osp.join(CONFIGS, 'faster_rcnn',
                              'faster-rcnn_r50_fpn-fade_8xb2-1x_coco.py'))
    apply_overlay(faster, osp.join(CONFIGS, '_base_', 'synthetic_coco_instance.py'))
    assert faster.model.roi_head.bbox_head.num_classes == 4
    assert 'mask_head' not in faster.model.roi_head and 'bbox_head' not in faster.model


@pytest.mark.parametrize('config, overlay, kind', [
    ('faster_rcnn/faster-rcnn_r50_fpn-fade_8xb2-1x_coco.py', 'synthetic_coco.py', 'det'),
    ('mask_rcnn/mask-rcnn_r50_fpn-fade_8xb2-1x_coco.py', 'synthetic_coco_instance.py', 'det'),
    ('panoptic_fpn/panoptic-fpn_r50_fpn-fade_8xb2-1x_coco.py', 'synthetic_coco_panoptic.py',
     'pan'),
    ('rtmdet/rtmdet_tiny_pafpn-fade_8xb32-300e_coco.py', 'synthetic_coco.py', 'det'),
    ('segformer/segformer_mit-b0_fade_8xb2-160k_ade20k-512x512.py', 'synthetic_ade.py',
     'seg'),
    ('demo/mask-rcnn_r18-tiny_fpn-fade_synthetic.py', 'synthetic_coco_instance.py', 'det'),
    ('demo/panoptic-fpn_r18-tiny_fpn-fade_synthetic.py', 'synthetic_coco_panoptic.py', 'pan'),
    ('demo/rtmdet_tiny-toy_pafpn-fade_synthetic.py', 'synthetic_coco.py', 'det'),
])
def test_synthetic_data_is_chosen_per_task(config, overlay, kind):
    from fade_mm.runner import synthetic_task
    task = synthetic_task(_config(osp.join(CONFIGS, config)))
    assert (task.overlay, task.kind) == (overlay, kind)
    assert task.default_root == osp.join('data', 'synthetic', kind)


def test_synthetic_root_is_optional():
    parse = _tool('train.py')['parse_args']
    cfg = osp.join(DEMO, 'rtmdet_tiny-toy_pafpn-fade_synthetic.py')
    assert parse([cfg]).synthetic is None
    assert parse([cfg, '--synthetic']).synthetic == ''  # the task's data/synthetic/KIND
    assert parse([cfg, '--synthetic', 'd/x', '--regenerate']).synthetic == 'd/x'


def test_synthetic_refuses_a_damaged_root_unless_regenerate(tmp_path):
    from fade_mm import cli
    from fade_mm.datasets import make_synthetic_coco
    from fade_mm.runner import apply_synthetic
    root = str(tmp_path / 'det')
    make_synthetic_coco(root, num_train=2, num_val=1, image_size=64, seed=0)
    image = sorted(glob.glob(osp.join(root, 'train', '*')))[0]
    with open(image, 'r+b') as f:
        f.truncate(10)  # a half-written file
    cfg = _config(osp.join(DEMO, 'faster-rcnn_r18-tiny_fpn-fade_synthetic.py'))
    with pytest.raises(cli.UsageError) as err:
        apply_synthetic(cfg, root)
    assert '\n' not in str(err.value) and root in str(err.value)
    assert 'truncated' in str(err.value) and '--regenerate' in str(err.value)

    apply_synthetic(cfg, root, regenerate=True)  # redrawn with the same arguments
    assert os.path.getsize(image) > 10
    assert cfg.train_dataloader.dataset.data_root == root
    assert cfg.val_evaluator.ann_file == osp.join(root, 'annotations', 'instances_val.json')
    with pytest.raises(SystemExit) as exit_:  # --regenerate alone: a usage error
        _tool('train.py')['parse_args']([
            osp.join(DEMO, 'faster-rcnn_r18-tiny_fpn-fade_synthetic.py'), '--regenerate'])
    assert exit_.value.code == 2


def test_load_partial_sets_strict_keys_off():
    from fade_mm.runner import load_config
    train = _tool('train.py')
    cfg_path = osp.join(DEMO, 'segformer-head_r18-tiny_fade_synthetic.py')
    args = train['parse_args']([cfg_path, '--load-partial'])
    cfg = load_config(args)
    assert cfg.default_hooks.checkpoint.strict_keys is False
    assert 'strict_keys' not in load_config(train['parse_args']([cfg_path])) \
        .default_hooks.checkpoint
    test_args = _tool('test.py')['parse_args']([cfg_path, 'x.pth', '--load-partial'])
    assert test_args.load_partial
    from fade_mm import cli
    args = train['parse_args']([cfg_path, '--load-partial', '--cfg-options',
                                'default_hooks.checkpoint.type=CheckpointHook'])
    with pytest.raises(cli.UsageError, match='SafeCheckpointHook'):
        load_config(args)


# ------------------------------------------------------------------ runs (slow, subprocesses)

def _val_scalars(work_dir: str) -> dict:
    """The last validation record of the run's scalars.json."""
    (path,) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    (val,) = [r for r in records if any('/' in k for k in r)]
    return val


TINY = dict(num_train=4, num_val=2, image_size=((96, 128), (96, 128)), seed=0)
ITERS = 6
SHORT = ['--cfg-options', f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
         f'default_hooks.checkpoint.interval={ITERS}', 'default_hooks.logger.interval=1',
         'custom_hooks=[]']


def _finite(val: dict, keys: List[str]) -> None:
    missing = [k for k in keys if k not in val]
    assert not missing, (missing, sorted(val))
    assert all(math.isfinite(val[k]) for k in keys), {k: val[k] for k in keys}


@pytest.mark.slow
@pytest.mark.threads
def test_mask_rcnn_fade_toy_trains_and_evaluates(tmp_path):
    from fade_mm.datasets import make_synthetic_coco
    data = str(tmp_path / 'det')
    make_synthetic_coco(data, **TINY)
    work = str(tmp_path / 'work')
    run_python([osp.join(TOOLS, 'train.py'),
                osp.join(DEMO, 'mask-rcnn_r18-tiny_fpn-fade_synthetic.py'),
                '--synthetic', data, '--work-dir', work, *SHORT], cwd=str(tmp_path))
    val = _val_scalars(work)
    _finite(val, ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'])
    assert osp.isfile(osp.join(work, f'iter_{ITERS}.pth'))


@pytest.mark.slow
@pytest.mark.threads
def test_panoptic_fpn_fade_toy_trains_and_evaluates(tmp_path):
    from fade_mm.datasets import make_synthetic_coco_panoptic
    data = str(tmp_path / 'pan')
    make_synthetic_coco_panoptic(data, **TINY)
    work = str(tmp_path / 'work')
    run_python([osp.join(TOOLS, 'train.py'),
                osp.join(DEMO, 'panoptic-fpn_r18-tiny_fpn-fade_synthetic.py'),
                '--synthetic', data, '--work-dir', work, *SHORT], cwd=str(tmp_path))
    val = _val_scalars(work)
    _finite(val, ['coco_panoptic/PQ', 'coco_panoptic/SQ', 'coco_panoptic/RQ',
                  'coco_panoptic/PQ_st'])
    assert osp.isfile(osp.join(work, f'iter_{ITERS}.pth'))


@pytest.mark.slow
@pytest.mark.threads
def test_rtmdet_fade_toy_trains_and_evaluates_with_the_stock_tool(tmp_path):
    """The by-role config runs unchanged under mmdet's own train.py (its data root is
    relative to the working directory)."""
    from fade_mm.datasets import make_synthetic_coco
    make_synthetic_coco(str(tmp_path / 'data' / 'synthetic' / 'det'), **TINY)
    work = str(tmp_path / 'work')
    run_python([stock_tool('mmdet', 'train.py'),
                osp.join(DEMO, 'rtmdet_tiny-toy_pafpn-fade_synthetic.py'),
                '--work-dir', work, *SHORT], cwd=str(tmp_path))
    val = _val_scalars(work)
    _finite(val, ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'])
    assert osp.isfile(osp.join(work, f'iter_{ITERS}.pth'))


@pytest.mark.slow
def test_test_tool_load_partial_loads_another_upsamplers_checkpoint(tmp_path):
    """FADE weights into the CARAFE toy: refused by the checkpoint hook (exit 1, one line),
    loaded with --load-partial (the CARAFE upsamplers keep their initialisation)."""
    from mmengine.registry import MODELS, init_default_scope

    from fade_mm.datasets import make_synthetic_ade
    make_synthetic_ade(str(tmp_path / 'data' / 'synthetic' / 'seg'), num_train=1, num_val=1,
                       image_size=64, seed=0)
    from fade_mm.tools import register_scope
    fade = _config(osp.join(DEMO, 'segformer-head_r18-tiny_fade_synthetic.py'))
    register_scope('mmseg')
    init_default_scope('mmseg')
    ckpt = str(tmp_path / 'fade.pth')
    torch.save(dict(meta=dict(cfg=fade.pretty_text),
                    state_dict=MODELS.build(fade.model).state_dict()), ckpt)
    carafe = osp.join(DEMO, 'segformer-head_r18-tiny_carafe_synthetic.py')
    args = [osp.join(TOOLS, 'test.py'), carafe, ckpt]
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *args, '--work-dir', 'refused'], cwd=str(tmp_path),
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith('test.py: error: The checkpoint does not fit the model outside '
                           'its backbone'), line

    run_python([*args, '--work-dir', 'partial', '--load-partial'], cwd=str(tmp_path))
    (path,) = [p for p in glob.glob(str(tmp_path / 'partial' / '*' / '*.json'))
               if osp.basename(p)[:-5] == osp.basename(osp.dirname(p))]
    with open(path) as f:
        assert math.isfinite(json.load(f)['mIoU'])


@pytest.mark.slow
@pytest.mark.threads
def test_runner_from_cfg_runs_a_demo_config_without_a_tool(tmp_path, monkeypatch):
    from mmengine.runner import Runner

    from fade_mm.datasets import make_synthetic_coco
    monkeypatch.chdir(tmp_path)
    make_synthetic_coco(osp.join('data', 'synthetic', 'det'), **TINY)
    cfg = _config(osp.join(DEMO, 'faster-rcnn_r18-tiny_fpn-fade_synthetic.py'))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = 2
    cfg.default_hooks.checkpoint.interval = 2
    cfg.custom_hooks = []
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Runner.from_cfg(cfg).train()
    finally:
        torch.set_num_threads(n)
    assert osp.isfile(osp.join(cfg.work_dir, 'iter_2.pth'))
    _finite(_val_scalars(cfg.work_dir), ['coco/bbox_mAP', 'coco/bbox_mAP_50'])
