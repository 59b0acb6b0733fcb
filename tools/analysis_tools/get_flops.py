#!/usr/bin/env python
"""Parameters and GFLOPs of an mmdet or mmseg model built from a config (no dataset needed).

FLOPs are **multiply-adds** (1 GFLOP = 1e9 multiply-adds), the convention of the published
upsampler tables, counted at dispatch level by :func:`fade_mm.profiling.count_flops`:
convolutions, linear layers and matrix products (attention, CARAFE reassembly inside
:func:`fade_mm.ops.carafe`) plus four multiply-adds per output element of bilinear
interpolation and grid sampling. Normalisation, activations, softmax and other element-wise
ops count zero. Unlike mmengine's counter (which scores custom autograd ops such as mmcv's
carafe as zero) and mmseg 1.2.2's ``get_flops.py`` (which raises with mmengine >= 0.8), the
upsamplers' reassembly and sampling are counted.

The model is built from the config alone (no pretrained download: ``init_weights`` is never
called) and fed one dummy image of ``--shape`` through its data preprocessor (so padding such
as mmdet's ``pad_size_divisor`` applies), then run with ``mode='tensor'``. It runs on the
``meta`` device when it can -- shapes only, no arithmetic, well under a second even for a
detector at 800x1333 -- and on CPU otherwise. A two-stage detector's RoI stage always gets
the RPN's ``max_per_img`` proposals (NMS of an untrained RPN keeps a random number). Any
mmdet or mmseg model whose ``mode='tensor'`` forward runs on a dummy image is counted: Faster
/ Mask R-CNN, Panoptic FPN, RTMDet, YOLOX, SegFormer and UPerNet configs of this repository.

The report also gives the **upsamplers' share**: their parameters and the multiply-adds of
their calls (each call counted again on its own), as totals and fractions of the model's.
``--json PATH`` writes all of it (:func:`to_json`) as the **complexity JSON** that
``results_table.py`` reads instead of building every model itself; ``model_key`` ties it to
the model config it was counted for.

Examples::

    python tools/analysis_tools/get_flops.py \\
        configs/segformer/segformer_mit-b1_fade_1xb16-160k_ade20k-512x512.py \\
        --compare configs/segformer/segformer_mit-b1_bilinear_1xb16-160k_ade20k-512x512.py
    python tools/analysis_tools/get_flops.py \\
        configs/faster_rcnn/faster-rcnn_r50_fpn-fade_8xb2-1x_coco.py --shape 800 1333
    python tools/analysis_tools/get_flops.py work_dirs/X/X.py --json work_dirs/X/complexity.json
    python tools/analysis_tools/get_flops.py work_dirs/*/*.py --shape 256 \\
        --json '{config_dir}/complexity.json'
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import importlib
import json
import os
import os.path as osp
import sys
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from torch.utils._python_dispatch import TorchDispatchMode

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # usable from a checkout without `pip install -e .`

from fade_mm import cli  # noqa: E402
from fade_mm.profiling import count_flops  # noqa: E402

# One default for both tasks, the segmentation papers' 512x512; detection tables use
# --shape 800 1333 (mmdet pads it to 832x1344 here: pad_size_divisor=64).
DEFAULT_SHAPE = (512, 512)
# --shape limits, checked before anything is allocated: a CPU count (a model without meta
# kernels) holds the image and every activation in memory.
MAX_SIDE = 8192
MAX_PIXELS = 4096 * 4096

# default_scope -> the package whose modules the config names, and fade_mm's adapters for it.
SCOPES: Dict[str, Dict[str, str]] = {
    'mmdet': dict(package='mmdet', plugin='fade_mm.det',
                  sample='mmdet.structures:DetDataSample'),
    'mmseg': dict(package='mmseg', plugin='fade_mm.seg',
                  sample='mmseg.structures:SegDataSample'),
}

aten = torch.ops.aten
# The ops that fade_mm.profiling prices at four multiply-adds per output element; hook-based
# counters (mmcv's, behind the published tables) score the functional forms as zero.
SAMPLING_OPS = (aten.upsample_bilinear2d, aten.grid_sampler_2d)
# Upstream notices a count prints whatever the user does (mmdet's YOLOX / RTMDet heads and
# assigners call the deprecated torch.cuda.amp.autocast even on CPU).
QUIET = (r'`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated',)


@dataclass
class Complexity:
    """What :func:`measure` reports for one config.

    Attributes:
        config: the config file.
        scope: its ``default_scope`` (``'mmdet'`` or ``'mmseg'``).
        upsampler: ``type`` of the first ``upsample_cfg`` in the model config, or None.
        params: number of parameters.
        macs: multiply-adds of one forward pass (``count_flops``).
        sampling_macs: the part of ``macs`` due to bilinear interpolation / grid sampling.
        input_shape: shape of the tensor that reached the model (after the preprocessor).
        device: ``'meta'`` (shapes only) or ``'cpu'``.
        meta_error: why the meta-device attempt failed (when ``device == 'cpu'``).
        proposals: RoIs the RoI stage of a two-stage detector was run on (None otherwise).
        shape: the ``(H, W)`` asked for (``--shape``), before the preprocessor's padding.
        upsamplers: the upsampler modules' part (:func:`upsampler_share`): ``modules``
            (their number), ``params``, ``macs``, ``params_share`` / ``macs_share`` (of the
            model's) and ``per_module`` (``name``, ``type``, ``params``, ``macs`` of each
            call); ``modules`` 0 for a model that interpolates with ``F.interpolate``.
        model_key: :func:`model_key` of the model config: results_table.py matches a
            complexity JSON to the runs of that model by it.
    """

    config: str
    scope: str
    upsampler: Optional[str]
    params: int
    macs: int
    sampling_macs: int
    input_shape: List[int]
    device: str
    meta_error: Optional[str] = field(default=None)
    proposals: Optional[int] = field(default=None)
    shape: Optional[List[int]] = field(default=None)
    upsamplers: Dict[str, Any] = field(default_factory=dict)
    model_key: Optional[str] = field(default=None)

    @property
    def gflops(self) -> float:
        return self.macs / 1e9


class _SamplingMacs(TorchDispatchMode):
    """Adds up ``4 * output numel`` of the sampling ops, as fade_mm.profiling prices them.

    Nested inside ``count_flops``'s counter, so one forward pass yields both numbers.
    """

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in SAMPLING_OPS:
            self.macs += 4 * out.numel()
        return out


def _import(path: str) -> Any:
    module, _, name = path.partition(':')
    return getattr(importlib.import_module(module), name)


def load_config(path: str, cfg_options: Optional[Dict[str, Any]] = None) -> Config:
    """Reads a config (its ``custom_imports`` are imported) and merges ``cfg_options``."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def scope_of(cfg: Config) -> str:
    """The config's ``default_scope``; only mmdet and mmseg configs are supported."""
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise cli.UsageError(f'get_flops: the config must have default_scope in '
                             f'{sorted(SCOPES)} (an mmdet or mmseg config), got {scope!r}')
    return scope


