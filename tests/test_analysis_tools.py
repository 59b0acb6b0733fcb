"""tools/analysis_tools/get_flops.py and results_table.py (and the package modules behind them,
fade_mm.complexity, fade_mm.results, fade_mm.tables): counts checked against hand-computed
multiply-adds and against independent counts of what is counted (a detector's backbone and
neck, a segmentor's whole forward; the bilinear outputs), and the table read from fixtures of
what an mmengine Runner writes (one run per config; several seeds per config; instance and
panoptic segmentation metrics), with its complexity from get_flops.py's JSON or counted
(--count). tools/demo.py: test_demo_tool.py."""
from __future__ import annotations

import argparse
import csv
import inspect
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import List, Optional, Sequence

import pytest
import torch

pytestmark = pytest.mark.threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, 'tools', 'analysis_tools')
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'mmengine_work_dirs')
# seeds 0-2 of bilinear and FADE, 0-1 of FADE-Lite, FADE with another schedule (seed 0)
SEED_FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'mmengine_seed_work_dirs')
SEG = os.path.join(ROOT, 'configs', 'segformer',
                   'segformer_mit-b1_{}_1xb16-160k_ade20k-512x512.py')
# mmdet's standard FPN (three upsamplers) and the FPN_CARAFE topology (four)
DET = os.path.join(ROOT, 'configs', 'faster_rcnn', 'faster-rcnn_r50_fpn-{}_8xb2-1x_coco.py')
DET_CARAFE = os.path.join(ROOT, 'configs', 'faster_rcnn',
                          'faster-rcnn_r50_fpncarafe-{}_8xb2-1x_coco.py')
# the demo's toy models: Faster R-CNN (ResNet-18/4, FPN_CARAFE topology at 64 channels),
# SegFormer head (ResNet-18/4)
DEMO_DET = os.path.join(ROOT, 'configs', 'demo', 'faster-rcnn_r18-tiny_fpn-{}_synthetic.py')
DEMO_SEG = os.path.join(ROOT, 'configs', 'demo', 'segformer-head_r18-tiny_{}_synthetic.py')
UPERNET = os.path.join(ROOT, 'configs', 'upernet', 'upernet_r50_{}_4xb4-80k_ade20k-512x512.py')
FADE_PARAMS = 47_514  # one FADE module at 256 channels
C = 256  # channels of every upsampler in these heads / necks

sys.path.insert(0, TOOLS)  # the command-line tools, as modules
import get_flops  # noqa: E402
import results_table  # noqa: E402

from fade_mm import complexity, tables, tools  # noqa: E402
from fade_mm.ops import carafe, carafe_output_flops  # noqa: E402
from fade_mm.profiling import SAMPLING_OPS, count_flops, count_flops_by_op  # noqa: E402


def fade_macs(c: int, h: int, w: int, lite: bool = False, gate: bool = True, s: int = 2,
              k: int = 5, d: int = 64, kc: int = 3) -> int:
    """Multiply-adds of one FADE (or FADE-Lite) module upsampling ``(1, c, h, w)`` x s.

    Encoder compressor at high resolution, decoder compressor and the shared (semi-shift)
    conv at both resolutions, CARAFE reassembly at high resolution, 1x1 gate at low
    resolution. Softmax, sigmoid, the nearest upsampling and the gated sum count zero.
    """
    hi, lo = s * h * s * w, h * w
    if lite:
        d = k * k
        shared = kc * kc * d  # depthwise on the k*k channels
    else:
        shared = kc * kc * d * k * k
    return (c * d * (hi + lo) + shared * (hi + lo) + k * k * c * hi
            + (c * lo if gate else 0))


