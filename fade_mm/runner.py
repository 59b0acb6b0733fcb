"""What ``tools/train.py`` and ``tools/test.py`` share: their common options, loading a config
with those options applied, the warnings and checks before a run, and building the stock
mmengine ``Runner``.

The config's package (mmdet or mmseg) comes from its ``default_scope``
(:func:`fade_mm.tools.scope_of`). This module imports mmengine; ``import fade_mm`` does not
import it (torch-only installs have no mmengine).
"""
from __future__ import annotations

import argparse
import importlib
import os
import os.path as osp
import re
from typing import Any, NamedTuple, Optional

from mmengine.config import Config

from . import cli
from .compat import (
    adapt_to_cpu,
    init_dist_without_cuda,
    install_safe_checkpoint_loading,
    trust_local_checkpoints,
)
from .tools import register_scope, scope_of

__all__ = ['TRUST_NOTE', 'CFG_OPTIONS_HELP', 'OVERLAY_DIR', 'add_common_args', 'check_args',
           'SyntheticTask', 'synthetic_task', 'apply_synthetic', 'allow_partial_loading',
           'load_config', 'enable_amp', 'layout_warning', 'resume_source_warning',
           'check_checkpoints', 'build_runner', 'dump_test_metrics_on_main_process']

#: The epilog of train.py's and test.py's ``--help``.
TRUST_NOTE = ('Checkpoints load with torch.load(weights_only=True) and an allow-list of what '
              'mmengine runner checkpoints hold (fade_mm.compat); a file that needs more is '
              'refused with a one-line error naming it and the global. --trust-checkpoint '
              'unpickles local checkpoints in full: use it for trusted local files only.')

#: The help of ``--cfg-options``.
CFG_OPTIONS_HELP = ('override settings of the config, key=value pairs merged into it (after '
                    '--synthetic), e.g. train_cfg.max_iters=100 '
                    'train_dataloader.batch_size=2; lists as key="[a,b]" or key=a,b; no spaces.')

#: Where the ``--synthetic`` overlays are: ``configs/_base_`` of the checkout that holds this
#: package (configs are not part of the wheel).
OVERLAY_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', '_base_')

# `{gpus}x{batch}` in an OpenMMLab config name, e.g. 8xb2 in faster-rcnn_..._8xb2-1x_coco.py
_LAYOUT = re.compile(r'_(\d+)xb(\d+)-')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Adds the options that train.py and test.py share (after their positional ones).

    Args:
        parser: The tool's parser.
    """
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


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The checks train.py and test.py share, before anything is built.

    ``--regenerate`` comes with ``--synthetic``, the config file exists and parses, the
    launcher's environment is there. Then ``LOCAL_RANK`` is set from ``--local-rank`` unless
    the launcher (torchrun) set it.

    Args:
        parser: The tool's parser (its ``error`` exits with one line and status 2).
        args: The parsed arguments.
    """
    if args.regenerate and args.synthetic is None:
        parser.error('--regenerate rebuilds the data of --synthetic: add --synthetic')
    try:
        cli.check_config_file(args.config)
        cli.check_launcher(args.launcher)
    except cli.UsageError as err:
        parser.error(str(err))
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))


class SyntheticTask(NamedTuple):
    """The synthetic data of a config's task.

    Attributes:
        overlay: The overlay merged over the config (``configs/_base_/OVERLAY``).
        kind: The data kind of :func:`fade_mm.datasets.ensure_synthetic` (``'det'``,
            ``'pan'`` or ``'seg'``), also the default root's name.
    """
    overlay: str
    kind: str

    @property
    def default_root(self) -> str:
        """``data/synthetic/KIND``, relative to the working directory."""
        return osp.join('data', 'synthetic', self.kind)


def synthetic_task(cfg: Config) -> SyntheticTask:
    """The synthetic data that fits the config's task (by its model, not its scope alone).

    ADE-style segmentation for mmseg, COCO panoptic for a ``PanopticFPN``, COCO instances (the
    detection data, which carries masks) for a model with ``roi_head.mask_head``, COCO
    detection otherwise.

    Args:
        cfg: A loaded mmdet or mmseg config.

    Returns:
        Its :class:`SyntheticTask`.

    Raises:
        fade_mm.cli.UsageError: For a config of another scope.
    """
    if scope_of(cfg) == 'mmseg':
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

    The task's overlay (:data:`OVERLAY_DIR`) is merged over the config, every pretrained
    source is cleared (offline), and an epoch-based loop gets a finite sampler.

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
            fade_mm's, or the overlay is missing (one line naming the problem and the fix).
    """
    from .configs import apply_overlay, clear_pretrained
    from .datasets import SyntheticDataError, ensure_synthetic

    task = synthetic_task(cfg)
    overlay = osp.join(OVERLAY_DIR, task.overlay)
    if not osp.isfile(overlay):
        raise cli.UsageError(f'--synthetic: no overlay {overlay}: it ships with the '
                             'repository\'s configs, run from a checkout of fade_mm')
    data_root = osp.abspath(data_root or task.default_root)
    try:
        ensure_synthetic(data_root, task.kind, regenerate=regenerate)
    except SyntheticDataError as err:
        raise cli.UsageError(f'--synthetic: {err}') from None
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

    Args:
        cfg: Loaded config (modified in place).

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
    adaptations (:func:`fade_mm.compat.adapt_to_cpu`). Registers the scope's modules and
    fade_mm's adapters (:func:`fade_mm.tools.register_scope`).

    Args:
        args: The arguments of :func:`add_common_args` and ``config``.

    Returns:
        The config, ready for :func:`build_runner`.

    Raises:
        fade_mm.cli.UsageError: The config is not an mmdet or mmseg one, or an option does
            not apply to it.
    """
    cfg = Config.fromfile(args.config)
    register_scope(scope_of(cfg, args.config))
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


