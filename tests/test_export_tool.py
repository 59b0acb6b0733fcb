"""tools/deployment/export_onnx.py: a whole segmentor to ONNX, checked with onnxruntime.

The tool runs as a subprocess, as a user runs it, on SegFormer-B0 with the FADE head at
64x64 with a checkpoint written here (so that this test knows the weights), and the test
compares onnxruntime with the eager model at a third size itself. The adaptive-pooling
rewrite that UPerNet's pyramid pooling needs is checked on its own and, in a slow test, on a
slimmed UPerNet FADE config.
"""
from __future__ import annotations

import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys
import warnings
from typing import List

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(ROOT, 'tools', 'deployment', 'export_onnx.py')
SEG_CFG = osp.join(ROOT, 'configs', 'segformer',
                   'segformer_mit-b0_fade_8xb2-160k_ade20k-512x512.py')
UPER_CFG = osp.join(ROOT, 'configs', 'upernet', 'upernet_r50_fade_4xb4-80k_ade20k-512x512.py')
DET_CFG = osp.join(ROOT, 'configs', 'demo', 'faster-rcnn_r18-tiny_fpn-fade_synthetic.py')
#: Max relative error of onnxruntime against eager, the tool's own threshold.
MAX_REL = 1e-4
TIMEOUT = 600


def _load_tool():
    spec = importlib.util.spec_from_file_location('export_onnx', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args: List[str], cwd: str) -> subprocess.CompletedProcess:
    # One intra-op thread: on 2 shared cores OpenMP hand-offs only slow small models down.
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return subprocess.run([sys.executable, TOOL, *args], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)


def _rel_errors(stdout: str) -> List[float]:
    return [float(v) for v in re.findall(r'^onnxruntime vs eager .* max rel err ([0-9.e+-]+)$',
                                         stdout, flags=re.M)]


def _build(cfg_path: str, cfg_options=None):
    """The config's segmentor, randomly initialised, on CPU in eval mode (as the tool does)."""
    tool = _load_tool()
    cfg = tool.load_config(cfg_path, cfg_options)
    model, _ = tool.build_segmentor(cfg, None)
    return tool, model


def _perturb_bn(model: nn.Module) -> None:
    # Fresh BN layers have mean 0 / var 1; other statistics make the check less trivial.
    gen = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))


def _ort_vs_eager(tool, model, path: str, n: int, h: int, w: int) -> float:
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    x = torch.randn(n, 3, h, w)
    ref = tool.eager_logits(model, x).numpy()
    out = sess.run(None, {'input': x.numpy()})[0]
    assert out.shape == ref.shape == (n, model.decode_head.out_channels, h, w)
    return float(abs(out - ref).max() / abs(ref).max())


