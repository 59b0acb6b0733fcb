"""What fade_mm's command-line tools (``tools/``) share: the task of a config, registering
its modules, the model's upsampler and its label in the papers' tables, and building the
model offline.

mmengine, mmdet and mmseg are imported inside the functions, so ``import fade_mm.tools``
adds nothing to the import of :mod:`fade_mm`. Inference goes through the frameworks' own
``mmdet.apis.init_detector`` / ``mmseg.apis.init_model``; :func:`build_model` is for the
tools that only need the network (parameter and FLOP counts, export).
"""
from __future__ import annotations

import copy
import importlib
import logging
from typing import Any, Dict, Optional

from . import cli

__all__ = ['SCOPES', 'UPSAMPLER_LABELS', 'scope_of', 'register_scope', 'find_upsample_cfg',
           'upsampler_label', 'method_label', 'build_model']

#: ``default_scope`` -> fade_mm's adapter package for it (necks, heads, metrics, datasets).
SCOPES: Dict[str, str] = {'mmdet': 'fade_mm.det', 'mmseg': 'fade_mm.seg'}

#: ``upsample_cfg`` type (lower case) -> its name in the papers' tables.
UPSAMPLER_LABELS: Dict[str, str] = {
    'nearest': 'Nearest', 'nearestupsample': 'Nearest', 'bilinear': 'Bilinear',
    'bilinearupsample': 'Bilinear', 'deconv': 'Deconv', 'deconvupsample': 'Deconv',
    'pixel_shuffle': 'PixelShuffle', 'pixelshuffleupsample': 'PixelShuffle',
    'carafe': 'CARAFE', 'carafeupsample': 'CARAFE', 'indexnet': 'IndexNet', 'a2u': 'A2U',
    'sapa': 'SAPA', 'dysample': 'DySample', 'fade': 'FADE', 'fadelite': 'FADE-Lite'}

# Keys of an upsample_cfg that every module has, or that a neck or head fills in: they do
# not tell two configs apart.
_NOT_A_SWITCH = ('_delete_', 'in_channels', 'scale_factor', 'align_corners')


def scope_of(cfg: Any, path: Optional[str] = None) -> str:
    """The config's ``default_scope``: ``'mmdet'`` (detection) or ``'mmseg'`` (segmentation).

    Args:
        cfg: A loaded config.
        path: How errors name the config (default: ``cfg.filename``).

    Returns:
        ``'mmdet'`` or ``'mmseg'``.

    Raises:
        fade_mm.cli.UsageError: (a ``ValueError``) for any other ``default_scope``.
    """
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        path = path or getattr(cfg, 'filename', None) or 'config'
        raise cli.UsageError(f'{path}: default_scope is {scope!r}; fade_mm tools '
                             f'support {sorted(SCOPES)} (an mmdet or mmseg config)')
    return scope


def register_scope(scope: str, init_default_scope: bool = False) -> None:
    """Registers mmdet's or mmseg's modules and fade_mm's adapters for ``scope``.

    Args:
        scope: ``'mmdet'`` or ``'mmseg'``.
        init_default_scope: Also make ``scope`` mmengine's default scope
            (``mmengine.registry.init_default_scope``), for a tool that builds from the
            registries itself; a ``Runner`` and the frameworks' ``init_*`` functions set it
            from the config.
    """
    if scope not in SCOPES:
        raise ValueError(f'register_scope: scope must be one of {sorted(SCOPES)}, got '
                         f'{scope!r}')
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    importlib.import_module(SCOPES[scope])
    if init_default_scope:
        from mmengine.registry import init_default_scope as init_scope
        init_scope(scope)


def find_upsample_cfg(cfg: Any) -> Optional[dict]:
    """The model's ``upsample_cfg``, wherever it is (the neck, the decode head, ...).

    The model config is searched depth first (dict order, then list order); the first
    ``upsample_cfg`` key wins.

    Args:
        cfg: A config (or dict) with a ``model`` entry.

    Returns:
        Its value, or None when the model has none or sets it to None (a stock neck or head:
        mmdet's FPN interpolates with nearest, mmseg's heads bilinearly).
    """
    stack = [cfg.get('model')]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if 'upsample_cfg' in node:
                return node['upsample_cfg']
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, (list, tuple)):
            stack.extend(reversed(node))
    return None


