#!/usr/bin/env python
"""Export an mmseg segmentor of this repository to ONNX and check it with onnxruntime.

What the graph holds
    input ``input``: ``(N, 3, H, W)`` float32, the **normalised** image. The data
        preprocessor is *not* in the graph: convert BGR to RGB when the config says
        ``bgr_to_rgb=True``, subtract ``mean``, divide by ``std`` (per channel, 0-255 pixel
        scale) yourself. The tool prints these values and stores them in the model's metadata
        (``mean``, ``std``, ``bgr_to_rgb``). No padding is needed: any ``H, W`` works (the
        preprocessor's ``size``/``size_divisor`` padding is for batching, not for the model).
    output ``seg_logits``: ``(N, num_classes, H, W)`` float32 logits **at the input size**:
        backbone, neck, decode head (its upsamplers included) and the final bilinear resize
        of mmseg's ``predict`` (``EncoderDecoder.encode_decode``), before the argmax. The
        auxiliary head (training only) is not in it; a ``slide`` test mode is exported as
        whole-image inference.
    ``N``, ``H`` and ``W`` are dynamic. The carafe-based upsamplers (CARAFE, FADE, SAPA, ...)
    take their loop-free path while the graph is captured (:func:`fade_mm.ops.graph_capture`),
    so the graph size does not depend on the input size.

Rewrites, in the exported copy only (the check compares with the untouched model):
    ``nn.AdaptiveAvgPool2d`` with an output above 1x1 (UPerNet's pyramid pooling) becomes
    two pooling matrices built from the input size (:class:`ExportableAdaptiveAvgPool2d`):
    the TorchScript exporter refuses it with dynamic sizes. ``nn.MultiheadAttention``
    (SegFormer's spatial-reduction attention) becomes :class:`ExportableMultiheadAttention`:
    torch's functional form reshapes the keys to the export-size token count.

The check (unless ``--no-check``) runs onnxruntime (CPU) and the eager model on random
normalised images at the export shape (batch 1) and at a second, odd shape (batch 2;
``--check-shape``), and prints the max absolute error and the max relative error (max abs
error over the max abs eager logit). The tool exits with status 1 when the relative error
exceeds 1e-4, 2 on a usage error.

Without CHECKPOINT the model is randomly initialised (seed 0; the printout says so): enough to
check the export, not to segment. Pretrained backbone sources in the config are cleared in
any case, so the tool runs offline. A checkpoint (a runner checkpoint or a bare state dict)
loads with ``weights_only=True`` and fade_mm's allow-list of runner-checkpoint globals.

mmdet detectors are not supported (their post-processing -- NMS, RoI stages -- needs
deployment rewrites: use mmdeploy).

Examples::

    python tools/deployment/export_onnx.py \\
        configs/segformer/segformer_mit-b1_fade_1xb16-160k_ade20k-512x512.py \\
        work_dirs/segformer_mit-b1_fade/best_mIoU_iter_160000.pth --shape 512 512
    python tools/deployment/export_onnx.py \\
        configs/upernet/upernet_r50_fade_4xb4-80k_ade20k-512x512.py --shape 512 512 \\
        --out upernet_fade.onnx --dynamo
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import os.path as osp
import sys
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # usable from a checkout without `pip install -e .`

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402

from fade_mm import cli  # noqa: E402
from fade_mm.tools import build_model, register_scope  # noqa: E402

#: Max relative error of onnxruntime against eager (float32) before the tool fails.
MAX_REL_ERROR = 1e-4
INPUT_NAME, OUTPUT_NAME = 'input', 'seg_logits'
PROG = 'export_onnx.py'


class ExportError(Exception):
    """A problem with the tool's inputs, reported as one line (exit status 2)."""


# argparse, but a usage error is one line (the full usage is in ``--help``); and --debug
_OneLineParser = cli.ArgumentParser


