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
import importlib
import os
import os.path as osp
import re
import sys
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from mmengine.config import Config

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # run from a checkout without `pip install -e .` too

from fade_mm import cli  # noqa: E402
from fade_mm.compat import (adapt_to_cpu, init_dist_without_cuda,  # noqa: E402
                            install_safe_checkpoint_loading, trust_local_checkpoints)

# default_scope -> the fade_mm adapter package
SCOPES: Dict[str, Dict[str, str]] = {
    'mmdet': dict(plugin='fade_mm.det'),
    'mmseg': dict(plugin='fade_mm.seg'),
}

TRUST_NOTE = ('Checkpoints load with torch.load(weights_only=True) and an allow-list of what '
              'mmengine runner checkpoints hold (fade_mm.compat); a file that needs more is '
              'refused with a one-line error naming it and the global. --trust-checkpoint '
              'unpickles local checkpoints in full: use it for trusted local files only.')
# `{gpus}x{batch}` in an OpenMMLab config name, e.g. 8xb2 in faster-rcnn_..._8xb2-1x_coco.py
LAYOUT = re.compile(r'_(\d+)xb(\d+)-')

CFG_OPTIONS_HELP = ('override settings of the config, key=value pairs merged into it (after '
                    '--synthetic), e.g. train_cfg.max_iters=100 '
                    'train_dataloader.batch_size=2; lists as key="[a,b]" or key=a,b; no spaces.')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Adds the arguments that train.py and test.py share (after the positional ones)."""
    parser.add_argument('--work-dir', help='directory for logs, checkpoints and metric dumps '
                        '(default: the config\'s work_dir or ./work_dirs/CONFIG_NAME)')
    parser.add_argument('--synthetic', metavar='DATA_ROOT', nargs='?', const='',
                        help='run a full COCO / ADE20K config on fade_mm\'s synthetic data of '
                        'its task at DATA_ROOT (default data/synthetic/KIND), merging the '
                        'task\'s overlay configs/_base_/synthetic_*.py over the config: '
                        'segmentation for mmseg configs (KIND seg), panoptic for a '
                        'PanopticFPN model (pan), instances with masks for a model with '
                        'roi_head.mask_head (det), detection otherwise (det). A missing '
                        'root is generated (default sizes, seed 0); an existing one must '
                        'verify against its manifest. The demo configs (configs/demo) read that '
                        'data already: for them the flag only generates it')
    parser.add_argument('--regenerate', action='store_true',
                        help='with --synthetic: rebuild a half-written or old synthetic data '
                        'root instead of refusing it (a valid root is kept)')
    parser.add_argument('--load-partial', action='store_true',
                        help='load a checkpoint whose neck or heads differ from the model\'s '
                        '(deliberate fine-tuning): sets default_hooks.checkpoint.strict_keys='
                        'False on the SafeCheckpointHook, which refuses such checkpoints '
                        'otherwise')
    parser.add_argument('--cfg-options', nargs='+', action=cli.DictAction,
                        help=CFG_OPTIONS_HELP)
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='unpickle local checkpoints in full (weights_only=False) when they '
                        'need more than the runner-checkpoint allow-list: only for files you '
                        'trust, unpickling can run code')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher (torchrun: pytorch); without CUDA '
                        'the gloo backend is used')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank; torchrun
    # sets LOCAL_RANK in the environment instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)


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
    check_args(parser, args)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The checks train.py and test.py share, before anything is built: --regenerate comes
    with --synthetic, the config file exists and parses, the launcher's environment is
    there."""
    if args.regenerate and args.synthetic is None:
        parser.error('--regenerate rebuilds the data of --synthetic: add --synthetic')
    try:
        cli.check_config_file(args.config)
        cli.check_launcher(args.launcher)
    except cli.UsageError as err:
        parser.error(str(err))


def scope_of(cfg: Config, config_path: str) -> str:
    """Returns the config's ``default_scope`` ('mmdet' or 'mmseg').

    Raises:
        ValueError: For a config without a supported ``default_scope``.
    """
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise cli.UsageError(f'{config_path}: default_scope is {scope!r}; fade_mm tools '
                             f'support {sorted(SCOPES)} (an mmdet or mmseg config)')
    return scope


def register_scope(scope: str) -> None:
    """Registers the modules of mmdet/mmseg and fade_mm's adapters for that scope."""
    # init_default_scope=False: the Runner sets the scope itself from cfg.default_scope.
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    importlib.import_module(SCOPES[scope]['plugin'])