def registry(scope: str):
    """Registers the scope's modules and fade_mm's adapters; returns the scope's ``MODELS``."""
    spec = SCOPES[scope]
    _import(spec['package'] + '.utils:register_all_modules')(init_default_scope=False)
    importlib.import_module(spec['plugin'])
    return _import(spec['package'] + '.registry:MODELS')


def find_upsample_cfg(node: Any) -> Tuple[bool, Optional[dict]]:
    """Depth-first search of a model config for the first ``upsample_cfg`` key.

    Returns:
        ``(found, value)``: the value may be None (a head built without upsamplers).
    """
    if isinstance(node, dict):
        if 'upsample_cfg' in node:
            return True, node['upsample_cfg']
        children = node.values()
    elif isinstance(node, (list, tuple)):
        children = node
    else:
        return False, None
    for child in children:
        found, value = find_upsample_cfg(child)
        if found:
            return True, value
    return False, None


def _model_cfg(cfg: Config) -> ConfigDict:
    model_cfg = cfg.model.copy()
    # init_weights() is never called, but a stray Pretrained init_cfg would still name a URL.
    if isinstance(model_cfg.get('backbone'), dict):
        model_cfg.backbone = dict(model_cfg.backbone, init_cfg=None)
    if 'pretrained' in model_cfg:
        model_cfg.pretrained = None
    return model_cfg