@pytest.mark.slow
def test_export_tool_segformer_fade(tmp_path):
    tool, model = _build(SEG_CFG)
    _perturb_bn(model)
    ckpt = str(tmp_path / 'segformer_fade.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out = str(tmp_path / 'model.onnx')
    proc = _run([SEG_CFG, ckpt, '--shape', '64', '64', '--out', out], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    print(proc.stdout)
    assert osp.isfile(out)
    errors = _rel_errors(proc.stdout)
    assert len(errors) == 2 and max(errors) <= MAX_REL, proc.stdout  # export + odd shape
    assert re.search(r'graph: \d+ nodes \(\d+ without Constant\), file [0-9.]+ MB',
                     proc.stdout)
    assert "output 'seg_logits': (N, 150, H, W) seg logits at the input size" in proc.stdout
    # a third size (and batch), checked here against this process's eager model
    assert _ort_vs_eager(tool, model, out, 3, 83, 70) <= MAX_REL
    # the normalisation that stays outside the graph is recorded in the model
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert props['mean'] == '[123.675, 116.28, 103.53]' and props['bgr_to_rgb'] == 'True'


def _one_error_line(stderr: str, message: str) -> None:
    # (the OpenMMLab imports may warn before it: pkg_resources deprecation)
    errors = [line for line in stderr.splitlines() if 'error' in line.lower()]
    assert 'Traceback' not in stderr
    assert len(errors) == 1 and message in errors[0], stderr
    assert errors[0].startswith('export_onnx.py: error:')
    assert stderr.strip().splitlines()[-1] == errors[0]


@pytest.mark.slow
def test_missing_config_gives_one_line_error():
    proc = _run(['configs/missing.py', '--shape', '64', '64'], cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == '', proc.stdout + proc.stderr
    _one_error_line(proc.stderr, 'argument config: no such file: configs/missing.py')


@pytest.mark.parametrize('args,message', [
    ([SEG_CFG, '--shape', '64'], 'argument --shape: expected 2 arguments'),
    ([SEG_CFG, '--shape', '64', '0'], 'expected two positive integers H W, got 64 0'),
    ([SEG_CFG, '--shape', '64', '64', '--opset', '9'], 'expected 11 or higher, got 9'),
    ([SEG_CFG, 'missing.pth', '--shape', '64', '64'], 'no such file: missing.pth'),
    ([DET_CFG, '--shape', '64', '64'], 'detectors are not supported'),
], ids=['one-number-shape', 'zero-shape', 'old-opset', 'missing-checkpoint', 'mmdet-config'])
def test_bad_arguments_give_one_line_errors(args, message, capsys):
    tool = _load_tool()
    try:
        status = tool.main(args)
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    _one_error_line(capsys.readouterr().err, message)


@pytest.mark.parametrize('size', [(1, 1), (2, 2), (3, 5), (6, 6), (7, 11), (16, 16), (23, 9)])
def test_exportable_adaptive_pooling_equals_torch(size):
    tool = _load_tool()
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    for out in (1, 2, 3, 6, (2, 5)):
        torch.testing.assert_close(tool.ExportableAdaptiveAvgPool2d(out)(x),
                                   F.adaptive_avg_pool2d(x, out), rtol=1e-12, atol=1e-12)


def test_adaptive_pooling_rewrite_exports_with_dynamic_sizes(tmp_path):
    """A pyramid-pooling block: exported at one size, right at others (incl. smaller than
    the pooled grid) once rewritten; nn.AdaptiveAvgPool2d alone would be fixed or refused."""
    tool = _load_tool()

    class Pyramid(nn.Module):
        def __init__(self):
            super().__init__()
            self.pools = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), nn.Conv2d(4, 4, 1))
                                       for s in (1, 2, 3, 6))

        def forward(self, x):
            return sum(F.interpolate(p(x), size=x.shape[2:], mode='bilinear') for p in self.pools)

    model = Pyramid().eval()
    export = Pyramid().eval()
    export.load_state_dict(model.state_dict())
    assert tool.replace_adaptive_pooling(export) == ['pools.1.0', 'pools.2.0', 'pools.3.0']
    path = str(tmp_path / 'ppm.onnx')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(export, (torch.randn(1, 4, 16, 16),), path, dynamo=False,
                          input_names=['x'], opset_version=17,
                          dynamic_axes={'x': {0: 'n', 2: 'h', 3: 'w'}})
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for shape in ((1, 4, 16, 16), (2, 4, 7, 11), (1, 4, 2, 3), (1, 4, 25, 19)):
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = model(x).numpy()
        out = sess.run(None, {'x': x.numpy()})[0]
        assert abs(out - ref).max() <= 1e-5 * abs(ref).max(), shape


# UPerNet FADE with a slim ResNet-18 (V1c): the same head, pyramid pooling and upsamplers.
SLIM_UPERNET = ['model.backbone.depth=18', 'model.backbone.stem_channels=16',
                'model.backbone.base_channels=16',
                'model.decode_head.in_channels=[16,32,64,128]', 'model.decode_head.channels=32',
                'model.auxiliary_head.in_channels=64', 'model.auxiliary_head.channels=16']


@pytest.mark.slow
def test_export_tool_upernet_fade(tmp_path):
    out = str(tmp_path / 'upernet.onnx')
    proc = _run([UPER_CFG, '--shape', '64', '96', '--check-shape', '75', '53', '--out', out,
                 '--cfg-options', *SLIM_UPERNET], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    print(proc.stdout)
    assert 'no checkpoint: the model is randomly initialised' in proc.stdout
    assert 'onnxruntime vs eager 2x3x75x53' in proc.stdout
    errors = _rel_errors(proc.stdout)
    assert len(errors) == 2 and max(errors) <= MAX_REL, proc.stdout


def test_checkpoint_of_another_model_gives_one_line_error(tmp_path, capsys):
    ckpt = str(tmp_path / 'other.pth')
    torch.save({'state_dict': {'conv.weight': torch.zeros(1)}}, ckpt)
    assert _load_tool().main([SEG_CFG, ckpt, '--shape', '64', '64']) == 2
    _one_error_line(capsys.readouterr().err, 'does not fit the model of the config')
