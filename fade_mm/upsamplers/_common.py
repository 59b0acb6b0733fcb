"""Small pieces shared by the upsamplers: their base class :class:`Upsampler` (the interface
and the init protocol), shape-generic cropping under ``torch.compile``, the deterministic
choice of reassembly kernel, and gradient checkpointing (``with_cp``) with the helpers a
benchmark needs to switch it and measure what it saves."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint


class Upsampler(nn.Module):
    """Base class of every upsampler here: ``forward(x, guide=None)`` and one init protocol.

    Init protocol: :meth:`init_weights` (re)initialises the parameters as the upsampler's
    paper or official code does, and is the only place that does. ``__init__`` calls it last,
    so a module is ready in plain PyTorch. mmengine's ``BaseModule.init_weights`` calls the
    ``init_weights()`` of its children, so the necks and heads of :mod:`fade_mm.det` and
    :mod:`fade_mm.seg` hold their upsamplers in mmengine's ``ModuleList``: their own
    ``init_cfg`` (e.g. Xavier on every ``Conv2d``) runs first and reaches the upsamplers'
    convs too, then each upsampler's ``init_weights()`` restores its own initialisation, and
    a ``Pretrained`` ``init_cfg`` is loaded last, over both. :meth:`reset_parameters` is the
    same under torch's (and timm's) name.

    ``uses_guide``: whether ``forward`` reads the guide's values (FADE, SAPA, A2U, IndexNet)
    or only its size (the others: the ``s x`` result is cropped to it).
    """

    uses_guide = False

    def init_weights(self) -> None:
        """Initialise the parameters (none here: parameter-free upsamplers)."""

    def reset_parameters(self) -> None:
        """Alias of :meth:`init_weights`."""
        self.init_weights()


def compiling() -> bool:
    compiler = getattr(torch, 'compiler', None)
    fn = getattr(compiler, 'is_compiling', None)
    return bool(fn is not None and fn())


def crop(t: Tensor, out_h: int, out_w: int, channels_last: bool = False) -> Tensor:
    """The top-left ``(out_h, out_w)`` of a map at least that large.

    Eagerly (and while exporting) a view, ``t[..., :out_h, :out_w]``. While
    ``torch.compile`` traces, a negative ``F.pad`` instead: autograd's backward of a slice
    asks whether the slice is contiguous, i.e. guards on ``out_w == t.shape[-1]``, so a
    graph compiled with ``dynamic=True`` for an even guide would be recompiled for an odd one
    (and again for each parity of the height). The padded crop is a fresh contiguous tensor
    whose backward is a plain (positive) pad, so one graph serves every size.

    Args:
        t: ``(..., H', W')`` map, or ``(B, H', W', C)`` with ``channels_last=True``.
        out_h: rows kept, ``<= H'``.
        out_w: columns kept, ``<= W'``.
        channels_last: the spatial axes are 1 and 2 instead of the last two.

    Returns:
        ``(..., out_h, out_w)`` (or ``(B, out_h, out_w, C)``).
    """
    if channels_last:
        if not compiling():
            return t[:, :out_h, :out_w]
        return F.pad(t, (0, 0, 0, out_w - t.shape[2], 0, out_h - t.shape[1]))
    if not compiling():
        return t[..., :out_h, :out_w]
    return F.pad(t, (0, out_w - t.shape[-1], 0, out_h - t.shape[-2]))


def up_crop(t: Tensor, s: int, out_h: int, out_w: int) -> Tensor:
    """Nearest ``s x`` upsampling of ``t``, cropped to ``(out_h, out_w)``."""
    return crop(F.interpolate(t, scale_factor=s, mode='nearest'), out_h, out_w)


def empty_batch(x: Tensor, guide: Optional[Tensor], out_h: int, out_w: int) -> Tensor:
    """The output of an empty batch (``B = 0``), ``(0, C, out_h, out_w)``.

    The upsamplers whose layers do not all accept zero images (grouped convs with ``B*C``
    groups, batch norms, reshapes that infer a size, pixel shuffle's backward) return it
    without running them. It is part of the autograd graph of ``x`` and ``guide``, so a
    backward pass runs and gives them empty gradients; parameters get none (``None``), as
    for a layer that was not used.
    """
    out = x.new_zeros(0, x.shape[1], out_h, out_w) + x.sum()
    return out if guide is None else out + guide.sum().to(out.dtype)


def check_bool(owner: str, name: str, value) -> None:
    """Raise ValueError unless ``value`` is a bool (``1`` or ``'yes'`` are refused)."""
    if not isinstance(value, bool):
        raise ValueError(f'{owner}: `{name}` must be a bool, got {value!r}')


def mmcv_cuda_allowed() -> bool:
    """Whether :func:`fade_mm.ops.carafe` may use mmcv's CUDA kernel.

    Its backward accumulates with ``atomicAdd`` (run-to-run differences in the last bits) and
    does not report itself to ``torch.use_deterministic_algorithms``; under that flag the
    upsamplers therefore take the pure-PyTorch reassembly, whose backward is deterministic.
    (While a graph is captured carafe takes its loop-free path whatever this says.)
    """
    return compiling() or not torch.are_deterministic_algorithms_enabled()


def _batch_norms_tracking(module: nn.Module) -> List[nn.Module]:
    return [m for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
            and m.track_running_stats]


@contextlib.contextmanager
def _frozen_running_stats(norms: List[nn.Module]) -> Iterator[None]:
    """Batch norms whose running statistics come out of the enclosed code as they went in.

    The recomputation in backward runs each batch norm a second time in training mode: same
    output (batch statistics), but the momentum update of the running statistics would be
    applied twice. They are restored afterwards rather than switched off, so that the
    recomputation saves exactly the tensors the forward saved (checkpoint checks that).
    """
    with torch.no_grad():
        kept = [[b.clone() for b in m.buffers(recurse=False)] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, old in zip(norms, kept):
                for b, o in zip(m.buffers(recurse=False), old):
                    b.copy_(o)


def checkpointed(enabled: bool, fn: Callable[..., Tensor], *args,
                 module: Optional[nn.Module] = None) -> Tensor:
    """``fn(*args)``, recomputed in backward (``torch.utils.checkpoint``, non-reentrant)
    instead of keeping its intermediate tensors, when ``enabled`` and autograd is recording.

    Non-reentrant checkpointing replays the same ops, so values and gradients equal those of
    the plain call; it works when no input requires grad (only parameters do), keeps the
    autocast state, and is traced by ``torch.compile``. Batch norms of ``module`` (default:
    ``fn`` itself when it is a module, e.g. IndexNet's) do not update their running
    statistics again while being recomputed.
    """
    if not (enabled and torch.is_grad_enabled()):
        return fn(*args)
    if module is None and isinstance(fn, nn.Module):
        module = fn
    norms = _batch_norms_tracking(module) if module is not None else []
    if not norms:
        return checkpoint(fn, *args, use_reentrant=False)
    return checkpoint(fn, *args, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(),
                                          _frozen_running_stats(norms)))


def set_with_cp(module: nn.Module, enabled: bool = True) -> int:
    """Switch gradient checkpointing (``with_cp``) on or off for the outermost modules of
    this package in ``module`` that have the switch (:class:`FADE`, :class:`FADELite`,
    ``UpsamplerFPN``, ``UpsamplerUPerHead``, ``UpsamplerSegformerHead``).

    A head or neck that has the switch is set and not descended into: it checkpoints whole
    upsampler calls, so a FADE inside it checkpointing its kernel generation as well would
    only add a second recomputation. Other libraries' modules with a ``with_cp`` attribute
    (mmseg/mmdet backbones) are left alone: theirs is often read only at construction.

    Returns:
        How many modules were set.
    """
    check_bool('set_with_cp', 'enabled', enabled)
    if type(module).__module__.startswith('fade_mm.') and hasattr(module, 'with_cp'):
        module.with_cp = enabled
        return 1
    return sum(set_with_cp(child, enabled) for child in module.children())


def saved_tensor_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the activations autograd keeps for backward during ``fn()``.

    A device-independent measure of training activation memory, so the saving of ``with_cp``
    shows on CPU too (on CUDA, ``torch.cuda.max_memory_allocated`` around a forward/backward
    step gives the peak). Each storage counts once; parameters are not counted, nor are the
    tensors of a checkpointed region, which are recomputed instead of kept (its inputs are
    counted where an op outside the region saves them).
    """
    seen, kept = {}, []

    def pack(t: Tensor) -> Tensor:
        if not isinstance(t, nn.Parameter):
            kept.append(t)  # alive until the end, so storage addresses stay unique
            storage = t.untyped_storage()
            seen[(t.device, storage.data_ptr())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())