def build_model(cfg: Config) -> nn.Module:
    """Builds ``cfg.model`` on CPU in eval mode, without loading pretrained weights."""
    # Not under torch.device('meta'): some constructors call .item() (e.g. MiT's drop-path
    # schedule), which meta tensors cannot answer.
    scope = scope_of(cfg)
    with in_scope(scope):
        return registry(scope).build(_model_cfg(cfg)).eval()


def in_scope(scope: str):
    """The config's scope as mmengine's default scope, as the Runner sets it: a model
    whose own config names no scope (e.g. RTMDet's) builds its data preprocessor through
    mmengine's root registry, which finds mmdet's types only so."""
    from mmengine.registry import DefaultScope
    return DefaultScope.overwrite_default_scope(scope)


def dummy_batch(cfg: Config, shape: Sequence[int],
                device: str = 'cpu') -> Tuple[torch.Tensor, list]:
    """One black ``H x W`` image through the config's data preprocessor (test mode).

    The preprocessor is built on its own, on ``device`` (``'cpu'`` or ``'meta'``: shapes
    only, nothing allocated): it pads (e.g. mmdet's ``pad_size_divisor``) and fills the
    metainfo (``batch_input_shape``, ``pad_shape``) that a detector's ``mode='tensor'``
    forward reads.
    """
    scope = scope_of(cfg)
    models = registry(scope)
    h, w = shape
    sample = _import(SCOPES[scope]['sample'])(
        metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)))
    image = torch.zeros(3, h, w, dtype=torch.uint8, device=device)
    pre_cfg = cfg.model.get('data_preprocessor')
    if pre_cfg is None:
        return image.float()[None], [sample]
    pre = models.build(pre_cfg).to(device)
    data = pre(dict(inputs=[image], data_samples=[sample]), False)
    return data['inputs'], data['data_samples']


def _proposal_count(model: nn.Module) -> int:
    rpn_cfg = (getattr(model, 'test_cfg', None) or {}).get('rpn') or {}
    return int(rpn_cfg.get('max_per_img', 1000))


@contextlib.contextmanager
def _data_independent_two_stage(model: nn.Module, meta: bool) -> Iterator[Optional[int]]:
    """Makes a two-stage detector's cost independent of its (random) weights.

    Its RoI stage costs in proportion to the number of proposals that survive the RPN's NMS,
    which for an untrained model on a black image is anything up to ``max_per_img``: deltas
    between two configs would then measure that lottery. Here the RPN still runs its
    convolutions, but always hands ``max_per_img`` proposals (what a trained detector gives
    on a real image) to the RoI stage. On ``meta`` the RoI extractors, whose RoIAlign is an
    mmcv op without a meta kernel (and counts zero anyway), return zeros of their shape.

    Yields:
        The proposal count, or None when the model is not a two-stage detector.
    """
    rpn, roi = getattr(model, 'rpn_head', None), getattr(model, 'roi_head', None)
    if rpn is None or roi is None:
        yield None
        return
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    from mmdet.models.roi_heads import BaseRoIHead
    from mmdet.models.roi_heads.roi_extractors import BaseRoIExtractor
    from mmengine.structures import InstanceData
    if not (isinstance(rpn, BaseDenseHead) and isinstance(roi, BaseRoIHead)):
        yield None  # e.g. Sparse R-CNN's learned proposals: nothing data-dependent to pin
        return
    n = _proposal_count(model)

    def predict(x, batch_data_samples, rescale=False):
        rpn(x)
        out = []
        for sample in batch_data_samples:
            h, w = sample.metainfo['img_shape'][:2]
            boxes = x[0].new_tensor([0.0, 0.0, float(w), float(h)]).expand(n, 4)
            out.append(InstanceData(bboxes=boxes.contiguous(), scores=x[0].new_ones(n),
                                    labels=x[0].new_zeros(n, dtype=torch.long)))
        return out

    def predict_by_feat(*outs, batch_img_metas=None, **kwargs):
        # Panoptic FPN's mode='tensor' forward runs the RPN's convolutions itself and then
        # asks for its proposals here
        feats = outs[0]
        out = []
        for meta_info in batch_img_metas or []:
            h, w = meta_info['img_shape'][:2]
            boxes = feats[0].new_tensor([0.0, 0.0, float(w), float(h)]).expand(n, 4)
            out.append(InstanceData(bboxes=boxes.contiguous(), scores=feats[0].new_ones(n),
                                    labels=feats[0].new_zeros(n, dtype=torch.long)))
        return out

    def zeros_of_shape(ext: nn.Module):
        def forward(feats, rois, roi_scale_factor=None):
            size = ext.roi_layers[0].output_size
            return feats[0].new_zeros(rois.shape[0], ext.out_channels, *size)
        return forward

    patched = [(rpn, 'predict', predict), (rpn, 'predict_by_feat', predict_by_feat)]
    if meta:
        patched += [(m, 'forward', zeros_of_shape(m)) for m in roi.modules()
                    if isinstance(m, BaseRoIExtractor)]
    for module, name, fn in patched:
        setattr(module, name, fn)  # instance attributes shadow the class' methods
    try:
        yield n
    finally:
        for module, name, _ in patched:
            delattr(module, name)


