"""The torch-only core: no OpenMMLab import, ``guide_channels``, and an installable wheel.

- ``test_core_without_openmmlab``: a subprocess in which mmengine, mmcv, mmdet and mmseg are
  unimportable builds every upsampler, runs the guided ones with a 48-channel guide for a
  32-channel decoder feature at odd sizes (forward and backward) and trains
  ``examples/unet_fade.py`` a few steps.
- ``guide_channels``: exact parameter counts from the docstrings' formulas, and float64
  identities that tie the guide-side layers to what they must compute.
- ``test_wheel_in_fresh_venv`` (slow): ``pip wheel`` of the package, installed with
  ``torch==2.13.0`` alone into a new virtual environment; prints wheel size, install time
  and import time (``pytest -s``).
"""
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fade_mm.upsamplers import A2U, FADE, SAPA, FADELite, IndexNet

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / 'examples' / 'unet_fade.py'


def _count(m):
    return sum(p.numel() for p in m.parameters())


def _env(pythonpath=None):
    """Environment for child interpreters: the caller's, with only ``pythonpath`` on
    PYTHONPATH (a stray entry could shadow what the child must import by itself)."""
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)
    if pythonpath:
        env['PYTHONPATH'] = str(pythonpath)
    env['OMP_NUM_THREADS'] = '1'  # a shared 2-core machine
    return env


# --------------------------------------------------------------------------------------------
# 1. Without OpenMMLab
# --------------------------------------------------------------------------------------------

_TORCH_ONLY_SCRIPT = r'''
import importlib.util, json, math, sys
BLOCKED = ('mmengine', 'mmcv', 'mmdet', 'mmseg')
for n in BLOCKED:
    sys.modules[n] = None          # `import n` (and n.anything) now raises ImportError
for n in BLOCKED:
    try:
        __import__(n)
    except ImportError:
        pass
    else:
        raise AssertionError(f'{n} still importable: the block does not work')

import torch
torch.set_num_threads(1)
import fade_mm, fade_mm.ops, fade_mm.upsamplers
from fade_mm import upsamplers as U

# Every nn.Module class the package exports, built with its defaults.
built = []
for name in U.__all__:
    obj = getattr(U, name)
    if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
        obj(32)
        built.append(name)

x0 = torch.randn(2, 32, 5, 7)
g0 = torch.randn(2, 48, 9, 13)    # odd: ceil(9/2) = 5, ceil(13/2) = 7
w_out = torch.randn(2, 32, 9, 13)  # random loss weights: no symmetric, vanishing gradients

def check(label, m, guided, unused=()):
    x = x0.clone().requires_grad_()
    g = g0.clone().requires_grad_()
    out = m(x, g)
    assert out.shape == (2, 32, 9, 13), (label, tuple(out.shape))
    assert torch.isfinite(out).all(), label
    (out * w_out).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, \
        f'{label}: no gradient for x'
    if guided:
        assert g.grad is not None and torch.isfinite(g.grad).all() and \
            g.grad.abs().sum() > 0, f'{label}: no gradient for the guide'
    else:
        assert g.grad is None, f'{label}: an unguided upsampler reads only the guide size'
    no_grad = []
    for pname, p in m.named_parameters():
        if p.grad is None:
            no_grad.append(pname)
            continue
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, \
            f'{label}: zero gradient for {pname}'
    assert sorted(no_grad) == sorted(unused), f'{label}: no gradient for {no_grad}'

GUIDED = [
    ('FADE', U.FADE, {}, ()),
    ('FADE fusion=skip', U.FADE, dict(fusion='skip'), ()),
    ('FADELite', U.FADELite, {}, ()),
    # forward never touches A2U's downsampling-kernel projection (see its docstring)
    ('A2U', U.A2U, {}, ('proj_down.weight', 'proj_down.bias')),
    ('IndexNet holistic', U.IndexNet, dict(index_mode='holistic'), ()),
    ('IndexNet m2o', U.IndexNet, dict(index_mode='m2o'), ()),
    ('SAPA B', U.SAPA, dict(variant='B'), ()),
    ('SAPA G', U.SAPA, dict(variant='G'), ()),
]
ran = []
for label, cls, kw, unused in GUIDED:
    torch.manual_seed(0)
    m = cls(32, guide_channels=48, **kw)
    assert m.guide_channels == 48
    check(label, m, True, unused)
    ran.append(label)
for name in built:
    cls = getattr(U, name)
    if not getattr(cls, 'uses_guide', False):
        torch.manual_seed(0)
        check(name, cls(32), False)   # the 48-channel guide only sets the output size
        ran.append(name)

# The example: a UNet whose three x2 steps are FADE(64, guide_channels=32).
spec = importlib.util.spec_from_file_location('unet_fade', sys.argv[1])
ex = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ex)
net = ex.UNetFADE()
for size in ((29, 37), (23, 31), (17, 16)):
    assert net(torch.randn(1, 1, *size)).shape == (1, 1, *size), size
losses = ex.train(steps=12, seed=0)
assert len(losses) == 12 and all(math.isfinite(v) for v in losses), losses

leaked = sorted(k for k, v in sys.modules.items() if k.split('.')[0] in BLOCKED and v is not None)
assert not leaked, f'OpenMMLab modules imported: {leaked}'
assert 'mmengine.registry' not in sys.modules
print(json.dumps(dict(built=built, ran=ran, losses=losses)))
'''


