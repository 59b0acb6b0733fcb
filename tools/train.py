"""Train an mmdet or mmseg model with fade_mm's upsamplers on the stock mmengine Runner.

Same arguments as mmdet's / mmseg's ``tools/train.py``; the package (mmdet or mmseg) is picked
from the config's ``default_scope``. Extras: ``--synthetic DATA_ROOT`` runs any config of this
repository on fade_mm's synthetic data (generated on first use), and runner checkpoints load on
torch >= 2.6 (see :mod:`fade_mm.compat`).

Examples::

    python tools/train.py configs/segformer/segformer_mit-b0_fade_1xb16-160k_ade20k-512x512.py
    python tools/train.py configs/faster_rcnn/faster-rcnn_r50_fpn-fade_1x_coco.py \\
        --synthetic data/synthetic/det --cfg-options train_cfg.max_epochs=1
    python tools/train.py CONFIG --resume                 # latest checkpoint of the work dir
    python tools/train.py CONFIG --resume work_dirs/x/iter_4000.pth
    bash tools/dist_train.sh CONFIG 8                     # torchrun, --launcher pytorch
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import os.path as osp
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence

from mmengine.config import Config, DictAction

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # run from a checkout without `pip install -e .` too

from fade_mm.compat import (adapt_to_cpu, init_dist_without_cuda,  # noqa: E402
                            trust_local_checkpoints)

# default_scope -> the fade_mm adapter package and the synthetic-data overlay / generator.
SCOPES: Dict[str, Dict[str, str]] = {
    'mmdet': dict(plugin='fade_mm.det', overlay='synthetic_coco.py',
                  generator='fade_mm.datasets.synthetic_det:make_synthetic_coco'),
    'mmseg': dict(plugin='fade_mm.seg', overlay='synthetic_ade.py',
                  generator='fade_mm.datasets.synthetic_seg:make_synthetic_ade'),
}

TRUST_NOTE = ('Checkpoints are unpickled in full (torch.load(weights_only=False), needed for '
              'runner checkpoints on torch >= 2.6): load only trusted local files.')

CFG_OPTIONS_HELP = ('override settings of the config, key=value pairs merged into it (after '
                    '--synthetic), e.g. train_cfg.max_iters=100 '
                    'train_dataloader.batch_size=2; lists as key="[a,b]" or key=a,b; no spaces.')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Adds the arguments that train.py and test.py share (after the positional ones)."""
    parser.add_argument('--work-dir', help='directory for logs, checkpoints and metric dumps '
                        '(default: the config\'s work_dir or ./work_dirs/CONFIG_NAME)')
    parser.add_argument('--synthetic', metavar='DATA_ROOT',
                        help='run on fade_mm\'s synthetic data at DATA_ROOT (COCO-style for '
                        'mmdet configs, ADE-style for mmseg configs), merging '
                        'configs/_base_/synthetic_{coco,ade}.py over the config; the data is '
                        'generated there with the package generator if DATA_ROOT does not '
                        'exist')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help=CFG_OPTIONS_HELP)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher (torchrun: pytorch); without CUDA '
                        'the gloo backend is used')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank; torchrun
    # sets LOCAL_RANK in the environment instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses train.py's command line (mmdet's tools/train.py arguments plus --synthetic)."""
    parser = argparse.ArgumentParser(
        description='Train a fade_mm detector (mmdet) or segmentor (mmseg).',
        epilog=TRUST_NOTE)
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision training (needs a GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size (mmdet configs '
                        'with auto_scale_lr)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto', metavar='CHECKPOINT',
                        help='resume from CHECKPOINT (a trusted local runner checkpoint); '
                        'without a path, from the latest checkpoint in the work dir')
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def scope_of(cfg: Config, config_path: str) -> str:
    """Returns the config's ``default_scope`` ('mmdet' or 'mmseg').

    Raises:
        ValueError: For a config without a supported ``default_scope``.
    """
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'{config_path}: default_scope is {scope!r}; fade_mm tools support '
                         f'{sorted(SCOPES)}')
    return scope


def register_scope(scope: str) -> None:
    """Registers the modules of mmdet/mmseg and fade_mm's adapters for that scope."""
    # init_default_scope=False: the Runner sets the scope itself from cfg.default_scope.
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    importlib.import_module(SCOPES[scope]['plugin'])


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    # Every rank of a torchrun job starts the tool: only one may generate the data, the others
    # must wait for it rather than read half-written files.
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    with open(path, 'a') as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: single-process use only
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def apply_synthetic(cfg: Config, data_root: str, scope: str) -> Config:
    """Points ``cfg`` at the synthetic data of its scope, generating the data if missing.

    Args:
        cfg: Loaded config (modified in place).
        data_root: Dataset root; generated with the package generator (default sizes) when it
            does not exist yet. An existing root is used as it is.
        scope: 'mmdet' or 'mmseg'.

    Returns:
        ``cfg``.
    """
    from fade_mm.configs import apply_overlay

    data_root = osp.abspath(data_root)
    with _file_lock(data_root.rstrip(os.sep) + '.lock'):
        if not osp.exists(data_root):
            module, func = SCOPES[scope]['generator'].split(':')
            getattr(importlib.import_module(module), func)(data_root)
    overlay = osp.join(REPO_ROOT, 'configs', '_base_', SCOPES[scope]['overlay'])
    apply_overlay(cfg, overlay, data_root=data_root)
    # The overlays train with an InfiniteSampler (made for IterBasedTrainLoop); under an
    # epoch-based loop (mmdet's 1x schedule) an epoch would then never end.
    loop = cfg.get('train_cfg') or {}
    sampler = cfg.get('train_dataloader', {}).get('sampler') or {}
    if loop.get('type') == 'EpochBasedTrainLoop' and sampler.get('type') == 'InfiniteSampler':
        cfg.train_dataloader.sampler = dict(type='DefaultSampler',
                                            shuffle=sampler.get('shuffle', True))
    return cfg


def load_config(args: argparse.Namespace) -> Config:
    """Loads the config and applies the common options, in mmdet's order of priority.

    ``--synthetic`` first, then ``--cfg-options`` (so they can override the overlay), then the
    work dir (CLI > config > ./work_dirs/CONFIG_NAME), then the CPU adaptations. Registers the
    scope's modules and fade_mm's plugin.
    """
    cfg = Config.fromfile(args.config)
    scope = scope_of(cfg, args.config)
    register_scope(scope)
    cfg.launcher = args.launcher
    if args.synthetic:
        apply_synthetic(cfg, args.synthetic, scope)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    adapt_to_cpu(cfg)
    return cfg


def build_runner(cfg: Config) -> Any:
    """Builds the stock ``Runner`` (or ``cfg.runner_type`` from the scope's registry)."""
    from mmengine.runner import Runner

    # Runner checkpoints are pickles; they only load on torch >= 2.6 with this (local files).
    trust_local_checkpoints()
    # Without CUDA mmengine's own init_dist would call torch.cuda.set_device: do it first.
    init_dist_without_cuda(cfg.launcher, cfg.get('env_cfg'))
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: parse, configure, build the Runner, train."""
    args = parse_args(argv)
    cfg = load_config(args)

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper not in ('OptimWrapper', 'AmpOptimWrapper'):
            raise ValueError(f'--amp needs optim_wrapper.type OptimWrapper, got {optim_wrapper}')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.auto_scale_lr:
        if 'enable' not in cfg.get('auto_scale_lr', {}) \
                or 'base_batch_size' not in cfg.auto_scale_lr:
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr.enable and '
                               'auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True

    # An explicit checkpoint wins over finding the latest one in the work dir.
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()
