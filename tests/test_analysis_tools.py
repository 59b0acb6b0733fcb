"""tools/analysis_tools/get_flops.py and results_table.py: counts checked against hand-computed
multiply-adds, and the table read from fixtures of what an mmengine Runner writes (one run per
config; several seeds per config). Also the seed plumbing of tools/demo.py, without training."""
from __future__ import annotations

import argparse
import csv
import importlib.util
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
FADE_PARAMS = 47_514  # one FADE module at 256 channels
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
    cfg = get_flops.load_config(DET_CARAFE.format('fade'),
                                {'model.test_cfg.rpn.max_per_img': 100})
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
    proc = run_tool('get_flops.py', [DET_CARAFE.format('fade'), '--shape', '128', '--compare',
                                     DET_CARAFE.format('nearest'), '--json'])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res['scope'] == 'mmdet' and res['device'] == 'meta' and res['proposals'] == 1000
    assert res['delta_params'] == 4 * FADE_PARAMS == 190_056
    # FPN_CARAFE topology: P6 (2x2) -> P5 -> P4 -> P3 -> P2 (32x32); nearest counts zero
    assert res['delta_macs'] == sum(fade_macs(C, n, n) for n in (2, 4, 8, 16))


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
    args = results_table.parse_args([FIXTURE, '--shape', '128'])
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
    assert 'multiply-adds for one 128x128 input' in text
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
        _render(groups, args, 'latex', metrics=['mIoU', 'PQ'])


def test_results_table_csv_and_explicit_baseline(fixture_runs):
    args, groups = fixture_runs
    rows = {(r['task'], r['method']): r for r in _csv_rows(_render(groups, args, 'csv'))}
    fade = rows['seg', 'FADE']
    assert fade['params_delta'] == '285084' and fade['shape'] == '128x128'
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
    args = results_table.parse_args([SEED_FIXTURE, '--no-flops'])
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
    stat = results_table.metric_stat(groups[0], 'final', results_table.TASKS['seg']['metrics'][0])
    assert (stat.mean, stat.n) == (41.0, 3) and stat.std == pytest.approx(1.0)


def test_within_spread():
    stat = results_table.Stat
    assert results_table.within_spread(stat(41.8, 0.28, 2), stat(41.5, 0.3, 3)) is True
    assert results_table.within_spread(stat(44.3, 0.3, 3), stat(41.5, 0.3, 3)) is False
    # a single run is a point: inside the other's interval or not
    assert results_table.within_spread(stat(41.7, None, 1), stat(41.5, 0.3, 3)) is True
    assert results_table.within_spread(stat(43.4, None, 1), stat(41.5, 0.3, 3)) is False
    # two single runs: no spread to compare with
    assert results_table.within_spread(stat(43.4, None, 1), stat(41.5, None, 1)) is None


# ----------------------------------------------------------------------------- demo seeds

@pytest.fixture(scope='module')
def demo():
    # by path: tools/ is no package, and `demo` is too common a module name to import bare
    spec = importlib.util.spec_from_file_location('fade_mm_tools_demo',
                                                  os.path.join(ROOT, 'tools', 'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_defaults_to_one_seed(demo):
    args = demo.parse_args([])
    assert args.seeds == 1
    jobs = demo.build_jobs(args.only, args.full, args.seeds)
    assert [(j.task, j.name) for j in jobs] == (
        [('det', up) for up in ('nearest', 'carafe', 'fade', 'fade-lite')]
        + [('seg', up) for up in ('bilinear', 'carafe', 'fade', 'fade-lite')])
    assert {j.seed for j in jobs} == {0}
    assert jobs[0].tag == 'det_nearest_seed0'


def test_demo_seeds_make_one_job_per_seed(demo, tmp_path):
    args = demo.parse_args(['--seeds', '3', '--full', '--only', 'seg'])
    jobs = demo.build_jobs(args.only, args.full, args.seeds)
    assert len(jobs) == 3 * (4 + 5) and len({j.tag for j in jobs}) == len(jobs)
    # seed by seed: an interrupted demo has whole comparisons for its first seeds
    assert [j.seed for j in jobs] == [0] * 9 + [1] * 9 + [2] * 9
    assert jobs[9].tag == 'seg_bilinear_seed1'
    ablation = [j for j in jobs if j.name == 'fade-B5-skip']
    assert [j.seed for j in ablation] == [0, 1, 2]
    assert ablation[0].options == ["model.decode_head.upsample_cfg.fusion='skip'"]

    cmd = demo.train_command(ablation[2], args, tmp_path / 'data', tmp_path / 'work')
    opts = cmd[cmd.index('--cfg-options') + 1:]
    assert 'randomness.seed=2' in opts and "model.decode_head.upsample_cfg.fusion='skip'" in opts
    assert cmd[cmd.index('--work-dir') + 1] == str(tmp_path / 'work' / 'seg_fade-B5-skip_seed2')
    assert cmd[cmd.index('--synthetic') + 1] == str(tmp_path / 'data' / 'seg')
    # the same data and schedule for every seed: only the seed and work dir differ
    other = demo.train_command(ablation[0], args, tmp_path / 'data', tmp_path / 'work')
    assert [a for a, b in zip(cmd, other) if a != b] == [
        str(tmp_path / 'work' / 'seg_fade-B5-skip_seed2'), 'randomness.seed=2']

    table = demo.table_command(jobs, tmp_path / 'work')
    # exactly this demo's run dirs: no stale seed of an earlier demo joins the rows
    dirs = table[2:table.index('--format')]
    assert dirs == [str(tmp_path / 'work' / j.tag) for j in jobs]


def test_demo_rejects_zero_seeds(demo, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(['--seeds', '0'])
    assert '--seeds: must be at least 1, got 0' in capsys.readouterr().err
    with pytest.raises(ValueError, match='--seeds must be at least 1'):
        demo.build_jobs(seeds=0)