def is_upsampler(module: nn.Module) -> bool:
    """fade_mm's upsamplers (:class:`fade_mm.upsamplers.Upsampler`) and mmcv's
    ``CARAFEPack``."""
    from fade_mm.upsamplers import Upsampler
    return isinstance(module, Upsampler) or type(module).__name__ == 'CARAFEPack'


def count_model(model: nn.Module, inputs: torch.Tensor, data_samples: list,
                calls: Optional[list] = None) -> Tuple[int, int, Optional[int]]:
    """Multiply-adds of ``model(inputs, data_samples, mode='tensor')``.

    Args:
        calls: if a list, every call of an upsampler module during the pass is appended to
            it as ``(name, module, args, kwargs)`` (see :func:`upsampler_share`).

    Returns:
        ``(macs, sampling_macs, proposals)``: ``proposals`` is the number of RoIs a two-stage
        detector's RoI stage was run on (None for other models).
    """
    sampling = _SamplingMacs()
    hooks = []
    if calls is not None:
        for name, module in model.named_modules():
            if is_upsampler(module):
                def record(mod, args, kwargs, name=name):
                    calls.append((name, mod, args, kwargs))
                hooks.append(module.register_forward_pre_hook(record, with_kwargs=True))

    def forward() -> None:
        with sampling:
            model(inputs, data_samples, mode='tensor')

    try:
        with _data_independent_two_stage(model, inputs.is_meta) as proposals:
            macs = count_flops(forward)
    finally:
        for hook in hooks:
            hook.remove()
    return macs, sampling.macs, proposals


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
    file they were read from (results_table.py matches complexity JSONs to runs by it)."""
    if hasattr(model_cfg, 'to_dict'):
        model_cfg = model_cfg.to_dict()
    text = json.dumps(model_cfg, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measure(cfg: Config, shape: Sequence[int] = DEFAULT_SHAPE, device: str = 'auto',
            config_path: Optional[str] = None) -> Complexity:
    """Parameters and multiply-adds of the config's model for one ``H x W`` image.

    Args:
        cfg: an mmdet or mmseg config (already loaded).
        shape: ``(H, W)`` of the dummy image, before the data preprocessor's padding.
        device: ``'meta'``, ``'cpu'`` or ``'auto'`` (meta, falling back to CPU when the
            model needs real values, e.g. for NMS).
        config_path: recorded in the result (defaults to ``cfg.filename``).

    Returns:
        A :class:`Complexity`.

    Raises:
        fade_mm.cli.UsageError: For a shape :func:`check_shape` refuses (before anything is
            built) or a config that is not an mmdet/mmseg one.
    """
    if device not in ('auto', 'meta', 'cpu'):
        raise ValueError(f"get_flops: `device` must be 'auto', 'meta' or 'cpu', got {device!r}")
    check_shape(shape)
    scope = scope_of(cfg)
    key = model_key(cfg.model)  # before building: some constructors update their configs
    with in_scope(scope):
        return _measure(cfg, scope, key, shape, device, config_path)


def _measure(cfg: Config, scope: str, key: str, shape: Sequence[int], device: str,
             config_path: Optional[str]) -> Complexity:
    model = build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    meta_error = None
    macs = sampling = proposals = inputs = None
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
                macs, sampling, proposals = count_model(counted, inputs, samples, calls)
            except Exception as err:  # noqa: BLE001  (any op without a meta kernel)
                if device == 'meta':
                    raise
                meta_error = f'{type(err).__name__}: {str(err).splitlines()[0][:200]}'
        if macs is None:
            calls.clear()
            counted = model
            inputs, samples = dummy_batch(cfg, shape)
            macs, sampling, proposals = count_model(model, inputs, samples, calls)
        share = upsampler_share(counted, calls, params, macs)
    _, up = find_upsample_cfg(cfg.model)
    return Complexity(config=config_path or cfg.filename, scope=scope,
                      upsampler=up.get('type') if isinstance(up, dict) else None,
                      params=params, macs=macs, sampling_macs=sampling,
                      input_shape=list(inputs.shape),
                      device='cpu' if meta_error or device == 'cpu' else 'meta',
                      meta_error=meta_error, proposals=proposals,
                      shape=[int(shape[0]), int(shape[1])], upsamplers=share,
                      model_key=key)


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
        *([f'RoI stage  {res.proposals} proposals (the RPN\'s max_per_img, whatever its NMS '
           'keeps)'] if res.proposals else []),
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
        lines += [
            f'baseline   {base.config}: {_fmt_params(base.params)} params, '
            f'{base.gflops:.3f} GFLOPs ({base.sampling_macs / 1e9:.3f} of them sampling)',
            f'delta      {d_params:+,} params ({d_params / 1e6:+.2f} M), '
            f'{d_macs / 1e9:+.3f} GFLOPs',
            f'           {d_plain / 1e9:+.3f} GFLOPs without interpolation/sampling (the '
            'convention of hook-based counters such as mmcv\'s, behind the published tables)',
        ]
    return '\n'.join(lines)


JSON_FIELDS_HELP = ('params, macs (multiply-adds), gflops, sampling_macs, upsamplers (their '
                    'modules, params, macs, shares and per-call counts), config, shape (H W '
                    'asked for), input_shape (after padding), scope, upsampler, device, '
                    'proposals, model_key')
# Placeholders of --json PATH with several configs: one file per config.
PLACEHOLDERS = ('{config_dir}', '{config_stem}')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = cli.ArgumentParser(
        prog='get_flops.py',
        description='Parameters and GFLOPs (multiply-adds) of an mmdet/mmseg config.',
        epilog='--json PATH writes what results_table.py reads: ' + JSON_FIELDS_HELP + '. '
        'For a run of a work dir, count its dumped config: get_flops.py work_dirs/X/X.py '
        '--json work_dirs/X/complexity.json; for several, --json '
        "'{config_dir}/complexity.json' writes one next to each config.")
    p.add_argument('config', nargs='+', help='mmdet or mmseg config file(s)')
    p.add_argument('--shape', type=int, nargs='+', default=list(DEFAULT_SHAPE),
                   metavar='N', help='input H W, or one number for a square '
                   f'(default: {DEFAULT_SHAPE[0]} {DEFAULT_SHAPE[1]} for both tasks)')
    p.add_argument('--compare', metavar='BASE_CONFIG',
                   help='also measure BASE_CONFIG and print the delta to it (one config only)')
    p.add_argument('--device', choices=['auto', 'meta', 'cpu'], default='auto',
                   help="'auto' (default): meta device (shapes only, fast), CPU when the "
                   'model needs real values')
    p.add_argument('--json', nargs='?', const='-', metavar='PATH',
                   help='JSON instead of the report: one object a config, printed (no PATH, '
                   'or -) or written to PATH (a list for several configs, or one file each '
                   'when PATH holds {config_dir} or {config_stem})')
    p.add_argument('--cfg-options', nargs='+', action=cli.DictAction, metavar='KEY=VALUE',
                   help='override settings of the config(s), e.g. '
                   'model.decode_head.upsample_cfg.type=FADELite')
    args = p.parse_args(argv)
    args.shape = parse_shape(p, args.shape)
    if args.compare and len(args.config) > 1:
        p.error('--compare takes one config, got several')
    if args.json not in (None, '-'):
        if args.json.endswith('.py'):
            p.error(f'argument --json: {args.json} is a .py file: name a .json file, or put '
                    '--json after the config')
        if len(args.config) > 1 and args.json.endswith(os.sep):
            p.error(f'argument --json: {args.json} is a directory')
    for path in args.config + ([args.compare] if args.compare else []):
        try:
            cli.check_config_file(path, '--compare' if path == args.compare else 'config')
        except cli.UsageError as err:
            p.error(str(err))
    return args


def to_json(res: Complexity, base: Optional[Complexity] = None) -> Dict[str, Any]:
    """The JSON object of one result (and its delta to ``base``) that ``--json`` writes."""
    out: Dict[str, Any] = dict(asdict(res), gflops=res.gflops, unit='multiply-adds')
    if base is not None:
        out['baseline'] = dict(asdict(base), gflops=base.gflops)
        out['delta_params'] = res.params - base.params
        out['delta_macs'] = res.macs - base.macs
    return out


def json_path(template: str, config: str) -> str:
    """``--json PATH`` for one config: ``{config_dir}`` / ``{config_stem}`` filled in."""
    return (template.replace('{config_dir}', osp.dirname(osp.abspath(config)))
            .replace('{config_stem}', osp.splitext(osp.basename(config))[0]))


def write_json(path: str, data: Any) -> None:
    """Writes ``data`` to ``path`` atomically (a reader never sees half a file)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=1)
        f.write('\n')
    os.replace(tmp, path)