# --------------------------------------------------------------------------- graph rewrites
def _pooling_matrix(size: Any, bins: int, like: Tensor) -> Tensor:
    """``(bins, size)`` matrix averaging ``size`` positions into ``bins`` as adaptive pooling.

    Bin ``i`` covers ``[floor(i*size/bins), ceil((i+1)*size/bins))``, PyTorch's definition.
    ``size`` may be a traced size: the matrix is then built from it in the graph.
    """
    i = torch.arange(bins, device=like.device)
    start = torch.div(i * size, bins, rounding_mode='floor')
    end = torch.div((i + 1) * size + bins - 1, bins, rounding_mode='floor')
    pos = torch.arange(size, device=like.device)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


class ExportableAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two matrix products, exportable with dynamic input sizes.

    ``out = P_h @ x @ P_w^T`` with the pooling matrices of :func:`_pooling_matrix`: the same
    bins and averages as ``F.adaptive_avg_pool2d`` (to float rounding), for any input size,
    also one smaller than the output.

    Args:
        output_size: ``int`` or ``(h, w)`` of positive ints.
    """

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        size = (output_size, output_size) if isinstance(output_size, int) else output_size
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(f'ExportableAdaptiveAvgPool2d: `output_size` must be a positive '
                             f'int or a pair of them, got {output_size!r}')
        self.output_size = tuple(size)

    def forward(self, x: Tensor) -> Tensor:
        rows = _pooling_matrix(x.shape[-2], self.output_size[0], x)
        cols = _pooling_matrix(x.shape[-1], self.output_size[1], x)
        return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def replace_adaptive_pooling(model: nn.Module) -> List[str]:
    """Swaps every ``nn.AdaptiveAvgPool2d`` with an output above 1x1 for the exportable form.

    1x1 (global) pooling is left alone: it exports as ``GlobalAveragePool`` at any size.

    Returns:
        The names of the replaced modules.
    """
    replaced = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.AdaptiveAvgPool2d):
            continue
        size = module.output_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        if size == (1, 1) or any(s is None for s in size):
            continue
        parent_name, _, child = name.rpartition('.')
        setattr(model.get_submodule(parent_name), child, ExportableAdaptiveAvgPool2d(size))
        replaced.append(name)
    return replaced


class ExportableMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` (no masks, no ``bias_k``/``bias_v``) with shape-free reshapes.

    torch's functional attention reshapes the keys with a size that the TorchScript tracer
    records as a constant (``Reshape`` to the export-size token count): SegFormer's
    spatial-reduction attention then fails at any other input size. Here the heads are split
    with ``unflatten`` of the channel dimension only, so token counts and batch stay dynamic.
    Shares the wrapped module's parameters; returns ``(output, None)``.
    """

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        self.mha = mha

    @staticmethod
    def supports(mha: nn.MultiheadAttention) -> bool:
        """Whether ``mha`` uses only what :meth:`forward` implements."""
        return mha.bias_k is None and mha.bias_v is None and not mha.add_zero_attn

    def _projections(self):
        mha, e = self.mha, self.mha.embed_dim
        if mha.in_proj_weight is not None:  # one packed q/k/v projection
            weights = mha.in_proj_weight.split(e)
        else:
            weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
        biases = (mha.in_proj_bias.split(e) if mha.in_proj_bias is not None
                  else (None, None, None))
        return zip(weights, biases)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Optional[Tensor] = None, need_weights: bool = True,
                attn_mask: Optional[Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> Tuple[Tensor, None]:
        if key_padding_mask is not None or attn_mask is not None or is_causal:
            raise NotImplementedError('ExportableMultiheadAttention: masks are not supported')
        mha = self.mha
        heads, dim = mha.num_heads, mha.head_dim
        if mha.batch_first:  # -> (tokens, batch, channels), torch's own layout
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        # (tokens, batch, channels) -> (batch, heads, tokens, dim)
        q, k, v = (F.linear(t, w, b).unflatten(-1, (heads, dim)).permute(1, 2, 0, 3)
                   for t, (w, b) in zip((query, key, value), self._projections()))
        attn = torch.softmax(torch.matmul(q * dim ** -0.5, k.transpose(-2, -1)), dim=-1)
        out = torch.matmul(attn, v).permute(2, 0, 1, 3).flatten(2)  # (tokens, batch, ch)
        out = mha.out_proj(out)
        return (out.transpose(0, 1) if mha.batch_first else out), None


def replace_attention(model: nn.Module) -> List[str]:
    """Wraps every supported ``nn.MultiheadAttention`` in :class:`ExportableMultiheadAttention`.

    Returns:
        The names of the wrapped modules.
    """
    replaced = []
    for name, module in list(model.named_modules()):
        if type(module) is nn.MultiheadAttention and ExportableMultiheadAttention.supports(module):
            parent_name, _, child = name.rpartition('.')
            setattr(model.get_submodule(parent_name), child,
                    ExportableMultiheadAttention(module))
            replaced.append(name)
    return replaced


class SegmentorForExport(nn.Module):
    """Normalised image -> seg logits at the input size, as mmseg's whole-image inference.

    ``extract_feat`` (backbone + neck), the decode head's ``forward`` and the bilinear resize
    of ``BaseDecodeHead.predict_by_feat`` to the input size -- without the data samples,
    which tracing cannot carry.
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor

    def forward(self, inputs: Tensor) -> Tensor:
        from mmseg.models.utils import resize
        head = self.segmentor.decode_head
        logits = head.forward(self.segmentor.extract_feat(inputs))
        return resize(logits, size=inputs.shape[2:], mode='bilinear',
                      align_corners=head.align_corners, warning=False)


# --------------------------------------------------------------------------- model
def load_config(path: str, cfg_options: Optional[Dict[str, Any]]):
    """Reads the config, checks it is an mmseg one, registers mmseg's and fade_mm's modules."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        raise ExportError(f'{path} is an mmdet config: detectors are not supported by this '
                          f'tool (only mmseg segmentors; export detectors with mmdeploy)')
    if scope != 'mmseg':
        raise ExportError(f'{path}: default_scope must be \'mmseg\' (a segmentor config), '
                          f'got {scope!r}')
    register_scope(scope)  # the heads; installs the safe checkpoint loading
    return cfg


