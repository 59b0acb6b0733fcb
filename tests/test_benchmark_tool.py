"""tools/benchmark.py runs end to end at tiny sizes and writes its JSON (no timing asserted)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools', 'benchmark.py')
TINY_OP = ['--size', '8', '--channels', '8', '--batch', '1', '--repeats', '1',
           '--load-repeats', '1', '--threads', '1']


def _run(tmp_path, *args):
    out = tmp_path / 'bench.json'
    proc = subprocess.run([sys.executable, TOOL, *args, '--json', str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


@pytest.mark.slow
def test_ops_and_modules_parts(tmp_path):
    stdout, report = _run(tmp_path, '--parts', 'ops,modules', *TINY_OP)
    ops = report['ops']
    assert set(ops['results']) == {'naive', 'rows', 'shift'}
    for r in ops['results'].values():
        assert {'fwd_s', 'total_s', 'peak_rss_mb', 'peak_alloc_mb', 'kernel_calls',
                'matmul_calls', 'checksum'} <= set(r)
    assert ops['ratios']['checksum_rel_diff'] < 1e-4
    # the training path is a few batched products, not one per image row
    assert ops['results']['rows']['matmul_calls'] <= 12
    assert set(ops['checks']) == {'quiet', 'export', 'memory'}
    assert 'target >= 20x' in stdout and 'target <= 3x' in stdout
    assert report['settings']['size'] == 8 and report['machine']['cpus'] >= 1
    modules = report['modules']
    assert set(modules) == {'bilinear', 'fade', 'fade-h2l', 'fade-lite', 'fade-kernels',
                            'fade-reassembly'}
    assert modules['fade']['params'] == modules['fade-h2l']['params'] > 0


@pytest.mark.slow
def test_load_part_starts_and_stops_busy_processes(tmp_path):
    stdout, report = _run(tmp_path, '--parts', 'load', '--busy', '1', '--busy-threads', '1',
                          *TINY_OP)
    rows = report['load']['results']
    assert set(rows) == {'quiet', '1 busy'}
    assert all(r['speedup'] > 0 for r in rows.values())
    assert '>= 15x' in stdout


@pytest.mark.slow
def test_models_and_with_cp_parts(tmp_path):
    pytest.importorskip('mmseg')
    stdout, report = _run(tmp_path, '--parts', 'models,with_cp', '--models', 'segformer_b1',
                          '--seg-size', '64', '--model-batch', '1', '--model-repeats', '1',
                          '--threads', '1')
    seg = report['models']['segformer_b1']
    assert seg['fade']['params'] > seg['baseline']['params']
    assert seg['time_ratio'] > 0 and seg['memory_ratio'] > 0
    assert 'x1.17' in stdout or '1.167' in stdout
    cp = report['with_cp']
    if cp['available']:
        assert cp['on']['peak_alloc_mb'] <= cp['off']['peak_alloc_mb']
