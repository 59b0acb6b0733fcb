"""Input checks shared by every upsampler: clear errors instead of silent broadcasting."""
from __future__ import annotations

import numbers
from typing import Optional, Tuple

import torch
from torch import Tensor


def autocast_enabled(t: Tensor) -> bool:
    """Whether ``torch.autocast`` is active for ``t``'s device type (torch >= 2.1)."""
    device_type = t.device.type
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return device_type == 'cuda' and torch.is_autocast_enabled()


def check_feature(owner: str, name: str, t, channels: Optional[int] = None) -> None:
    """Raise ValueError unless ``t`` is a 4-D float tensor with ``channels`` channels."""
    if not isinstance(t, Tensor):
        raise ValueError(f'{owner}: `{name}` must be a torch.Tensor (B, C, H, W), got '
                         f'{type(t).__name__}')
    if t.dim() != 4:
        raise ValueError(f'{owner}: `{name}` must be 4-D (B, C, H, W), got shape '
                         f'{tuple(t.shape)}')
    if not t.is_floating_point():
        raise ValueError(f'{owner}: `{name}` must be a floating-point tensor, got {t.dtype}')
    if channels is not None and t.shape[1] != channels:
        raise ValueError(f'{owner}: `{name}` must have {channels} channels (B, {channels}, '
                         f'H, W), got shape {tuple(t.shape)}')


def check_spatial(owner: str, name: str, t: Tensor) -> None:
    """Raise ValueError unless the map ``t`` (..., H, W) has ``H, W >= 1`` (a batch of
    zero images is fine; a map of zero rows or columns has nothing to upsample)."""
    if t.shape[-2] < 1 or t.shape[-1] < 1:
        raise ValueError(f'{owner}: `{name}` must have a non-empty spatial size (H, W >= 1), '
                         f'got shape {tuple(t.shape)}')


def output_size(owner: str, x: Tensor, guide: Optional[Tensor], scale: int,
                guide_channels: Optional[int] = None) -> Tuple[int, int]:
    """Size of the upsampled map: the guide's, or ``scale`` times the input's.

    A guide of size ``(H, W)`` is accepted when ``ceil(H/scale) == h`` and
    ``ceil(W/scale) == w`` (odd sizes, as in FPNs of images not padded to 32).
    """
    h, w = x.shape[-2:]
    if guide is None:
        return scale * h, scale * w
    check_feature(owner, 'guide', guide, guide_channels)
    check_spatial(owner, 'guide', guide)
    big_h, big_w = guide.shape[-2:]
    if guide.shape[0] != x.shape[0] or (-(-big_h // scale), -(-big_w // scale)) != (h, w):
        lo_h, lo_w = scale * (h - 1) + 1, scale * (w - 1) + 1
        raise ValueError(
            f'{owner}: `guide` must have shape (B={x.shape[0]}, C, H, W) with '
            f'ceil(H/{scale})={h} and ceil(W/{scale})={w}, i.e. H in [{lo_h}, {scale * h}] and '
            f'W in [{lo_w}, {scale * w}], for `x` of shape {tuple(x.shape)}; got '
            f'{tuple(guide.shape)}')
    # Under autocast a float32 guide may meet a bf16/fp16 decoder feature: layers cast.
    if guide.device != x.device or (guide.dtype != x.dtype and not autocast_enabled(x)):
        raise ValueError(f'{owner}: `guide` must match `x` in dtype and device ({x.dtype}, '
                         f'{x.device}), got ({guide.dtype}, {guide.device})')
    return big_h, big_w


def unguided_output_size(owner: str, x: Tensor, guide: Optional[Tensor], channels: int,
                         scale: int) -> Tuple[int, int]:
    """The checks of an unguided upsampler's forward: ``x`` with ``channels`` channels and an
    optional guide used for its size only; returns the output size."""
    check_feature(owner, 'x', x, channels)
    check_spatial(owner, 'x', x)
    return output_size(owner, x, guide, scale)


def guided_output_size(owner: str, x: Tensor, guide: Optional[Tensor], channels: int,
                       scale: int, guide_channels: Optional[int] = None) -> Tuple[int, int]:
    """The checks of a guided upsampler's forward: ``x`` with ``channels`` channels and a
    required guide with ``guide_channels`` (default ``channels``); returns the output size."""
    check_feature(owner, 'x', x, channels)
    check_spatial(owner, 'x', x)
    guide_channels = channels if guide_channels is None else guide_channels
    if guide is None:
        raise ValueError(f'{owner}: `guide` (the encoder feature, (B, {guide_channels}, H, W)) '
                         f'is required, got None')
    return output_size(owner, x, guide, scale, guide_channels)


def check_choice(owner: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f'{owner}: `{name}` must be one of {tuple(choices)}, got {value!r}')


def check_int(owner: str, name: str, value, minimum: int, odd: bool = False) -> int:
    """Raise ValueError unless ``value`` is an integer ``>= minimum`` (and odd if asked);
    returns it as a Python int. Integral numpy scalars (``np.int64(16)``) are integers;
    bools and floats (even ``16.0``) are not."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and \
            value >= minimum and not (odd and value % 2 == 0):
        return int(value)
    kind = '' if type(value) is int else f' ({type(value).__name__})'
    raise ValueError(f'{owner}: `{name}` must be an {"odd " if odd else ""}int >= '
                     f'{minimum}, got {value!r}{kind}')