def build_segmentor(cfg, checkpoint: Optional[str]) -> Tuple[nn.Module, List[str]]:
    """Builds ``cfg.model`` on CPU in eval mode: random init (seed 0) or the checkpoint.

    Returns:
        The model and the pretrained sources that were cleared from the config.
    """
    from fade_mm.compat import UntrustedCheckpointError
    from fade_mm.configs import clear_pretrained

    cleared = clear_pretrained(cfg)  # offline: nothing is downloaded, with or without CKPT
    torch.manual_seed(0)
    try:
        # SyncBN (the configs' norm) has no CPU or ONNX form: build_model makes it plain BN
        model = build_model(cfg, checkpoint, init_weights=True)
    except UntrustedCheckpointError as err:
        raise ExportError(str(err).splitlines()[0]) from err
    except RuntimeError as err:  # strict: missing or unexpected keys, shape mismatches
        if checkpoint is None or 'do not match' not in str(err):
            raise
        raise ExportError(f'{checkpoint} does not fit the model of the config: '
                          f'{" ".join(str(err).split())[:400]}') from err
    return model, cleared


def preprocessing(cfg) -> Dict[str, Any]:
    """The data preprocessor's normalisation (what the caller must apply; not in the graph)."""
    pre = cfg.model.get('data_preprocessor') or {}
    return dict(mean=[float(v) for v in pre.get('mean') or (0.0, 0.0, 0.0)],
                std=[float(v) for v in pre.get('std') or (1.0, 1.0, 1.0)],
                bgr_to_rgb=bool(pre.get('bgr_to_rgb', False)))


def eager_logits(model: nn.Module, inputs: Tensor) -> Tensor:
    """mmseg's own whole-image inference (``encode_decode``) on normalised images."""
    h, w = inputs.shape[2:]
    metas = [dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))] * inputs.shape[0]
    with torch.no_grad():
        return model.encode_decode(inputs, metas)


