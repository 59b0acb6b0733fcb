"""CARAFE reassembly in pure PyTorch, with the signature and semantics of ``mmcv.ops.carafe``.

``out[b, c, Y, X] = sum_{i,j<k} masks[b, g(c)*k*k + i*k + j, Y, X]
                    * features[b, c, Y//s + i - r, X//s + j - r]``, ``r = (k-1)//2``,
zero outside the feature map, ``g(c) = c // (C // group_size)``.

The naive formulation unfolds ``features`` and repeats it ``s*s`` times to full resolution,
a ``k*k*C*sH*sW`` tensor (838 MB for C=256, 128x128, B=2). Here the output is split into its
``s*s`` sub-pixel phases so that every low-resolution pixel owns a tiny matrix product
``(s*s x k) @ (k x C/G)`` per kernel row ``i``; features stay channels-last so the ``k`` window
columns of one row are contiguous in memory. Only one kernel row of windows (``k*C*h*w``)
exists at a time, and the autograd function saves nothing but its two inputs.

A second, loop-free formulation (``impl='shift'``) accumulates the ``k*k`` shifted
low-resolution maps against the matching kernel planes of every sub-pixel phase: only
static-size ops, so ONNX export, tracing and ``torch.compile`` see a graph of ``O(k*k)``
nodes whatever the input size. It is selected automatically while exporting, tracing or
compiling. Both paths are plain differentiable PyTorch at the boundary and give the same
numbers (float64 to rounding).

Mixed precision: under ``torch.autocast`` the kernels (a float32 softmax) are cast to the
features' dtype and the reassembly runs in that dtype, with autocast switched off inside
(the op is a weighted sum, so it gains nothing from autocast's per-op casting). Outside
autocast, features and masks must share a dtype.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .._checks import autocast_enabled, check_choice, check_feature, check_int

__all__ = ['carafe', 'carafe_shift', 'carafe_output_flops', 'CARAFE_IMPLS', 'graph_capture']

CARAFE_IMPLS = ('auto', 'rows', 'shift')


def graph_capture() -> bool:
    """True while ONNX export, JIT tracing/scripting, ``torch.export`` or ``torch.compile``
    is recording the model: then only static-size, loop-free ops should run."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    if torch.onnx.is_in_onnx_export():
        return True
    compiler = getattr(torch, 'compiler', None)
    for probe in ('is_compiling', 'is_exporting', 'is_dynamo_compiling'):
        fn = getattr(compiler, probe, None)
        if fn is not None and fn():
            return True
    return False


def _no_autocast(device_type: str):
    """Autocast off for the enclosed ops (only device types autocast knows)."""
    if device_type in ('cpu', 'cuda'):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _validate(features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
              scale_factor: int) -> None:
    check_int('carafe', 'kernel_size', kernel_size, 1, odd=True)
    check_int('carafe', 'group_size', group_size, 1)
    check_int('carafe', 'scale_factor', scale_factor, 1)
    k, g, s = kernel_size, group_size, scale_factor
    check_feature('carafe', 'features', features)
    check_feature('carafe', 'masks', masks)
    if masks.device != features.device or (
            masks.dtype != features.dtype and not autocast_enabled(features)):
        raise ValueError(f'carafe: `masks` must match `features` in dtype and device '
                         f'({features.dtype}, {features.device}), got ({masks.dtype}, '
                         f'{masks.device})')
    b, c, h, w = features.shape
    if c % g:
        raise ValueError(f'carafe: `group_size` must divide the {c} channels of `features`, '
                         f'got {g}')
    want = (b, g * k * k, s * h, s * w)
    if tuple(masks.shape) != want:
        raise ValueError(f'carafe: `masks` must have shape (B, group_size*k*k, s*H, s*W) = '
                         f'{want} for features {tuple(features.shape)}, got '
                         f'{tuple(masks.shape)}')


def _row_windows(xp: Tensor, i: int, h: int, w: int, k: int) -> Tensor:
    """Windows of kernel row ``i`` as a strided view ``(B, h, w*G, k, Cg)`` (no copy).

    ``xp`` is the zero-padded channels-last feature map ``(B, h+2r, w+2r, G, Cg)``;
    entry ``[b, y, x*G + g, j, c] = xp[b, y + i, x + j, g, c]``. Within one ``(b, y)`` the
    ``w*G`` matrices overlap in memory and are BLAS-compatible, so bmm reads them in place.
    """
    b, hp, wp, g, cg = xp.shape
    sb, sy, sx, _, _ = xp.stride()
    return xp.as_strided((b, h, w * g, k, cg), (sb, sy, cg, sx, 1),
                         xp.storage_offset() + i * sy)