def enable_amp(cfg: Config) -> None:
    """``--amp``: float16 ``AmpOptimWrapper`` with CUDA, bfloat16 CPU autocast without.

    Without CUDA the wrapper is fade_mm's ``CPUAmpOptimWrapper`` (mmengine's
    ``AmpOptimWrapper`` asserts a GPU; bfloat16 needs no loss scaling), and
    ``fade_mm.amp`` joins the config's ``custom_imports`` so the dumped config builds too.

    Args:
        cfg: Loaded config (modified in place).

    Raises:
        fade_mm.cli.UsageError: The config's optimizer wrapper is another one.
    """
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
        return
    cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
    cfg.optim_wrapper.pop('loss_scale', None)
    imports = cfg.get('custom_imports') or dict(imports=[], allow_failed_imports=False)
    imports['imports'] = [*imports['imports'], 'fade_mm.amp']  # the dumped config too
    cfg.custom_imports = imports
    importlib.import_module('fade_mm.amp')
    print_log('--amp without CUDA: training steps run under CPU bfloat16 autocast '
              '(fade_mm.amp.CPUAmpOptimWrapper, no loss scaling)', logger='current')


def layout_warning(cfg: Config, config_path: str, world_size: int) -> Optional[str]:
    """A one-line warning when the run's batch differs from the config name's layout.

    ``..._8xb2-...`` means 8 GPUs x 2 images, batch 16, and the config's learning rate is
    for that batch.

    Args:
        cfg: Loaded config.
        config_path: Its path (the name holds the layout).
        world_size: Processes of the run.

    Returns:
        The warning, or None when the batch matches, the name has no layout, or the learning
        rate will be scaled (``auto_scale_lr.enable``, set by ``--auto-scale-lr``).
    """
    match = _LAYOUT.search(osp.basename(config_path))
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
    ``last_checkpoint`` file to a checkpoint outside the work dir.

    Args:
        cfg: Loaded config, ``resume`` and ``load_from`` set.

    Returns:
        The warning, or None.
    """
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


def check_checkpoints(cfg: Config, what: str) -> None:
    """Refuses a bad local ``load_from`` checkpoint before anything is built.

    Missing, empty, truncated, not a torch checkpoint, or lacking what resuming needs
    (:func:`fade_mm.cli.check_checkpoint`). ``--resume`` without a path finds its checkpoint
    in the work dir when the Runner starts.

    Args:
        cfg: Loaded config.
        what: How the error names the checkpoint (``'load_from'``, ``'--resume'``).

    Raises:
        fade_mm.cli.UsageError: For a bad checkpoint.
    """
    if cfg.get('load_from'):
        cli.check_checkpoint(cfg.load_from, what, resume=bool(cfg.get('resume')))


def build_runner(cfg: Config, trust_checkpoint: bool = False) -> Any:
    """Builds the stock ``Runner`` (or ``cfg.runner_type`` from the scope's registry).

    Checkpoints load through the safe loader of :mod:`fade_mm.compat` (installed by the
    plugin import too). Without CUDA the process group is initialised on gloo first
    (mmengine's own ``init_dist`` would call ``torch.cuda.set_device``).

    Args:
        cfg: The config of :func:`load_config`.
        trust_checkpoint: Unpickle local checkpoint files in full (``--trust-checkpoint``).

    Returns:
        The runner.
    """
    from mmengine.runner import Runner

    install_safe_checkpoint_loading()
    if trust_checkpoint:
        trust_local_checkpoints()
    init_dist_without_cuda(cfg.launcher, cfg.get('env_cfg'))
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def dump_test_metrics_on_main_process(runner: Any) -> None:
    """Leaves the test metrics' JSON dump to the main process alone.

    mmengine's ``LoggerHook.after_test_epoch`` dumps the metrics to
    ``WORK_DIR/TIMESTAMP/TIMESTAMP.json`` in every process, all to the same file (the
    timestamp is broadcast). The ranks get there together, right after the metrics are
    collected, and their dumps differ in length (each holds its own ``time`` and
    ``data_time``): when both have opened (truncated) the file before either writes, the
    shorter dump lands over the start of the longer one and leaves its tail behind, which is
    not JSON. The metrics of the other ranks are rank 0's (broadcast), and at the default
    log level their loggers print and keep nothing below ERROR: their ``after_test_epoch``
    is made main-process only (``mmengine.dist.master_only``). Nothing changes in a
    one-process run.

    Args:
        runner: A built runner (its process group initialised, its hooks registered).
    """
    from mmengine.dist import is_main_process, master_only
    from mmengine.hooks import LoggerHook

    if is_main_process():
        return
    for hook in runner.hooks:
        if isinstance(hook, LoggerHook):
            hook.after_test_epoch = master_only(hook.after_test_epoch)