@pytest.mark.slow
def test_core_without_openmmlab():
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, '-c', _TORCH_ONLY_SCRIPT, str(EXAMPLE)],
                          cwd=ROOT, env=_env(ROOT), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f'stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}'
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(res['built']) >= {'A2U', 'BilinearUpsample', 'CARAFE', 'DeconvUpsample',
                                 'DySample', 'FADE', 'FADELite', 'IndexNet',
                                 'NearestUpsample', 'PixelShuffleUpsample', 'SAPA'}
    assert {'IndexNet holistic', 'IndexNet m2o', 'SAPA B', 'SAPA G', 'CARAFE',
            'DySample'} <= set(res['ran'])
    losses = res['losses']
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    print(f'\n[torch-only] {len(res["ran"])} upsamplers ran; UNet-FADE loss '
          f'{first:.4f} -> {last:.4f} in {len(losses)} steps; '
          f'{time.perf_counter() - t0:.1f} s')
    assert last < 0.8 * first, losses


# --------------------------------------------------------------------------------------------
# 2. guide_channels: parameter counts
# --------------------------------------------------------------------------------------------

def _fade_params(c, cg, fusion='gate', lite=False, k=5, d=64, e=3):
    """FADE / FADE-Lite with ``kernel_source='both'``, semi-shift, from the docstrings."""
    k2 = k * k
    dim = k2 if lite else d
    n = cg * dim + dim                                  # compressor_enc (reads the guide)
    n += c * dim                                        # compressor_dec, no bias
    n += (k2 * e * e if lite else dim * k2 * e * e) + k2  # content_encoder (Lite: depthwise)
    if fusion == 'gate':
        n += c + 1                                      # gate
    if fusion != 'none' and cg != c:
        n += cg * c + c                                 # guide_proj, 1x1 C_g -> C with bias
    return n


def _a2u_params(cg, s=2, k=3, d=1, share=True, down=True):
    f = d if share else d * cg
    return 4 * cg + 2 * (cg + 1) * f + (2 if down else 1) * (cg + 1) * s * s * k * k * d


def _indexnet_params(c, cg, mode='holistic', nonlinear=True, context=True, s=2):
    kk = (s + 2) ** 2 if context else s * s
    s2 = s * s
    if mode == 'holistic':
        return cg * 2 * cg * kk + 2 * 2 * cg + 2 * cg * s2 if nonlinear else cg * s2 * kk
    # m2o: the s*s branches as one conv C_g -> s*s*C, grouped 1x1 s*s*C -> s*s*C
    return cg * s2 * c * kk + 2 * s2 * c + s2 * c * c if nonlinear else cg * s2 * c * kk


def _sapa_params(c, cy, variant, d=32):
    n = 2 * c + 2 * cy + (cy + 1) * d + (c + 1) * d
    return n + (c + 1) * d + c + 1 if variant == 'G' else n


