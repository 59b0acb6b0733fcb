"""tools/analysis_tools/get_flops.py and results_table.py: counts checked against hand-computed
multiply-adds, and the table read from a fixture of what an mmengine Runner writes."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from typing import List, Sequence

import pytest
import torch

pytestmark = pytest.mark.threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, 'tools', 'analysis_tools')
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'mmengine_work_dirs')
SEG = os.path.join(ROOT, 'configs', 'segformer',
                   'segformer_mit-b1_{}_1xb16-160k_ade20k-512x512.py')
DET = os.path.join(ROOT, 'configs', 'faster_rcnn', 'faster-rcnn_r50_fpn-{}_1x_coco.py')
C = 256  # channels of every upsampler in these heads / necks

sys.path.insert(0, TOOLS)
import get_flops  # noqa: E402
import results_table  # noqa: E402

from fade_mm.ops import carafe, carafe_output_flops  # noqa: E402
from fade_mm.profiling import count_flops  # noqa: E402


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


def test_two_stage_detector_meta_count_equals_cpu_count():
    """The meta-device stand-ins (RoI extractors, fixed proposal count) change no count."""
    import copy
    # 100 proposals instead of 1000: the CPU run of the RoI stage costs 10x less
    cfg = get_flops.load_config(DET.format('fade'), {'model.test_cfg.rpn.max_per_img': 100})
    model = get_flops.build_model(cfg)
    inputs, samples = get_flops.dummy_batch(cfg, (96, 128))
    assert list(inputs.shape) == [1, 3, 128, 128]  # padded to 64 by the data preprocessor
    cpu = get_flops.count_model(model, inputs, samples)
    meta = get_flops.count_model(copy.deepcopy(model).to('meta'), inputs.to('meta'), samples)
    assert cpu == meta and cpu[2] == 100


# ----------------------------------------------------------------------------- get_flops CLI

def test_get_flops_segformer_fade_delta_is_six_modules(capsys):
    side = 128
    proc = run_tool('get_flops.py', [SEG.format('fade'), '--shape', str(side), '--compare',
                                     SEG.format('bilinear'), '--json'])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    base = res['baseline']
    assert res['device'] == base['device'] == 'meta'
    assert res['input_shape'] == [1, 3, side, side]
    assert res['upsampler'] == 'FADE' and base['upsampler'] is None
    assert res['delta_params'] == 285_084
    # the bilinear head's four resizes are counted (4 per output); FADE's head has none
    assert base['sampling_macs'] == segformer_bilinear_macs(side)
    assert res['sampling_macs'] == 0
    assert res['delta_macs'] == segformer_fade_macs(side) - segformer_bilinear_macs(side)
    # the human-readable report, in-process
    assert get_flops.main([SEG.format('fade-lite'), '--shape', str(side), '--compare',
                           SEG.format('bilinear')]) == 0
    text = capsys.readouterr().out
    lite = segformer_fade_macs(side, lite=True)
    assert 'multiply-adds' in text and '+79,992 params' in text
    assert f'{(lite - segformer_bilinear_macs(side)) / 1e9:+.3f} GFLOPs' in text
    assert f'{lite / 1e9:+.3f} GFLOPs without interpolation/sampling' in text


def test_get_flops_faster_rcnn_fade_delta_is_four_modules():
    proc = run_tool('get_flops.py', [DET.format('fade'), '--shape', '128', '--compare',
                                     DET.format('nearest'), '--json'])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res['scope'] == 'mmdet' and res['device'] == 'meta' and res['proposals'] == 1000
    assert res['delta_params'] == 190_056
    # FPN_CARAFE topology: P6 (2x2) -> P5 -> P4 -> P3 -> P2 (32x32); nearest counts zero
    assert res['delta_macs'] == sum(fade_macs(C, n, n) for n in (2, 4, 8, 16))


# ----------------------------------------------------------------------------- results_table

@pytest.fixture(scope='module')
def fixture_runs():
    args = results_table.parse_args([FIXTURE, '--shape', '128'])
    with pytest.warns(UserWarning, match='carafe.*no evaluation results found, skipped'):
        runs = results_table.collect(args)
    return args, runs


def _render(runs, args, fmt: str, **over) -> str:
    opts = vars(args).copy()
    opts.update(format=fmt, **over)
    return results_table.render(runs, type(args)(**opts))


def _csv_rows(text: str) -> List[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_results_table_reads_runs(fixture_runs):
    _, runs = fixture_runs
    assert sorted(r.name for r in runs) == [  # the CARAFE run never evaluated: skipped
        'faster-rcnn_r50_fpn-fade_1x_coco', 'faster-rcnn_r50_fpn-nearest_1x_coco',
        'segformer_mit-b1_bilinear_1xb16-160k_ade20k-512x512',
        'segformer_mit-b1_fade-lite_1xb16-160k_ade20k-512x512',
        'segformer_mit-b1_fade_1xb16-160k_ade20k-512x512']
    seg = {r.method: r for r in runs if r.task == 'seg'}
    assert sorted(seg) == ['Bilinear', 'FADE', 'FADE-Lite']
    fade = seg['FADE']
    # a resumed training: evaluations of both timestamps in order; the test run is kept apart
    assert [e.step for e in fade.vals] == [16000, 32000, 48000]
    assert len(fade.tests) == 1
    assert (fade.best().step, fade.final().step) == (32000, 48000)
    assert fade.backbone == 'MiT-B1' and fade.biou_ratio == 0.02
    assert seg['FADE-Lite'].config_path.endswith(os.path.join('vis_data', 'config.py'))
    assert all(r.baseline is seg['Bilinear'] for r in seg.values())
    # parameters and multiply-adds as get_flops counts them
    assert fade.params - seg['Bilinear'].params == 285_084
    assert fade.macs - seg['Bilinear'].macs == (segformer_fade_macs(128)
                                                - segformer_bilinear_macs(128))
    det = {r.method: r for r in runs if r.task == 'det'}
    assert det['FADE'].baseline is det['Nearest'] and det['FADE'].backbone == 'R-50'
    assert det['FADE'].macs - det['Nearest'].macs == sum(fade_macs(C, n, n) for n in (2, 4, 8, 16))


def test_results_table_markdown(fixture_runs):
    args, runs = fixture_runs
    text = _render(runs, args, 'markdown')
    lines = text.splitlines()
    head = next(ln for ln in lines if ln.startswith('| Method') and 'mIoU' in ln)
    assert head == ('| Method | Backbone | ΔParams | ΔGFLOPs | Evals | best mIoU | '
                    'best bIoU (r=0.02) | final mIoU | final bIoU (r=0.02) |')
    seg_rows = [ln for ln in lines if 'MiT-B1' in ln]
    assert [r.split(' | ')[0] for r in seg_rows] == ['| Bilinear', '| FADE', '| FADE-Lite']
    d_fade = (segformer_fade_macs(128) - segformer_bilinear_macs(128)) / 1e9
    assert seg_rows[1] == (f'| FADE | MiT-B1 | +0.29M | {d_fade:+.2f} | 3 | 44.41 (+2.73) | '
                           '32.65 (+4.85) | 44.02 (+2.82) | 32.10 (+4.20) |')
    bilinear = next(r for r in runs if r.method == 'Bilinear')
    assert seg_rows[0] == (f'| Bilinear | MiT-B1 | 13.72M | {bilinear.macs / 1e9:.2f} | 3 | '
                           '41.68 | 27.80 | 41.20 | 27.90 |')
    d_lite = (segformer_fade_macs(128, lite=True) - segformer_bilinear_macs(128)) / 1e9
    assert seg_rows[2] == (f'| FADE-Lite | MiT-B1 | +0.08M | {d_lite:+.2f} | 2 | 43.10 (+1.42) '
                           '| 30.20 (+2.40) | 43.10 (+1.90) | 30.20 (+2.30) |')
    det_rows = [ln for ln in lines if '| R-50 |' in ln]
    assert det_rows[0].startswith('| Nearest | R-50 | 47.06M |')
    # COCO's -1 (no large object) shows as a dash and has no delta
    assert det_rows[0].endswith('| 37.3 | 58.3 | 40.3 | 21.4 | 40.8 | – |')
    assert ('| 38.5 (+1.1) | 59.6 (+1.2) | 41.7 (+1.3) | 22.7 (+1.2) | 42.0 (+1.1) | '
            '49.6 (+1.2) | 38.5 (+1.2) |') in det_rows[1]
    assert det_rows[1].endswith('| 42.0 (+1.2) | 49.6 |')
    assert 'bIoU: boundary IoU, band = 2% of the image diagonal.' in text
    assert 'multiply-adds for one 128x128 input' in text


def test_results_table_latex(fixture_runs):
    args, runs = fixture_runs
    text = _render(runs, args, 'latex')
    for token in (r'\toprule', r'\midrule', r'\bottomrule', r'\multicolumn{2}{c}{Best}',
                  r'\multicolumn{6}{c}{Final}', r'\cmidrule(lr){6-7}', r'$\Delta$GFLOPs'):
        assert token in text
    assert text.count(r'\begin{tabular}') == 2
    row = next(ln for ln in text.splitlines() if ln.startswith('FADE & MiT-B1'))
    assert row.endswith(r'& 3 & 44.41 (+2.73) & 32.65 (+4.85) & 44.02 (+2.82) & '
                        r'32.10 (+4.20) \\')
    assert r'Nearest & R-50 & 47.06M' in text and '& -- \\\\' in text  # COCO's -1
    best_only = _render(runs, args, 'latex', eval='best', metrics=['mIoU', 'mAcc'])
    assert r'\multicolumn' not in best_only
    assert r'FADE-Lite & MiT-B1 & +0.08M' in best_only and '55.00 (+1.95)' in best_only
    # --metrics that fit one task only: the other keeps its defaults
    assert '& AP & AP50 & AP75 & APS & APM & APL' in best_only
    with pytest.raises(ValueError, match='unknown --metrics'):
        _render(runs, args, 'latex', metrics=['mIoU', 'PQ'])


def test_results_table_csv_and_explicit_baseline(fixture_runs):
    args, runs = fixture_runs
    rows = {(r['task'], r['method']): r for r in _csv_rows(_render(runs, args, 'csv'))}
    fade = rows['seg', 'FADE']
    assert fade['params_delta'] == '285084' and fade['shape'] == '128x128'
    d_fade = segformer_fade_macs(128) - segformer_bilinear_macs(128)
    assert fade['gflops_delta'] == f'{d_fade / 1e9:+.4f}'
    assert (fade['mIoU_best'], fade['mIoU_best_delta']) == ('44.41', '+2.73')
    assert (fade['mIoU_final'], fade['mIoU_final_delta']) == ('44.02', '+2.82')
    assert (fade['best_step'], fade['final_step'], fade['evals']) == ('32000', '48000', '3')
    assert fade['biou_ratio'] == '0.02' and fade['AP_best'] == ''
    near = rows['det', 'Nearest']
    assert (near['AP_best'], near['AP_final'], near['APL_final']) == ('37.4', '37.3', '')
    assert rows['det', 'FADE']['AP_final_delta'] == '+1.2'
    try:  # by method name: now FADE is the reference of its task
        results_table.assign_baselines(runs, 'fade')
        rows = {r['method']: r for r in _csv_rows(_render(runs, args, 'csv'))
                if r['task'] == 'seg'}
        assert rows['Bilinear']['mIoU_best_delta'] == '-2.73'
        assert rows['Bilinear']['params_delta'] == '-285084'
        assert rows['FADE']['mIoU_best_delta'] == ''
    finally:
        results_table.assign_baselines(runs, None)
    with pytest.raises(ValueError, match='matches no run'):
        results_table.assign_baselines(runs, 'no-such-run')


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
