"""Test (and evaluate) an mmdet or mmseg checkpoint with fade_mm's upsamplers.

Same arguments as mmdet's / mmseg's ``tools/test.py``; the package is picked from the
config's ``default_scope``. ``--out`` keeps each package's meaning: a ``.pkl`` file of raw
predictions for mmdet configs, a directory of prediction PNGs for mmseg configs. Metrics are
printed and dumped to ``WORK_DIR/TIMESTAMP/TIMESTAMP.json``.

The checkpoint loads with ``weights_only=True`` and fade_mm's allow-list of runner-checkpoint
globals; ``--trust-checkpoint`` unpickles a trusted file in full.

What it shares with ``tools/train.py`` (the common options, loading the config, building the
Runner) is :mod:`fade_mm.runner`.

Examples::

    python tools/test.py CONFIG work_dirs/x/iter_4000.pth
    python tools/test.py CONFIG CKPT --out work_dirs/x/preds      # mmseg: PNGs, mIoU + bIoU
    python tools/test.py CONFIG CKPT --synthetic data/synthetic/seg --work-dir work_dirs/t
    python tools/test.py CONFIG CKPT --load-partial   # neck/heads of CKPT differ: load anyway
    bash tools/dist_test.sh CONFIG CKPT 8
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import warnings
from copy import deepcopy
from typing import Any, List, Optional, Sequence

from mmengine.config import Config, ConfigDict

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # run from a checkout without `pip install -e .` too

from fade_mm import cli  # noqa: E402
from fade_mm.runner import (  # noqa: E402
    TRUST_NOTE,
    add_common_args,
    build_runner,
    check_args,
    dump_test_metrics_on_main_process,
    load_config,
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses test.py's command line (mmdet's/mmseg's tools/test.py arguments plus
    --synthetic, --regenerate, --load-partial and --trust-checkpoint)."""
    parser = cli.ArgumentParser(
        prog='test.py',
        description='Test (and evaluate) a fade_mm detector (mmdet) or segmentor (mmseg).',
        epilog=TRUST_NOTE)
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file (loaded weights-only with '
                        'the runner allow-list; see --trust-checkpoint)')
    parser.add_argument('--out', help='mmdet: .pkl file for the raw predictions; mmseg: '
                        'directory for the prediction PNGs (offline evaluation)')
    parser.add_argument('--show', action='store_true', help='show predictions (needs a '
                        'display)')
    parser.add_argument('--show-dir', help='save painted predictions here (relative to '
                        'WORK_DIR/TIMESTAMP for mmdet, as given for mmseg)')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds per shown image')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (the '
                        'config\'s tta_model/tta_pipeline; mmdet: flip TTA by default)')
    add_common_args(parser)
    args = parser.parse_args(argv)
    check_args(parser, args)  # sets LOCAL_RANK too
    return args


def _enable_visualization(cfg: Config, args: argparse.Namespace) -> None:
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise cli.UsageError('--show/--show-dir need default_hooks.visualization in the '
                             'config')
    hook = hooks['visualization']
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if cfg.default_scope == 'mmdet':
            hook['test_out_dir'] = args.show_dir  # DetVisualizationHook's own option
        else:
            cfg.visualizer['save_dir'] = args.show_dir  # SegVisualizationHook has none


def _enable_tta(cfg: Config) -> None:
    if cfg.default_scope == 'mmdet':
        # mmdet's default: horizontal-flip TTA merged by NMS when the config has none.
        if 'tta_model' not in cfg:
            warnings.warn('no tta_model in the config: using flip TTA with NMS 0.5')
            cfg.tta_model = dict(type='DetTTAModel',
                                 tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                                              max_per_img=100))
        if 'tta_pipeline' not in cfg:
            warnings.warn('no tta_pipeline in the config: flipping the test pipeline')
            data = cfg.test_dataloader.dataset
            while 'dataset' in data:
                data = data['dataset']
            pipeline = deepcopy(data.pipeline)
            pipeline[-1] = dict(type='TestTimeAug', transforms=[
                [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                [dict(type='PackDetInputs',
                      meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                 'scale_factor', 'flip', 'flip_direction'))]])
            cfg.tta_pipeline = pipeline
    elif 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise cli.UsageError('--tta needs tta_model and tta_pipeline in the config (mmseg '
                             'configs)')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


# metrics that write prediction PNGs under `output_dir` (mmseg's IoUMetric and ours)
PNG_METRICS = ('IoUMetric', 'IoUBoundaryMetric')


def _seg_output_dir(cfg: Config, out_dir: str) -> None:
    # As mmseg's test.py: the metric writes the PNGs. Our configs evaluate mIoU and bIoU in
    # one IoUBoundaryMetric; a list holding an IoUMetric works here too.
    evaluators = cfg.test_evaluator
    found = False
    for ev in evaluators if isinstance(evaluators, list) else [evaluators]:
        if ev.get('type') in PNG_METRICS:
            ev['output_dir'] = out_dir
            ev['keep_results'] = True
            found = True
    if not found:
        types = [ev.get('type') for ev in (evaluators if isinstance(evaluators, list)
                                           else [evaluators])]
        raise cli.UsageError(f'--out: test_evaluator must hold one of {PNG_METRICS} '
                             f'(mmseg), got {types}')


def main(argv: Optional[List[str]] = None) -> Any:
    """Entry point: parse, configure, build the Runner, test. Returns the metrics."""
    args = parse_args(argv)
    # before the config, model and data: a missing or damaged file fails in a second
    cli.check_checkpoint(args.checkpoint, 'CHECKPOINT')
    cfg = load_config(args)
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        _enable_visualization(cfg, args)
    if args.tta:
        _enable_tta(cfg)
    if args.out is not None and cfg.default_scope == 'mmseg':
        _seg_output_dir(cfg, args.out)
    if args.out is not None and cfg.default_scope == 'mmdet' \
            and not args.out.endswith(('.pkl', '.pickle')):
        raise cli.UsageError(f'--out must be a .pkl/.pickle file for mmdet configs: '
                             f'{args.out}')

    runner = build_runner(cfg, args.trust_checkpoint)
    dump_test_metrics_on_main_process(runner)  # one writer of WORK_DIR/TIMESTAMP/*.json
    if args.out is not None and cfg.default_scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    return runner.test()


if __name__ == '__main__':
    cli.run_cli(main, prog='test.py')