def test_default_parameter_counts_unchanged():
    assert _fade_params(256, 256) == 47_514 and _fade_params(256, 256, lite=True) == 13_332
    assert _a2u_params(256) == 20_042 and _indexnet_params(256, 256) == 2_100_224
    for kw in ({}, dict(guide_channels=256)):
        fade, lite = FADE(256, **kw), FADELite(256, **kw)
        assert (_count(fade), _count(lite)) == (47_514, 13_332)
        assert not hasattr(fade, 'guide_proj') and not hasattr(lite, 'guide_proj')
        assert _count(A2U(256, **kw)) == 20_042
        assert _count(IndexNet(256, **kw)) == 2_100_224
        assert (_count(SAPA(256, **kw)), _count(SAPA(256, variant='G', **kw))) == (17_472,
                                                                                   25_953)


@pytest.mark.parametrize('cls', [FADE, FADELite])
@pytest.mark.parametrize('fusion', ['gate', 'skip', 'none'])
@pytest.mark.parametrize('c, cg', [(64, 32), (32, 48), (256, 512)])
def test_fade_guide_channels_params(cls, fusion, c, cg):
    m = cls(c, guide_channels=cg, fusion=fusion)
    lite = cls is FADELite
    assert _count(m) == _fade_params(c, cg, fusion, lite)
    dim = 25 if lite else 64
    extra = (cg - c) * dim + (cg * c + c if fusion != 'none' else 0)
    assert _count(m) - _count(cls(c, fusion=fusion)) == extra
    assert hasattr(m, 'guide_proj') == (fusion != 'none')
    if fusion != 'none':
        assert tuple(m.guide_proj.weight.shape) == (c, cg, 1, 1)
        assert m.guide_proj.bias is not None
    assert tuple(m.compressor_enc.weight.shape) == (dim, cg, 1, 1)


@pytest.mark.parametrize('c, cg', [(32, 48), (64, 32), (256, 512)])
@pytest.mark.parametrize('kw', [{}, dict(with_downsampler=False), dict(share=False, rank=2)])
def test_a2u_guide_channels_params(c, cg, kw):
    m = A2U(c, guide_channels=cg, **kw)
    want = _a2u_params(cg, d=kw.get('rank', 1), share=kw.get('share', True),
                       down=kw.get('with_downsampler', True))
    assert _count(m) == want
    # every learned layer reads the guide: the count is that of A2U(C_g), whatever C is
    assert _count(m) == _count(A2U(cg, **kw))


@pytest.mark.parametrize('c, cg', [(32, 48), (64, 32), (256, 128)])
@pytest.mark.parametrize('mode', ['holistic', 'm2o'])
@pytest.mark.parametrize('nonlinear, context', [(True, True), (False, False)])
def test_indexnet_guide_channels_params(c, cg, mode, nonlinear, context):
    m = IndexNet(c, guide_channels=cg, index_mode=mode, use_nonlinear=nonlinear,
                 use_context=context)
    assert _count(m) == _indexnet_params(c, cg, mode, nonlinear, context)


@pytest.mark.parametrize('variant', ['B', 'G'])
@pytest.mark.parametrize('c, cy', [(32, 48), (64, 32), (256, 512)])
def test_sapa_guide_channels_params(variant, c, cy):
    m = SAPA(c, guide_channels=cy, variant=variant)
    assert _count(m) == _sapa_params(c, cy, variant)
    assert _count(m) - _count(SAPA(c, variant=variant)) == (cy - c) * (2 + 32)


# --------------------------------------------------------------------------------------------
# 3. guide_channels: float64 identities
# --------------------------------------------------------------------------------------------

def _randomise(m, std=0.3):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(std=std)
    return m.double()


def _pair(c=6, cg=10, h=5, w=7, big_h=9, big_w=13):
    return (torch.randn(2, c, h, w, dtype=torch.float64),
            torch.randn(2, cg, big_h, big_w, dtype=torch.float64))


