"""FADE-Lite (IJCV 2024): FADE with compressors straight to k*k channels and a depthwise
kernel-generating convolution -- 13,332 parameters at 256 channels instead of 47,514."""

from .fade import FADE


class FADELite(FADE):
    """Lightweight FADE. Same interface, options and ablation switches as :class:`FADE`,
    except that the embedding dimension is fixed to ``up_kernel**2`` (``embedding_dim`` is
    ignored) and the kernel-generating convolution is depthwise."""

    _lite = True