def _padded_channels_last(x: Tensor, r: int, g: int) -> Tensor:
    """``(B, C, h, w)`` -> zero-padded channels-last ``(B, h+2r, w+2r, G, C/G)``."""
    b, c, h, w = x.shape
    xp = x.new_zeros(b, h + 2 * r, w + 2 * r, c)
    xp[:, r:r + h, r:r + w] = x.permute(0, 2, 3, 1)
    return xp.view(b, h + 2 * r, w + 2 * r, g, c // g)


def _kernels_by_phase(masks: Tensor, b: int, g: int, k: int, h: int, w: int,
                      s: int) -> Tensor:
    """``(B, G*k*k, s*h, s*w)`` -> ``(P, s*s, k, k)``: one small matrix per pixel and group."""
    m = masks.reshape(b, g, k, k, h, s, w, s).permute(0, 4, 6, 1, 5, 7, 2, 3)
    return m.reshape(b * h * w * g, s * s, k, k)


def _bmm_rows(a: Tensor, win: Tensor, out: Tensor, accumulate: bool) -> None:
    """``out[b, y] (+)= a[b, y] @ win[b, y]`` for every ``(b, y)``; all ``(B, h, n, ., .)``.

    On CPU one bmm per image row reads the overlapping windows in place; on CUDA, where a
    launch per row costs more than a copy, the windows are gathered once for a single bmm.
    """
    if out.is_cuda:
        flat = out.view(-1, *out.shape[-2:])
        a_flat, w_flat = a.reshape(-1, *a.shape[-2:]), win.reshape(-1, *win.shape[-2:])
        if accumulate:
            flat.baddbmm_(a_flat, w_flat)
        else:
            torch.bmm(a_flat, w_flat, out=flat)
        return
    for bb in range(out.shape[0]):
        for y in range(out.shape[1]):
            if accumulate:
                out[bb, y].baddbmm_(a[bb, y], win[bb, y])
            else:
                torch.bmm(a[bb, y], win[bb, y], out=out[bb, y])


def _carafe_forward(x: Tensor, masks: Tensor, k: int, g: int, s: int) -> Tensor:
    b, c, h, w = x.shape
    r, cg = (k - 1) // 2, c // g
    xp = _padded_channels_last(x, r, g)
    kern = _kernels_by_phase(masks, b, g, k, h, w, s)
    out = x.new_zeros(b, h, w * g, s * s, cg)
    kern = kern.view(b, h, w * g, s * s, k, k)
    for i in range(k):
        _bmm_rows(kern[:, :, :, :, i], _row_windows(xp, i, h, w, k), out, accumulate=True)
    out = out.view(b, h, w, g, s, s, cg).permute(0, 3, 6, 1, 4, 2, 5)
    return out.reshape(b, c, s * h, s * w)


def _carafe_backward(grad_out: Tensor, x: Tensor, masks: Tensor, k: int, g: int,
                     s: int, need_x: bool, need_masks: bool):
    b, c, h, w = x.shape
    r, cg = (k - 1) // 2, c // g
    gout = grad_out.reshape(b, g, cg, h, s, w, s).permute(0, 3, 5, 1, 4, 6, 2)
    # contiguous() also materialises expanded gradients (e.g. of a .sum()), whose zero
    # strides would send bmm down a per-matrix copy path.
    gout = gout.reshape(b * h * w * g, s * s, cg).contiguous()
    xp = _padded_channels_last(x, r, g)
    kern = _kernels_by_phase(masks, b, g, k, h, w, s)
    grad_xp = torch.zeros_like(xp) if need_x else None
    if need_x:
        kern_t = kern.permute(0, 2, 3, 1).contiguous()  # (P, k, k, s*s)
        gcol = xp.new_empty(b * h * w * g, 1, cg)
    grad_rows = []
    for i in range(k):
        if need_masks:
            gk = xp.new_empty(b, h, w * g, s * s, k)
            win_t = _row_windows(xp, i, h, w, k).transpose(-1, -2)
            _bmm_rows(gout.view(b, h, w * g, s * s, cg), win_t, gk, accumulate=False)
            grad_rows.append(gk.view(-1, s * s, k))
        if need_x:
            # Each window column j lands on a shifted copy of the map; windows of neighbouring
            # pixels overlap, so they are added one column at a time through a reused buffer.
            for j in range(k):
                torch.bmm(kern_t[:, i, j].unsqueeze(1), gout, out=gcol)
                grad_xp[:, i:i + h, j:j + w] += gcol.view(b, h, w, g, cg)
    grad_x = grad_masks = None
    if need_x:
        grad_x = grad_xp[:, r:r + h, r:r + w].reshape(b, h, w, c).permute(0, 3, 1, 2)
        grad_x = grad_x.contiguous()
    if need_masks:
        gm = torch.stack(grad_rows, 2).view(b, h, w, g, s, s, k, k).permute(0, 3, 6, 7, 1, 4, 2, 5)
        grad_masks = gm.reshape(b, g * k * k, s * h, s * w)
    return grad_x, grad_masks


class _CarafeFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
                scale_factor: int) -> Tensor:
        ctx.save_for_backward(features, masks)
        ctx.args = (kernel_size, group_size, scale_factor)
        with _no_autocast(features.device.type):
            return _carafe_forward(features, masks, kernel_size, group_size, scale_factor)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        features, masks = ctx.saved_tensors
        with _no_autocast(features.device.type):
            grad_x, grad_masks = _carafe_backward(grad_out.to(features.dtype), features,
                                                  masks, *ctx.args,
                                                  need_x=ctx.needs_input_grad[0],
                                                  need_masks=ctx.needs_input_grad[1])
        return grad_x, grad_masks, None, None, None