def segformer_fade_macs(side: int, lite: bool = False) -> int:
    """The six upsamplers of the FADE SegFormer head for a ``side x side`` image: 1/32 ->
    1/16 -> 1/8 -> 1/4 (three), 1/16 -> 1/8 -> 1/4 (two), 1/8 -> 1/4 (one)."""
    lows = [side // 32, side // 16, side // 8]
    counts = [1, 2, 3]  # modules whose input is 1/32, 1/16, 1/8
    return sum(n * fade_macs(C, lo, lo, lite) for lo, n in zip(lows, counts))


def segformer_bilinear_macs(side: int) -> int:
    """mmseg's SegformerHead resizes all four levels to 1/4, even the one already there."""
    q = side // 4
    return 4 * 4 * C * q * q


def run_tool(script: str, args: Sequence[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, os.path.join(TOOLS, script), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# ----------------------------------------------------------------------------- counting

@pytest.mark.parametrize('b,c,h,w,k,g,s', [(2, 8, 5, 6, 5, 1, 2), (1, 12, 4, 3, 3, 3, 3),
                                           (1, 4, 3, 3, 1, 1, 2)])
@pytest.mark.parametrize('device', ['cpu', 'meta'])
def test_carafe_counts_k2_c_sh_sw(b, c, h, w, k, g, s, device):
    x = torch.randn(b, c, h, w, device=device)
    masks = torch.randn(b, g * k * k, s * h, s * w, device=device).softmax(1)
    macs = count_flops(lambda: carafe(x, masks, k, g, s))
    assert macs == b * k * k * c * (s * h) * (s * w)
    assert 2 * macs == carafe_output_flops(c, s * h, s * w, k, batch=b)


@pytest.mark.parametrize('cfg', [dict(type='FADE'), dict(type='FADE', semi_shift_impl='h2l'),
                                 dict(type='FADE', fusion='none'), dict(type='FADELite')])
def test_fade_module_counts_convs_plus_reassembly(cfg):
    from mmengine.registry import MODELS
    c, h, w = 32, 5, 7
    m = MODELS.build(dict(cfg, in_channels=c, scale_factor=2))
    x, guide = torch.randn(1, c, h, w), torch.randn(1, c, 2 * h, 2 * w)
    want = fade_macs(c, h, w, lite=cfg['type'] == 'FADELite',
                     gate=cfg.get('fusion', 'gate') == 'gate')
    assert count_flops(lambda: m(x, guide)) == want


def test_count_flops_by_op_adds_up_and_prices_sampling():
    conv = torch.nn.Conv2d(4, 6, 3, padding=1)
    x, grid = torch.randn(2, 4, 5, 7), torch.rand(2, 3, 4, 2) * 2 - 1

    def fn():
        y = torch.nn.functional.interpolate(conv(x), scale_factor=2, mode='bilinear')
        return torch.nn.functional.grid_sample(y, grid, align_corners=False)
    by_op = count_flops_by_op(fn)
    aten = torch.ops.aten
    assert by_op[aten.convolution] == 2 * 6 * 5 * 7 * 4 * 9
    assert by_op[aten.upsample_bilinear2d] == 4 * 2 * 6 * 10 * 14
    assert by_op[aten.grid_sampler_2d] == 4 * 2 * 6 * 3 * 4
    assert set(by_op) == {aten.convolution, *SAMPLING_OPS}
    assert sum(by_op.values()) == count_flops(fn)


def test_detector_counts_backbone_and_neck():
    """A detector's GFLOPs: model.extract_feat (backbone + FPN, where the upsamplers are),
    counted on meta, equal to a CPU count of it; parameters: the whole detector's. FADE minus
    nearest: the four upsamplers of the FPN_CARAFE topology, counted by hand."""
    cfg = complexity.load_config(DEMO_DET.format('fade'))
    res = complexity.measure(cfg, (96, 128))
    # padded to 64 by the data preprocessor
    assert (res.counted, res.device, res.input_shape) == ('backbone+neck', 'meta',
                                                          [1, 3, 128, 128])
    model = tools.build_model(cfg)
    inputs = torch.zeros(res.input_shape)
    assert res.macs == count_flops(lambda: model.extract_feat(inputs)) > 0
    assert res.sampling_macs == 0  # nearest top-down path, FADE: no bilinear resize
    whole = sum(p.numel() for p in model.parameters())
    feat = sum(p.numel() for m in (model.backbone, model.neck) for p in m.parameters())
    assert res.params == whole > feat
    base = complexity.measure(complexity.load_config(DEMO_DET.format('nearest')), (96, 128))
    # P6 (2x2) -> P5 -> P4 -> P3 -> P2 (32x32) at 64 channels; nearest counts zero
    delta = sum(fade_macs(64, n, n) for n in (2, 4, 8, 16))
    assert res.macs - base.macs == delta == res.upsamplers['macs']
    assert base.upsamplers['macs'] == 0 and base.counted == 'backbone+neck'
    assert 'counted    GFLOPs of backbone and neck' in complexity.report(res, base)
    assert complexity.to_json(res)['counted'] == 'backbone+neck'


@pytest.mark.parametrize('config', [DEMO_SEG.format('bilinear'), UPERNET.format('bilinear')],
                         ids=['segformer-head', 'upernet'])
def test_segmentor_sampling_macs_are_four_per_bilinear_output(config, monkeypatch):
    """A segmentor's whole forward is counted; its sampling share is 4 multiply-adds per
    output element of every bilinear resize of its head (recorded here at F.interpolate)."""
    cfg = complexity.load_config(config)
    res = complexity.measure(cfg, (64, 96))
    assert res.counted == 'whole model' and res.input_shape == [1, 3, 64, 96]
    model = tools.build_model(cfg)
    inputs, samples = complexity.dummy_batch(cfg, (64, 96))
    interpolate, signature = torch.nn.functional.interpolate, inspect.signature(
        torch.nn.functional.interpolate)
    outputs = []

    def recording(*args, **kwargs):
        out = interpolate(*args, **kwargs)
        if signature.bind(*args, **kwargs).arguments.get('mode') == 'bilinear':
            outputs.append(out.numel())
        return out
    monkeypatch.setattr(torch.nn.functional, 'interpolate', recording)
    with torch.no_grad():
        model(inputs, samples, mode='tensor')
    assert len(outputs) >= 4 and res.sampling_macs == 4 * sum(outputs)
    monkeypatch.undo()
    assert res.macs == count_flops(lambda: model(inputs, samples, mode='tensor'))


# ----------------------------------------------------------------------------- get_flops CLI

@pytest.mark.slow
def test_get_flops_segformer_fade_delta_is_six_modules(capsys):
    side = 128
    proc = run_tool('get_flops.py', [SEG.format('fade'), '--shape', str(side), '--compare',
                                     SEG.format('bilinear'), '--json'])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    base = res['baseline']
    assert res['device'] == base['device'] == 'meta'
    assert res['counted'] == base['counted'] == 'whole model'
    assert res['input_shape'] == [1, 3, side, side]
    assert res['upsampler'] == 'FADE' and base['upsampler'] is None
    assert res['delta_params'] == 285_084
    # the bilinear head's four resizes are counted (4 per output); FADE's head has none
    assert base['sampling_macs'] == segformer_bilinear_macs(side)
    assert res['sampling_macs'] == 0
    assert res['delta_macs'] == segformer_fade_macs(side) - segformer_bilinear_macs(side)
    # the upsamplers' share: six FADE calls, counted alone; the bilinear head has no module
    up = res['upsamplers']
    assert (up['modules'], len(up['per_module']), up['params']) == (6, 6, 285_084)
    assert up['macs'] == segformer_fade_macs(side)
    assert up['macs_share'] == pytest.approx(up['macs'] / res['macs'])
    assert base['upsamplers']['modules'] == 0 and base['upsamplers']['macs'] == 0
    assert res['shape'] == [side, side] and len(res['model_key']) == 16
    # the human-readable report, in-process
    assert get_flops.main([SEG.format('fade-lite'), '--shape', str(side), '--compare',
                           SEG.format('bilinear')]) == 0
    text = capsys.readouterr().out
    lite = segformer_fade_macs(side, lite=True)
    assert 'multiply-adds' in text and '+79,992 params' in text
    assert "counted    GFLOPs of the whole model (mode='tensor' forward)" in text
    assert f'{(lite - segformer_bilinear_macs(side)) / 1e9:+.3f} GFLOPs' in text
    assert f'{lite / 1e9:+.3f} GFLOPs without interpolation/sampling' in text


@pytest.mark.slow
def test_get_flops_faster_rcnn_fade_delta_is_four_modules():
    proc = run_tool('get_flops.py', [DET_CARAFE.format('fade'), '--shape', '128', '--compare',
                                     DET_CARAFE.format('nearest'), '--json'])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res['scope'] == 'mmdet' and res['device'] == 'meta'
    assert res['counted'] == res['baseline']['counted'] == 'backbone+neck'
    assert res['delta_params'] == 4 * FADE_PARAMS == 190_056
    # FPN_CARAFE topology: P6 (2x2) -> P5 -> P4 -> P3 -> P2 (32x32); nearest counts zero.
    # The same delta as when the heads were counted too: the upsamplers are in the neck.
    assert res['delta_macs'] == sum(fade_macs(C, n, n) for n in (2, 4, 8, 16))
    assert res['upsamplers']['macs'] == res['delta_macs']
    assert [m['type'] for m in res['upsamplers']['per_module']] == ['FADE'] * 4


# one config of each further family: mmdet's heads around an FPN / PAFPN with upsamplers
# (config, FADE modules, their parameters): three FADEs at 256 channels in the FPNs; two at
# the PAFPNs' widths (RTMDet-tiny 192 and 96, YOLOX-S 256 and 128)
FAMILIES = [
    ('mask_rcnn/mask-rcnn_r50_fpn-{}_8xb2-1x_coco.py', 3, 3 * FADE_PARAMS),
    ('panoptic_fpn/panoptic-fpn_r50_fpn-{}_8xb2-1x_coco.py', 3, 3 * FADE_PARAMS),
    ('rtmdet/rtmdet_tiny_pafpn-{}_8xb32-300e_coco.py', 2, 66_132),
    ('yolox/yolox_s_pafpn-{}_8xb8-300e_coco.py', 2, 78_516),
]


@pytest.mark.slow
@pytest.mark.parametrize('pattern,modules,params', FAMILIES)
def test_get_flops_counts_every_family_on_meta(pattern, modules, params, capsys):
    """Mask R-CNN, Panoptic FPN, RTMDet and YOLOX: backbone and neck count on the meta
    device; FADE differs from nearest by its upsamplers alone."""
    cfg = os.path.join(ROOT, 'configs', pattern)
    assert get_flops.main([cfg.format('fade'), '--shape', '128', '--compare',
                           cfg.format('nearest'), '--json']) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    base = res['baseline']
    assert res['device'] == base['device'] == 'meta'
    assert res['counted'] == base['counted'] == 'backbone+neck' and 'proposals' not in res
    up, base_up = res['upsamplers'], base['upsamplers']
    assert up['modules'] == base_up['modules'] == modules
    assert [m['type'] for m in up['per_module']] == ['FADE'] * modules
    assert res['delta_params'] == up['params'] - base_up['params'] == params
    assert res['delta_macs'] == up['macs'] - base_up['macs'] > 0


def test_get_flops_json_arguments(capsys):
    for argv, message in (([SEG.format('fade'), '--json', 'x.py'], 'is a .py file'),
                          ([SEG.format('fade'), SEG.format('bilinear'), '--compare',
                            SEG.format('fade-lite')], '--compare takes one config')):
        with pytest.raises(SystemExit):
            get_flops.parse_args(argv)
        assert message in capsys.readouterr().err
    args = get_flops.parse_args([SEG.format('fade'), '--json'])
    assert args.json == '-' and args.config == [SEG.format('fade')]
    assert get_flops.json_path('{config_dir}/c_{config_stem}.json', '/a/b/x.py') == '/a/b/c_x.json'


@pytest.mark.slow
def test_get_flops_faster_rcnn_standard_fpn_fade_delta_is_three_modules(capsys):
    assert get_flops.main([DET.format('fade'), '--shape', '128', '--compare',
                           DET.format('nearest'), '--json']) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # mmdet's FPN: P6 is a max-pool of P5, so only P5 (4x4) -> P4 -> P3 -> P2 upsample
    assert res['delta_params'] == 3 * FADE_PARAMS
    assert res['delta_macs'] == sum(fade_macs(C, n, n) for n in (4, 8, 16))


# ----------------------------------------------------------------------------- results_table

@pytest.fixture(scope='module')
def fixture_runs():
    # --count: the fixture runs have no complexity JSON, the models are built and counted
    args = results_table.parse_args([FIXTURE, '--shape', '128', '--count'])
    with pytest.warns(UserWarning, match='carafe.*no evaluation results found, skipped'):
        groups = results_table.collect(args)
    return args, groups


def _render(groups, args, fmt: str, **over) -> str:
    opts = vars(args).copy()
    opts.update(format=fmt, **over)
    return results_table.render(groups, argparse.Namespace(**opts))


def _csv_rows(text: str) -> List[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_results_table_reads_runs(fixture_runs):
    _, groups = fixture_runs
    # one config per run dir here: every row is one run
    assert all(g.n == 1 for g in groups)
    assert sorted(g.name for g in groups) == [  # the CARAFE run never evaluated: skipped
        'faster-rcnn_r50_fpn-fade_1x_coco', 'faster-rcnn_r50_fpn-nearest_1x_coco',
        'segformer_mit-b1_bilinear_1xb16-160k_ade20k-512x512',
        'segformer_mit-b1_fade-lite_1xb16-160k_ade20k-512x512',
        'segformer_mit-b1_fade_1xb16-160k_ade20k-512x512']
    seg = {g.method: g for g in groups if g.task == 'seg'}
    assert sorted(seg) == ['Bilinear', 'FADE', 'FADE-Lite']
    fade = seg['FADE'].runs[0]
    # a resumed training: evaluations of both timestamps in order; the test run is kept apart
    assert [e.step for e in fade.vals] == [16000, 32000, 48000]
    assert len(fade.tests) == 1
    assert (fade.best().step, fade.final().step) == (32000, 48000)
    assert fade.backbone == 'MiT-B1' and fade.biou_ratio == 0.02
    # no seed in these configs (mmseg's runtime sets none) nor in the trimmed logs
    assert fade.seed is None
    assert seg['FADE-Lite'].runs[0].config_path.endswith(os.path.join('vis_data', 'config.py'))
    assert all(g.baseline is seg['Bilinear'] for g in seg.values())
    # parameters and multiply-adds as get_flops counts them
    assert seg['FADE'].params - seg['Bilinear'].params == 285_084
    assert seg['FADE'].macs - seg['Bilinear'].macs == (segformer_fade_macs(128)
                                                        - segformer_bilinear_macs(128))
    det = {g.method: g for g in groups if g.task == 'det'}
    assert det['FADE'].baseline is det['Nearest'] and det['FADE'].backbone == 'R-50'
    # the fixture's dumps inherit the FPN_CARAFE configs: four upsamplers
    assert det['FADE'].params - det['Nearest'].params == 4 * FADE_PARAMS
    assert det['FADE'].macs - det['Nearest'].macs == sum(fade_macs(C, n, n) for n in (2, 4, 8, 16))
    # what the GFLOPs cover: a detector's backbone and neck, a segmentor's whole forward
    assert {g.counted for g in det.values()} == {'backbone+neck'}
    assert {g.counted for g in seg.values()} == {'whole model'}


def test_results_table_markdown(fixture_runs):
    args, groups = fixture_runs
    text = _render(groups, args, 'markdown')
    lines = text.splitlines()
    head = next(ln for ln in lines if ln.startswith('| Method') and 'mIoU' in ln)
    assert head == ('| Method | Backbone | ΔParams | ΔGFLOPs | n | Evals | best mIoU | '
                    'best bIoU (r=0.02) | final mIoU | final bIoU (r=0.02) |')
    seg_rows = [ln for ln in lines if 'MiT-B1' in ln]
    assert [r.split(' | ')[0] for r in seg_rows] == ['| Bilinear', '| FADE', '| FADE-Lite']
    d_fade = (segformer_fade_macs(128) - segformer_bilinear_macs(128)) / 1e9
    assert seg_rows[1] == (f'| FADE | MiT-B1 | +0.29M | {d_fade:+.2f} | 1 | 3 | 44.41 (+2.73) | '
                           '32.65 (+4.85) | 44.02 (+2.82) | 32.10 (+4.20) |')
    bilinear = next(g for g in groups if g.method == 'Bilinear')
    assert seg_rows[0] == (f'| Bilinear | MiT-B1 | 13.72M | {bilinear.macs / 1e9:.2f} | 1 | 3 | '
                           '41.68 | 27.80 | 41.20 | 27.90 |')
    d_lite = (segformer_fade_macs(128, lite=True) - segformer_bilinear_macs(128)) / 1e9
    assert seg_rows[2] == (f'| FADE-Lite | MiT-B1 | +0.08M | {d_lite:+.2f} | 1 | 2 | '
                           '43.10 (+1.42) | 30.20 (+2.40) | 43.10 (+1.90) | 30.20 (+2.30) |')
    det_rows = [ln for ln in lines if '| R-50 |' in ln]
    assert det_rows[0].startswith('| Nearest | R-50 | 47.06M |')
    # COCO's -1 (no large object) shows as a dash and has no delta
    assert det_rows[0].endswith('| 37.3 | 58.3 | 40.3 | 21.4 | 40.8 | – |')
    assert ('| 38.5 (+1.1) | 59.6 (+1.2) | 41.7 (+1.3) | 22.7 (+1.2) | 42.0 (+1.1) | '
            '49.6 (+1.2) | 38.5 (+1.2) |') in det_rows[1]
    assert det_rows[1].endswith('| 42.0 (+1.2) | 49.6 |')
    assert 'bIoU: boundary IoU, band = 2% of the image diagonal.' in text
    assert ('GFLOPs: multiply-adds for one 128x128 input through the whole model (incl. '
            'CARAFE reassembly' in text)
    assert ('GFLOPs: multiply-adds for one 128x128 input through backbone and neck (heads '
            'not counted) (incl. CARAFE reassembly' in text)
    # single runs have no spread: no ± and no † anywhere
    assert '±' not in '\n'.join(seg_rows + det_rows) and '†' not in text


def test_results_table_latex(fixture_runs):
    args, groups = fixture_runs
    text = _render(groups, args, 'latex')
    for token in (r'\toprule', r'\midrule', r'\bottomrule', r'\multicolumn{2}{c}{Best}',
                  r'\multicolumn{6}{c}{Final}', r'\cmidrule(lr){7-8}', r'$\Delta$GFLOPs'):
        assert token in text
    assert text.count(r'\begin{tabular}') == 2
    row = next(ln for ln in text.splitlines() if ln.startswith('FADE & MiT-B1'))
    assert row.endswith(r'& 1 & 3 & 44.41 (+2.73) & 32.65 (+4.85) & 44.02 (+2.82) & '
                        r'32.10 (+4.20) \\')
    assert r'Nearest & R-50 & 47.06M' in text and '& -- \\\\' in text  # COCO's -1
    best_only = _render(groups, args, 'latex', eval='best', metrics=['mIoU', 'mAcc'])
    assert r'\multicolumn' not in best_only
    assert r'FADE-Lite & MiT-B1 & +0.08M' in best_only and '55.00 (+1.95)' in best_only
    # --metrics that fit one task only: the other keeps its defaults
    assert '& AP & AP50 & AP75 & APS & APM & APL' in best_only
    with pytest.raises(ValueError, match='unknown --metrics'):
        _render(groups, args, 'latex', metrics=['mIoU', 'XQ'])


def test_results_table_csv_and_explicit_baseline(fixture_runs):
    args, groups = fixture_runs
    rows = {(r['task'], r['method']): r for r in _csv_rows(_render(groups, args, 'csv'))}
    fade = rows['seg', 'FADE']
    assert fade['params_delta'] == '285084' and fade['shape'] == '128x128'
    assert fade['counted'] == 'whole model' and rows['det', 'FADE']['counted'] == 'backbone+neck'
    d_fade = segformer_fade_macs(128) - segformer_bilinear_macs(128)
    assert fade['gflops_delta'] == f'{d_fade / 1e9:+.4f}'
    assert (fade['mIoU_best'], fade['mIoU_best_delta']) == ('44.41', '+2.73')
    assert (fade['mIoU_final'], fade['mIoU_final_delta']) == ('44.02', '+2.82')
    # one run: no spread, n 1, no overlap verdict
    assert (fade['mIoU_final_std'], fade['mIoU_final_n'], fade['mIoU_final_within_spread'],
            fade['n'], fade['seeds']) == ('', '1', '', '1', '?')
    assert (fade['best_step'], fade['final_step'], fade['evals']) == ('32000', '48000', '3')
    assert fade['biou_ratio'] == '0.02' and fade['AP_best'] == ''
    near = rows['det', 'Nearest']
    assert (near['AP_best'], near['AP_final'], near['APL_final']) == ('37.4', '37.3', '')
    assert near['APL_final_n'] == '0'
    assert rows['det', 'FADE']['AP_final_delta'] == '+1.2'
    try:  # by method name: now FADE is the reference of its task
        results_table.assign_baselines(groups, 'fade')
        rows = {r['method']: r for r in _csv_rows(_render(groups, args, 'csv'))
                if r['task'] == 'seg'}
        assert rows['Bilinear']['mIoU_best_delta'] == '-2.73'
        assert rows['Bilinear']['params_delta'] == '-285084'
        assert rows['FADE']['mIoU_best_delta'] == ''
    finally:
        results_table.assign_baselines(groups, None)
    with pytest.raises(ValueError, match='matches no run'):
        results_table.assign_baselines(groups, 'no-such-run')


@pytest.mark.slow
def test_results_table_cli():
    proc = run_tool('results_table.py', [FIXTURE, '--format', 'csv', '--no-flops',
                                         '--eval', 'final', '--metrics', 'mIoU', 'AP',
                                         '--baseline',
                                         'segformer_mit-b1_bilinear_1xb16-160k_ade20k-512x512'])
    rows = _csv_rows(proc.stdout)
    assert 'gflops' not in rows[0] and 'mIoU_best' not in rows[0]
    seg = {r['method']: r for r in rows if r['task'] == 'seg'}
    assert seg['FADE']['mIoU_final_delta'] == '+2.82'
    det = {r['method']: r for r in rows if r['task'] == 'det'}
    # the named baseline is a segmentation run: detection rows get no deltas
    assert det['FADE']['AP_final'] == '38.5' and det['FADE']['AP_final_delta'] == ''
    assert 'no evaluation results found, skipped' in proc.stderr


# ----------------------------------------------------------------------------- seeds

SEED_RUN = 'segformer_mit-b1_{}_1xb16-160k_ade20k-512x512'


@pytest.fixture(scope='module')
def seed_groups():
    args = results_table.parse_args([SEED_FIXTURE, '--no-flops', '--count'])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        groups = results_table.collect(args)
    # equal seeds or unequal final steps would warn: neither is in this fixture
    assert not [w for w in caught if 'results_table' in str(w.message)]
    return args, groups


def test_results_table_groups_seeds_by_config(seed_groups):
    _, groups = seed_groups
    rows = {(g.method, g.n): g for g in groups}
    assert sorted(rows) == [('Bilinear', 3), ('FADE', 1), ('FADE', 3), ('FADE-Lite', 2)]
    bilinear, fade = rows['Bilinear', 3], rows['FADE', 3]
    # seeds from the log (seed 0, 1; seed 1's config has no randomness at all), from the
    # config (seed 2, whose log lacks the environment block)
    assert bilinear.seeds == [0, 1, 2]
    assert bilinear.name == SEED_RUN.format('bilinear')  # the members' name without _seed<N>
    assert [r.name for r in bilinear.runs] == [SEED_RUN.format('bilinear') + f'_seed{s}'
                                               for s in range(3)]
    # seed 2 of FADE was resumed (resume / load_from in its dump): still the same experiment
    assert fade.seeds == [0, 1, 2] and [len(r.vals) for r in fade.runs] == [2, 2, 2]
    # the 80k-iteration FADE run has seed 0 as well, but another config: a row of its own
    other = rows['FADE', 1]
    assert other.name.endswith('_1xb16-80k_ade20k-512x512_seed0') and other.seeds == [0]
    assert all(g.baseline is bilinear for g in groups)
    assert fade.params - bilinear.params == 285_084


def test_results_table_mean_std_and_overlap(seed_groups):
    args, groups = seed_groups
    text = _render(groups, args, 'markdown')
    lines = text.splitlines()
    head = next(ln for ln in lines if ln.startswith('| Method'))
    assert head == ('| Method | Backbone | ΔParams | n | Evals | best mIoU | best bIoU (r=0.02) | '
                    'final mIoU | final bIoU (r=0.02) |')
    rows = [ln for ln in lines if '| MiT-B1 |' in ln]
    # the three-seed row first, then the single run; mean ± sample std (n-1), deltas of means
    assert rows == [
        '| Bilinear | MiT-B1 | 13.72M | 3 | 2 | 41.53 ± 0.31 | 28.07 ± 0.31 | 41.50 ± 0.30 | '
        '28.10 ± 0.30 |',
        '| FADE | MiT-B1 | +0.29M | 3 | 2 | 44.33 ± 0.35 (+2.80) | 32.27 ± 0.25 (+4.20) | '
        '44.30 ± 0.30 (+2.80) | 32.30 ± 0.30 (+4.20) |',
        '| FADE | MiT-B1 | +0.29M | 1 | 2 | 43.40 (+1.87) | 31.10 (+3.03) | 43.40 (+1.90) | '
        '31.10 (+3.00) |',
        # FADE-Lite's mIoU gain is inside the spread (41.80 ± 0.28 vs 41.50 ± 0.30), its
        # bIoU gain is not
        '| FADE-Lite | MiT-B1 | +0.08M | 2 | 2 | 41.80 ± 0.28 (+0.27†) | '
        '30.00 ± 0.28 (+1.93) | 41.80 ± 0.28 (+0.30†) | 30.00 ± 0.28 (+1.90) |']
    assert ('†: difference within run-to-run spread (mean ± std intervals overlap).'
            in lines)
    assert any(ln.startswith('n: runs of the row, configs equal but for the seed') for ln in lines)

    latex = _render(groups, args, 'latex')
    assert (r'FADE-Lite & MiT-B1 & +0.08M & 2 & 2 & 41.80 $\pm$ 0.28 (+0.27$^\dagger$) & '
            in latex)
    assert '% dagger: difference within run-to-run spread (mean +/- std' in latex


def test_results_table_seed_csv(seed_groups):
    args, groups = seed_groups
    rows = {(r['method'], r['n']): r for r in _csv_rows(_render(groups, args, 'csv'))}
    lite = rows['FADE-Lite', '2']
    assert lite['seeds'] == '0;1' and lite['runs'] == ';'.join(
        SEED_RUN.format('fade-lite') + f'_seed{s}' for s in (0, 1))
    assert (lite['mIoU_final'], lite['mIoU_final_std'], lite['mIoU_final_n'],
            lite['mIoU_final_delta'], lite['mIoU_final_within_spread']) == (
                '41.80', '0.28', '2', '+0.30', 'true')
    assert lite['bIoU_final_within_spread'] == 'false'
    fade = rows['FADE', '3']
    assert fade['run'] == SEED_RUN.format('fade') and fade['baseline'] == SEED_RUN.format(
        'bilinear')
    # each seed's own best evaluation: seed 2 peaked before its resumption
    assert (fade['best_step'], fade['final_step']) == ('32000;32000;16000', '32000')
    # a single run against a spread: a verdict, here outside it
    assert rows['FADE', '1']['mIoU_final_within_spread'] == 'false'
    assert rows['Bilinear', '3']['mIoU_final_within_spread'] == ''


def test_results_table_per_run_and_baseline_by_seed_dir(seed_groups):
    args, _ = seed_groups
    per_run = argparse.Namespace(**dict(vars(args), per_run=True))
    groups = results_table.collect(per_run)
    assert len(groups) == 9 and all(g.n == 1 for g in groups)
    text = _render(groups, per_run, 'markdown')
    assert '±' not in text and 'n: one run per row (--per-run).' in text
    # the baseline named by one seed's run dir selects its whole row
    grouped = results_table.collect(argparse.Namespace(
        **dict(vars(args), baseline=SEED_RUN.format('fade') + '_seed1')))
    fade = next(g for g in grouped if g.method == 'FADE' and g.n == 3)
    assert all(g.baseline is fade for g in grouped)


def _seed_run(root: Path, name: str, config_seed: Optional[int], logged_seed: Optional[int],
              miou: float) -> None:
    """A run dir with one evaluation; its config inherits the FADE-Lite config by an absolute
    path (the copy lives outside the repository)."""
    stamp = '20260301_090000'
    (root / name / stamp / 'vis_data').mkdir(parents=True)
    base = SEG.format('fade-lite')
    cfg = f'_base_ = {base!r}\nwork_dir = {str(root / name)!r}\n'
    if config_seed is not None:
        cfg += f'randomness = dict(seed={config_seed})\n'
    (root / name / f'{name}.py').write_text(cfg)
    log = 'Runtime environment:\n    cudnn_benchmark: False\n'
    if logged_seed is not None:
        log += f'    seed: {logged_seed}\n'
    (root / name / stamp / f'{stamp}.log').write_text(log + '-' * 60 + '\n')
    (root / name / stamp / 'vis_data' / 'scalars.json').write_text(
        json.dumps(dict(mIoU=miou, bIoU=30.0, step=32000)) + '\n')


def test_results_table_seed_from_log_and_repeated_seed(tmp_path):
    _seed_run(tmp_path, 'a', config_seed=5, logged_seed=7, miou=40.0)  # the log wins
    _seed_run(tmp_path, 'b', config_seed=None, logged_seed=7, miou=41.0)
    _seed_run(tmp_path, 'c', config_seed=3, logged_seed=None, miou=42.0)
    args = results_table.parse_args([str(tmp_path), '--no-flops'])
    with pytest.warns(UserWarning, match=r'seed 7 in more than one run \(a, b\)'):
        groups = results_table.collect(args)
    assert len(groups) == 1
    assert groups[0].seeds == [3, 7, 7] and groups[0].name == 'c'
    stat = tables.metric_stat(groups[0], 'final', tables.TASKS['seg']['metrics'][0])
    assert (stat.mean, stat.n) == (41.0, 3) and stat.std == pytest.approx(1.0)


def test_within_spread():
    stat, within_spread = tables.Stat, tables.within_spread
    assert within_spread(stat(41.8, 0.28, 2), stat(41.5, 0.3, 3)) is True
    assert within_spread(stat(44.3, 0.3, 3), stat(41.5, 0.3, 3)) is False
    # a single run is a point: inside the other's interval or not
    assert within_spread(stat(41.7, None, 1), stat(41.5, 0.3, 3)) is True
    assert within_spread(stat(43.4, None, 1), stat(41.5, 0.3, 3)) is False
    # two single runs: no spread to compare with
    assert within_spread(stat(43.4, None, 1), stat(41.5, None, 1)) is None


# ----------------------------------------------------------------------------- mask AP and PQ

INS_CFG = os.path.join(ROOT, 'configs', 'mask_rcnn', 'mask-rcnn_r50_fpn-{}_8xb2-1x_coco.py')
PAN_CFG = os.path.join(ROOT, 'configs', 'panoptic_fpn',
                       'panoptic-fpn_r50_fpn-{}_8xb2-1x_coco.py')


def _metric_run(root: Path, name: str, base: str, records: List[dict],
                complexity: Optional[dict] = None) -> Path:
    """A run dir: a dump inheriting ``base`` (absolute path), the scalars JSON lines of its
    evaluations and, if given, its complexity.json."""
    stamp = '20260301_090000'
    run = root / name
    (run / stamp / 'vis_data').mkdir(parents=True)
    (run / f'{name}.py').write_text(f'_base_ = {base!r}\n')
    (run / stamp / 'vis_data' / 'scalars.json').write_text(
        ''.join(json.dumps(r) + '\n' for r in records))
    if complexity is not None:
        (run / 'complexity.json').write_text(json.dumps(complexity))
    return run


def _ins_record(step: int, box: float, mask: float) -> dict:
    rec = {f'coco/bbox_mAP{k}': box + d for k, d in
           (('', 0), ('_50', 0.2), ('_75', 0.01), ('_s', -0.1), ('_m', 0.02), ('_l', 0.1))}
    rec.update({f'coco/segm_mAP{k}': mask + d for k, d in
                (('', 0), ('_50', 0.2), ('_75', 0.01), ('_s', -0.1), ('_m', 0.02))})
    rec.update({'coco/segm_mAP_l': -1.0, 'step': step})
    return rec


def _pan_record(step: int, pq: float) -> dict:
    return {'coco_panoptic/PQ': pq, 'coco_panoptic/SQ': pq + 35, 'coco_panoptic/RQ': pq + 10,
            'coco_panoptic/PQ_th': pq + 5, 'coco_panoptic/SQ_th': 80.0,
            'coco_panoptic/RQ_th': 60.0, 'coco_panoptic/PQ_st': pq - 8,
            'coco_panoptic/SQ_st': 75.0, 'coco_panoptic/RQ_st': 45.0, 'step': step}


def _complexity(params: int, gmacs: float, shape=(800, 1344)) -> dict:
    return dict(params=params, macs=int(gmacs * 1e9), sampling_macs=0, shape=list(shape))


@pytest.fixture(scope='module')
def ins_pan_runs(tmp_path_factory):
    """Mask R-CNN and Panoptic FPN runs (nearest and FADE), two evaluations each, with the
    complexity JSONs get_flops.py writes: no model is built."""
    root = tmp_path_factory.mktemp('ins_pan')
    _metric_run(root, 'mask_nearest', INS_CFG.format('nearest'),
                [_ins_record(6000, 0.380, 0.350), _ins_record(12000, 0.392, 0.355)],
                _complexity(63_370_000, 285.1))
    _metric_run(root, 'mask_fade', INS_CFG.format('fade'),
                [_ins_record(6000, 0.395, 0.362), _ins_record(12000, 0.401, 0.360)],
                _complexity(63_512_542, 287.6))
    _metric_run(root, 'pan_nearest', PAN_CFG.format('nearest'),
                [_pan_record(6000, 40.2), _pan_record(12000, 40.9)],
                _complexity(46_027_110, 156.5))
    _metric_run(root, 'pan_fade', PAN_CFG.format('fade'),
                [_pan_record(6000, 41.0), _pan_record(12000, 41.6)],
                _complexity(46_169_652, 158.0))
    args = results_table.parse_args([str(root)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        groups = results_table.collect(args)
    assert not [w for w in caught if 'results_table' in str(w.message)]
    return args, groups


def test_results_table_tasks_from_evaluators(ins_pan_runs):
    _, groups = ins_pan_runs
    assert sorted((g.task, g.method) for g in groups) == [
        ('ins', 'FADE'), ('ins', 'Nearest'), ('pan', 'FADE'), ('pan', 'Nearest')]
    ins = {g.method: g for g in groups if g.task == 'ins'}
    # the best evaluation of instance segmentation: the highest mask AP (not box AP)
    assert ins['FADE'].runs[0].best().step == 6000
    assert ins['Nearest'].runs[0].best().step == 12000
    assert ins['FADE'].baseline is ins['Nearest']
    # parameters and GFLOPs from complexity.json, at its shape
    assert ins['FADE'].params - ins['Nearest'].params == 142_542
    assert ins['FADE'].shape == (800, 1344)


def test_results_table_mask_ap_and_pq_columns(ins_pan_runs):
    args, groups = ins_pan_runs
    text = _render(groups, args, 'markdown', eval='final')
    lines = text.splitlines()
    assert '**Instance segmentation (COCO box AP and mask AP)**' in lines
    assert '**Panoptic segmentation (COCO PQ)**' in lines
    heads = [ln for ln in lines if ln.startswith('| Method')]
    assert heads == [
        '| Method | Backbone | ΔParams | ΔGFLOPs | n | Evals | AP | AP50 | AP75 | maskAP | '
        'maskAP50 | maskAP75 |',
        '| Method | Backbone | ΔParams | ΔGFLOPs | n | Evals | PQ | SQ | RQ | PQ_th | PQ_st |']
    rows = [ln for ln in lines if ln.startswith('| ') and 'Method' not in ln]
    assert rows == [
        '| Nearest | R-50 | 63.37M | 285.10 | 1 | 2 | 39.2 | 59.2 | 40.2 | 35.5 | 55.5 | 36.5 |',
        '| FADE | R-50 | +0.14M | +2.50 | 1 | 2 | 40.1 (+0.9) | 60.1 (+0.9) | 41.1 (+0.9) | '
        '36.0 (+0.5) | 56.0 (+0.5) | 37.0 (+0.5) |',
        '| Nearest | R-50 | 46.03M | 156.50 | 1 | 2 | 40.9 | 75.9 | 50.9 | 45.9 | 32.9 |',
        '| FADE | R-50 | +0.14M | +1.50 | 1 | 2 | 41.6 (+0.7) | 76.6 (+0.7) | 51.6 (+0.7) | '
        '46.6 (+0.7) | 33.6 (+0.7) |']
    assert 'GFLOPs: multiply-adds for one 800x1344 input' in text
    assert ('AP: COCO box mAP, maskAP: COCO mask mAP, x100 (IoU 0.50:0.95); – where COCO '
            'reports -1.') in lines
    assert any(ln.startswith('PQ, SQ, RQ: COCO panoptic quality') for ln in lines)
    # mask AP by size: COCO's -1 is a dash; PQ's other columns on request
    more = _render(groups, args, 'markdown', eval='best', metrics=['maskAPL', 'maskAPS', 'SQ_st'])
    assert '| Method | Backbone | ΔParams | ΔGFLOPs | n | Evals | maskAPL | maskAPS |' in more
    assert '| FADE | R-50 | +0.14M | +2.50 | 1 | 2 | – | 26.2 (+0.7) |' in more
    assert '| FADE | R-50 | +0.14M | +1.50 | 1 | 2 | 75.0 (+0.0) |' in more


def test_results_table_mask_ap_and_pq_latex_and_csv(ins_pan_runs):
    args, groups = ins_pan_runs
    latex = _render(groups, args, 'latex', eval='final')
    assert r'Method & Backbone & $\Delta$Params & $\Delta$GFLOPs & n & Evals & AP & AP50 & AP75 ' \
           r'& maskAP & maskAP50 & maskAP75 \\' in latex
    assert r'& PQ & SQ & RQ & PQ\_th & PQ\_st \\' in latex
    assert r'FADE & R-50 & +0.14M & +1.50 & 1 & 2 & 41.6 (+0.7) &' in latex
    rows = {(r['task'], r['method']): r for r in _csv_rows(_render(groups, args, 'csv'))}
    fade = rows['ins', 'FADE']
    assert (fade['maskAP_best'], fade['maskAP_final'], fade['maskAP_final_delta']) == (
        '36.2', '36.0', '+0.5')
    assert (fade['AP_best'], fade['best_step'], fade['shape']) == ('39.5', '6000', '800x1344')
    pan = rows['pan', 'FADE']
    assert (pan['PQ_final'], pan['PQ_th_final'], pan['PQ_st_final_delta']) == (
        '41.6', '46.6', '+0.7')
    assert pan['maskAP_final'] == '' and fade['PQ_final'] == ''


# ----------------------------------------------------------------------------- complexity JSON

@pytest.mark.slow
def test_complexity_json_round_trip(fixture_runs, tmp_path, capsys):
    """get_flops.py --json on the runs' dumps, read back by results_table.py without
    building anything: the same table as counting (--count)."""
    args, groups = fixture_runs
    dumps = [g.runs[0].config_path for g in groups]
    out = tmp_path / 'complexity.json'
    assert get_flops.main([*dumps, '--shape', '128', '--json', str(out)]) == 0
    entries = json.loads(out.read_text())
    assert len(entries) == 5 and all(e['shape'] == [128, 128] for e in entries)
    read = results_table.parse_args([FIXTURE, '--complexity', str(tmp_path)])
    assert read.shape is None and not read.count
    with pytest.warns(UserWarning, match='carafe.*no evaluation results found'):
        again = results_table.collect(read)
    counted = {g.name: (g.params, g.macs, g.shape) for g in groups}
    assert {g.name: (g.params, g.macs, g.shape) for g in again} == counted
    assert _render(again, read, 'markdown') == _render(groups, args, 'markdown')
    assert _render(again, read, 'csv') == _render(groups, args, 'csv')
    # nothing to read and no --count: dashes and a note, the metrics as before
    bare = results_table.parse_args([FIXTURE])
    with pytest.warns(UserWarning):
        plain = results_table.collect(bare)
    text = _render(plain, bare, 'markdown')
    assert all(g.params is None and g.macs is None for g in plain)
    assert '| FADE | MiT-B1 | – | – | 1 | 3 | 44.41 (+2.73) |' in text
    assert '– under ΔParams / ΔGFLOPs: not counted (no complexity JSON' in text


def test_own_complexity_json_and_shape_mismatch(tmp_path):
    seg = SEG.format('{}')
    for up, params in (('bilinear', 13_720_000), ('fade', 14_005_084)):
        _metric_run(tmp_path, up, seg.format(up), [dict(mIoU=40.0, bIoU=30.0, step=100)],
                    _complexity(params, 16.0 if up == 'bilinear' else 18.0, (512, 512)))
    # another shape asked for: parameters from the JSON, no GFLOPs (and a warning)
    args = results_table.parse_args([str(tmp_path), '--shape', '256'])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        groups = results_table.collect(args)
    caught = [w for w in caught if 'results_table' in str(w.message)]
    assert sorted(str(w.message).split(': no GFLOPs for ')[1] for w in caught) == [
        'bilinear (--count counts it at that shape)', 'fade (--count counts it at that shape)']
    assert "counted at 512x512, the table's seg rows at 256x256" in str(caught[0].message)
    fade = next(g for g in groups if g.method == 'FADE')
    assert (fade.params, fade.macs, fade.shape) == (14_005_084, None, None)
    # the JSONs' own shape (no --shape): GFLOPs too; --exclude-sampling subtracts theirs
    (tmp_path / 'fade' / 'complexity.json').write_text(json.dumps(dict(
        _complexity(14_005_084, 18.0, (512, 512)), sampling_macs=10**9)))
    args = results_table.parse_args([str(tmp_path), '--exclude-sampling'])
    groups = results_table.collect(args)
    fade = next(g for g in groups if g.method == 'FADE')
    assert (fade.macs, fade.shape) == (17 * 10**9, (512, 512))
    # a damaged JSON is skipped with a warning, not an error
    (tmp_path / 'fade' / 'complexity.json').write_text('{"params": 1')
    with pytest.warns(UserWarning, match='not complexity records of get_flops.py'):
        groups = results_table.collect(results_table.parse_args([str(tmp_path)]))
    assert next(g for g in groups if g.method == 'FADE').params is None


def test_complexity_json_counted_part(tmp_path):
    """A JSON that does not say what its GFLOPs cover (written before get_flops.py said so)
    counted the whole model; a task whose rows mix the two gets a warning."""
    det = DET.format('{}')
    record = [{'coco/bbox_mAP': 0.4, 'step': 100}]
    old = _complexity(41_753_056, 200.0, (800, 1344))
    new = dict(_complexity(41_943_112, 80.0, (800, 1344)), counted='backbone+neck')
    _metric_run(tmp_path, 'nearest', det.format('nearest'), record, old)
    _metric_run(tmp_path, 'fade', det.format('fade'), record, new)
    with pytest.warns(UserWarning, match=r"the det rows' GFLOPs cover different parts of their "
                      r'models \(backbone\+neck: fade; whole model: nearest\)'):
        groups = results_table.collect(results_table.parse_args([str(tmp_path)]))
    assert {g.method: g.counted for g in groups} == {'Nearest': 'whole model',
                                                      'FADE': 'backbone+neck'}
    text = tables.render(groups, 'markdown')
    assert ('GFLOPs: multiply-adds for one 800x1344 input through backbone and neck (heads '
            'not counted) / the whole model (' in text)