def upsampler_label(up: Optional[dict], scope: Optional[str] = None) -> str:
    """The name of an ``upsample_cfg`` in the papers' tables.

    ``'FADE'``, ``'FADE-Lite'``, ``'CARAFE'``, ``'SAPA-B'``, ``'DySample-S+'``, ...; FADE
    without its gate is ``'FADE w/o gate'``; any other key that is set (an ablation switch
    such as ``kernel_source``) is appended, ``'FADE w/o gate (kernel_source=encoder)'``, so
    that a variant never passes for the default module.

    Args:
        up: The ``upsample_cfg`` (None: the stock interpolation).
        scope: ``'mmseg'`` makes None ``'Bilinear'`` (mmseg's heads); else ``'Nearest'``
            (mmdet's FPN).
    """
    if up is None:
        return 'Bilinear' if scope == 'mmseg' else 'Nearest'
    up = dict(up)
    kind = str(up.pop('type', up.pop('mode', '?')))
    for key in _NOT_A_SWITCH:
        up.pop(key, None)
    label = UPSAMPLER_LABELS.get(kind.lower(), kind)
    if label == 'SAPA':
        label += '-' + str(up.pop('variant', 'B'))
    elif label == 'DySample':
        label += ('-S' if up.pop('style', 'lp') == 'pl' else '') + (
            '+' if up.pop('dyscope', False) else '')
        if up.get('groups') == 4:
            up.pop('groups')
    elif label.startswith('FADE'):
        fusion = up.pop('fusion', 'gate')
        label += {'gate': '', 'none': ' w/o gate'}.get(fusion, f' ({fusion})')
    if up:
        label += ' (' + ', '.join(f'{k}={v}' for k, v in sorted(up.items())) + ')'
    return label


def method_label(cfg: Any, scope: Optional[str] = None) -> str:
    """The config's upsampler as the papers' tables name it (see :func:`upsampler_label`).

    Args:
        cfg: A config (or dict) with a ``model`` entry.
        scope: ``'mmdet'`` or ``'mmseg'``; default: the config's ``default_scope``.
    """
    return upsampler_label(find_upsample_cfg(cfg), scope or cfg.get('default_scope'))


def build_model(cfg: Any, checkpoint: Optional[str] = None, device: str = 'cpu',
                init_weights: bool = False) -> Any:
    """Builds ``cfg.model`` with its scope's ``MODELS``, offline, in eval mode.

    Every pretrained source (``model.pretrained``, ``Pretrained`` init_cfgs) is cleared
    from a copy of the model config (:func:`fade_mm.configs.clear_pretrained`), so nothing
    is downloaded; SyncBN becomes BN (``revert_sync_batchnorm``: the same in eval mode, and
    it runs without a process group). For inference on images use
    ``mmdet.apis.init_detector`` / ``mmseg.apis.init_model`` instead.

    Args:
        cfg: An mmdet or mmseg config (its ``custom_imports`` already imported, as
            ``Config.fromfile`` does).
        checkpoint: Weights to load strictly with mmengine's ``load_checkpoint``: local files
            with ``weights_only=True`` and the runner-checkpoint allow-list of
            :mod:`fade_mm.compat` (inside ``fade_mm.compat.local_checkpoints_trusted()``:
            unpickled in full).
        device: Where the model goes.
        init_weights: Run ``model.init_weights()`` (the configs' Kaiming / Xavier / ...
            init_cfgs) before loading; otherwise the modules keep PyTorch's defaults.

    Returns:
        The model (an ``nn.Module``).

    Raises:
        fade_mm.cli.UsageError: For a config that is not an mmdet or mmseg one.
        RuntimeError: When ``checkpoint`` does not fit the model (missing or unexpected
            keys, other shapes).
    """
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint

    from .compat import install_safe_checkpoint_loading
    from .configs import clear_pretrained

    scope = scope_of(cfg)
    register_scope(scope)
    offline = Config(dict(model=copy.deepcopy(cfg.get('model'))))
    clear_pretrained(offline)
    models = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        # not under torch.device('meta'): some constructors call .item() (MiT's drop path)
        model = models.build(offline.model)
        if init_weights:
            _quiet_init_weights(model)
    if checkpoint is not None:
        install_safe_checkpoint_loading()
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True, logger='silent')
    return revert_sync_batchnorm(model).to(device).eval()


def _quiet_init_weights(model: Any) -> None:
    # mmengine logs every parameter's initialiser at INFO
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