# --------------------------------------------------------------------------- export
def export(model: nn.Module, path: str, shape: Sequence[int], opset: int,
           dynamo: bool) -> Tuple[float, Dict[str, int]]:
    """Exports ``SegmentorForExport(copy of model)`` with dynamic N, H, W.

    Returns:
        Seconds taken, and how many modules of each kind the copy had rewritten.
    """
    wrapper = SegmentorForExport(copy.deepcopy(model)).eval()
    rewrites = {'adaptive pooling': len(replace_adaptive_pooling(wrapper)),
                'multi-head attention': len(replace_attention(wrapper))}
    # batch 2: torch.export specialises dimensions of size 1, which would fix the batch
    example = (torch.randn(2, 3, *shape),)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    start = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        # TracerWarnings about shape arithmetic: the graph is checked at other sizes below.
        warnings.simplefilter('ignore')
        if dynamo:
            for name in ('torch.onnx', 'onnxscript', 'onnx_ir'):  # progress chatter
                logging.getLogger(name).setLevel(logging.ERROR)
            dim = torch.export.Dim.DYNAMIC
            torch.onnx.export(wrapper, example, path, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=opset, dynamo=True,
                              dynamic_shapes=({0: dim, 2: dim, 3: dim},), verbose=False,
                              external_data=False)
        else:
            axes = {0: 'batch', 2: 'height', 3: 'width'}
            torch.onnx.export(wrapper, example, path, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=opset, dynamo=False,
                              dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes})
    return time.perf_counter() - start, rewrites


def add_metadata(path: str, props: Dict[str, str]) -> Tuple[int, int]:
    """Stores ``props`` in the model's metadata; returns (nodes, nodes without Constant)."""
    import onnx
    model = onnx.load(path)
    onnx.helper.set_model_props(model, props)
    onnx.save(model, path)
    nodes = model.graph.node
    return len(nodes), sum(n.op_type != 'Constant' for n in nodes)


def check(model: nn.Module, path: str, shapes: Sequence[Tuple[int, int, int]]) -> float:
    """onnxruntime against eager at each ``(N, H, W)``; prints and returns the worst rel error."""
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    for n, h, w in shapes:
        x = torch.randn(n, 3, h, w, generator=gen)
        ref = eager_logits(model, x).numpy()
        try:
            out = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        except Exception as err:  # e.g. a reshape that kept an export-time size
            print(f'onnxruntime vs eager {n}x3x{h}x{w}: onnxruntime failed: '
                  f'{" ".join(str(err).split())[:300]}')
            return float('inf')
        if out.shape != ref.shape:
            print(f'onnxruntime vs eager {n}x3x{h}x{w}: output shape {out.shape}, eager '
                  f'{ref.shape}')
            return float('inf')
        err = float(abs(out - ref).max())
        rel = err / max(float(abs(ref).max()), 1e-12)
        worst = max(worst, rel)
        print(f'onnxruntime vs eager {n}x3x{h}x{w}: max abs err {err:.3e}, '
              f'max rel err {rel:.3e}')
    return worst


# --------------------------------------------------------------------------- command line
def _positive_pair(parser: _OneLineParser, option: str,
                   value: Optional[List[int]]) -> None:
    if value is not None and not all(v > 0 for v in value):
        parser.error(f'argument {option}: expected two positive integers H W, got '
                     f'{" ".join(map(str, value))}')