@pytest.mark.parametrize('cls', [FADE, FADELite])
@pytest.mark.parametrize('kw', [{}, dict(kernel_generator='naive'),
                                dict(kernel_source='encoder'), dict(semi_shift_impl='h2l')])
def test_fade_guide_enters_kernels_only_through_compressor(cls, kw):
    """FADE(C, guide_channels=C_g) fed ``g`` == FADE(C) fed ``P g``, for any C x C_g matrix
    ``P``, once the wide compressor holds ``W P`` (``W`` the narrow one's weight): the guide
    may reach the kernels through ``compressor_enc`` only, as a linear map of its channels."""
    c, cg = 6, 10
    ref = _randomise(cls(c, fusion='none', **kw))
    m = cls(c, guide_channels=cg, fusion='none', **kw).double()
    proj = torch.randn(c, cg, dtype=torch.float64)
    state = ref.state_dict()
    state['compressor_enc.weight'] = torch.einsum(
        'dc,cg->dg', ref.compressor_enc.weight[:, :, 0, 0], proj)[:, :, None, None]
    m.load_state_dict(state, strict=True)
    x, g = _pair(c, cg)
    out = m(x, g)
    assert out.shape == (2, c, 9, 13)
    torch.testing.assert_close(out, ref(x, F.conv2d(g, proj[:, :, None, None])))
    # the check can fail: a different projection of the same guide gives other kernels
    other = F.conv2d(g, torch.randn_like(proj)[:, :, None, None])
    assert not torch.allclose(out, ref(x, other))


def _up_crop(t, s, big_h, big_w):
    return t.repeat_interleave(s, 2).repeat_interleave(s, 3)[:, :, :big_h, :big_w]


@pytest.mark.parametrize('cls', [FADE, FADELite])
@pytest.mark.parametrize('fusion', ['gate', 'skip'])
def test_fade_fusion_uses_projected_guide(cls, fusion):
    """``gate``: ``G * proj(g) + (1 - G) * up``; ``skip``: ``up + proj(g)``, with
    ``proj = guide_proj`` (1x1 conv C_g -> C + bias), ``G = sigmoid(nearest_up(gate(x)))``
    and ``up`` the reassembly alone (the same weights with ``fusion='none'``)."""
    c, cg = 6, 10
    m = _randomise(cls(c, guide_channels=cg, fusion=fusion))
    plain = cls(c, guide_channels=cg, fusion='none').double()
    plain.load_state_dict({k: v for k, v in m.state_dict().items()
                           if not k.startswith(('gate.', 'guide_proj.'))}, strict=True)
    x, g = _pair(c, cg)
    up = plain(x, g)
    proj = F.conv2d(g, m.guide_proj.weight, m.guide_proj.bias)
    if fusion == 'gate':
        gate = torch.sigmoid(_up_crop(F.conv2d(x, m.gate.weight, m.gate.bias), 2, 9, 13))
        want = gate * proj + (1 - gate) * up
    else:
        want = up + proj
    torch.testing.assert_close(m(x, g), want)


@pytest.mark.parametrize('cls, kw', [(A2U, {}), (A2U, dict(share=False, rank=2)),
                                     (IndexNet, {}),
                                     (IndexNet, dict(use_nonlinear=False, use_context=False))])
def test_guide_only_modules_resize_with_guide(cls, kw):
    """A2U and holistic IndexNet predict their kernels / indices from the guide alone and
    apply them channel by channel: a module for C = 4 channels and a C_g = 10 guide carries
    the very state dict of the C_g = 10 module and gives its first 4 output channels."""
    c, cg = 4, 10
    wide = _randomise(cls(cg, **kw))
    narrow = cls(c, guide_channels=cg, **kw).double()
    narrow.load_state_dict(wide.state_dict(), strict=True)
    x, g = _pair(cg, cg)
    torch.testing.assert_close(narrow(x[:, :c], g), wide(x, g)[:, :c])


def test_indexnet_o2o_needs_equal_channels():
    with pytest.raises(ValueError, match='guide_channels'):
        IndexNet(32, index_mode='o2o', guide_channels=48)
    assert IndexNet(32, index_mode='o2o', guide_channels=32).guide_channels == 32


