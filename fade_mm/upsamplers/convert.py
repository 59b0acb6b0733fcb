"""Load weights of the official FADE / FADE-Lite modules into :class:`FADE` / :class:`FADELite`.

Official code (github.com/poppinace/fade), read at commit e4de4db. Four files define the
modules; their state-dict keys (relative to the module) come in two layouts:

- ``'fade'``: ``FADE`` of ``FADE_L2H.py`` and of ``pytorch_implementation/FADE_L2H.py``
  (the same keys and computation; the second swaps mmcv's CARAFE for a parameter-free
  unfold port): ``gate_generator.conv.{weight,bias}``,
  ``ker_generator.compressor_en.{weight,bias}``, ``ker_generator.compressor_de.weight``,
  ``ker_generator.content_encoder.{weight,bias}``. ``SemiShiftUp`` of the same files is
  ``FADE`` without ``gate_generator``.
- ``'fade_lite'``: ``FADELite`` of the same two files: the ``'fade'`` keys, with
  compressors to ``k*k`` channels and a depthwise ``content_encoder`` (``SemiShiftDepthWise``).
- ``'fade_h2l'``: ``FADE`` of ``FADE_H2L.py`` and of ``pytorch_implementation/FADE_H2L.py``:
  ``gate_generator.conv.{weight,bias}``, ``kernel_generator.conv1_en.{weight,bias}``,
  ``kernel_generator.conv1_de.weight``, ``kernel_generator.conv2_kernels`` (the
  ``(k*k, 64, 3, 3)`` weight) and ``kernel_generator.conv2_bias``.

The official SegFormer head (``segformer/segformer_head.py``) holds six of them in
``upsamplers.{0..5}``, the A2U matting decoder (``a2u_matting/decoder.py``) one in ``up``.
``kind='auto'`` tells the three apart: ``kernel_generator.*`` keys mean ``'fade_h2l'``; a
depthwise content encoder (weight ``(k*k, 1, kc, kc)``) fed by a ``k*k``-channel compressor
means ``'fade_lite'``; anything else ``'fade'``. Targets:

- ``'fade'``: ``FADE(C)`` (``FADE(C, fusion='none')`` for ``SemiShiftUp``; pass
  ``guide_channels=C_en`` when the official ``in_channels_en`` differed);
- ``'fade_lite'``: ``FADELite(C)``;
- ``'fade_h2l'``: ``FADE(C)``; the official H2L conv is always 3x3 and its embedding 64-d,
  our defaults. Either ``semi_shift_impl`` gives the same numbers.

Re-parametrisation (exact, checked in ``tests/test_convert_official.py``):

- **Kernel-generator bias x 2.** Every official variant above adds the content-encoder bias
  in both branches of the semi-shift conv, ``conv(e) + b + up(conv(q) + b)``: L2H calls
  ``content_encoder`` (bias included) on both embeddings; H2L passes ``conv2_bias`` to both
  ``F.conv2d`` calls. Ours adds it once (:func:`~fade_mm.ops.semi_shift_conv`), so our bias
  is twice the official one.
- **Decoder-compressor bias.** No official variant has one (``bias=False`` everywhere), but
  a modified copy might. A constant ``b_q`` added to ``q`` adds ``conv(b_q)`` to the
  logits; with a 1x1 content encoder that is the constant ``W[:, :, 0, 0] @ b_q`` (per
  group), folded into our bias. With a larger kernel the zero padding makes ``conv(b_q)``
  smaller at the low-resolution border than inside, which no bias can express: an all-zero
  ``b_q`` is dropped, any other raises ``ValueError``.
- Everything else is renamed unchanged: ``gate_generator.conv`` -> ``gate``,
  ``compressor_en`` / ``conv1_en`` -> ``compressor_enc``, ``compressor_de`` / ``conv1_de``
  -> ``compressor_dec``, ``content_encoder`` / ``conv2_kernels`` + ``conv2_bias`` ->
  ``content_encoder``. The gate and the ``gate * en + (1 - gate) * up`` fusion match ours.

Not convertible, by design:

- ``aligner.conv`` (the official ``Aligner`` is defined but its construction is commented
  out, so where it would act is unknown): reported as a key not understood.
- ``pytorch_implementation/FADE_H2L.py`` has the keys of ``FADE_H2L.py`` but splits the
  concatenated shifted encoder maps as ``(channel, shift)`` where they are laid out
  ``(shift, channel)``, so each sub-pixel mixes channels of different shifts. That is not a
  semi-shift conv, and weights trained with that port compute a function no :class:`FADE`
  reproduces; the converter cannot tell them apart and converts them as ``FADE_H2L.py``
  weights. (``FADE_H2L.py`` itself only runs on square maps; ours runs on any size.)

Official modules upsample by 2 only and need ``H = 2h``; converted modules also accept
``H = 2h - 1``, where they compute what the official formula means there (nearest
upsampling cropped to the guide).
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch.nn.functional as F
from torch import Tensor

__all__ = ['convert_official_state_dict', 'convert_official_checkpoint',
           'detect_official_kind', 'find_official_modules', 'KINDS']

KINDS = ('auto', 'fade', 'fade_lite', 'fade_h2l')

_GATE = {
    'gate_generator.conv.weight': 'gate.weight',
    'gate_generator.conv.bias': 'gate.bias',
}
# official key -> ours, per key layout ('fade' and 'fade_lite' share one).
_L2H = {
    'ker_generator.compressor_en.weight': 'compressor_enc.weight',
    'ker_generator.compressor_en.bias': 'compressor_enc.bias',
    'ker_generator.compressor_de.weight': 'compressor_dec.weight',
    'ker_generator.content_encoder.weight': 'content_encoder.weight',
    'ker_generator.content_encoder.bias': 'content_encoder.bias',
}
_H2L = {
    'kernel_generator.conv1_en.weight': 'compressor_enc.weight',
    'kernel_generator.conv1_en.bias': 'compressor_enc.bias',
    'kernel_generator.conv1_de.weight': 'compressor_dec.weight',
    'kernel_generator.conv2_kernels': 'content_encoder.weight',
    'kernel_generator.conv2_bias': 'content_encoder.bias',
}
_LAYOUTS = {'fade': _L2H, 'fade_lite': _L2H, 'fade_h2l': _H2L}
_DEC_BIAS = {'fade': 'ker_generator.compressor_de.bias',
             'fade_lite': 'ker_generator.compressor_de.bias',
             'fade_h2l': 'kernel_generator.conv1_de.bias'}
# One key every official module has, per layout: marks a module inside a whole checkpoint.
_MARKERS = ('ker_generator.content_encoder.weight', 'kernel_generator.conv2_kernels')
_SHOWN = 5  # keys listed in an error before "... and N more"


def _check_type(owner: str, name: str, value: Any, types: Tuple[type, ...],
                expected: str) -> None:
    if not isinstance(value, types):
        raise ValueError(f'{owner}: `{name}` must be {expected}, got {type(value).__name__}')


def _check_state_dict(owner: str, state_dict: Any) -> None:
    _check_type(owner, 'state_dict', state_dict, (Mapping,), 'a mapping (dict) of str -> '
                'torch.Tensor')
    bad = [k for k in state_dict if not isinstance(k, str)]
    if bad:
        raise ValueError(f'{owner}: `state_dict` keys must be str, got {len(bad)} other(s), '
                         f'e.g. {bad[0]!r} ({type(bad[0]).__name__})')


def _check_kind(owner: str, kind: Any) -> None:
    _check_type(owner, 'kind', kind, (str,), f'one of {KINDS} (a str)')
    if kind not in KINDS:
        raise ValueError(f'{owner}: `kind` must be one of {KINDS}, got {kind!r}')


def _few(keys: List[str]) -> str:
    more = f' ... and {len(keys) - _SHOWN} more' if len(keys) > _SHOWN else ''
    return f'{keys[:_SHOWN]}{more}'


def _is_lite(enc_weight: Tensor, ce_weight: Tensor) -> bool:
    """Depthwise content encoder on a compressor with as many channels as kernel entries."""
    k2 = ce_weight.shape[0]
    return k2 > 1 and ce_weight.shape[1] == 1 and enc_weight.shape[0] == k2


def _tensor(owner: str, state_dict: Mapping[str, Any], key: str, dims: int) -> Tensor:
    value = state_dict[key]
    if not isinstance(value, Tensor):
        raise ValueError(f'{owner}: `state_dict[{key!r}]` must be a torch.Tensor, got '
                         f'{type(value).__name__}')
    if value.dim() != dims:
        raise ValueError(f'{owner}: `state_dict[{key!r}]` must be {dims}-D, got shape '
                         f'{tuple(value.shape)}')
    return value


def _detect(owner: str, state_dict: Mapping[str, Any]) -> str:
    has_l2h = any(k in state_dict for k in _L2H)
    has_h2l = any(k in state_dict for k in _H2L)
    if has_l2h and has_h2l:
        raise ValueError(f'{owner}: `state_dict` mixes the L2H keys (ker_generator.*) and the '
                         f'H2L keys (kernel_generator.*) of the official FADE; convert one '
                         f'module at a time')
    if has_h2l:
        return 'fade_h2l'
    enc, ce = 'ker_generator.compressor_en.weight', 'ker_generator.content_encoder.weight'
    if enc in state_dict and ce in state_dict:
        lite = _is_lite(_tensor(owner, state_dict, enc, 4), _tensor(owner, state_dict, ce, 4))
        return 'fade_lite' if lite else 'fade'
    hint = ''
    nested = sorted({k[:-len(m)] for k in state_dict for m in _MARKERS if k.endswith(m)})
    if nested:
        hint = (f'; modules found under prefixes {_few(nested)}: use '
                f'convert_official_checkpoint for a whole model')
    raise ValueError(f"{owner}: cannot detect the official FADE variant: `state_dict` has "
                     f"neither 'kernel_generator.*' keys (H2L) nor both {enc!r} and {ce!r} "
                     f"(L2H){hint}")


def detect_official_kind(state_dict: Mapping[str, Any]) -> str:
    """The ``kind`` of one official module's state dict (what ``kind='auto'`` resolves to).

    Args:
        state_dict: keys relative to the official module (``'ker_generator.…'``).

    Returns:
        ``'fade'``, ``'fade_lite'`` or ``'fade_h2l'``.

    Raises:
        ValueError: the keys belong to no official variant, or mix two of them.
    """
    owner = 'detect_official_kind'
    _check_state_dict(owner, state_dict)
    return _detect(owner, state_dict)


def _fold_dec_bias(owner: str, dec_bias: Tensor, ce_weight: Tensor, key: str) -> Tensor:
    """Logit offset ``(k*k,)`` equal to the content conv of the constant ``dec_bias``.

    Args:
        dec_bias: ``(d,)`` bias of an official decoder compressor.
        ce_weight: ``(k*k, d // groups, kc, kc)`` content-encoder weight.
    """
    d = dec_bias.numel()
    if dec_bias.dim() != 1 or d % ce_weight.shape[1]:
        raise ValueError(f'{owner}: `state_dict[{key!r}]` must have shape (d,) with d a '
                         f'multiple of {ce_weight.shape[1]} (the content encoder reads '
                         f'd // groups channels per group), got {tuple(dec_bias.shape)}')
    if ce_weight.shape[-2:] != (1, 1) and bool(dec_bias.any()):
        raise ValueError(
            f'{owner}: cannot fold the non-zero decoder-compressor bias `{key}` exactly: '
            f'through a {ce_weight.shape[-2]}x{ce_weight.shape[-1]} zero-padded content '
            f'encoder a constant input gives a smaller response at the border than inside, '
            f'which no bias reproduces (only a 1x1 content encoder folds exactly)')
    groups = d // ce_weight.shape[1]
    # A 1x1 conv of a constant map is the constant W @ b_q (per group); sum the taps so a
    # zero bias with a larger kernel gives exactly zero.
    taps = ce_weight.sum((-2, -1), keepdim=True)
    return F.conv2d(dec_bias.view(1, d, 1, 1).to(taps.dtype), taps, groups=groups).view(-1)


def _convert_module(owner: str, state_dict: Mapping[str, Any], kind: str,
                    strict: bool) -> Dict[str, Tensor]:
    resolved = _detect(owner, state_dict) if kind == 'auto' else kind
    layout = _LAYOUTS[resolved]
    dec_bias_key = _DEC_BIAS[resolved]
    known = set(layout) | set(_GATE) | {dec_bias_key}
    unknown = [k for k in state_dict if k not in known]
    if unknown:
        other = [name for name, lay in _LAYOUTS.items() if lay is not layout
                 and any(k in lay for k in unknown)]
        hint = f" (they look like kind={other[0]!r})" if other else ''
        msg = (f"{owner}: {len(unknown)} key(s) of `state_dict` not understood for "
               f"kind={resolved!r}{hint}")
        if strict:
            raise ValueError(f'{msg}: {_few(unknown)}; pass strict=False to leave them out '
                             f'with a warning')
        warnings.warn(f'{msg}, left out: {unknown}', stacklevel=3)
    missing = [k for k in layout if k not in state_dict]
    if missing:
        raise ValueError(f'{owner}: `state_dict` lacks the key(s) {missing} that every '
                         f'official {resolved!r} module has')
    gate = [k for k in _GATE if k in state_dict]
    if len(gate) == 1:
        raise ValueError(f'{owner}: `state_dict` has {gate[0]!r} but not its partner '
                         f'{next(k for k in _GATE if k not in gate)!r}')

    theirs = {ours: official for official, ours in layout.items()}
    enc_key, ce_key = theirs['compressor_enc.weight'], theirs['content_encoder.weight']
    bias_key = theirs['content_encoder.bias']
    enc_w = _tensor(owner, state_dict, enc_key, 4)
    ce_w = _tensor(owner, state_dict, ce_key, 4)
    ce_b = _tensor(owner, state_dict, bias_key, 1)
    if resolved != 'fade_h2l':
        lite = _is_lite(enc_w, ce_w)
        if lite != (resolved == 'fade_lite'):
            other = 'fade_lite' if lite else 'fade'
            raise ValueError(f'{owner}: kind={resolved!r} but the weights are those of '
                             f'kind={other!r} (`{enc_key}` {tuple(enc_w.shape)}, `{ce_key}` '
                             f'{tuple(ce_w.shape)}); pass kind={other!r} or kind=\'auto\'')

    out: Dict[str, Tensor] = {}
    for official, ours in list(_GATE.items()) + list(layout.items()):
        if official in state_dict:
            out[ours] = state_dict[official]
    # Ours adds the semi-shift bias once, theirs in both branches.
    bias = 2 * ce_b
    if dec_bias_key in state_dict:
        dec_b = _tensor(owner, state_dict, dec_bias_key, 1)
        bias = bias + _fold_dec_bias(owner, dec_b, ce_w, dec_bias_key).to(bias.dtype)
    out['content_encoder.bias'] = bias
    return out


def convert_official_state_dict(state_dict: Mapping[str, Any], kind: str,
                                strict: bool = True) -> Dict[str, Tensor]:
    """Map the state dict of ONE official FADE module onto :class:`FADE` / :class:`FADELite`.

    Args:
        state_dict: keys relative to the official module, e.g.
            ``'ker_generator.compressor_en.weight'`` -> tensor (see the module docstring
            for the layouts). Not modified.
        kind: ``'fade'`` | ``'fade_lite'`` | ``'fade_h2l'`` | ``'auto'`` (detect).
        strict: keys the converter does not understand raise ``ValueError`` (True) or are
            left out with a ``UserWarning`` naming them (False).

    Returns:
        Our state dict, ready for ``load_state_dict(strict=True)``: the content-encoder
        bias is ``2 x`` the official one (plus the folded decoder-compressor bias, if any);
        other tensors are the input tensors themselves (not copies).

    Raises:
        ValueError: wrong argument type, unknown ``kind``, unknown keys (``strict=True``),
            missing keys, weights of another kind, or a decoder-compressor bias that cannot
            be folded exactly.
    """
    owner = 'convert_official_state_dict'
    _check_state_dict(owner, state_dict)
    _check_kind(owner, kind)
    _check_type(owner, 'strict', strict, (bool,), 'a bool')
    return _convert_module(owner, state_dict, kind, strict)


def find_official_modules(state_dict: Mapping[str, Any]) -> List[str]:
    """Prefixes of the official FADE modules in a whole model's state dict.

    Args:
        state_dict: any model's state dict.

    Returns:
        Sorted prefixes, each ``''`` (the state dict is one module) or ending in ``'.'``,
        e.g. ``['decode_head.upsamplers.0.', …]``.
    """
    _check_state_dict('find_official_modules', state_dict)
    found = set()
    for key in state_dict:
        for marker in _MARKERS:
            prefix = key[:-len(marker)]
            if key.endswith(marker) and (prefix == '' or prefix.endswith('.')):
                found.add(prefix)
    return sorted(found)


def convert_official_checkpoint(state_dict: Mapping[str, Any], kind: str = 'auto',
                                strict: bool = True) -> Dict[str, Any]:
    """Convert every official FADE module of a whole model's state dict, under any prefix.

    ``decode_head.upsamplers.0.ker_generator.compressor_en.weight`` becomes
    ``decode_head.upsamplers.0.compressor_enc.weight``; keys outside the modules found
    pass through unchanged, in their order.

    Args:
        state_dict: the model's state dict (the ``'state_dict'`` entry of a checkpoint).
        kind: as in :func:`convert_official_state_dict`, for every module (``'auto'``
            detects each one).
        strict: as in :func:`convert_official_state_dict`, for keys under a module's prefix.

    Returns:
        A new state dict.

    Raises:
        ValueError: as :func:`convert_official_state_dict` (naming the module), or when no
            official FADE module is found.
    """
    owner = 'convert_official_checkpoint'
    _check_state_dict(owner, state_dict)
    _check_kind(owner, kind)
    _check_type(owner, 'strict', strict, (bool,), 'a bool')
    prefixes = find_official_modules(state_dict)
    if not prefixes:
        raise ValueError(f'{owner}: no official FADE module in `state_dict` (no key ends in '
                         f'{" or ".join(map(repr, _MARKERS))})')

    def owning(key: str) -> Optional[str]:
        # Longest prefix: a module at the root ('') owns only what no deeper module owns.
        hits = [p for p in prefixes if key.startswith(p)]
        return max(hits, key=len) if hits else None

    members: Dict[str, Dict[str, Any]] = {p: {} for p in prefixes}
    for key, value in state_dict.items():
        p = owning(key)
        if p is not None:
            members[p][key[len(p):]] = value
    out: Dict[str, Any] = {}
    done = set()
    for key, value in state_dict.items():
        p = owning(key)
        if p is None:
            out[key] = value
        elif p not in done:  # emit the module where its first key was
            converted = _convert_module(f'{owner} (module {p!r})', members[p], kind, strict)
            out.update((p + k, v) for k, v in converted.items())
            done.add(p)
    return out