def default_check_shape(h: int, w: int) -> Tuple[int, int]:
    """A second shape that differs from the export one in both sides, and odd."""
    return max(33, h * 3 // 4) | 1, max(33, w * 5 // 4) | 1


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses the command line; usage errors exit with status 2 and one line."""
    parser = _OneLineParser(
        prog=PROG, description='Export an mmseg segmentor (e.g. SegFormer / UPerNet with '
        'FADE) to ONNX with dynamic batch, height and width, and check it with onnxruntime. '
        'Graph input: the normalised image (the data preprocessor is not in the graph); '
        'output: seg logits at the input size.')
    parser.add_argument('config', help='mmseg config file')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint to load; without it the '
                        'model is randomly initialised (checks the export only)')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='image height and width used for the export')
    parser.add_argument('--out', help='output .onnx file (default: '
                        'work_dirs/CONFIG_NAME/CONFIG_NAME.onnx)')
    parser.add_argument('--opset', type=int, default=None, help='ONNX opset (default: 17; '
                        '18 with --dynamo)')
    parser.add_argument('--dynamo', action='store_true', help='use the torch.export-based '
                        'exporter instead of the TorchScript one')
    parser.add_argument('--no-check', action='store_true',
                        help='skip the onnxruntime check')
    parser.add_argument('--check-shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='second shape of the check, at batch 2 (default: an odd shape '
                        'derived from --shape)')
    parser.add_argument('--cfg-options', nargs='+', action=cli.DictAction,
                        help='override settings of the config, key=value pairs')
    args = parser.parse_args(argv)
    _positive_pair(parser, '--shape', args.shape)
    _positive_pair(parser, '--check-shape', args.check_shape)
    if args.opset is not None and args.opset < 11:
        parser.error(f'argument --opset: expected 11 or higher, got {args.opset}')
    if not osp.isfile(args.config):
        parser.error(f'argument config: no such file: {args.config}')
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        parser.error(f'argument checkpoint: no such file: {args.checkpoint}')
    try:
        cli.check_config_file(args.config)
    except cli.UsageError as err:
        parser.error(str(err))
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 check failed, 2 usage error)."""
    args = parse_args(argv)
    name = osp.splitext(osp.basename(args.config))[0]
    out = args.out or osp.join('work_dirs', name, f'{name}.onnx')
    opset = args.opset or (18 if args.dynamo else 17)
    try:
        if args.checkpoint is not None:  # empty, truncated, not a checkpoint: one line
            cli.check_checkpoint(args.checkpoint, 'argument checkpoint')
        cfg = load_config(args.config, args.cfg_options)
        model, cleared = build_segmentor(cfg, args.checkpoint)
    except ExportError as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return 2
    except cli.CLIError as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return err.status
    if args.checkpoint is None:
        print('no checkpoint: the model is randomly initialised (seed 0)')
    if cleared:
        print(f'pretrained sources cleared (offline): {", ".join(cleared)}')
    pre = preprocessing(cfg)
    num_classes = model.decode_head.out_channels

    seconds, rewrites = export(model, out, args.shape, opset, args.dynamo)
    nodes, non_const = add_metadata(out, dict(
        config=osp.basename(args.config), checkpoint=str(args.checkpoint),
        mean=str(pre['mean']), std=str(pre['std']), bgr_to_rgb=str(pre['bgr_to_rgb']),
        input='(N, 3, H, W) float32: (image - mean) / std, RGB if bgr_to_rgb',
        output=f'(N, {num_classes}, H, W) float32 seg logits at the input size'))
    size_mb = osp.getsize(out) / 2 ** 20
    exporter = 'dynamo' if args.dynamo else 'TorchScript'
    print(f'exported {out} ({exporter} exporter, opset {opset}) in {seconds:.1f} s')
    done = [f'{n} {kind}' for kind, n in rewrites.items() if n]
    if done:
        print(f'rewritten for export (exported copy only): {", ".join(done)}')
    print(f'input  {INPUT_NAME!r}: (N, 3, H, W) float32, normalised: '
          f'({"RGB" if pre["bgr_to_rgb"] else "as loaded"} image - mean) / std, '
          f'mean={pre["mean"]}, std={pre["std"]} (not in the graph)')
    print(f'output {OUTPUT_NAME!r}: (N, {num_classes}, H, W) seg logits at the input size '
          f'(N, H, W dynamic)')
    print(f'graph: {nodes} nodes ({non_const} without Constant), file {size_mb:.2f} MB')
    if args.no_check:
        return 0
    h, w = args.shape
    check_h, check_w = args.check_shape or default_check_shape(h, w)
    worst = check(model, out, [(1, h, w), (2, check_h, check_w)])
    if not worst <= MAX_REL_ERROR:
        print(f'FAILED: max rel err {worst:.3e} > {MAX_REL_ERROR:.0e}')
        return 1
    print(f'OK: max rel err {worst:.3e} <= {MAX_REL_ERROR:.0e}')
    return 0


if __name__ == '__main__':
    cli.run_cli(main, prog=PROG)