def _end(i: int, r: int) -> Optional[int]:
    """End of the ``i``-th shifted window of a map padded by ``r`` on both sides."""
    return i - 2 * r if i < 2 * r else None


def carafe_shift(features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
                 scale_factor: int) -> Tensor:
    """Loop-free CARAFE: a sum over the ``k*k`` taps of shifted maps times kernel planes.

    Same contract as :func:`carafe` without the checks. For tap ``(i, j)`` the zero-padded
    map shifted by ``(i - r, j - r)``, ``(B, G, C/G, h, 1, w, 1)``, multiplies that tap's
    kernel plane viewed per sub-pixel phase, ``(B, G, 1, h, s, w, s)``; broadcasting spreads
    each low-resolution pixel over its ``s*s`` children, so nothing is repeated in memory.
    Every slice has constant bounds, so an exported graph holds about five nodes per tap.
    """
    k, g, s = kernel_size, group_size, scale_factor
    b, c, h, w = features.shape
    r = (k - 1) // 2
    xp = F.pad(features, (r, r, r, r)).reshape(b, g, c // g, h + 2 * r, 1, w + 2 * r, 1)
    m = masks.reshape(b, g, k * k, h, s, w, s)
    out = None
    for i in range(k):
        row = xp[:, :, :, i:_end(i, r)]
        for j in range(k):
            tap = row[:, :, :, :, :, j:_end(j, r)]
            plane = m[:, :, i * k + j:i * k + j + 1]
            out = tap * plane if out is None else out.addcmul(tap, plane)
    return out.reshape(b, c, s * h, s * w)


def _mmcv_cuda_carafe():
    """mmcv's compiled CUDA kernel, or None when this mmcv was built without it."""
    try:
        from mmcv.ops import carafe as mmcv_carafe
        from mmcv.utils import ext_loader
        ext = ext_loader.load_ext('_ext', ['carafe_forward'])
        return mmcv_carafe if hasattr(ext, 'carafe_forward') else None
    except Exception:  # mmcv absent or built without ops: fall back to pure PyTorch
        return None


_MMCV_CUDA = {}


def carafe(features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
           scale_factor: int, use_mmcv_cuda: bool = True, impl: str = 'auto') -> Tensor:
    """Content-aware reassembly of features (CARAFE), pure PyTorch with autograd.

    Args:
        features: ``(B, C, h, w)`` low-resolution features, float16/32/64.
        masks: ``(B, group_size * k * k, s * h, s * w)`` reassembly kernels, already
            normalised (e.g. softmax over each group's ``k*k`` channels); same dtype/device.
        kernel_size: odd reassembly kernel size ``k``.
        group_size: number of channel groups ``G`` sharing one kernel; divides ``C``.
        scale_factor: integer upsampling ratio ``s >= 1``.
        use_mmcv_cuda: for CUDA tensors, use mmcv's compiled kernel when it is available
            (identical results); ignored on CPU and by ``impl='shift'``.
        impl: ``'rows'`` (the training path: row-blocked matrix products in a custom
            autograd function, lean in memory), ``'shift'`` (loop-free, static-size ops:
            export, tracing, compile) or ``'auto'``: ``'shift'`` while a graph is being
            captured (:func:`graph_capture`), else ``'rows'``.

    Returns:
        ``(B, C, s * h, s * w)`` reassembled features.

    Raises:
        ValueError: naming the argument, what was expected and what was received.
    """
    check_choice('carafe', 'impl', impl, CARAFE_IMPLS)
    _validate(features, masks, kernel_size, group_size, scale_factor)
    if masks.dtype != features.dtype:  # only reached under autocast (see _validate)
        masks = masks.to(features.dtype)
    if impl == 'shift' or (impl == 'auto' and graph_capture()):
        with _no_autocast(features.device.type):
            return carafe_shift(features, masks, kernel_size, group_size, scale_factor)
    if use_mmcv_cuda and features.is_cuda:
        if 'fn' not in _MMCV_CUDA:
            _MMCV_CUDA['fn'] = _mmcv_cuda_carafe()
        if _MMCV_CUDA['fn'] is not None:
            return _MMCV_CUDA['fn'](features.contiguous(), masks.contiguous(), kernel_size,
                                    group_size, scale_factor)
    return _CarafeFunction.apply(features, masks, kernel_size, group_size, scale_factor)


def carafe_output_flops(channels: int, out_h: int, out_w: int, kernel_size: int,
                        batch: int = 1) -> int:
    """FLOPs of one reassembly, a multiply and an add per kernel tap: ``2*k*k*C*H*W``."""
    return 2 * kernel_size * kernel_size * channels * out_h * out_w * batch
