"""FADE: Fusing the Assets of Decoder and Encoder for task-agnostic upsampling.

Lu, Liu, Fu, Cao. ECCV 2022; extended in IJCV 2024 ("On Point Affiliation in Feature
Upsampling" / FADE journal version). Kernels come from both the high-resolution encoder
feature (the guide) and the low-resolution decoder feature through a semi-shift convolution,
are softmax-normalised and applied by CARAFE reassembly to the decoder feature; a gate
predicted from the decoder mixes the result with the encoder feature.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_int, guided_output_size
from ..ops import SEMI_SHIFT_IMPLS, carafe, graph_capture, semi_shift_conv
from ._common import (
    Upsampler,
    check_bool,
    checkpointed,
    compiling,
    crop,
    empty_batch,
    mmcv_cuda_allowed,
    up_crop,
)
from .fade_ablation import KERNEL_GENERATORS, KERNEL_SOURCES, ablation_layers, ablation_logits

FUSIONS = ('gate', 'skip', 'none')


class FADE(Upsampler):
    """FADE upsampler: ``forward(x, guide) -> (B, C, H, W)``.

    The path of ``forward``, with ``x`` the decoder feature and ``guide`` the encoder one:

    1. compress: ``e = compressor_enc(guide)`` (1x1, ``C_g -> d``, bias) and
       ``q = compressor_dec(x)`` (1x1, ``C -> d``, no bias);
    2. semi-shift conv: ``logits = W * e + nearest_up(W * q)``, one shared ``content_encoder``
       ``W`` (``d -> k*k``), see :func:`fade_mm.ops.semi_shift_conv`;
    3. softmax over the ``k*k`` taps;
    4. CARAFE reassembly of ``x`` with these kernels (:func:`fade_mm.ops.carafe`): ``u``;
    5. gate: ``G*guide + (1-G)*u`` with ``G = sigmoid(nearest_up(gate(x)))`` (1x1, ``C -> 1``).

    ``depthwise=True`` is FADE-Lite (IJCV 2024; also registered as :class:`FADELite`): the
    compressors go straight to ``d = k*k`` channels and ``W`` is depthwise on them, 13,332
    parameters at 256 channels instead of 47,514.

    The paper's ablation (Table "B1-B6") is a set of switches; rows B1-B3 replace step 2
    by the kernel generators of :mod:`fade_mm.upsamplers.fade_ablation`, step 5 is
    ``fusion``:

    ====  ==============  ===================  ==========
    row   kernel_source   kernel_generator     fusion
    ====  ==============  ===================  ==========
    B1    ``'encoder'``   (plain 3x3 conv)     ``'none'``
    B2    ``'decoder'``   (CARAFE-like)        ``'none'``
    B3    ``'both'``      ``'naive'``          ``'none'``
    B4    ``'both'``      ``'semi_shift'``     ``'none'``
    B5    ``'both'``      ``'semi_shift'``     ``'skip'``
    B6    ``'both'``      ``'semi_shift'``     ``'gate'``  (= FADE, the default)
    ====  ==============  ===================  ==========

    fusion ``'gate'``: step 5; ``'skip'``: ``u + guide``; ``'none'``: ``u`` ("FADE without
    gate"). (In an FPN whose top-down step adds the lateral, the lateral then enters twice;
    see ``fade_mm.det.UpsamplerFPN``.)

    Initialisation (:meth:`init_weights`, as the official code): Xavier-uniform weights and
    zero biases for every conv.

    Args:
        in_channels: channels ``C`` of the decoder feature ``x`` (and of the output).
        scale_factor: integer upsampling ratio ``s``.
        up_kernel: odd reassembly kernel size ``k`` (5).
        embedding_dim: channels ``d`` of the compressed embeddings; None means 64, or
            ``k*k`` with ``depthwise=True`` (which accepts no other value).
        encoder_kernel: odd kernel size of the kernel-generating conv (3).
        kernel_source: ``'both'`` | ``'encoder'`` | ``'decoder'``.
        kernel_generator: ``'semi_shift'`` | ``'naive'``; only meaningful for
            ``kernel_source='both'`` (defaults to ``'semi_shift'`` there).
        fusion: ``'gate'`` | ``'skip'`` | ``'none'``.
        semi_shift_impl: ``'l2h'`` (memory-efficient, default) or ``'h2l'``; same numbers.
        guide_channels: channels ``C_g`` of the guide (the encoder/skip feature); defaults to
            ``in_channels``, which keeps the published counts (47,514 / 13,332 at 256). When
            it differs, the encoder compressor reads ``C_g`` channels (the official
            ``in_channels_en``) and the fusions that add the guide to the output
            (``'gate'``, ``'skip'``) first project it with a 1x1 conv ``C_g -> C`` with bias
            (``guide_proj``, ``C_g*C + C`` extra parameters; ``'none'`` needs none).
        with_cp: gradient checkpointing (mmcv's name): while training, the kernel generation
            (compressors, kernel-generating conv, softmax) is recomputed in backward instead
            of keeping its activations -- the ``d``-channel encoder embedding at the guide's
            resolution (``d*H*W`` per image, 64 channels for FADE, 25 for FADE-Lite) and the
            convolution inputs. Same outputs and gradients, one more kernel generation per
            step. Default False.
        depthwise: FADE-Lite (see above). Default False.

    Determinism: every op is deterministic on CPU. On CUDA, under
    ``torch.use_deterministic_algorithms(True)``, the convolutions pick deterministic
    algorithms and the reassembly skips mmcv's CUDA kernel (``atomicAdd`` backward) for the
    pure-PyTorch one. ``torch.compile`` traces the
    whole module as one graph for every input size (``dynamic=True``).

    Double backward (``create_graph=True``, e.g. gradient penalties) works: the custom
    backward of the reassembly then differentiates its loop-free formulation
    (:func:`fade_mm.ops.carafe_shift`), which holds the ``k*k*C*h*w`` unfold.

    Shapes:
        x: ``(B, C, h, w)`` decoder feature; guide: ``(B, C_g, H, W)`` encoder feature with
        ``ceil(H/s) = h``, ``ceil(W/s) = w``; output: ``(B, C, H, W)``.
    """

    uses_guide = True

    def __init__(self, in_channels: int, scale_factor: int = 2, up_kernel: int = 5,
                 embedding_dim: Optional[int] = None, encoder_kernel: int = 3,
                 kernel_source: str = 'both', kernel_generator: Optional[str] = None,
                 fusion: str = 'gate', semi_shift_impl: str = 'l2h',
                 guide_channels: Optional[int] = None, with_cp: bool = False,
                 depthwise: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        in_channels = check_int(name, 'in_channels', in_channels, 1)
        if guide_channels is None:
            guide_channels = in_channels
        guide_channels = check_int(name, 'guide_channels', guide_channels, 1)
        scale_factor = check_int(name, 'scale_factor', scale_factor, 1)
        up_kernel = check_int(name, 'up_kernel', up_kernel, 1, odd=True)
        check_bool(name, 'depthwise', depthwise)
        k2 = up_kernel * up_kernel
        if embedding_dim is None:
            embedding_dim = k2 if depthwise else 64
        embedding_dim = check_int(name, 'embedding_dim', embedding_dim, 1)
        if depthwise and embedding_dim != k2:
            raise ValueError(f'{name}: `embedding_dim` must be up_kernel**2 = {k2} (or None) '
                             f'with depthwise=True (FADE-Lite), got {embedding_dim}')
        encoder_kernel = check_int(name, 'encoder_kernel', encoder_kernel, 1, odd=True)
        check_choice(name, 'kernel_source', kernel_source, KERNEL_SOURCES)
        check_choice(name, 'fusion', fusion, FUSIONS)
        check_choice(name, 'semi_shift_impl', semi_shift_impl, SEMI_SHIFT_IMPLS)
        check_bool(name, 'with_cp', with_cp)
        if kernel_generator is None:
            kernel_generator = 'semi_shift' if kernel_source == 'both' else 'naive'
        check_choice(name, 'kernel_generator', kernel_generator, KERNEL_GENERATORS)
        if kernel_source != 'both' and kernel_generator == 'semi_shift':
            raise ValueError(f"{name}: `kernel_generator`='semi_shift' needs kernels from both "
                             f"sources (kernel_source='both'), got "
                             f"kernel_source={kernel_source!r}")
        self.in_channels = in_channels
        self.guide_channels = guide_channels
        self.scale_factor = scale_factor
        self.up_kernel = up_kernel
        self.embedding_dim = embedding_dim
        self.encoder_kernel = encoder_kernel
        self.kernel_source = kernel_source
        self.kernel_generator = kernel_generator
        self.fusion = fusion
        self.semi_shift_impl = semi_shift_impl
        self.with_cp = bool(with_cp)
        self.depthwise = depthwise

        if kernel_generator == 'semi_shift':
            d = embedding_dim
            self.compressor_enc = nn.Conv2d(guide_channels, d, 1)
            # One bias suffices: both compressors feed the same linear conv.
            self.compressor_dec = nn.Conv2d(in_channels, d, 1, bias=False)
            self.content_encoder = nn.Conv2d(d, k2, encoder_kernel, padding=encoder_kernel // 2,
                                             groups=k2 if depthwise else 1)
        else:  # ablation rows B1-B3, same layer names
            ablation_layers(self)
        if fusion == 'gate':
            self.gate = nn.Conv2d(in_channels, 1, 1)
        if fusion != 'none' and guide_channels != in_channels:
            self.guide_proj = nn.Conv2d(guide_channels, in_channels, 1)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform weights and zero biases for every conv, as the official code."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, scale_factor={self.scale_factor}, '
                f'up_kernel={self.up_kernel}, embedding_dim={self.embedding_dim}, '
                f'encoder_kernel={self.encoder_kernel}, kernel_source={self.kernel_source!r}, '
                f'kernel_generator={self.kernel_generator!r}, fusion={self.fusion!r}, '
                f'semi_shift_impl={self.semi_shift_impl!r}, '
                f'guide_channels={self.guide_channels}'
                + (', with_cp=True' if self.with_cp else '')
                + (', depthwise=True' if self.depthwise else ''))

    def kernel_logits(self, x: Tensor, guide: Tensor, whole_cells: bool = False) -> Tensor:
        """Unnormalised reassembly kernels ``(B, k*k, H, W)`` at the guide's resolution:
        steps 1 and 2 (compressors, semi-shift conv), or an ablation's generator.

        With ``whole_cells`` the encoder embedding is first zero-padded on the right/bottom
        to ``(s*h, s*w)``, giving ``(B, k*k, s*h, s*w)`` logits whose first ``(H, W)`` are
        the same numbers: a 'same'-padded conv sees zeros past the border either way.
        """
        if self.kernel_generator != 'semi_shift':
            return ablation_logits(self, x, guide, whole_cells)
        s = self.scale_factor
        enc = self.compressor_enc(guide)
        if whole_cells:
            enc = F.pad(enc, (0, s * x.shape[-1] - enc.shape[-1],
                              0, s * x.shape[-2] - enc.shape[-2]))
        conv = self.content_encoder
        return semi_shift_conv(enc, self.compressor_dec(x), conv.weight, conv.bias, s,
                               self.semi_shift_impl, conv.groups)

    def kernels(self, x: Tensor, guide: Tensor) -> Tensor:
        """Softmax-normalised kernels ``(B, k*k, s*h, s*w)``, whole ``s x s`` cells.

        Outputs of rows/columns beyond the guide's ``(H, W)`` are cropped after reassembly,
        so their kernels do not matter: zeros eagerly, softmax of zero-padded embeddings
        while ``torch.compile`` traces (every size then takes the same, crop-free path; a
        crop inside :func:`semi_shift_conv` would make the graph specialise on odd sizes).
        """
        s = self.scale_factor
        if compiling():
            return F.softmax(self.kernel_logits(x, guide, whole_cells=True), dim=1)
        big_h, big_w = guide.shape[-2:]
        kernels = F.softmax(self.kernel_logits(x, guide), dim=1)
        pad_h, pad_w = s * x.shape[-2] - big_h, s * x.shape[-1] - big_w
        if graph_capture() or pad_h or pad_w:
            # carafe works on whole s x s cells; the extra row/column is cut off later.
            # (Always while a graph is captured, so it stays valid for odd and even sizes.)
            kernels = F.pad(kernels, (0, pad_w, 0, pad_h))
        return kernels

    def gate_map(self, x: Tensor, out_h: int, out_w: int) -> Tensor:
        """Gate ``G`` in (0, 1), ``(B, 1, H, W)``: the weight given to the encoder feature."""
        return torch.sigmoid(up_crop(self.gate(x), self.scale_factor, out_h, out_w))

    def forward(self, x: Tensor, guide: Optional[Tensor] = None) -> Tensor:
        big_h, big_w = guided_output_size(type(self).__name__, x, guide, self.in_channels,
                                          self.scale_factor, self.guide_channels)
        if x.shape[0] == 0:
            return empty_batch(x, guide, big_h, big_w)
        s, k = self.scale_factor, self.up_kernel
        # steps 1-3: compress, semi-shift conv, softmax
        kernels = checkpointed(self.with_cp and self.training, self.kernels, x, guide)
        # step 4: reassemble x
        up = crop(carafe(x, kernels, k, 1, s, use_mmcv_cuda=mmcv_cuda_allowed()), big_h, big_w)
        # step 5: gate (or the ablations' skip / no fusion)
        if self.fusion == 'none':
            return up
        if self.guide_channels != self.in_channels:
            guide = self.guide_proj(guide)
        if self.fusion == 'gate':
            g = self.gate_map(x, big_h, big_w)
            return g * guide + (1 - g) * up
        return up + guide
