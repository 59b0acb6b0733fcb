"""DySample: point-sampling upsampler with learned offsets.

Liu, Lu, Fu, Cao. "Learning to Upsample by Learning to Sample", ICCV 2023. Instead of
predicting reassembly kernels, DySample predicts, for every upsampled point, a small offset
from its bilinear-interpolation position and reads the input there with bilinear sampling
(``F.grid_sample``). No guide, no custom operator, a single 1x1 convolution.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_int, unguided_output_size
from ._common import Upsampler, crop, empty_batch

STYLES = ('lp', 'pl')
SAMPLERS = ('auto', 'grid_sample', 'gather')


def bilinear_gather(x: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """Bilinear sampling with border padding by gathering the four neighbours.

    Same numbers as ``F.grid_sample(x, grid, 'bilinear', padding_mode='border',
    align_corners=False)`` for the grid of these pixel coordinates (to float rounding), and
    the same gradients for ``x`` and the coordinates, but built from ``index_select``, whose
    backward (``index_add``) is deterministic on CUDA under
    ``torch.use_deterministic_algorithms(True)`` -- grid_sample's ``atomicAdd`` backward is
    not, and raises there. Keeps four output-sized gathers (the neighbours) for backward.

    Args:
        x: ``(N, C, h, w)``.
        px: ``(N, H', W')`` column coordinates, in pixels with pixel centres at integers.
        py: ``(N, H', W')`` row coordinates, same convention.

    Returns:
        ``(N, C, H', W')``.
    """
    n, c, h, w = x.shape
    out_h, out_w = px.shape[-2:]
    # Border padding clamps the coordinates (and zeroes their gradient outside the map).
    # A NaN coordinate (clamp keeps it) would index anywhere: read pixel 0 for it instead.
    px = px.nan_to_num(0.0).clamp(0, w - 1)
    py = py.nan_to_num(0.0).clamp(0, h - 1)
    x0f, y0f = px.detach().floor(), py.detach().floor()
    wx = (px - x0f).reshape(-1, 1)
    wy = (py - y0f).reshape(-1, 1)
    x0, y0 = x0f.long(), y0f.long()
    # At the last row/column the second neighbour has weight 0: clamping keeps it in range.
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    base = (torch.arange(n, device=x.device) * (h * w)).view(n, 1, 1)
    table = x.permute(0, 2, 3, 1).reshape(n * h * w, c)  # one row per input pixel

    def tap(yy: Tensor, xx: Tensor) -> Tensor:
        return table.index_select(0, (base + yy * w + xx).reshape(-1))

    top = tap(y0, x0) * (1 - wx) + tap(y0, x1) * wx
    bottom = tap(y1, x0) * (1 - wx) + tap(y1, x1) * wx
    out = top * (1 - wy) + bottom * wy
    return out.view(n, out_h, out_w, c).permute(0, 3, 1, 2)


class DySample(Upsampler):
    """DySample upsampler: ``forward(x, guide=None) -> (B, C, s*h, s*w)``.

    For output pixel ``(Y, X) = (s*y + i, s*x + j)`` and channel group ``g`` the sample
    position, in input pixel units with pixel centres at integers, is::

        p = (y, x) + init(i, j) + scope * offset[g, i, j](y, x)
        init(i, j) = ((i - (s - 1) / 2) / s, (j - (s - 1) / 2) / s)

    so that zero offsets reproduce bilinear upsampling (``align_corners=False``). The group's
    channels are read at ``p`` by bilinear interpolation with border (clamped) padding.

    Offsets (channel layout ``[xy, g, i, j]``, x first, as in the official code, so its
    checkpoints load unchanged):

    - ``style='lp'`` (linear, then pixel-shuffle): ``offset = conv1x1(x)`` with
      ``C -> 2*groups*s*s`` channels at low resolution.
    - ``style='pl'`` (pixel-shuffle, then linear): ``offset = pixel_unshuffle(conv1x1(
      pixel_shuffle(x)))`` with ``C/(s*s) -> 2*groups`` channels at high resolution.
    - static scope (``dyscope=False``): ``scope = 0.25``, which keeps neighbouring sample
      points from overlapping;
    - dynamic scope (``dyscope=True``): ``scope = 0.5 * sigmoid(conv1x1(.))``, a second 1x1
      convolution of the same shape as the offset one, initialised to zero so that training
      starts from the static scope 0.25. Without bias as in the paper's code by default;
      ``scope_bias=True`` gives it a (zero-initialised) bias as in the authors' later
      mmdet/mmseg forks (tiny-smart/detection-with-upsamplers, segmentation-with-upsamplers).

    Parameters at ``C = 256``, ``s = 2``, ``groups = 4``: ``'lp'`` 8,224 (``+8,192`` with
    ``dyscope``, 16,416 in all; ``+8,224``, 16,448 in all, with ``scope_bias``); ``'pl'`` 520
    (``+512``, 1,032 in all; 1,040 with ``scope_bias``).

    Args:
        in_channels: channels ``C`` of ``x``; divisible by ``groups`` (and by ``s*s`` for
            ``'pl'``).
        scale_factor: integer upsampling ratio ``s``.
        style: ``'lp'`` (default) or ``'pl'``.
        groups: channel groups, each with its own sampling positions (4).
        dyscope: use the dynamic scope factor ("DySample+"/"-S+" in the paper).
        scope_bias: give the scope conv a bias (the authors' forks); needs ``dyscope``.
        sampler: ``'grid_sample'`` (``F.grid_sample``), ``'gather'`` (:func:`bilinear_gather`,
            same numbers to float rounding, deterministic backward on CUDA; keeps four
            output-sized gathers for backward) or ``'auto'`` (default): ``'gather'`` for CUDA
            inputs while autograd records under ``torch.use_deterministic_algorithms(True)``
            (where grid_sample's backward raises), else ``'grid_sample'``.

    Determinism: ``grid_sample``'s CUDA backward accumulates into the input gradient with
    ``atomicAdd``, so the gradients of ``x`` differ in the last bits from run to run, and
    under ``torch.use_deterministic_algorithms(True)`` it raises. ``sampler='auto'`` switches
    to the gather-based sampling there; on CPU every path is deterministic.

    Non-finite input: a NaN or infinite pixel of ``x`` gives NaN/Inf offsets, whose sample
    positions the sampling would clamp to the border and read finite values there. The
    outputs whose offsets are not finite (with ``'lp'``, every channel of the ``s*s``
    children of such a pixel) are NaN instead: a zero, NaN where an offset is not finite,
    is added to the output -- one elementwise add, no data-dependent branch.

    Double backward (``create_graph=True``, e.g. gradient penalties) works with
    ``sampler='gather'`` (plain differentiable ops) on every torch version, and with
    ``grid_sample`` on the torch releases that implement its double backward (2.13 does;
    older ones raise "derivative for grid_sampler_2d_backward is not implemented").

    Shapes:
        x: ``(B, C, h, w)``; guide (optional, only its size is used): ``(B, *, H, W)`` with
        ``ceil(H/s) = h``, ``ceil(W/s) = w``; output: ``(B, C, H, W)`` with a guide, else
        ``(B, C, s*h, s*w)``.
    """

    uses_guide = False

    def __init__(self, in_channels: int, scale_factor: int = 2, style: str = 'lp',
                 groups: int = 4, dyscope: bool = False, scope_bias: bool = False,
                 sampler: str = 'auto') -> None:
        super().__init__()
        name = type(self).__name__
        in_channels = check_int(name, 'in_channels', in_channels, 1)
        scale_factor = check_int(name, 'scale_factor', scale_factor, 1)
        check_choice(name, 'style', style, STYLES)
        groups = check_int(name, 'groups', groups, 1)
        check_choice(name, 'sampler', sampler, SAMPLERS)
        if not isinstance(dyscope, bool):
            raise ValueError(f'{name}: `dyscope` must be a bool, got {dyscope!r}')
        if not isinstance(scope_bias, bool) or (scope_bias and not dyscope):
            raise ValueError(f'{name}: `scope_bias` must be a bool, and True only with '
                             f'dyscope=True, got scope_bias={scope_bias!r} with '
                             f'dyscope={dyscope!r}')
        if in_channels % groups:
            raise ValueError(f'{name}: `groups` must divide `in_channels`={in_channels}, '
                             f'got {groups}')
        s2 = scale_factor * scale_factor
        if style == 'pl' and in_channels % s2:
            raise ValueError(f"{name}: `in_channels` must be divisible by scale_factor**2="
                             f"{s2} for style='pl' (it is pixel-shuffled first), got "
                             f"{in_channels}")
        self.in_channels = in_channels
        self.scale_factor = scale_factor
        self.style = style
        self.groups = groups
        self.dyscope = dyscope
        self.scope_bias = scope_bias
        self.sampler = sampler

        if style == 'pl':
            conv_in, conv_out = in_channels // s2, 2 * groups
        else:
            conv_in, conv_out = in_channels, 2 * groups * s2
        self.offset = nn.Conv2d(conv_in, conv_out, 1)
        if dyscope:
            self.scope = nn.Conv2d(conv_in, conv_out, 1, bias=scope_bias)
        # Persistent (as in the official code) so that its state dicts load strictly.
        self.register_buffer('init_pos', self._initial_grid())
        self.init_weights()

    def init_weights(self) -> None:
        """Offsets ``N(0, 0.001)`` with zero bias, scope zero (as the official code): training
        starts from plain bilinear upsampling with the static scope."""
        nn.init.normal_(self.offset.weight, std=0.001)
        nn.init.zeros_(self.offset.bias)
        if self.dyscope:
            nn.init.zeros_(self.scope.weight)
            if self.scope_bias:
                nn.init.zeros_(self.scope.bias)

    def _initial_grid(self) -> Tensor:
        """``(1, 2*groups*s*s, 1, 1)``: sub-pixel positions of bilinear upsampling."""
        s = self.scale_factor
        pos = (torch.arange(s, dtype=torch.float32) - (s - 1) / 2) / s
        grid_x = pos.view(1, s).expand(s, s)  # varies with the column j
        grid_y = pos.view(s, 1).expand(s, s)  # varies with the row i
        grid = torch.stack((grid_x, grid_y))[:, None].expand(2, self.groups, s, s)
        return grid.reshape(1, -1, 1, 1).clone()

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, scale_factor={self.scale_factor}, '
                f'style={self.style!r}, groups={self.groups}, dyscope={self.dyscope}'
                + (', scope_bias=True' if self.scope_bias else '')
                + ('' if self.sampler == 'auto' else f', sampler={self.sampler!r}'))

    def offsets(self, x: Tensor) -> Tensor:
        """Sample positions relative to each low-res pixel centre, ``(B, 2*G*s*s, h, w)``.

        Channel ``xy*G*s*s + g*s*s + i*s + j`` is the x (``xy=0``) or y (``xy=1``)
        displacement, in input pixels, of output pixel ``(s*y+i, s*x+j)`` in group ``g``.
        """
        s = self.scale_factor
        src = F.pixel_shuffle(x, s) if self.style == 'pl' else x
        off = self.offset(src)
        if self.dyscope:
            off = off * self.scope(src).sigmoid() * 0.5
        else:
            off = off * 0.25
        if self.style == 'pl':
            off = F.pixel_unshuffle(off, s)
        return off + self.init_pos.to(off.dtype)

    def _sampler(self, x: Tensor, offsets: Tensor) -> str:
        if self.sampler != 'auto':
            return self.sampler
        if x.is_cuda and torch.are_deterministic_algorithms_enabled() and \
                torch.is_grad_enabled() and (x.requires_grad or offsets.requires_grad):
            return 'gather'
        return 'grid_sample'

    def sample(self, x: Tensor, offsets: Tensor) -> Tensor:
        """Bilinear sampling of each channel group of ``x`` at ``offsets`` (see above).

        Args:
            x: ``(B, C, h, w)``.
            offsets: ``(B, 2*G*s*s, h, w)`` as returned by :meth:`offsets`.

        Returns:
            ``(B, C, s*h, s*w)``; NaN wherever an offset is NaN or infinite.
        """
        b, c, h, w = x.shape
        s, g = self.scale_factor, self.groups
        off = offsets.view(b, 2, g, s, s, h, w)
        # Sampling clamps a NaN/Inf position to the border and reads a finite value there:
        # 0 where both coordinates are finite, NaN elsewhere, added to the output below.
        poison = ((off[:, 0] + off[:, 1]).detach() * 0).permute(0, 1, 4, 2, 5, 3)
        poison = poison.reshape(b, g, 1, s * h, s * w)
        if self._sampler(x, offsets) == 'gather':
            cols = torch.arange(w, dtype=x.dtype, device=x.device)
            rows = torch.arange(h, dtype=x.dtype, device=x.device).view(h, 1)
            pos = torch.stack((off[:, 0] + cols, off[:, 1] + rows), 1)  # (B, xy, G, s, s, h, w)
            pos = pos.permute(0, 2, 1, 5, 3, 6, 4).reshape(b * g, 2, s * h, s * w)
            out = bilinear_gather(x.reshape(b * g, c // g, h, w), pos[:, 0], pos[:, 1])
            out = out.reshape(b, c, s * h, s * w)
        else:
            # grid_sample with align_corners=False maps [-1, 1] onto the outer pixel edges,
            # so a pixel index p sits at 2 * (p + 0.5) / size - 1.
            cols = torch.arange(w, dtype=x.dtype, device=x.device) + 0.5
            rows = torch.arange(h, dtype=x.dtype, device=x.device).view(h, 1) + 0.5
            gx = 2 * (off[:, 0] + cols) / w - 1
            gy = 2 * (off[:, 1] + rows) / h - 1
            grid = torch.stack((gx, gy), -1)  # (B, G, s_i, s_j, h, w, 2)
            grid = grid.permute(0, 1, 4, 2, 5, 3, 6).reshape(b * g, s * h, s * w, 2)
            out = F.grid_sample(x.reshape(b * g, c // g, h, w), grid, mode='bilinear',
                                padding_mode='border', align_corners=False)
        out = out.view(b, g, c // g, s * h, s * w) + poison.to(out.dtype)
        return out.view(b, c, s * h, s * w)

    def forward(self, x: Tensor, guide: Optional[Tensor] = None) -> Tensor:
        big_h, big_w = unguided_output_size(type(self).__name__, x, guide,
                                              self.in_channels, self.scale_factor)
        if x.shape[0] == 0:
            return empty_batch(x, guide, big_h, big_w)
        out = self.sample(x, self.offsets(x))
        return crop(out, big_h, big_w)