class SyntheticTask(NamedTuple):
    """The synthetic data of a config's task: the overlay merged over the config
    (``configs/_base_/OVERLAY``) and the data kind of
    :func:`fade_mm.datasets.ensure_synthetic`, also the default root's name."""
    overlay: str
    kind: str

    @property
    def default_root(self) -> str:
        return osp.join('data', 'synthetic', self.kind)


def synthetic_task(cfg: Config) -> SyntheticTask:
    """The synthetic data that fits the config's task (by its model, not its scope alone):
    ADE-style segmentation for mmseg, COCO panoptic for a ``PanopticFPN``, COCO instances
    (the detection data, which carries masks) for a model with ``roi_head.mask_head``, COCO
    detection otherwise."""
    if scope_of(cfg, cfg.filename or 'config') == 'mmseg':
        return SyntheticTask('synthetic_ade.py', 'seg')
    model = cfg.get('model') or {}
    if model.get('type') == 'PanopticFPN':
        return SyntheticTask('synthetic_coco_panoptic.py', 'pan')
    if (model.get('roi_head') or {}).get('mask_head'):
        return SyntheticTask('synthetic_coco_instance.py', 'det')
    return SyntheticTask('synthetic_coco.py', 'det')


def apply_synthetic(cfg: Config, data_root: Optional[str] = None,
                    regenerate: bool = False) -> Config:
    """Points ``cfg`` at the synthetic data of its task (:func:`synthetic_task`).

    Args:
        cfg: Loaded config (modified in place).
        data_root: Dataset root (default ``data/synthetic/KIND``). A missing root is
            generated with the package generator (default sizes, seed 0; concurrent ranks
            generate once); an existing one is used as it is once it verifies against its
            manifest (:func:`fade_mm.datasets.ensure_synthetic`).
        regenerate: Rebuild a half-written, damaged or old root instead of refusing it.

    Returns:
        ``cfg``.

    Raises:
        fade_mm.cli.UsageError: The root is half-written, damaged, of another kind or not
            fade_mm's (one line naming the problem and the fix).
    """
    from fade_mm.configs import apply_overlay, clear_pretrained
    from fade_mm.datasets import SyntheticDataError, ensure_synthetic

    task = synthetic_task(cfg)
    data_root = osp.abspath(data_root or task.default_root)
    try:
        ensure_synthetic(data_root, task.kind, regenerate=regenerate)
    except SyntheticDataError as err:
        raise cli.UsageError(f'--synthetic: {err}') from None
    overlay = osp.join(REPO_ROOT, 'configs', '_base_', task.overlay)
    apply_overlay(cfg, overlay, data_root=data_root)
    # offline: no pretrained weights (model.pretrained, Pretrained init_cfgs) are fetched
    clear_pretrained(cfg)
    # The overlays train with an InfiniteSampler (made for IterBasedTrainLoop); under an
    # epoch-based loop (mmdet's 1x schedule) an epoch would then never end.
    loop = cfg.get('train_cfg') or {}
    sampler = cfg.get('train_dataloader', {}).get('sampler') or {}
    if loop.get('type') == 'EpochBasedTrainLoop' and sampler.get('type') == 'InfiniteSampler':
        cfg.train_dataloader.sampler = dict(type='DefaultSampler',
                                            shuffle=sampler.get('shuffle', True))
    return cfg


def allow_partial_loading(cfg: Config) -> None:
    """``--load-partial``: lets the checkpoint hook load a checkpoint whose neck or heads
    differ from the model's (``strict_keys=False`` of fade_mm's SafeCheckpointHook).

    Raises:
        fade_mm.cli.UsageError: The config's checkpoint hook is not a SafeCheckpointHook
            (mmengine's own hook does not check the keys, and takes no such argument).
    """
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    if hook.get('type') != 'SafeCheckpointHook':
        raise cli.UsageError(f'--load-partial: the checkpoint hook is {hook.get("type")!r}, '
                             'which loads without key checks; the flag applies to '
                             'SafeCheckpointHook (fade_mm.engine) only: drop it')
    hook['strict_keys'] = False


