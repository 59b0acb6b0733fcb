"""Parameters and multiply-adds of an mmdet or mmseg model built from its config (no dataset).

What ``tools/analysis_tools/get_flops.py`` prints and writes (the **complexity JSON**, see
:func:`to_json`) and what ``results_table.py --count`` counts. FLOPs are **multiply-adds**
(1 GFLOP = 1e9 multiply-adds), counted at dispatch level by
:func:`fade_mm.profiling.count_flops_by_op`: convolutions, linear layers and matrix products
(attention, CARAFE reassembly inside :func:`fade_mm.ops.carafe`) plus four multiply-adds per
output element of bilinear interpolation and grid sampling (:data:`SAMPLING_OPS`, reported
apart as ``sampling_macs``); normalisation, activations and other element-wise ops count zero.

**What is counted** (``counted``, :data:`COUNTED`): for a segmentor (``default_scope``
mmseg) the whole ``mode='tensor'`` forward; for a detector (mmdet) **backbone and neck**,
``model.extract_feat(inputs)``, where every upsampler of this repository's detection configs
lives (FPN / PAFPN necks). A detector's heads cost in proportion to what its untrained RPN or
NMS happens to keep, so they are left out: upsampler deltas are unchanged by that, and
totals are those of the feature extractor. Parameters are always the whole model's.

The model is built offline (:func:`fade_mm.tools.build_model`: no pretrained download, no
``init_weights``) and fed one black image of ``shape`` through its data preprocessor (so
padding such as mmdet's ``pad_size_divisor`` applies). It runs on the ``meta`` device when
it can -- shapes only, no arithmetic -- and on CPU otherwise.

mmengine, mmdet and mmseg are imported inside the functions: ``import fade_mm.complexity``
adds nothing to the import of :mod:`fade_mm`.
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import json
import os
import os.path as osp
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from . import cli, tools
from .profiling import SAMPLING_OPS, count_flops, count_flops_by_op

__all__ = ['DEFAULT_SHAPE', 'MAX_SIDE', 'MAX_PIXELS', 'COUNTED', 'SAMPLING_OPS', 'Complexity',
           'check_shape', 'load_config', 'dummy_batch', 'counted_forward', 'is_upsampler',
           'count_model', 'upsampler_share', 'model_key', 'measure', 'report', 'to_json',
           'write_json', 'JSON_FIELDS_HELP']

# One default for both tasks, the segmentation papers' 512x512; detection tables use
# 800 1333 (mmdet pads it to 832x1344 here: pad_size_divisor=64).
DEFAULT_SHAPE = (512, 512)
# Shape limits, checked before anything is allocated: a CPU count (a model without meta
# kernels) holds the image and every activation in memory.
MAX_SIDE = 8192
MAX_PIXELS = 4096 * 4096

#: ``default_scope`` -> the part of the model whose multiply-adds are counted.
COUNTED: Dict[str, str] = {'mmdet': 'backbone+neck', 'mmseg': 'whole model'}
#: How :func:`report` and the tables say it.
COUNTED_TEXT: Dict[str, str] = {
    'backbone+neck': 'backbone and neck (model.extract_feat; the heads are not run)',
    'whole model': "the whole model (mode='tensor' forward)"}

# default_scope -> the data sample class of a dummy batch
_SAMPLES = {'mmdet': ('mmdet.structures', 'DetDataSample'),
            'mmseg': ('mmseg.structures', 'SegDataSample')}
# Upstream notices a count prints whatever the user does (mmdet's YOLOX / RTMDet modules
# call the deprecated torch.cuda.amp.autocast even on CPU).
QUIET = (r'`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated',)


@dataclass
class Complexity:
    """What :func:`measure` reports for one config.

    Attributes:
        config: the config file.
        scope: its ``default_scope`` (``'mmdet'`` or ``'mmseg'``).
        upsampler: ``type`` of the model's ``upsample_cfg``
            (:func:`fade_mm.tools.find_upsample_cfg`), or None.
        params: number of parameters of the whole model.
        macs: multiply-adds of one forward pass of the ``counted`` part.
        sampling_macs: the part of ``macs`` due to bilinear interpolation / grid sampling.
        counted: what ``macs`` cover: ``'backbone+neck'`` (detectors) or ``'whole model'``
            (segmentors); see :data:`COUNTED`.
        input_shape: shape of the tensor that reached the model (after the preprocessor).
        device: ``'meta'`` (shapes only) or ``'cpu'``.
        meta_error: why the meta-device attempt failed (when ``device == 'cpu'``).
        shape: the ``(H, W)`` asked for, before the preprocessor's padding.
        upsamplers: the upsampler modules' part (:func:`upsampler_share`): ``modules``
            (their number), ``params``, ``macs``, ``params_share`` / ``macs_share`` (of the
            model's ``params`` / ``macs``) and ``per_module`` (``name``, ``type``,
            ``params``, ``macs`` of each call); ``modules`` 0 for a model that interpolates
            with ``F.interpolate``.
        model_key: :func:`model_key` of the model config: results tables match a
            complexity JSON to the runs of that model by it.
    """

    config: str
    scope: str
    upsampler: Optional[str]
    params: int
    macs: int
    sampling_macs: int
    counted: str
    input_shape: List[int]
    device: str
    meta_error: Optional[str] = field(default=None)
    shape: Optional[List[int]] = field(default=None)
    upsamplers: Dict[str, Any] = field(default_factory=dict)
    model_key: Optional[str] = field(default=None)

    @property
    def gflops(self) -> float:
        return self.macs / 1e9


def check_shape(shape: Sequence[int]) -> Tuple[int, int]:
    """``(H, W)`` from ``shape``: ``H W``, or one number for a square.

    Raises:
        fade_mm.cli.UsageError: (one line, naming ``--shape``) for anything but one or two
            positive sides within :data:`MAX_SIDE` and :data:`MAX_PIXELS`, before anything
            is allocated.
    """
    shape = list(shape)
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2 or min(shape) < 1:
        raise cli.UsageError(f'--shape takes H W (or one number), positive, got '
                             f'{" ".join(map(str, shape))}')
    h, w = int(shape[0]), int(shape[1])
    if max(h, w) > MAX_SIDE or h * w > MAX_PIXELS:
        raise cli.UsageError(
            f'--shape {h} {w} is too large (at most {MAX_SIDE} a side and {MAX_PIXELS:,} '
            'pixels): FLOPs grow with H x W, count at the size the model is used at '
            '(e.g. 512 512, or 800 1333 for detection)')
    return h, w


def load_config(path: str, cfg_options: Optional[Dict[str, Any]] = None) -> Any:
    """Reads a config with ``mmengine.Config.fromfile`` (its ``custom_imports`` are
    imported) and merges ``cfg_options``."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def _models(scope: str) -> Any:
    tools.register_scope(scope)
    return importlib.import_module(f'{scope}.registry').MODELS