def check_shape(shape: Sequence[int]) -> None:
    """Refuses an ``(H, W)`` that is not two positive sides within :data:`MAX_SIDE` and
    :data:`MAX_PIXELS` (:class:`fade_mm.cli.UsageError`), before anything is allocated."""
    if len(shape) != 2 or min(shape) < 1:
        raise cli.UsageError(f'--shape takes H W (or one number), positive, got '
                             f'{" ".join(map(str, shape))}')
    h, w = shape
    if max(h, w) > MAX_SIDE or h * w > MAX_PIXELS:
        raise cli.UsageError(
            f'--shape {h} {w} is too large (at most {MAX_SIDE} a side and {MAX_PIXELS:,} '
            'pixels): FLOPs grow with H x W, count at the size the model is used at '
            '(e.g. 512 512, or 800 1333 for detection)')


def parse_shape(parser: argparse.ArgumentParser, shape: List[int]) -> List[int]:
    """``--shape``: ``H W``, or one number for a square; exits with a one-line usage error
    otherwise (see :func:`check_shape`)."""
    if len(shape) == 1:
        shape = shape * 2
    try:
        check_shape(shape)
    except cli.UsageError as err:
        parser.error(str(err))
    return shape


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    base = None
    if args.compare:
        base = measure(load_config(args.compare, args.cfg_options), args.shape, args.device,
                       config_path=args.compare)
    results = []
    for path in args.config:
        cfg = load_config(path, args.cfg_options)
        results.append((path, measure(cfg, args.shape, args.device, config_path=path)))
    if args.json is None:
        print('\n\n'.join(report(res, base) for _, res in results))
    elif args.json == '-':
        for _, res in results:
            print(json.dumps(to_json(res, base)))
    elif any(p in args.json for p in PLACEHOLDERS):
        for path, res in results:
            out = json_path(args.json, path)
            write_json(out, to_json(res, base))
            print(f'{path}: {out}')
    else:
        data = [to_json(res, base) for _, res in results]
        write_json(args.json, data[0] if len(data) == 1 else data)
        print(f'{", ".join(p for p, _ in results)}: {args.json}')
    return 0


if __name__ == '__main__':
    cli.run_cli(main, prog='get_flops.py')
