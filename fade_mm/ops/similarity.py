"""Local similarity between high-resolution queries and low-resolution key windows (SAPA).

``out[b, i*k + j, Y, X] = sum_c query[b, Y, X, c] * key[b, Y//s + i - r, X//s + j - r, c]``,
zero keys outside the map. The training path is a custom autograd function whose largest
temporary is one kernel row of windows (``k*d*h*w``); a loop-free path (``impl='shift'``,
one product per tap) is selected automatically while exporting, tracing or compiling, as for
:func:`fade_mm.ops.carafe`. Under autocast, query and key are brought to one dtype (the
query's) and the products run with autocast off.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import autocast_enabled, check_choice, check_feature, check_int
from .carafe import CARAFE_IMPLS, _differentiable_backward, _end, _no_autocast, graph_capture

__all__ = ['local_similarity']


def _row_windows(key_pad: Tensor, i: int, h: int, w: int, k: int) -> Tensor:
    """Keys of kernel row ``i`` as a strided view ``(B, h, w, d, k)`` (no copy).

    ``key_pad`` is ``(B, h+2r, w+2r, d)``, zero-padded and contiguous; entry
    ``[b, y, x, c, j] = key_pad[b, y + i, x + j, c]``.
    """
    sb, sy, sx, sc = key_pad.stride()
    b, d = key_pad.shape[0], key_pad.shape[-1]
    return key_pad.as_strided((b, h, w, d, k), (sb, sy, sx, sc, sx),
                              key_pad.storage_offset() + i * sy)


def _by_parent(t: Tensor, s: int) -> Tensor:
    """``(B, s*h, s*w, d)`` -> ``(B, h, w, s*s, d)``: the ``s*s`` children of each pixel."""
    b, big_h, big_w, d = t.shape
    h, w = big_h // s, big_w // s
    return t.reshape(b, h, s, w, s, d).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, s * s, d)


def _similarity_forward(query: Tensor, key: Tensor, k: int, s: int) -> Tensor:
    b, h, w, _ = key.shape
    r = (k - 1) // 2
    qc = _by_parent(query, s)
    key_pad = F.pad(key, (0, 0, r, r, r, r)).contiguous()
    out = query.new_empty(b, h, w, s * s, k, k)
    for i in range(k):
        # One kernel row at a time: the copy matmul makes of the windows is k*d*h*w, never
        # the k*k*d*h*w of a full unfold.
        out[:, :, :, :, i] = torch.matmul(qc, _row_windows(key_pad, i, h, w, k))
    out = out.view(b, h, w, s, s, k * k).permute(0, 5, 1, 3, 2, 4)
    return out.reshape(b, k * k, s * h, s * w)


def _similarity_backward(grad: Tensor, query: Tensor, key: Tensor, k: int, s: int,
                         need_query: bool, need_key: bool):
    b, h, w, d = key.shape
    r = (k - 1) // 2
    grad_query = grad_key = None
    if need_query:
        # d logits[n, Y, X] / d query[Y, X] is the key under tap n: the incoming gradient
        # reassembles the keys (a CARAFE), here one kernel row at a time like the forward,
        # so the largest temporary stays one row of windows (k*d*h*w).
        gc = grad.reshape(b, k, k, h, s, w, s).permute(0, 3, 5, 4, 6, 1, 2)
        gc = gc.reshape(b, h, w, s * s, k, k)
        key_pad = F.pad(key, (0, 0, r, r, r, r)).contiguous()
        acc = None
        for i in range(k):
            row = torch.matmul(gc[..., i, :], _row_windows(key_pad, i, h, w, k).transpose(-1, -2))
            acc = row if acc is None else acc.add_(row)  # (B, h, w, s*s, d)
        grad_query = acc.view(b, h, w, s, s, d).permute(0, 1, 3, 2, 4, 5)
        grad_query = grad_query.reshape(b, s * h, s * w, d)
    if need_key:
        gc = grad.reshape(b, k, k, h, s, w, s).permute(0, 3, 5, 1, 2, 4, 6)
        gc = gc.reshape(b, h, w, k, k, s * s)
        qc = _by_parent(query, s)
        grad_pad = key.new_zeros(b, h + 2 * r, w + 2 * r, d)
        for i in range(k):
            row = torch.matmul(gc[:, :, :, i], qc)  # (B, h, w, k, d)
            # Windows of neighbouring pixels overlap: scatter one column at a time.
            for j in range(k):
                grad_pad[:, i:i + h, j:j + w] += row[:, :, :, j]
        grad_key = grad_pad[:, r:r + h, r:r + w].contiguous()
    return grad_query, grad_key


class _LocalSimilarity(torch.autograd.Function):
    """The training path; saves only its inputs. With ``create_graph=True`` its backward
    differentiates :func:`similarity_shift` instead, so a double backward works."""

    @staticmethod
    def forward(ctx, query: Tensor, key: Tensor, kernel_size: int, scale_factor: int) -> Tensor:
        ctx.save_for_backward(query, key)
        ctx.args = (kernel_size, scale_factor)
        with _no_autocast(query.device.type):
            return _similarity_forward(query, key, kernel_size, scale_factor)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if torch.is_grad_enabled():  # create_graph=True: a double backward may follow
            return _differentiable_backward(ctx, similarity_shift, grad, ctx.args)
        query, key = ctx.saved_tensors
        with _no_autocast(query.device.type):
            grad_query, grad_key = _similarity_backward(
                grad.to(query.dtype), query, key, *ctx.args,
                need_query=ctx.needs_input_grad[0], need_key=ctx.needs_input_grad[1])
        return grad_query, grad_key, None, None


def similarity_shift(query: Tensor, key: Tensor, kernel_size: int, scale_factor: int) -> Tensor:
    """Loop-free local similarity (same contract as :func:`local_similarity`, no checks).

    The ``k*k`` shifted copies of the padded low-resolution keys are stacked into
    ``(B, h, w, d, k*k)`` (cheap: ``d`` is small and the keys are at low resolution), and one
    batched product with the queries grouped by parent pixel, ``(B, h, w, s*s, d)``, gives
    every logit. Constant slice bounds keep an exported graph small.
    """
    k, s = kernel_size, scale_factor
    b, h, w, d = key.shape
    r = (k - 1) // 2
    key_pad = F.pad(key, (0, 0, r, r, r, r))
    rows = [key_pad[:, i:_end(i, r)] for i in range(k)]
    keys = torch.stack([row[:, :, j:_end(j, r)] for row in rows for j in range(k)], -1)
    q = query.reshape(b, h, s, w, s, d).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, s * s, d)
    logits = torch.matmul(q, keys)  # (B, h, w, s*s, k*k)
    logits = logits.reshape(b, h, w, s, s, k * k).permute(0, 5, 1, 3, 2, 4)
    return logits.reshape(b, k * k, s * h, s * w)


def local_similarity(query: Tensor, key: Tensor, kernel_size: int, scale_factor: int,
                     impl: str = 'auto') -> Tensor:
    """Dot products of each high-res query with the ``k x k`` keys around its parent pixel.

    ``out[b, i*k + j, Y, X] = sum_c query[b, Y, X, c] * key[b, Y//s + i - r, X//s + j - r, c]``
    with ``r = (k-1)//2`` and zero keys outside the map (so out-of-map taps get logit 0, as
    in the official CUDA kernel). Saves only its inputs for backward; the largest temporary
    is ``k*d*h*w``.

    Args:
        query: ``(B, s*h, s*w, d)``, channels last.
        key: ``(B, h, w, d)``, channels last, same dtype and device.
        kernel_size: odd window size ``k``.
        scale_factor: integer ratio ``s``.
        impl: ``'rows'`` (training path), ``'shift'`` (loop-free) or ``'auto'`` (``'shift'``
            while a graph is captured, see :func:`fade_mm.ops.graph_capture`).

    Returns:
        ``(B, k*k, s*h, s*w)`` similarity logits, channels first (CARAFE's mask layout).
        Double backward (``create_graph=True``) works: the ``'rows'`` backward then
        differentiates :func:`similarity_shift`.
    """
    name = 'local_similarity'
    check_choice(name, 'impl', impl, CARAFE_IMPLS)
    kernel_size = check_int(name, 'kernel_size', kernel_size, 1, odd=True)
    scale_factor = check_int(name, 'scale_factor', scale_factor, 1)
    for arg, t in (('query', query), ('key', key)):
        check_feature(name, arg, t)
    b, h, w, d = key.shape
    want = (b, scale_factor * h, scale_factor * w, d)
    if tuple(query.shape) != want:
        raise ValueError(f'{name}: `query` must have shape (B, s*h, s*w, d) = {want} for '
                         f'`key` of shape {tuple(key.shape)}, got {tuple(query.shape)}')
    if query.device != key.device or (query.dtype != key.dtype and
                                      not autocast_enabled(query)):
        raise ValueError(f'{name}: `query` must match `key` in dtype and device '
                         f'({key.dtype}, {key.device}), got ({query.dtype}, {query.device})')
    key = key.to(query.dtype)
    if impl == 'shift' or (impl == 'auto' and graph_capture()):
        with _no_autocast(query.device.type):
            return similarity_shift(query, key, kernel_size, scale_factor)
    return _LocalSimilarity.apply(query, key, kernel_size, scale_factor)
