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
the RPN's ``max_per_img`` proposals (NMS of an untrained RPN keeps a random number).

Examples::

    python tools/analysis_tools/get_flops.py \\
        configs/segformer/segformer_mit-b1_fade_1xb16-160k_ade20k-512x512.py \\
        --compare configs/segformer/segformer_mit-b1_bilinear_1xb16-160k_ade20k-512x512.py
    python tools/analysis_tools/get_flops.py \\
        configs/faster_rcnn/faster-rcnn_r50_fpn-fade_8xb2-1x_coco.py --shape 800 1333
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
import os.path as osp
import sys
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
    return registry(scope_of(cfg)).build(_model_cfg(cfg)).eval()


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

    def zeros_of_shape(ext: nn.Module):
        def forward(feats, rois, roi_scale_factor=None):
            size = ext.roi_layers[0].output_size
            return feats[0].new_zeros(rois.shape[0], ext.out_channels, *size)
        return forward

    patched = [(rpn, 'predict', predict)]
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


def count_model(model: nn.Module, inputs: torch.Tensor,
                data_samples: list) -> Tuple[int, int, Optional[int]]:
    """Multiply-adds of ``model(inputs, data_samples, mode='tensor')``.

    Returns:
        ``(macs, sampling_macs, proposals)``: ``proposals`` is the number of RoIs a two-stage
        detector's RoI stage was run on (None for other models).
    """
    sampling = _SamplingMacs()

    def forward() -> None:
        with sampling:
            model(inputs, data_samples, mode='tensor')

    with _data_independent_two_stage(model, inputs.is_meta) as proposals:
        macs = count_flops(forward)
    return macs, sampling.macs, proposals


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
    model = build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    meta_error = None
    macs = sampling = proposals = inputs = None
    if device in ('auto', 'meta'):
        try:
            # the image on meta too: nothing of the input's size is allocated
            inputs, samples = dummy_batch(cfg, shape, 'meta')
            # a copy: moving to meta discards the weights a CPU fallback would need
            macs, sampling, proposals = count_model(copy.deepcopy(model).to('meta'),
                                                    inputs, samples)
        except Exception as err:  # noqa: BLE001  (any op without a meta kernel lands here)
            if device == 'meta':
                raise
            meta_error = f'{type(err).__name__}: {str(err).splitlines()[0][:200]}'
    if macs is None:
        inputs, samples = dummy_batch(cfg, shape)
        macs, sampling, proposals = count_model(model, inputs, samples)
    _, up = find_upsample_cfg(cfg.model)
    return Complexity(config=config_path or cfg.filename, scope=scope,
                      upsampler=up.get('type') if isinstance(up, dict) else None,
                      params=params, macs=macs, sampling_macs=sampling,
                      input_shape=list(inputs.shape),
                      device='cpu' if meta_error or device == 'cpu' else 'meta',
                      meta_error=meta_error, proposals=proposals)


def _fmt_params(n: int) -> str:
    return f'{n:,} ({n / 1e6:.2f} M)'


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


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = cli.ArgumentParser(
        prog='get_flops.py',
        description='Parameters and GFLOPs (multiply-adds) of an mmdet/mmseg config.')
    p.add_argument('config', help='mmdet or mmseg config file')
    p.add_argument('--shape', type=int, nargs='+', default=list(DEFAULT_SHAPE),
                   metavar='N', help='input H W, or one number for a square '
                   f'(default: {DEFAULT_SHAPE[0]} {DEFAULT_SHAPE[1]} for both tasks)')
    p.add_argument('--compare', metavar='BASE_CONFIG',
                   help='also measure BASE_CONFIG and print the delta to it')
    p.add_argument('--device', choices=['auto', 'meta', 'cpu'], default='auto',
                   help="'auto' (default): meta device (shapes only, fast), CPU when the "
                   'model needs real values')
    p.add_argument('--json', action='store_true', help='print one JSON object instead')
    p.add_argument('--cfg-options', nargs='+', action=cli.DictAction, metavar='KEY=VALUE',
                   help='override settings of the config(s), e.g. '
                   'model.decode_head.upsample_cfg.type=FADELite')
    args = p.parse_args(argv)
    args.shape = parse_shape(p, args.shape)
    for path in [args.config] + ([args.compare] if args.compare else []):
        try:
            cli.check_config_file(path, 'config' if path == args.config else '--compare')
        except cli.UsageError as err:
            p.error(str(err))
    return args


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
    results = []
    for path in [args.config] + ([args.compare] if args.compare else []):
        cfg = load_config(path, args.cfg_options)
        results.append(measure(cfg, args.shape, args.device, config_path=path))
    res, base = results[0], (results[1] if len(results) > 1 else None)
    if args.json:
        out: Dict[str, Any] = dict(asdict(res), gflops=res.gflops, unit='multiply-adds')
        if base is not None:
            out['baseline'] = dict(asdict(base), gflops=base.gflops)
            out['delta_params'] = res.params - base.params
            out['delta_macs'] = res.macs - base.macs
        print(json.dumps(out))
    else:
        print(report(res, base))
    return 0


if __name__ == '__main__':
    cli.run_cli(main, prog='get_flops.py')
