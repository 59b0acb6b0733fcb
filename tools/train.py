"""Train an mmdet or mmseg model with fade_mm's upsamplers on the stock mmengine Runner.

Same arguments as mmdet's / mmseg's ``tools/train.py``; the package (mmdet or mmseg) is picked
from the config's ``default_scope``. Extras: ``--synthetic [DATA_ROOT]`` runs any full COCO /
ADE20K config of this repository offline on fade_mm's synthetic data of its task (generated on
first use, verified against its manifest afterwards; every pretrained source is cleared; the
demo configs read that data through their dataset bases, the flag only generates it),
``--regenerate`` rebuilds a half-written or old data root, ``--load-partial``
loads a checkpoint whose neck or heads differ (fine-tuning), and ``--trust-checkpoint`` opts
in to unpickling a trusted checkpoint in full. Runner checkpoints load with
``weights_only=True`` on torch >= 2.6 through an allow-list (:mod:`fade_mm.compat`), as with
the stock tools.

What it shares with ``tools/test.py`` (the common options, loading the config, building the
Runner) is :mod:`fade_mm.runner`.

A config named ``..._8xb2-...`` is laid out for 8 GPUs x 2 images: its learning rate is for
batch 16. Train it with ``bash tools/dist_train.sh CONFIG 8``, or on fewer GPUs with
``--auto-scale-lr`` (mmdet configs); a run whose batch differs gets a warning.

Examples::

    bash tools/dist_train.sh configs/faster_rcnn/faster-rcnn_r50_fpn-fade_8xb2-1x_coco.py 8
    python tools/train.py configs/faster_rcnn/faster-rcnn_r50_fpn-fade_8xb2-1x_coco.py \\
        --auto-scale-lr                                   # batch 2: lr 0.02 * 2/16
    python tools/train.py configs/segformer/segformer_mit-b1_fade_1xb16-160k_ade20k-512x512.py
    python tools/train.py configs/faster_rcnn/faster-rcnn_r50_fpn-fade_8xb2-1x_coco.py \\
        --synthetic data/synthetic/det --cfg-options train_cfg.max_epochs=1
    python tools/train.py configs/demo/mask-rcnn_r18-tiny_fpn-fade_synthetic.py --synthetic
    python tools/train.py CONFIG --resume                 # latest checkpoint of the work dir
    python tools/train.py CONFIG --resume work_dirs/x/iter_4000.pth
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import warnings
from typing import List, Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # run from a checkout without `pip install -e .` too

from fade_mm import cli  # noqa: E402
from fade_mm.runner import (  # noqa: E402
    TRUST_NOTE,
    add_common_args,
    build_runner,
    check_args,
    check_checkpoints,
    enable_amp,
    layout_warning,
    load_config,
    resume_source_warning,
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses train.py's command line (mmdet's tools/train.py arguments plus --synthetic,
    --regenerate, --load-partial and --trust-checkpoint).

    Usage errors (a missing config file included) exit with one line and status 2."""
    parser = cli.ArgumentParser(
        prog='train.py', description='Train a fade_mm detector (mmdet) or segmentor (mmseg).',
        epilog=TRUST_NOTE)
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision: float16 AmpOptimWrapper with CUDA, '
                        'bfloat16 CPU autocast (CPUAmpOptimWrapper) without')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size (GPUs x '
                        'batch per GPU) over the config\'s auto_scale_lr.base_batch_size (16 for '
                        'the 8xb2 Faster R-CNN configs; mmdet configs)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto', metavar='CHECKPOINT',
                        help='resume from CHECKPOINT (a local runner checkpoint); without a '
                        'path, from the one the work dir\'s last_checkpoint file names')
    add_common_args(parser)
    args = parser.parse_args(argv)
    check_args(parser, args)  # sets LOCAL_RANK too
    return args


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: parse, configure, build the Runner, train."""
    args = parse_args(argv)
    cfg = load_config(args)

    if args.amp:
        enable_amp(cfg)

    if args.auto_scale_lr:
        if 'enable' not in cfg.get('auto_scale_lr', {}) \
                or 'base_batch_size' not in cfg.auto_scale_lr:
            raise cli.UsageError('--auto-scale-lr needs auto_scale_lr.enable and '
                                 'auto_scale_lr.base_batch_size in the config (mmdet '
                                 'configs have them): add them with --cfg-options, or drop '
                                 '--auto-scale-lr')
        cfg.auto_scale_lr.enable = True

    # An explicit checkpoint wins over finding the latest one in the work dir.
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    check_checkpoints(cfg, '--resume' if args.resume not in (None, 'auto') else 'load_from')

    if args.synthetic is None:
        world_size = int(os.environ.get('WORLD_SIZE', '1')) if args.launcher != 'none' else 1
        message = layout_warning(cfg, args.config, world_size)
        if message:
            warnings.warn(message, stacklevel=1)
    message = resume_source_warning(cfg)
    if message:
        warnings.warn(message, stacklevel=1)

    runner = build_runner(cfg, args.trust_checkpoint)
    runner.train()


if __name__ == '__main__':
    cli.run_cli(main, prog='train.py')