def dummy_batch(cfg: Any, shape: Sequence[int], device: str = 'cpu') -> Tuple[torch.Tensor, list]:
    """One black ``H x W`` image through the config's data preprocessor (test mode).

    The preprocessor is built on its own, on ``device`` (``'cpu'`` or ``'meta'``: shapes
    only, nothing allocated): it pads (e.g. mmdet's ``pad_size_divisor``) and fills the
    metainfo (``batch_input_shape``, ``pad_shape``) that a ``mode='tensor'`` forward reads.
    """
    from mmengine.registry import DefaultScope

    scope = tools.scope_of(cfg)
    models = _models(scope)
    h, w = shape
    module, name = _SAMPLES[scope]
    sample = getattr(importlib.import_module(module), name)(
        metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)))
    image = torch.zeros(3, h, w, dtype=torch.uint8, device=device)
    pre_cfg = cfg.model.get('data_preprocessor')
    if pre_cfg is None:
        return image.float()[None], [sample]
    # a model config that names no scope (e.g. RTMDet's) builds its preprocessor through
    # mmengine's root registry, which finds the scope's types only as the default scope
    with DefaultScope.overwrite_default_scope(scope):
        pre = models.build(pre_cfg).to(device)
    data = pre(dict(inputs=[image], data_samples=[sample]), False)
    return data['inputs'], data['data_samples']


def counted_forward(model: nn.Module, scope: str, inputs: torch.Tensor,
                    data_samples: list) -> Callable[[], object]:
    """The forward pass whose multiply-adds are counted (see :data:`COUNTED`): a detector's
    ``extract_feat(inputs)`` (backbone and neck), a segmentor's
    ``model(inputs, data_samples, mode='tensor')``."""
    if COUNTED[scope] == 'backbone+neck':
        return lambda: model.extract_feat(inputs)
    return lambda: model(inputs, data_samples, mode='tensor')


def is_upsampler(module: nn.Module) -> bool:
    """fade_mm's upsamplers (:class:`fade_mm.upsamplers.Upsampler`) and mmcv's
    ``CARAFEPack``."""
    from .upsamplers import Upsampler
    return isinstance(module, Upsampler) or type(module).__name__ == 'CARAFEPack'