@pytest.mark.parametrize('cls', [FADE, FADELite, A2U, IndexNet, SAPA])
def test_wrong_guide_channels_raise(cls):
    x = torch.randn(1, 32, 5, 7)
    m = cls(32, guide_channels=48)
    with pytest.raises(ValueError, match=r'`guide` must have 48 channels'):
        m(x, torch.randn(1, 32, 9, 13))
    with pytest.raises(ValueError, match=r'`guide` must have 32 channels'):
        cls(32)(x, torch.randn(1, 48, 9, 13))
    assert m(x, torch.randn(1, 48, 9, 13)).shape == (1, 32, 9, 13)


# --------------------------------------------------------------------------------------------
# 4. The wheel, in a fresh virtual environment with torch alone
# --------------------------------------------------------------------------------------------

# pip's ways of saying that no registry (or no copy of torch==2.13.0) can be reached.
_NO_REGISTRY = ('No matching distribution found', 'Could not find a version that satisfies',
                'NewConnectionError', 'Max retries exceeded', 'Temporary failure in name '
                'resolution', 'Network is unreachable', 'ConnectTimeout', 'ReadTimeout',
                'ProxyError', 'Failed to establish a new connection')

_VENV_SCRIPT = r'''
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import fade_mm
from fade_mm.upsamplers import FADE
t2 = time.perf_counter()
torch.manual_seed(0)
m = FADE(32, guide_channels=48)
x = torch.randn(2, 32, 5, 7, requires_grad=True)
g = torch.randn(2, 48, 9, 13, requires_grad=True)
out = m(x, g)
out.square().mean().backward()
assert out.shape == (2, 32, 9, 13) and torch.isfinite(out).all()
assert all(t.grad.abs().sum() > 0 for t in (x, g, *m.parameters()))
blocked = sorted(k for k in sys.modules if k.split('.')[0] in ('mmengine', 'mmcv', 'mmdet',
                                                             'mmseg'))
assert not blocked, blocked
print(json.dumps(dict(file=fade_mm.__file__, torch_import_s=t1 - t0,
                      fade_mm_import_s=t2 - t1, forward_backward_s=time.perf_counter() - t2)))
'''


def _run(cmd, timeout, **kw):
    try:
        return subprocess.run([str(a) for a in cmd], capture_output=True, text=True,
                              timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f'timed out after {timeout} s: {" ".join(map(str, cmd))}\n{e.stdout}\n'
                    f'{e.stderr}')


def _must(proc, what):
    assert proc.returncode == 0, f'{what} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}'
    return proc


def _skip_if_no_registry(proc, what):
    """Skip (with pip's words) when pip failed for want of a reachable registry only."""
    if proc.returncode != 0:
        text = proc.stdout + proc.stderr
        hit = next((p for p in _NO_REGISTRY if p in text), None)
        if hit:
            pytest.skip(f'no reachable package registry offers {what} (pip: "{hit}")')


def _pip_list(py, env):
    out = _must(_run([py, '-m', 'pip', 'list', '--format=json', '--disable-pip-version-check'],
                     120, env=env), 'pip list').stdout
    return {p['name'].lower().replace('_', '-'): p['version'] for p in json.loads(out)}


