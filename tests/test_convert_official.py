"""Official FADE weights -> :class:`FADE` / :class:`FADELite` (``fade_mm.upsamplers.convert``).

The official modules (github.com/poppinace/fade) are re-typed below from their structure
alone -- parameter names, shapes and the computation -- without mmcv or einops:

- ``FADE_L2H.py`` / ``pytorch_implementation/FADE_L2H.py``: ``FADE``, ``FADELite`` and
  ``SemiShiftUp`` (no gate), also with ``in_channels_en != in_channels_de``;
- ``FADE_H2L.py``: ``FADE`` with the shift-and-stride kernel generator;
- ``pytorch_implementation/FADE_H2L.py``: same keys, but its (channel, shift) split of the
  stacked shifts is shown to compute something else (the documented non-convertible case);
- a modified L2H copy with a decoder-compressor bias (folded with a 1x1 content encoder,
  refused with a 3x3 one unless zero).

Each is built with random float64 weights, biases included, converted, loaded with
``strict=True`` and compared output for output with ours on even (square and not) and odd
guide sizes. The official code needs ``H = 2h``; for ``H = 2h - 1`` the re-typing crops the
nearest-upsampled terms to the guide (and the H2L one zero-pads the compressed guide to
``2h`` first), which is what the official formulas mean there. Also covered: argument and
key errors, ``strict=False`` warnings, whole-checkpoint conversion under prefixes, and the
converter script end to end.
"""
from __future__ import annotations

import os.path as osp
import subprocess
import sys
from typing import Dict, Optional

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fade_mm.upsamplers import FADE, FADELite
from fade_mm.upsamplers.convert import (
    convert_official_checkpoint,
    convert_official_state_dict,
    detect_official_kind,
    find_official_modules,
)

SCRIPT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools',
                  'model_converters', 'fade_official_to_fade_mm.py')
C, K = 8, 5
# (h, w, H, W): even non-square, even square, odd both, odd one side.
SIZES = [(4, 6, 8, 12), (5, 5, 10, 10), (5, 6, 9, 11), (4, 3, 7, 6)]
TOL = dict(rtol=1e-10, atol=1e-12)


# --- re-typed official modules -------------------------------------------------------------

def _up2(t: Tensor, big_h: int, big_w: int) -> Tensor:
    """Nearest x2 (the official ``F.interpolate(.., scale_factor=2)``), cropped to the guide."""
    return F.interpolate(t, scale_factor=2, mode='nearest')[..., :big_h, :big_w]