def count_model(model: nn.Module, forward: Callable[[], object],
                calls: Optional[list] = None) -> Tuple[int, int]:
    """Multiply-adds of one call of ``forward`` (e.g. :func:`counted_forward`) of ``model``.

    Args:
        calls: if a list, every call of an upsampler module of ``model`` during the pass is
            appended to it as ``(name, module, args, kwargs)`` (see :func:`upsampler_share`).

    Returns:
        ``(macs, sampling_macs)``: the total and its :data:`SAMPLING_OPS` part, from one
        pass (:func:`fade_mm.profiling.count_flops_by_op`).
    """
    hooks = []
    if calls is not None:
        for name, module in model.named_modules():
            if is_upsampler(module):
                def record(mod, args, kwargs, name=name):
                    calls.append((name, mod, args, kwargs))
                hooks.append(module.register_forward_pre_hook(record, with_kwargs=True))
    try:
        by_op = count_flops_by_op(forward)
    finally:
        for hook in hooks:
            hook.remove()
    return sum(by_op.values()), sum(by_op.get(op, 0) for op in SAMPLING_OPS)


def upsampler_share(model: nn.Module, calls: list, params: int, macs: int) -> Dict[str, Any]:
    """The upsamplers' part of a model: their parameters and the multiply-adds of their
    recorded calls (each call counted again on its own, with the same inputs)."""
    per_module = []
    with torch.no_grad():
        for name, module, args, kwargs in calls:
            per_module.append(dict(name=name, type=type(module).__name__,
                                   params=sum(p.numel() for p in module.parameters()),
                                   macs=count_flops(lambda: module(*args, **kwargs))))
    modules = {name: m for name, m in model.named_modules() if is_upsampler(m)}
    up_params = sum(p.numel() for m in modules.values() for p in m.parameters())
    up_macs = sum(c['macs'] for c in per_module)
    return dict(modules=len(modules), params=up_params, macs=up_macs,
                params_share=up_params / params if params else 0.0,
                macs_share=up_macs / macs if macs else 0.0, per_module=per_module)