@pytest.mark.slow
def test_wheel_in_fresh_venv(tmp_path):
    t_start = time.perf_counter()
    env = _env()
    # Build from a clean copy of what the wheel is made of: an in-tree build would leave
    # build/ and *.egg-info in the checkout, and a stale build/lib could leak into the wheel.
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('pyproject.toml', 'README.md', 'LICENSE'):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / 'fade_mm', src / 'fade_mm',
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    dist = tmp_path / 'dist'
    # Build with this interpreter's setuptools, as scripts/setup.sh installs the package;
    # where it has none recent enough (pyproject's build-system wants >= 77), pip fetches
    # one for an isolated build.
    own_setuptools = importlib.util.find_spec('setuptools') is not None and int(
        importlib.metadata.version('setuptools').split('.')[0]) >= 77
    t0 = time.perf_counter()
    proc = _run([sys.executable, '-m', 'pip', 'wheel', src, '--no-deps',
                 *(['--no-build-isolation'] if own_setuptools else []),
                 '--disable-pip-version-check', '-q', '-w', dist], 300, env=env)
    _skip_if_no_registry(proc, 'setuptools to build the wheel')
    _must(proc, 'pip wheel')
    build_s = time.perf_counter() - t0
    (wheel,) = dist.glob('fade_mm-*.whl')
    size_kb = wheel.stat().st_size / 1024

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith('.dist-info/METADATA'))).decode()
    tops = {n.split('/')[0] for n in names}
    assert all(t == 'fade_mm' or (t.startswith('fade_mm-') and t.endswith('.dist-info'))
               for t in tops), tops
    assert all(n.endswith('.py') for n in names if n.startswith('fade_mm/')), \
        [n for n in names if n.startswith('fade_mm/') and not n.endswith('.py')]
    assert not [n for n in names if '/tests/' in n or '/configs/' in n or n.startswith(
        ('tests/', 'configs/', 'examples/', 'tools/'))]
    for needed in ('fade_mm/__init__.py', 'fade_mm/ops/carafe.py', 'fade_mm/upsamplers/fade.py',
                   'fade_mm/registry.py'):
        assert needed in names, needed
    requires = [ln.split(':', 1)[1].strip() for ln in meta.splitlines()
                if ln.startswith('Requires-Dist:')]
    assert [r for r in requires if 'extra ==' not in r] == ['torch>=2.1'], requires
    assert any(r.startswith('mmcv==2.1.0') and 'extra == "mm"' in r for r in requires)

    venv = tmp_path / 'venv'
    try:
        report = _install_and_run(tmp_path, venv, wheel, env)
    finally:  # ~0.9 GB: not kept among pytest's last three temporary directories
        t0 = time.perf_counter()
        shutil.rmtree(venv, ignore_errors=True)
        rm_s = time.perf_counter() - t0
    total = time.perf_counter() - t_start
    print(f'\n[wheel] {wheel.name}: {size_kb:.1f} KiB, {len(names)} files, built in '
          f'{build_s:.1f} s; {report}; venv removed in {rm_s:.1f} s; total {total:.1f} s')


def _install_and_run(tmp_path, venv, wheel, env):
    """Fresh venv, torch==2.13.0, the wheel, a FADE step; returns the timings."""
    t0 = time.perf_counter()
    _must(_run([sys.executable, '-m', 'venv', venv], 300, env=env), 'python -m venv')
    py = venv / 'bin' / 'python'
    proc = _run([py, '-m', 'pip', 'install', '--disable-pip-version-check', '-q',
                 'torch==2.13.0'], 300, env=env)
    _skip_if_no_registry(proc, 'torch==2.13.0 for a fresh venv')
    _must(proc, 'pip install torch==2.13.0')
    torch_s = time.perf_counter() - t0
    before = _pip_list(py, env)

    t0 = time.perf_counter()
    _must(_run([py, '-m', 'pip', 'install', '--disable-pip-version-check', '-q', wheel], 300,
               env=env), 'pip install <wheel>')
    install_s = time.perf_counter() - t0
    after = _pip_list(py, env)
    added = {n: v for n, v in after.items() if before.get(n) != v}
    version = wheel.name.split('-')[1]
    assert added == {'fade-mm': version}, f'installing the wheel also brought {added}'
    assert not {'mmengine', 'mmcv', 'mmdet', 'mmsegmentation'} & set(after), sorted(after)

    # Run from tmp_path so that the checkout's fade_mm cannot be imported instead.
    res = _must(_run([py, '-c', _VENV_SCRIPT], 300, env=env, cwd=tmp_path), 'FADE in venv')
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert Path(info['file']).resolve().is_relative_to(venv.resolve()), info['file']
    return (f'fresh venv + torch==2.13.0 {torch_s:.1f} s; wheel install {install_s:.1f} s; '
            f'import torch {info["torch_import_s"]:.2f} s, import fade_mm '
            f'{info["fade_mm_import_s"]:.3f} s; FADE fwd+bwd {info["forward_backward_s"]:.3f} s')
