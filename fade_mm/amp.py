"""Automatic mixed precision on CPU for the stock mmengine ``Runner`` (``--amp`` without CUDA).

mmengine 0.10.7's ``AmpOptimWrapper`` asserts a GPU (or NPU/MLU/MUSA) in its constructor, so
``tools/train.py --amp`` on a CPU-only machine stopped with a bare ``AssertionError``.
:class:`CPUAmpOptimWrapper` is the CPU counterpart: the forward pass and the loss of each
training step (``optim_context``) run under ``torch.autocast('cpu', dtype=torch.bfloat16)``.
bfloat16 has float32's exponent range, so, unlike float16, it needs no loss scaling; the
parameters, their gradients and the optimizer state stay float32. Validation and testing run
in float32, as with mmengine's wrapper.

Importing this module registers the wrapper in mmengine's root ``OPTIM_WRAPPERS``, which the
mmdet and mmseg registries fall back to::

    custom_imports = dict(imports=['fade_mm.seg', 'fade_mm.amp'], allow_failed_imports=False)
    optim_wrapper = dict(type='CPUAmpOptimWrapper', optimizer=...)

This module needs torch and mmengine only.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Union

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

__all__ = ['CPUAmpOptimWrapper']


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose training steps run under CPU bfloat16 autocast.

    Args:
        dtype: the autocast dtype; only ``'bfloat16'`` (or ``torch.bfloat16``): float16
            would need the loss scaling that this wrapper does not do.
        **kwargs: as ``mmengine.optim.OptimWrapper`` (``optimizer``, ``accumulative_counts``,
            ``clip_grad``).

    Raises:
        ValueError: for another ``dtype``.
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', **kwargs) -> None:
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(f'CPUAmpOptimWrapper: `dtype` must be \'bfloat16\' (CPU autocast '
                             f'without loss scaling), got {dtype!r}')
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Gradient-accumulation context of ``OptimWrapper`` plus CPU bfloat16 autocast."""
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield
