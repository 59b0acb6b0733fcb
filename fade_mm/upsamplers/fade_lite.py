"""FADE-Lite (IJCV 2024): FADE with compressors straight to k*k channels and a depthwise
kernel-generating convolution -- 13,332 parameters at 256 channels instead of 47,514."""
from __future__ import annotations

from typing import Optional

from .fade import FADE


class FADELite(FADE):
    """``FADE(..., depthwise=True)`` under its own name (registered as ``'FADELite'``).

    Same interface, options and ablation switches as :class:`FADE`; the embedding dimension
    is ``up_kernel**2`` (``embedding_dim`` may be left out or set to that value).
    """

    def __init__(self, in_channels: int, scale_factor: int = 2, up_kernel: int = 5,
                 embedding_dim: Optional[int] = None, encoder_kernel: int = 3,
                 kernel_source: str = 'both', kernel_generator: Optional[str] = None,
                 fusion: str = 'gate', semi_shift_impl: str = 'l2h',
                 guide_channels: Optional[int] = None, with_cp: bool = False) -> None:
        super().__init__(in_channels, scale_factor, up_kernel, embedding_dim, encoder_kernel,
                         kernel_source, kernel_generator, fusion, semi_shift_impl,
                         guide_channels, with_cp, depthwise=True)