def load_config(args: argparse.Namespace) -> Config:
    """Loads the config and applies the common options, in mmdet's order of priority.

    ``--synthetic`` first, then ``--cfg-options`` (so they can override the overlay), then
    ``--load-partial``, the work dir (CLI > config > ./work_dirs/CONFIG_NAME), then the CPU
    adaptations. Registers the scope's modules and fade_mm's plugin.
    """
    cfg = Config.fromfile(args.config)
    scope = scope_of(cfg, args.config)
    register_scope(scope)
    cfg.launcher = args.launcher
    if args.synthetic is not None:
        apply_synthetic(cfg, args.synthetic or None, regenerate=args.regenerate)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.load_partial:
        allow_partial_loading(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    adapt_to_cpu(cfg)
    return cfg


def layout_warning(cfg: Config, config_path: str, world_size: int) -> Optional[str]:
    """A one-line warning when the run's batch differs from the config name's layout.

    ``..._8xb2-...`` means 8 GPUs x 2 images, batch 16, and the config's learning rate is
    for that batch. Returns None when the batch matches, or when the learning rate will be
    scaled (``auto_scale_lr.enable``, set by ``--auto-scale-lr``).
    """
    match = LAYOUT.search(osp.basename(config_path))
    loader = cfg.get('train_dataloader') or {}
    if match is None or 'batch_size' not in loader:
        return None
    gpus, per_gpu = int(match.group(1)), int(match.group(2))
    batch = world_size * int(loader['batch_size'])
    if batch == gpus * per_gpu or (cfg.get('auto_scale_lr') or {}).get('enable'):
        return None
    hint = ('--auto-scale-lr scales it by the batch' if 'auto_scale_lr' in cfg else
            'scale the learning rate yourself (--cfg-options optim_wrapper.optimizer.lr=...)')
    return (f'{osp.basename(config_path)} is laid out for {gpus} GPUs x {per_gpu} images '
            f'(batch {gpus * per_gpu}), this run trains {world_size} x '
            f'{loader["batch_size"]} = batch {batch} with the batch-{gpus * per_gpu} learning '
            f'rate: launch `bash tools/dist_train.sh CONFIG {gpus}`, or {hint}')


def resume_source_warning(cfg: Config) -> Optional[str]:
    """A one-line warning when ``--resume`` (auto) would follow the work dir's
    ``last_checkpoint`` file to a checkpoint outside the work dir."""
    if not cfg.get('resume') or cfg.get('load_from'):
        return None
    pointer = osp.join(cfg.work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        target = f.read().strip()
    work = osp.realpath(cfg.work_dir)
    if not target or osp.realpath(target).startswith(work + os.sep):
        return None
    return (f'--resume: {pointer} points outside the work dir, to {target}; resuming from it '
            '(pass --resume PATH to choose explicitly)')


def build_runner(cfg: Config, trust_checkpoint: bool = False) -> Any:
    """Builds the stock ``Runner`` (or ``cfg.runner_type`` from the scope's registry).

    Checkpoints load through the safe loader of :mod:`fade_mm.compat` (installed by the
    plugin import too); ``trust_checkpoint`` switches local files to full unpickling.
    """
    from mmengine.runner import Runner

    install_safe_checkpoint_loading()
    if trust_checkpoint:
        trust_local_checkpoints()
    # Without CUDA mmengine's own init_dist would call torch.cuda.set_device: do it first.
    init_dist_without_cuda(cfg.launcher, cfg.get('env_cfg'))
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def check_checkpoints(cfg: Config, what: str) -> None:
    """Refuses a local ``load_from`` checkpoint (``--resume PATH`` included) that is missing,
    empty, truncated, not a torch checkpoint or lacks what resuming needs, before anything
    is built (:func:`fade_mm.cli.check_checkpoint`). ``--resume`` without a path finds
    its checkpoint in the work dir when the Runner starts."""
    if cfg.get('load_from'):
        cli.check_checkpoint(cfg.load_from, what, resume=bool(cfg.get('resume')))


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: parse, configure, build the Runner, train."""
    args = parse_args(argv)
    cfg = load_config(args)

    if args.amp:
        import torch
        from mmengine.logging import print_log
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper not in ('OptimWrapper', 'AmpOptimWrapper', 'CPUAmpOptimWrapper'):
            raise cli.UsageError(
                f'--amp needs optim_wrapper.type OptimWrapper (it becomes AmpOptimWrapper, or '
                f'CPUAmpOptimWrapper without CUDA); the config has {optim_wrapper}: drop '
                '--amp, or set --cfg-options optim_wrapper.type=OptimWrapper')
        if torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        else:
            # mmengine's AmpOptimWrapper asserts a GPU; bfloat16 needs no loss scaling.
            cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
            cfg.optim_wrapper.pop('loss_scale', None)
            imports = cfg.get('custom_imports') or dict(imports=[], allow_failed_imports=False)
            imports['imports'] = [*imports['imports'], 'fade_mm.amp']  # the dumped config too
            cfg.custom_imports = imports
            importlib.import_module('fade_mm.amp')
            print_log('--amp without CUDA: training steps run under CPU bfloat16 autocast '
                      '(fade_mm.amp.CPUAmpOptimWrapper, no loss scaling)', logger='current')

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