def model_key(model_cfg: Any) -> str:
    """A short hash of a model config (``cfg.model``): equal for equal configs, whichever
    file they were read from (results tables match complexity JSONs to runs by it)."""
    if hasattr(model_cfg, 'to_dict'):
        model_cfg = model_cfg.to_dict()
    text = json.dumps(model_cfg, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measure(cfg: Any, shape: Sequence[int] = DEFAULT_SHAPE, device: str = 'auto',
            config_path: Optional[str] = None) -> Complexity:
    """Parameters and multiply-adds of the config's model for one ``H x W`` image.

    Args:
        cfg: an mmdet or mmseg config (already loaded, e.g. by :func:`load_config`).
        shape: ``(H, W)`` of the dummy image, before the data preprocessor's padding.
        device: ``'meta'``, ``'cpu'`` or ``'auto'`` (meta, falling back to CPU when the
            model needs real values or an op has no meta kernel).
        config_path: recorded in the result (defaults to ``cfg.filename``).

    Returns:
        A :class:`Complexity`; its ``counted`` says what ``macs`` cover.

    Raises:
        fade_mm.cli.UsageError: For a shape :func:`check_shape` refuses (before anything is
            built) or a config that is not an mmdet/mmseg one.
    """
    if device not in ('auto', 'meta', 'cpu'):
        raise ValueError(f"measure: `device` must be 'auto', 'meta' or 'cpu', got {device!r}")
    from mmengine.registry import DefaultScope

    shape = check_shape(shape)
    scope = tools.scope_of(cfg, config_path)
    key = model_key(cfg.model)  # before building: some constructors update their configs
    # the config's scope as mmengine's default scope, as a Runner sets it (and restored)
    with DefaultScope.overwrite_default_scope(scope):
        return _measure(cfg, scope, key, shape, device, config_path)


def _measure(cfg: Any, scope: str, key: str, shape: Tuple[int, int], device: str,
             config_path: Optional[str]) -> Complexity:
    model = tools.build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    meta_error = None
    macs = sampling = inputs = None
    calls: list = []
    counted = model
    with warnings.catch_warnings():
        for text in QUIET:
            warnings.filterwarnings('ignore', message=text)
        if device in ('auto', 'meta'):
            try:
                # the image on meta too: nothing of the input's size is allocated
                inputs, samples = dummy_batch(cfg, shape, 'meta')
                # a copy: moving to meta discards the weights a CPU fallback would need
                counted = copy.deepcopy(model).to('meta')
                macs, sampling = count_model(
                    counted, counted_forward(counted, scope, inputs, samples), calls)
            except Exception as err:  # noqa: BLE001  (any op without a meta kernel)
                if device == 'meta':
                    raise
                meta_error = f'{type(err).__name__}: {str(err).splitlines()[0][:200]}'
        if macs is None:
            calls.clear()
            counted = model
            inputs, samples = dummy_batch(cfg, shape)
            macs, sampling = count_model(model, counted_forward(model, scope, inputs, samples),
                                         calls)
        share = upsampler_share(counted, calls, params, macs)
    up = tools.find_upsample_cfg(cfg)
    return Complexity(config=config_path or cfg.filename, scope=scope,
                      upsampler=up.get('type') if isinstance(up, dict) else None,
                      params=params, macs=macs, sampling_macs=sampling,
                      counted=COUNTED[scope], input_shape=list(inputs.shape),
                      device='cpu' if meta_error or device == 'cpu' else 'meta',
                      meta_error=meta_error, shape=list(shape), upsamplers=share,
                      model_key=key)


# ----------------------------------------------------------------------------- output

def _fmt_params(n: int) -> str:
    return f'{n:,} ({n / 1e6:.2f} M)'


def _share_lines(res: Complexity) -> List[str]:
    up = res.upsamplers or {}
    if not up.get('modules'):
        return ['upsamplers no upsampler modules (the head/neck interpolates)']
    calls = len(up.get('per_module', []))
    return [f"upsamplers {up['modules']} modules, {calls} calls: {up['params']:,} params "
            f"({100 * up['params_share']:.2f}%), {up['macs'] / 1e9:.3f} GFLOPs "
            f"({100 * up['macs_share']:.2f}%)"]


def report(res: Complexity, base: Optional[Complexity] = None) -> str:
    """Human-readable lines for one result and, if given, its delta to a baseline."""
    shape = 'x'.join(map(str, res.input_shape))
    where = ('meta tensors (shapes only)' if res.device == 'meta' else
             'CPU' + (' (no meta kernel: ' + res.meta_error + ')' if res.meta_error else ''))
    lines = [
        f'config     {res.config}',
        f'scope      {res.scope}, upsampler: {res.upsampler or "none (stock head/neck)"}',
        f'input      {shape} (after the data preprocessor), counted on {where}',
        f'counted    GFLOPs of {COUNTED_TEXT.get(res.counted, res.counted)}; params of '
        'the whole model',
        f'params     {_fmt_params(res.params)}',
        f'GFLOPs     {res.gflops:.3f}  (multiply-adds x 1e-9: conv/linear/matmul incl. '
        f'CARAFE reassembly, 4 per output of bilinear interpolation and grid sampling)',
        f'  of which bilinear interpolation / grid sampling: {res.sampling_macs / 1e9:.3f}',
        *_share_lines(res),
    ]
    if base is not None:
        d_params = res.params - base.params
        d_macs = res.macs - base.macs
        d_plain = d_macs - (res.sampling_macs - base.sampling_macs)
        part = '' if base.counted == res.counted else f' ({base.counted})'
        lines += [
            f'baseline   {base.config}: {_fmt_params(base.params)} params, '
            f'{base.gflops:.3f} GFLOPs{part} ({base.sampling_macs / 1e9:.3f} of them sampling)',
            f'delta      {d_params:+,} params ({d_params / 1e6:+.2f} M), '
            f'{d_macs / 1e9:+.3f} GFLOPs',
            f'           {d_plain / 1e9:+.3f} GFLOPs without interpolation/sampling (the '
            'convention of hook-based counters such as mmcv\'s, behind the published tables)',
        ]
    return '\n'.join(lines)


JSON_FIELDS_HELP = ('params (whole model), macs (multiply-adds), gflops, sampling_macs, '
                    "counted (what macs cover: 'backbone+neck' for detectors, 'whole model' "
                    'for segmentors), upsamplers (their modules, params, macs, shares and '
                    'per-call counts), config, shape (H W asked for), input_shape (after '
                    'padding), scope, upsampler, device, model_key')


def to_json(res: Complexity, base: Optional[Complexity] = None) -> Dict[str, Any]:
    """The complexity JSON object of one result (and its delta to ``base``)."""
    out: Dict[str, Any] = dict(asdict(res), gflops=res.gflops, unit='multiply-adds')
    if base is not None:
        out['baseline'] = dict(asdict(base), gflops=base.gflops)
        out['delta_params'] = res.params - base.params
        out['delta_macs'] = res.macs - base.macs
    return out


def write_json(path: str, data: Any) -> None:
    """Writes ``data`` to ``path`` atomically (a reader never sees half a file), as the
    checkpoint hook writes ``last_checkpoint``."""
    from .engine import atomic_write_text  # imports mmengine
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1) + '\n')
