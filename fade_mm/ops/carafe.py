"""CARAFE reassembly in pure PyTorch, with the signature and semantics of ``mmcv.ops.carafe``.

``out[b, c, Y, X] = sum_{i,j<k} masks[b, g(c)*k*k + i*k + j, Y, X]
                    * features[b, c, Y//s + i - r, X//s + j - r]``, ``r = (k-1)//2``,
zero outside the feature map, ``g(c) = c // (C // group_size)``.

The naive formulation unfolds ``features`` and repeats it ``s*s`` times to full resolution,
a ``k*k*C*sH*sW`` tensor (838 MB for C=256, 128x128, B=2). Here every low-resolution pixel
owns one small matrix product, ``(s*s x k*k) kernels @ (k*k x C) window``, giving its ``s*s``
children at once. The training path (``impl='rows'``, a custom autograd function) issues
these products as a few large batched calls: features are stored channels last with the
``k`` vertical taps of each column side by side, so that the window of *every* pixel of a
block of rows is a contiguous matrix at a fixed stride from its neighbour's -- a strided view
that one ``bmm`` reads in place. A forward is ~3 kernel calls per block plus set-up, a
backward ~10 (about 50 in all at C=256, 64x64 -> 128x128, B=2, against ~1,400 when each image
row was a separate product): few thread hand-offs, which is what keeps it fast on a busy
machine. Blocks (bands of rows, or whole maps) bound the working buffers to
:data:`BLOCK_BYTES`, and the function saves nothing but its two inputs.

A second, loop-free formulation (``impl='shift'``) gathers the ``k*k`` taps of every pixel
at low resolution with one ``index_select`` and contracts them with one ``matmul``: only
static-size ops, so ONNX export, tracing and ``torch.compile`` see a small graph whatever
the input size. It is selected automatically while exporting, tracing or compiling. Both
paths are plain differentiable PyTorch at the boundary and give the same numbers (float64
to rounding).

Mixed precision: under ``torch.autocast`` the kernels (a float32 softmax) are cast to the
features' dtype and the reassembly runs in that dtype, with autocast switched off inside
(the op is a weighted sum, so it gains nothing from autocast's per-op casting). Outside
autocast, features and masks must share a dtype.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import autocast_enabled, check_choice, check_feature, check_int

__all__ = ['carafe', 'carafe_shift', 'carafe_output_flops', 'CARAFE_IMPLS', 'graph_capture',
           'exact_work']

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


_EXACT_WORK: contextvars.ContextVar = contextvars.ContextVar('carafe_exact_work', default=False)


@contextlib.contextmanager
def exact_work():
    """Within this context ``impl='auto'`` takes the loop-free path, whose single product
    performs exactly the op's ``k*k*C*sH*sW`` multiply-adds. The training path also computes
    (and drops) the padding positions of its flat layout, up to ``(h+k-1)(w+k-1)/(h*w)`` of
    the work, which an operation counter would charge to the op
    (:func:`fade_mm.profiling.count_flops` enters this context)."""
    token = _EXACT_WORK.set(True)
    try:
        yield
    finally:
        _EXACT_WORK.reset(token)


def _no_autocast(device_type: str):
    """Autocast off for the enclosed ops (only device types autocast knows)."""
    if device_type in ('cpu', 'cuda'):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _validate(features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
              scale_factor: int) -> Tuple[int, int, int]:
    """Raise ValueError on bad arguments; returns ``(k, G, s)`` as Python ints."""
    kernel_size = check_int('carafe', 'kernel_size', kernel_size, 1, odd=True)
    group_size = check_int('carafe', 'group_size', group_size, 1)
    scale_factor = check_int('carafe', 'scale_factor', scale_factor, 1)
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
    return k, g, s


#: Byte budget of the largest per-block buffer of the training path (a band of rows, or a
#: few whole maps when they are small). Kept below glibc's 32 MiB mmap ceiling so freed
#: buffers are reused instead of faulted in afresh on every call, and large enough that a
#: typical feature map takes one or two blocks: every block costs about three kernel calls
#: forward and ten backward, and each call is a thread synchronisation that another busy
#: process on the machine makes expensive.
BLOCK_BYTES = 24 << 20


class _Blocks:
    """Geometry of the training path: padded grid, flat positions and blocks of rows.

    ``n`` maps (batch times groups, see :class:`_CarafeFunction`) of ``c`` channels and
    ``h x w`` pixels, zero-padded by ``r = (k-1)//2`` to ``hp x wp``. Position ``(b, y, x)``
    has the flat index ``(b*hp + y)*wp + x``; with every buffer channels last, one step of
    the flat index moves every window by the same stride, so the windows of all positions
    of a block are one strided batch of matrices that ``bmm`` reads in place. Positions on
    the padding are computed and dropped (``hp*wp/(h*w)`` of the work: +13% at 64x64, k=5).

    A block holds rows ``y0:y1`` of maps ``b0:b1``; it spans several maps only when whole
    maps fit :data:`BLOCK_BYTES` (then ``y0, y1 = 0, h``). Its buffers give each map
    ``y1 - y0 + 2r`` local rows -- ``hp`` whenever there is more than one map -- so local flat
    positions advance like global ones: local position ``m`` is global ``start + m``.
    """

    def __init__(self, n: int, c: int, h: int, w: int, k: int, s: int, itemsize: int):
        self.n, self.c, self.h, self.w, self.k, self.s = n, c, h, w, k, s
        self.r = r = (k - 1) // 2
        self.hp, self.wp = h + 2 * r, w + 2 * r
        # per padded row: stacked taps (k*C) or phases (s*s*C), whichever is larger
        row_bytes = self.wp * max(k, s * s) * c * itemsize
        fit = max(1, BLOCK_BYTES // row_bytes)
        if fit >= self.hp:  # whole maps per block
            self.maps, self.rows = min(n, fit // self.hp), h
        else:  # bands of equal height
            bands = -(-h // max(1, fit - 2 * r))
            self.maps, self.rows = 1, -(-h // bands)
        self.local_rows = self.maps * (self.rows + 2 * r)  # rows of a block buffer

    def __iter__(self):
        """Yield ``(b0, b1, y0, y1, start, count)`` per block; ``count`` positions end at
        the block's last real pixel, so every window stays inside the buffers."""
        r, wp, w = self.r, self.wp, self.w
        for b0 in range(0, self.n, self.maps):
            b1 = min(b0 + self.maps, self.n)
            for y0 in range(0, self.h, self.rows):
                y1 = min(y0 + self.rows, self.h)
                count = ((b1 - b0 - 1) * (y1 - y0 + 2 * r) + y1 - y0 - 1) * wp + w
                yield b0, b1, y0, y1, (b0 * self.hp + y0) * wp, count

    def __len__(self) -> int:
        return -(-self.n // self.maps) * -(-self.h // self.rows)


def _windows(t: Tensor, first: int, count: int, rows: int, step: int,
             transpose: bool = False) -> Tensor:
    """Overlapping ``rows x C`` matrices in a contiguous buffer of ``C``-vectors (last dim
    ``C``): matrix ``m`` is the ``rows`` consecutive vectors from vector ``first + m*step``.
    A strided view, ``(count, rows, C)`` or ``(count, C, rows)`` if ``transpose``, that bmm
    reads in place."""
    c = t.shape[-1]
    offset = t.storage_offset() + first * c
    if transpose:
        return t.as_strided((count, c, rows), (step * c, 1, c), offset)
    return t.as_strided((count, rows, c), (step * c, c, 1), offset)


def _padded_channels_last(x: Tensor, geo: _Blocks) -> Tensor:
    """``(N, C, h, w)`` -> zero-padded channels-last ``(N, hp, wp, C)``."""
    r, h, w = geo.r, geo.h, geo.w
    xp = x.new_zeros(geo.n, geo.hp, geo.wp, geo.c)
    xp[:, r:r + h, r:r + w] = x.permute(0, 2, 3, 1)
    return xp


def _stack_rows(xs: Tensor, xp: Tensor, geo: _Blocks, b0: int, b1: int, y0: int,
                y1: int) -> Tensor:
    """Fill the block buffer ``xs`` with the ``k`` vertical taps of every position:
    ``xs[j, y - y0, x, i] = xp[b0 + j, y + i, x]`` (channels last).

    Stacking a column's taps side by side makes the ``k`` positions ``x .. x+k-1`` of a row
    one contiguous ``k*k x C`` matrix, the whole window of output position ``(y, x)`` with
    taps ordered ``j*k + i``. It costs ``k`` copies of a band of the low-resolution map
    (``k/s^2`` of the output's size), not the ``k*k*s*s`` of a full-resolution unfold.
    The ``2r`` rows after each map's band are read only by dropped positions; they hold
    zeros (:func:`_tap_buffer`) or earlier bands' values, finite either way.
    """
    nb, rows, k, c, hp, wp = b1 - b0, y1 - y0, geo.k, geo.c, geo.hp, geo.wp
    view = xs[:nb * (rows + 2 * geo.r) * wp].view(nb, rows + 2 * geo.r, wp, k, c)
    view[:, :rows] = xp.as_strided((nb, rows, wp, k, c), (hp * wp * c, wp * c, c, wp * c, 1),
                                   xp.storage_offset() + (b0 * hp + y0) * wp * c)
    return xs


def _tap_buffer(x: Tensor, geo: _Blocks) -> Tensor:
    """The block buffer of :func:`_stack_rows`, ``(local_rows*wp, k, C)``, with the rows
    that no band writes zeroed (cheaper than zeroing it all)."""
    xs = x.new_empty(geo.local_rows * geo.wp, geo.k, geo.c)
    if geo.r:
        xs.view(geo.maps, geo.rows + 2 * geo.r, -1)[:, geo.rows:] = 0
    return xs


def _kernels_by_position(masks: Tensor, geo: _Blocks) -> Tensor:
    """``(N, k*k, s*h, s*w)`` -> ``(N*hp*wp, s*s, k*k)``, one matrix per padded position,
    taps ordered ``j*k + i`` like :func:`_stack_rows`, zero on the padding."""
    n, h, w, k, s = geo.n, geo.h, geo.w, geo.k, geo.s
    kern = masks.new_zeros(n, geo.hp, geo.wp, s, s, k, k)
    kern[:, :h, :w] = masks.reshape(n, k, k, h, s, w, s).permute(0, 3, 5, 4, 6, 2, 1)
    return kern.view(-1, s * s, k * k)


def _kernels_transposed(masks: Tensor, geo: _Blocks) -> Tensor:
    """The kernels seen from the input side, ``(N*hp*wp, k, k*s*s)``, for the gradient of x.

    Input pixel ``(Y, X)`` reaches output pixel ``(Y - r + i', X - r + j')`` through tap
    ``(k-1-i', k-1-j')``. Entry ``[(b, Y, X), i', j'*s*s + p]`` is that tap's weight at phase
    ``p`` of that output pixel, zero where it lies outside the map. Numbering the taps
    backwards makes the matching gradient windows advance with ``i'`` and ``j'``, so they
    too are strided views (see :func:`_carafe_backward`).
    """
    n, h, w, k, s, r = geo.n, geo.h, geo.w, geo.k, geo.s, geo.r
    padded = masks.new_zeros(n, h + 2 * r, w + 2 * r, s, s, k, k)
    padded[:, r:r + h, r:r + w] = masks.reshape(n, k, k, h, s, w, s).permute(0, 3, 5, 4, 6, 1, 2)
    sb, sy, sx = padded.stride()[:3]
    # [b, Y, X, i', j', p] = padded[b, Y + i', X + j', p, k-1-i', k-1-j']: a diagonal view
    # (the tap index falls by k and 1 while the position rises by a row and a column).
    diag = padded.as_strided((n, h, w, k, k, s * s), (sb, sy, sx, sy - k, sx - 1, k * k),
                             padded.storage_offset() + k * k - 1)
    kt = masks.new_zeros(n, geo.hp, geo.wp, k, k, s * s)
    kt[:, :h, :w] = diag
    return kt.view(-1, k, k * s * s)


def _carafe_forward(x: Tensor, masks: Tensor, k: int, s: int) -> Tensor:
    """Reassembly of ``x (N, C, h, w)`` with ``masks (N, k*k, s*h, s*w)`` (one group).

    Per block: stack the vertical taps (:func:`_stack_rows`), one bmm
    ``(s*s x k*k) kernels @ (k*k x C) window`` at every position, one copy to the output.
    """
    n, c, h, w = x.shape
    geo = _Blocks(n, c, h, w, k, s, x.element_size())
    r, wp = geo.r, geo.wp
    xp = _padded_channels_last(x, geo)
    kern = _kernels_by_position(masks, geo)
    xs = _tap_buffer(x, geo)
    buf = x.new_empty(geo.local_rows * wp, s * s, c)
    out = x.new_empty(n, c, s * h, s * w)
    for b0, b1, y0, y1, start, count in geo:
        _stack_rows(xs, xp, geo, b0, b1, y0, y1)
        torch.bmm(kern[start:start + count], _windows(xs, 0, count, k * k, k), out=buf[:count])
        nb, rows = b1 - b0, y1 - y0
        block = buf[:nb * (rows + 2 * r) * wp].view(nb, rows + 2 * r, wp, s, s, c)
        out[b0:b1, :, s * y0:s * y1].view(nb, c, rows, s, w, s).copy_(
            block[:, :rows, :w].permute(0, 5, 1, 3, 2, 4))
    return out


def _carafe_backward(grad_out: Tensor, x: Tensor, masks: Tensor, k: int, s: int,
                     need_x: bool, need_masks: bool):
    """Gradients of :func:`_carafe_forward` (one group), block by block.

    Each block copies the incoming gradient of its output rows, plus ``r`` rows on either
    side, into a zero-bordered channels-last buffer ``(rows + 2r, wp, s*s, C)``. Then
    ``d masks = grad (s*s x C) @ window^T (C x k*k)`` in one bmm, and ``d x`` gathers, per
    kernel row ``i'``, the ``k*s*s`` gradient vectors that reach each input pixel (a strided
    view of that buffer) against :func:`_kernels_transposed`: ``(1 x k*s*s) @ (k*s*s x C)``,
    ``k`` bmm calls accumulating into a low-resolution buffer.
    """
    n, c, h, w = x.shape
    geo = _Blocks(n, c, h, w, k, s, x.element_size())
    r, wp, ss, size = geo.r, geo.wp, s * s, geo.local_rows * geo.wp
    # Zero borders: every block writes the same columns of this buffer, so its padding
    # columns stay zero; so do the rows beyond the map when blocks are whole maps, while bands
    # clear theirs where the map ends (each kernel call counts on a busy machine).
    gbuf = grad_out.new_zeros(size, ss, c)
    bands = geo.rows < h
    grad_x = grad_masks = None
    if need_masks:
        xp = _padded_channels_last(x, geo)
        xs = _tap_buffer(x, geo)
        gm_buf = masks.new_empty(size, ss, k * k)
        grad_masks = masks.new_empty(n, k * k, s * h, s * w)
    if need_x:
        kt = _kernels_transposed(masks, geo)
        gx_buf = x.new_empty(size, 1, c)
        grad_x = x.new_empty(n, c, h, w)
    for b0, b1, y0, y1, start, count in geo:
        nb, rows = b1 - b0, y1 - y0
        # Gradient rows y0-r .. y1+r of the output, clipped to the map, at local rows 0..
        ya, yb = max(y0 - r, 0), min(y1 + r, h)
        va, vb = ya - y0 + r, yb - y0 + r
        g = gbuf[:nb * (rows + 2 * r) * wp].view(nb, rows + 2 * r, wp, s, s, c)
        if bands and va > 0:
            g[:, :va] = 0
        if bands and vb < rows + 2 * r:
            g[:, vb:] = 0
        g[:, va:vb, r:r + w] = grad_out[b0:b1, :, s * ya:s * yb].view(
            nb, c, yb - ya, s, w, s).permute(0, 2, 4, 3, 5, 1)
        if need_masks:
            _stack_rows(xs, xp, geo, b0, b1, y0, y1)
            own = gbuf[r * wp + r:r * wp + r + count]  # the block's own output positions
            torch.bmm(own, _windows(xs, 0, count, k * k, k, transpose=True), out=gm_buf[:count])
            block = gm_buf[:nb * (rows + 2 * r) * wp].view(nb, rows + 2 * r, wp, s, s, k, k)
            grad_masks[b0:b1, :, s * y0:s * y1].view(nb, k, k, rows, s, w, s).copy_(
                block[:, :rows, :w].permute(0, 6, 5, 1, 3, 2, 4))
        if need_x:
            acc = gx_buf[:count]
            for i in range(k):
                a = kt[start:start + count, i:i + 1]
                # the k*s*s gradient vectors of kernel row i' reaching each input pixel
                win = _windows(gbuf, i * wp * ss, count, k * ss, ss)
                if i == 0:
                    torch.bmm(a, win, out=acc)
                else:
                    acc.baddbmm_(a, win)
            block = gx_buf[:nb * (rows + 2 * r) * wp].view(nb, rows + 2 * r, wp, c)
            grad_x[b0:b1, :, y0:y1] = block[:, :rows, :w].permute(0, 3, 1, 2)
    return grad_x, grad_masks


def _differentiable_backward(ctx, loop_free, grad_out: Tensor, args: tuple) -> tuple:
    """Backward of a custom function of two tensors (its first two saved tensors) and
    ``args``, made of differentiable ops for ``create_graph=True``: the gradients of its
    loop-free twin ``loop_free(*tensors, *args)`` (the same function), which autograd can
    differentiate again."""
    inputs = ctx.saved_tensors[:2]
    wanted = [t for t, need in zip(inputs, ctx.needs_input_grad) if need]
    with _no_autocast(inputs[0].device.type):
        out = loop_free(*inputs, *args)
        grads = iter(torch.autograd.grad(out, wanted, grad_out.to(out.dtype), create_graph=True))
    return tuple(next(grads) if need else None for need in ctx.needs_input_grad[:2]) + \
        (None,) * len(args)


class _CarafeFunction(torch.autograd.Function):
    """The training path. Groups are folded into the batch: group ``g`` of image ``b`` is
    map ``b*G + g``, reassembled with its own ``k*k`` kernels. Saves only its inputs.
    Its backward is differentiable: with ``create_graph=True`` it differentiates
    :func:`carafe_shift` instead (the loop-free formulation, holding its unfold)."""

    @staticmethod
    def forward(ctx, features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
                scale_factor: int) -> Tensor:
        ctx.save_for_backward(features, masks)
        ctx.args = (kernel_size, group_size, scale_factor)
        k, g, s = kernel_size, group_size, scale_factor
        b, c, h, w = features.shape
        with _no_autocast(features.device.type):
            out = _carafe_forward(features.reshape(b * g, c // g, h, w),
                                  masks.reshape(b * g, k * k, s * h, s * w), k, s)
        return out.view(b, c, s * h, s * w)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        features, masks = ctx.saved_tensors
        k, g, s = ctx.args
        b, c, h, w = features.shape
        if torch.is_grad_enabled():  # create_graph=True: a double backward may follow
            return _differentiable_backward(ctx, carafe_shift, grad_out, (k, g, s))
        with _no_autocast(features.device.type):
            grad_x, grad_masks = _carafe_backward(
                grad_out.to(features.dtype).reshape(b * g, c // g, s * h, s * w),
                features.reshape(b * g, c // g, h, w), masks.reshape(b * g, k * k, s * h, s * w),
                k, s, need_x=ctx.needs_input_grad[0], need_masks=ctx.needs_input_grad[1])
        if grad_x is not None:
            grad_x = grad_x.view(b, c, h, w)
        if grad_masks is not None:
            grad_masks = grad_masks.view(b, g * k * k, s * h, s * w)
        return grad_x, grad_masks, None, None, None


def _end(i: int, r: int) -> Optional[int]:
    """End of the ``i``-th shifted window of a map padded by ``r`` on both sides."""
    return i - 2 * r if i < 2 * r else None


def _tap_index(h: int, w: int, k: int, device: torch.device) -> Tensor:
    """Flat indices into a map padded to ``(h+k-1) x (w+k-1)``, ``(h*w*k*k,)``: the ``k*k``
    taps of every pixel, pixel-major. Built from ``arange``, so a traced graph keeps it
    symbolic in ``h`` and ``w``."""
    wp = w + k - 1
    pixel = (torch.arange(h, device=device) * wp)[:, None] + torch.arange(w, device=device)
    tap = (torch.arange(k, device=device) * wp)[:, None] + torch.arange(k, device=device)
    return (pixel[:, :, None] + tap.reshape(1, 1, k * k)).reshape(-1)


def carafe_shift(features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
                 scale_factor: int) -> Tensor:
    """Loop-free CARAFE: gather the ``k*k`` taps at low resolution, one batched product.

    Same contract as :func:`carafe` without the checks. One ``index_select`` on the
    zero-padded map, channels last, gathers the ``k*k`` taps of every low-resolution pixel,
    ``(B, G, h, w, k*k, C/G)`` -- the low-resolution unfold, ``k*k*C*h*w`` values, ``s*s``
    times fewer than the full-resolution unfold of the naive formulation. One matmul with the
    kernels grouped by parent pixel, ``(B, G, h, w, s*s, k*k)``, gives all ``s*s`` children of
    every pixel. Only static-size ops whose count does not depend on the input (pad, arange,
    index_select, matmul, reshapes; the gather's backward is one ``index_add``), so exported,
    traced and compiled graphs stay small and shape-generic.
    """
    k, g, s = kernel_size, group_size, scale_factor
    b, c, h, w = features.shape
    r, cg = (k - 1) // 2, c // g
    xp = F.pad(features, (r, r, r, r)).reshape(b, g, cg, (h + 2 * r) * (w + 2 * r))
    xp = xp.transpose(2, 3).contiguous()  # (B, G, padded pixels, C/G)
    taps = xp.index_select(2, _tap_index(h, w, k, features.device))
    kern = masks.reshape(b, g, k * k, h, s, w, s).permute(0, 1, 3, 5, 4, 6, 2)
    out = torch.matmul(kern.reshape(b, g, h, w, s * s, k * k),
                       taps.reshape(b, g, h, w, k * k, cg))  # (B, G, h, w, s*s, C/G)
    out = out.reshape(b, g, h, w, s, s, cg).permute(0, 1, 6, 2, 4, 3, 5)
    return out.reshape(b, c, s * h, s * w)


def _mmcv_cuda_carafe():
    """mmcv's compiled CUDA kernel, or None when this mmcv was built without it.

    Its backward returns plain tensors (second derivatives through it would be silently
    missing), so with ``create_graph=True`` :func:`carafe_shift` is differentiated instead.
    """
    try:
        from mmcv.ops.carafe import CARAFEFunction
        from mmcv.utils import ext_loader
        ext = ext_loader.load_ext('_ext', ['carafe_forward'])
        if not hasattr(ext, 'carafe_forward'):
            return None
    except Exception:  # mmcv absent or built without ops: fall back to pure PyTorch
        return None

    class _MmcvCarafe(CARAFEFunction):
        @staticmethod
        def backward(ctx, grad_output: Tensor):
            if torch.is_grad_enabled():  # create_graph=True
                return _differentiable_backward(
                    ctx, carafe_shift, grad_output,
                    (ctx.kernel_size, ctx.group_size, ctx.scale_factor))
            return CARAFEFunction.backward(ctx, grad_output)

    return _MmcvCarafe.apply


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
        impl: ``'rows'`` (the training path: a few large batched matrix products per
            block of rows in a custom autograd function, lean in memory), ``'shift'``
            (loop-free, static-size ops: export, tracing, compile; holds the
            low-resolution unfold, ``k*k*C*h*w`` values) or ``'auto'``: ``'shift'`` while a
            graph is being captured (:func:`graph_capture`), else ``'rows'``.

    Returns:
        ``(B, C, s * h, s * w)`` reassembled features. Empty inputs (``B``, ``h`` or ``w``
        zero) give an empty output. Double backward (``create_graph=True``) works on every
        path: the custom backward passes (``'rows'``, mmcv's kernel) then differentiate
        :func:`carafe_shift`.

    Raises:
        ValueError: naming the argument, what was expected and what was received.
    """
    check_choice('carafe', 'impl', impl, CARAFE_IMPLS)
    kernel_size, group_size, scale_factor = _validate(features, masks, kernel_size,
                                                      group_size, scale_factor)
    if masks.dtype != features.dtype:  # only reached under autocast (see _validate)
        masks = masks.to(features.dtype)
    # Empty maps take the loop-free path too: it needs no blocks, so zero sizes just work.
    if impl == 'shift' or (impl == 'auto' and (graph_capture() or _EXACT_WORK.get())) or \
            features.numel() == 0:
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