def _carafe_unfold(x: Tensor, kernels: Tensor, k: int) -> Tensor:
    """Reassembly: ``(B, C, h, w)`` with ``(B, k*k, H, W)`` kernels -> ``(B, C, H, W)``."""
    b, c, h, w = x.shape
    windows = F.unfold(x, k, padding=k // 2).view(b, c, k * k, h, w)
    windows = windows.repeat_interleave(2, -2).repeat_interleave(2, -1)
    return torch.einsum('bcnyx,bnyx->bcyx', windows[..., :kernels.shape[-2], :kernels.shape[-1]],
                        kernels)


class OfficialGate(nn.Module):
    """``gate_generator``: 1x1 conv of the decoder feature, nearest x2, sigmoid."""

    def __init__(self, c_de: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_de, 1, 1)

    def forward(self, de: Tensor, big_h: int, big_w: int) -> Tensor:
        return torch.sigmoid(_up2(self.conv(de), big_h, big_w))


class OfficialSemiShiftL2H(nn.Module):
    """``ker_generator`` of the L2H files: one content conv (bias included) on both embeddings.

    ``depthwise`` gives ``SemiShiftDepthWise`` (FADE-Lite); ``dec_bias`` a modified copy.
    """

    def __init__(self, c_en: int, c_de: int, k2: int, dim: int = 64, kernel: int = 3,
                 depthwise: bool = False, dec_bias: bool = False) -> None:
        super().__init__()
        dim = k2 if depthwise else dim
        self.compressor_en = nn.Conv2d(c_en, dim, 1)
        self.compressor_de = nn.Conv2d(c_de, dim, 1, bias=dec_bias)
        self.content_encoder = nn.Conv2d(dim, k2, kernel, padding=kernel // 2,
                                         groups=k2 if depthwise else 1)

    def forward(self, en: Tensor, de: Tensor) -> Tensor:
        high = self.content_encoder(self.compressor_en(en))
        return high + _up2(self.content_encoder(self.compressor_de(de)), *en.shape[-2:])


class OfficialSemiShiftH2L(nn.Module):
    """``kernel_generator`` of the H2L files: the 2x2 sub-pixel shifts of the padded encoder
    embedding go through a stride-2 3x3 conv at low resolution, the decoder term (same weight
    and bias) is added there, and the four results are interleaved.

    ``port_layout`` reproduces ``pytorch_implementation/FADE_H2L.py``, which splits the
    concatenated shifts ``(shift, channel)`` as ``(channel, shift)``.
    """

    def __init__(self, c_en: int, c_de: int, k2: int, dim: int = 64,
                 port_layout: bool = False) -> None:
        super().__init__()
        self.port_layout = port_layout
        self.conv1_en = nn.Conv2d(c_en, dim, 1)
        self.conv1_de = nn.Conv2d(c_de, dim, 1, bias=False)
        self.conv2_kernels = nn.Parameter(torch.empty(k2, dim, 3, 3))
        self.conv2_bias = nn.Parameter(torch.empty(k2))

    def forward(self, en: Tensor, de: Tensor) -> Tensor:
        b, _, h, w = de.shape
        big_h, big_w = en.shape[-2:]
        e = self.conv1_en(en)
        e = F.pad(e, (0, 2 * w - big_w, 0, 2 * h - big_h))  # no-op for the official H = 2h
        # Shift (dy, dx) pads so that the stride-2 window of output (i, j) is centred on
        # (2i + dy, 2j + dx).
        shifts = torch.stack([F.pad(e, (1 - dx, dx, 1 - dy, dy))
                              for dy in (0, 1) for dx in (0, 1)], 1)  # (B, 4, d, 2h+1, 2w+1)
        if self.port_layout:
            cat = shifts.flatten(1, 2)
            shifts = cat.view(b, -1, 4, *cat.shape[-2:]).transpose(1, 2)
        k2 = self.conv2_kernels.shape[0]
        per_shift = F.conv2d(shifts.flatten(0, 1), self.conv2_kernels, self.conv2_bias,
                             stride=2).view(b, 4, k2, h, w)
        low = F.conv2d(self.conv1_de(de), self.conv2_kernels, self.conv2_bias, padding=1)
        per_shift = per_shift + low.unsqueeze(1)
        out = per_shift.view(b, 2, 2, k2, h, w).permute(0, 3, 4, 1, 5, 2)
        return out.reshape(b, k2, 2 * h, 2 * w)[..., :big_h, :big_w]


class OfficialFADE(nn.Module):
    """Official ``FADE`` / ``FADELite`` / ``SemiShiftUp``: ``forward(en, de)``, guide first."""

    def __init__(self, variant: str, c_en: int = C, c_de: Optional[int] = None,
                 gate: bool = True, **kernel_kwargs) -> None:
        super().__init__()
        c_de = c_en if c_de is None else c_de
        if gate:
            self.gate_generator = OfficialGate(c_de)
        if variant == 'h2l':
            self.kernel_generator = OfficialSemiShiftH2L(c_en, c_de, K * K, **kernel_kwargs)
        else:
            self.ker_generator = OfficialSemiShiftL2H(c_en, c_de, K * K,
                                                      depthwise=variant == 'lite',
                                                      **kernel_kwargs)

    def forward(self, en: Tensor, de: Tensor) -> Tensor:
        generator = getattr(self, 'kernel_generator', None) or self.ker_generator
        up = _carafe_unfold(de, F.softmax(generator(en, de), 1), K)
        if not hasattr(self, 'gate_generator'):
            return up
        gate = self.gate_generator(de, *en.shape[-2:])
        return gate * en + (1 - gate) * up


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():  # biases too: the conversion rescales them
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return module


def _official(variant: str, **kwargs) -> OfficialFADE:
    return _randomise(OfficialFADE(variant, **kwargs).double())


def _inputs(size, c_en: int = C, c_de: int = C):
    h, w, big_h, big_w = size
    gen = torch.Generator().manual_seed(1)
    de = torch.randn(2, c_de, h, w, generator=gen, dtype=torch.float64)
    en = torch.randn(2, c_en, big_h, big_w, generator=gen, dtype=torch.float64)
    return de, en


def _ours(cls, state_dict: Dict[str, Tensor], **kwargs) -> nn.Module:
    m = cls(C, **kwargs).double()
    m.load_state_dict(state_dict, strict=True)
    return m


def _assert_same(official: nn.Module, ours: nn.Module, size, c_en: int = C) -> None:
    de, en = _inputs(size, c_en)
    with torch.no_grad():
        theirs = official(en, de)
        mine = ours(de, en)
    assert mine.shape == en.shape[:1] + (C,) + en.shape[2:]
    torch.testing.assert_close(mine, theirs, **TOL)


# --- one module ----------------------------------------------------------------------------

CASES = [  # (official variant, official kwargs, kind, our class, our kwargs)
    ('l2h', {}, 'fade', FADE, {}),
    ('lite', {}, 'fade_lite', FADELite, {}),
    ('l2h', dict(gate=False), 'fade', FADE, dict(fusion='none')),  # SemiShiftUp
    ('h2l', {}, 'fade_h2l', FADE, {}),
]


@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('case', CASES, ids=['fade', 'fade_lite', 'semishiftup', 'fade_h2l'])
def test_converted_module_matches_official(case, size):
    variant, official_kwargs, kind, cls, our_kwargs = case
    official = _official(variant, **official_kwargs)
    sd = official.state_dict()
    assert detect_official_kind(sd) == kind
    for k in (kind, 'auto'):
        converted = convert_official_state_dict(sd, k)
        _assert_same(official, _ours(cls, converted, **our_kwargs), size)


@pytest.mark.parametrize('impl', ['l2h', 'h2l'])
def test_h2l_weights_run_with_either_of_our_impls(impl):
    official = _official('h2l')
    ours = _ours(FADE, convert_official_state_dict(official.state_dict(), 'fade_h2l'),
                 semi_shift_impl=impl)
    _assert_same(official, ours, SIZES[2])


def test_semishiftup_with_other_guide_channels():
    official = _official('l2h', c_en=5, c_de=C, gate=False)
    converted = convert_official_state_dict(official.state_dict(), 'auto')
    ours = _ours(FADE, converted, fusion='none', guide_channels=5)
    _assert_same(official, ours, SIZES[2], c_en=5)


def test_bias_is_doubled_and_other_tensors_kept():
    official = _official('l2h')
    sd = official.state_dict()
    converted = convert_official_state_dict(sd, 'fade')
    assert sorted(converted) == sorted(FADE(C).state_dict())
    torch.testing.assert_close(converted['content_encoder.bias'],
                               2 * sd['ker_generator.content_encoder.bias'], rtol=0, atol=0)
    assert converted['gate.weight'] is sd['gate_generator.conv.weight']
    assert converted['compressor_dec.weight'] is sd['ker_generator.compressor_de.weight']
    # A plain copy of the bias would give other kernels: the doubling is not cosmetic.
    plain = dict(converted, **{'content_encoder.bias': sd['ker_generator.content_encoder.bias']})
    de, en = _inputs(SIZES[0])
    with torch.no_grad():
        diff = (_ours(FADE, plain)(de, en) - official(en, de)).abs().max()
    assert diff > 1e-3


def test_pytorch_port_of_h2l_is_not_a_semi_shift_conv():
    """Why ``pytorch_implementation/FADE_H2L.py`` weights cannot be converted exactly."""
    reference = _official('h2l')
    port = _official('h2l', port_layout=True)
    port.load_state_dict(reference.state_dict())
    de, en = _inputs(SIZES[0])
    with torch.no_grad():
        assert (port(en, de) - reference(en, de)).abs().max() > 1e-3
        # ... while the re-typed reference itself is the semi-shift conv (the L2H form).
        l2h = _official('l2h')
        l2h.load_state_dict({k.replace('kernel_generator.conv1_en', 'ker_generator.compressor_en')
                             .replace('kernel_generator.conv1_de', 'ker_generator.compressor_de')
                             .replace('kernel_generator.conv2_kernels',
                                      'ker_generator.content_encoder.weight')
                             .replace('kernel_generator.conv2_bias',
                                      'ker_generator.content_encoder.bias'): v
                             for k, v in reference.state_dict().items()})
        torch.testing.assert_close(l2h(en, de), reference(en, de), **TOL)


@pytest.mark.parametrize('size', SIZES[1:3])
def test_decoder_compressor_bias_folds_with_1x1_content_encoder(size):
    official = _official('l2h', kernel=1, dec_bias=True)
    sd = official.state_dict()
    assert sd['ker_generator.compressor_de.bias'].abs().min() > 0
    ours = _ours(FADE, convert_official_state_dict(sd, 'fade'), encoder_kernel=1)
    _assert_same(official, ours, size)
    lite = _official('lite', kernel=1, dec_bias=True)
    ours = _ours(FADELite, convert_official_state_dict(lite.state_dict(), 'auto'),
                 encoder_kernel=1)
    _assert_same(lite, ours, size)


def test_decoder_compressor_bias_with_3x3_content_encoder():
    official = _official('l2h', dec_bias=True)
    sd = official.state_dict()
    with pytest.raises(ValueError, match=r'cannot fold the non-zero decoder-compressor bias '
                                         r'`ker_generator\.compressor_de\.bias`.*border'):
        convert_official_state_dict(sd, 'fade')
    sd['ker_generator.compressor_de.bias'] = torch.zeros_like(
        sd['ker_generator.compressor_de.bias'])
    official.load_state_dict(sd)
    _assert_same(official, _ours(FADE, convert_official_state_dict(sd, 'fade')), SIZES[2])


# --- errors and warnings -------------------------------------------------------------------

def test_unknown_keys_strict_and_not_strict():
    sd = _official('l2h').state_dict()
    extra = {f'aligner.conv.{i}': torch.zeros(1) for i in range(7)}
    with pytest.raises(ValueError, match=r"7 key\(s\) of `state_dict` not understood for "
                                         r"kind='fade'.*'aligner\.conv\.0'.*and 2 more.*"
                                         r"strict=False"):
        convert_official_state_dict({**sd, **extra}, 'fade')
    with pytest.warns(UserWarning, match=r"7 key\(s\).*left out: .*'aligner\.conv\.6'"):
        converted = convert_official_state_dict({**sd, **extra}, 'auto', strict=False)
    assert converted.keys() == convert_official_state_dict(sd, 'fade').keys()


def test_keys_of_another_kind_get_a_hint():
    sd = _official('h2l').state_dict()
    with pytest.raises(ValueError, match=r"not understood for kind='fade' \(they look like "
                                         r"kind='fade_h2l'\)"):
        convert_official_state_dict(sd, 'fade')


@pytest.mark.parametrize('variant,kind,other', [('l2h', 'fade_lite', 'fade'),
                                                ('lite', 'fade', 'fade_lite')])
def test_weights_of_the_other_l2h_kind(variant, kind, other):
    with pytest.raises(ValueError, match=rf"kind='{kind}' but the weights are those of "
                                         rf"kind='{other}'"):
        convert_official_state_dict(_official(variant).state_dict(), kind)


def test_missing_and_half_keys():
    sd = _official('l2h').state_dict()
    del sd['ker_generator.compressor_de.weight']
    with pytest.raises(ValueError, match=r"lacks the key\(s\) \['ker_generator\.compressor_de"):
        convert_official_state_dict(sd, 'fade')
    sd = _official('l2h').state_dict()
    del sd['gate_generator.conv.bias']
    with pytest.raises(ValueError, match=r"has 'gate_generator\.conv\.weight' but not its "
                                         r"partner 'gate_generator\.conv\.bias'"):
        convert_official_state_dict(sd, 'fade')
    nested = {f'head.up.{k}': v for k, v in _official('l2h').state_dict().items()}
    with pytest.raises(ValueError, match=r"cannot detect.*\['head\.up\.'\].*"
                                         r"convert_official_checkpoint"):
        convert_official_state_dict(nested, 'auto')


@pytest.mark.parametrize('args,match', [
    (([], 'fade'), r"`state_dict` must be a mapping \(dict\) of str -> torch.Tensor, got list"),
    (({1: torch.zeros(1)}, 'fade'), r'`state_dict` keys must be str, got 1 other'),
    (({}, 3), r"`kind` must be one of \('auto', 'fade', 'fade_lite', 'fade_h2l'\) \(a str\), "
              r"got int"),
    (({}, 'fade_plus'), r"`kind` must be one of \('auto', 'fade', 'fade_lite', 'fade_h2l'\), "
                        r"got 'fade_plus'"),
    (({}, 'fade', 1), r'`strict` must be a bool, got int'),
])
def test_argument_errors(args, match):
    with pytest.raises(ValueError, match=r'convert_official_state_dict: ' + match):
        convert_official_state_dict(*args)


def test_non_tensor_value():
    sd = dict(_official('l2h').state_dict())
    sd['ker_generator.content_encoder.bias'] = [0.0] * 25
    with pytest.raises(ValueError, match=r"`state_dict\['ker_generator\.content_encoder\.bias'"
                                         r"\]` must be a torch\.Tensor, got list"):
        convert_official_state_dict(sd, 'fade')


# --- whole checkpoints and the script ------------------------------------------------------

class _Head(nn.Module):
    """The official SegFormer head's layout: FADE modules in ``upsamplers``, plus others."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        self.upsamplers = nn.ModuleList(_official(variant) for _ in range(2))
        self.linear_pred = nn.Conv2d(C, 3, 1)


class _Model(nn.Module):
    def __init__(self, variant: str) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, C, 3)
        self.decode_head = _Head(variant)


def _model_state_dict(variant: str) -> Dict[str, Tensor]:
    return _randomise(_Model(variant).double(), seed=3).state_dict()


def _check_converted(converted: Dict[str, Tensor], original: Dict[str, Tensor],
                     variant: str) -> None:
    cls = FADELite if variant == 'lite' else FADE
    modules = [f'decode_head.upsamplers.{i}.' for i in range(2)]
    for key in ('backbone.weight', 'backbone.bias', 'decode_head.linear_pred.weight'):
        assert torch.equal(converted[key], original[key])
    assert not [k for k in converted if 'generator' in k]
    for i, prefix in enumerate(modules):
        official = OfficialFADE(variant).double()
        official.load_state_dict({k[len(prefix):]: v for k, v in original.items()
                                  if k.startswith(prefix)})
        ours = _ours(cls, {k[len(prefix):]: v for k, v in converted.items()
                           if k.startswith(prefix)})
        _assert_same(official, ours, SIZES[i])


@pytest.mark.parametrize('variant', ['l2h', 'lite', 'h2l'])
def test_convert_checkpoint_under_prefixes(variant):
    sd = _model_state_dict(variant)
    assert find_official_modules(sd) == ['decode_head.upsamplers.0.',
                                         'decode_head.upsamplers.1.']
    converted = convert_official_checkpoint(sd)
    assert list(converted)[:2] == ['backbone.weight', 'backbone.bias']  # order kept
    assert 'decode_head.upsamplers.1.compressor_enc.weight' in converted
    _check_converted(converted, sd, variant)
    # A bare module is a module under the prefix ''.
    bare = _official(variant).state_dict()
    assert find_official_modules(bare) == ['']
    assert convert_official_checkpoint(bare).keys() == convert_official_state_dict(
        bare, 'auto').keys()


def test_convert_checkpoint_errors_name_the_module():
    sd = _model_state_dict('l2h')
    sd['decode_head.upsamplers.1.aligner.conv.weight'] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"module 'decode_head\.upsamplers\.1\.'.*"
                                         r"'aligner\.conv\.weight'"):
        convert_official_checkpoint(sd)
    with pytest.warns(UserWarning, match=r"module 'decode_head\.upsamplers\.1\.'"):
        converted = convert_official_checkpoint(sd, 'fade', strict=False)
    assert not [k for k in converted if 'aligner' in k]
    with pytest.raises(ValueError, match=r'no official FADE module'):
        convert_official_checkpoint({'backbone.weight': torch.zeros(1)})


def _run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)


@pytest.mark.slow
def test_script_end_to_end(tmp_path):
    sd = _model_state_dict('l2h')
    # DataParallel-style prefix on top of the head's own.
    sd = {f'module.{k}': v for k, v in sd.items()}
    src, dst = tmp_path / 'official.pth', tmp_path / 'ours.pth'
    torch.save({'state_dict': sd, 'meta': {'CLASSES': ('a', 'b', 'c')},
                'optimizer': {'state': {}}}, src)
    proc = _run_script(str(src), str(dst))
    assert proc.returncode == 0, proc.stdout
    assert 'converted module.decode_head.upsamplers.0. (fade)' in proc.stdout
    assert "dropped top-level entries: ['optimizer']" in proc.stdout
    out = torch.load(dst, weights_only=True)
    assert sorted(out) == ['meta', 'state_dict']
    assert out['meta'] == {'CLASSES': ('a', 'b', 'c')}
    strip = lambda d: {k[len('module.'):]: v for k, v in d.items()}  # noqa: E731
    _check_converted(strip(out['state_dict']), strip(sd), 'l2h')


@pytest.mark.slow
def test_script_bare_state_dict_kind_and_errors(tmp_path):
    sd = _model_state_dict('h2l')
    src, dst = tmp_path / 'official.pth', tmp_path / 'ours.pth'
    torch.save(sd, src)
    proc = _run_script(str(src), str(dst), '--kind', 'fade')
    assert proc.returncode != 0 and "they look like kind='fade_h2l'" in proc.stdout
    proc = _run_script(str(src), str(dst), '--kind', 'fade_h2l')
    assert proc.returncode == 0, proc.stdout
    _check_converted(torch.load(dst, weights_only=True), sd, 'h2l')
    torch.save({'model': {'backbone.weight': torch.zeros(1)}}, src)
    proc = _run_script(str(src), str(dst))
    assert proc.returncode != 0 and 'no official FADE module' in proc.stdout
