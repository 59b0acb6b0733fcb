"""One line per misuse (fade_mm.cli): every tool ends a misuse with exactly one stderr line,
``<tool>: error: <what is wrong and the fix>``, status 2 for usage errors and 1 otherwise, and
shows the traceback only with ``--debug``. Also: results_table reads work dirs without
executing the config dumps in them, and skips a half-written run with a one-line warning.

Most cases run a tool's ``main`` in-process through :func:`fade_mm.cli.run_cli` (the same
path as ``python tools/X.py``); the ``slow`` ones start the real processes (Runner errors).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import List, Sequence, Tuple

import pytest
import torch

from fade_mm import cli

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / 'tools'
DET = str(ROOT / 'configs' / 'demo' / 'faster-rcnn_r18-tiny_fpn-fade_synthetic.py')
SEG = str(ROOT / 'configs' / 'demo' / 'segformer-head_r18-tiny_fade_synthetic.py')
SEG_LITE = str(ROOT / 'configs' / 'segformer' /
               'segformer_mit-b1_fade-lite_1xb16-160k_ade20k-512x512.py')


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tools():
    return argparse.Namespace(
        train=_load(TOOLS / 'train.py', 'fade_mm_cli_train'),
        test=_load(TOOLS / 'test.py', 'fade_mm_cli_test'),
        get_flops=_load(TOOLS / 'analysis_tools' / 'get_flops.py', 'fade_mm_cli_get_flops'),
        results_table=_load(TOOLS / 'analysis_tools' / 'results_table.py',
                            'fade_mm_cli_results_table'))


def run(main, argv: Sequence[str], prog: str, capsys) -> Tuple[int, str]:
    """``python tools/<prog> ARGV`` in-process: (exit status, the error line)."""
    with pytest.raises(SystemExit) as exit_:
        cli.run_cli(main, list(argv), prog)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert 'Traceback' not in err
    assert len(lines) == 1 and lines[0].startswith(f'{prog}: error: '), err
    return exit_.value.code, lines[0]


def explain(err: BaseException) -> str:
    message, status = cli.explain(err)
    assert status == 1 and '\n' not in message
    return message


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory) -> dict:
    """Broken checkpoints, and a good one."""
    root = tmp_path_factory.mktemp('ckpt')
    good = root / 'good.pth'
    torch.save({'state_dict': {'w': torch.zeros(3)}, 'meta': {'epoch': 0, 'iter': 2}}, good)
    (root / 'empty.pth').write_bytes(b'')
    (root / 'truncated.pth').write_bytes(good.read_bytes()[:700])
    (root / 'text.pth').write_text('hello, not a checkpoint\n')
    torch.save({'foo': 1, 'bar': 'x'}, root / 'nostate.pth')
    torch.save({'w': torch.zeros(3)}, root / 'bare.pth')
    return {p.stem: str(p) for p in root.iterdir()}


# ----------------------------------------------------------------------------- cli helpers

def test_one_line_usage_errors_and_debug(capsys):
    parser = cli.ArgumentParser(prog='tool.py')
    parser.add_argument('--cfg-options', nargs='+', action=cli.DictAction)
    assert parser.parse_args(['--cfg-options', 'a.b=1', 'c=[1,2]']).cfg_options == {
        'a.b': 1, 'c': [1, 2]}
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(['--cfg-options', 'train_cfg.max_iters'])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["tool.py: error: argument --cfg-options: expected KEY=VALUE pairs (e.g. "
                     "train_cfg.max_iters=100, no spaces around =), got 'train_cfg.max_iters' "
                     "(see --help)"]
    assert parser.parse_args(['--debug']).debug is True

    def main(argv):
        raise KeyError('boom')
    status, line = run(main, [], 'tool.py', capsys)
    assert status == 1 and line == ("tool.py: error: KeyError: boom (rerun with --debug for "
                                    'the traceback)')
    with pytest.raises(KeyError, match='boom'):  # --debug: the exception itself
        cli.run_cli(main, ['--debug'], 'tool.py')
    with pytest.raises(SystemExit) as exit_:
        cli.run_cli(lambda argv: 3, [], 'tool.py')
    assert exit_.value.code == 3


def test_warnings_are_one_line_and_restored():
    before, seen = warnings.formatwarning, {}

    def main(argv):
        seen['line'] = warnings.formatwarning('tool: two\nlines', UserWarning, 'x.py', 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn('pkg_resources is deprecated as an API')  # silenced
            warnings.warn('shown')
        seen['caught'] = [str(w.message) for w in caught]
    with pytest.raises(SystemExit) as exit_:
        cli.run_cli(main, [], 'tool.py')
    assert exit_.value.code == 0
    assert seen == dict(line='tool.py: warning: two lines\n', caught=['shown'])
    assert warnings.formatwarning is before


# ----------------------------------------------------------------------------- unknown names

def test_unknown_upsampler_names_the_registered_ones():
    from fade_mm.registry import build_upsamplers
    with pytest.raises(KeyError) as err:
        build_upsamplers(dict(type='FADEE'), 8, 1)
    message = explain(err.value)
    assert message.startswith("unknown upsampler type 'FADEE' in an upsample_cfg (did you "
                              "mean 'FADE'?); registered upsamplers: ")
    names = cli.upsampler_names()  # the classes of fade_mm.upsamplers.__all__
    assert message.split(': ')[-1].split(', ') == names
    assert {'FADE', 'FADELite', 'SAPA', 'DySample', 'NearestUpsample'} <= set(names)


def test_unknown_type_of_another_registry():
    import mmengine.hooks  # noqa: F401  (registers them, as a Runner does)
    from mmengine.registry import HOOKS, DefaultScope
    # which registry a build looks in first follows the process-wide default scope:
    # pin it, as a Runner does, so the message does not depend on the tests run before
    with pytest.raises(KeyError) as err, DefaultScope.overwrite_default_scope('mmengine'):
        HOOKS.build(dict(type='CheckpointHok'))
    assert explain(err.value) == ("unknown type 'CheckpointHok' in the mmengine::hook "
                                  "registry (did you mean 'CheckpointHook'?)")


def test_unknown_upsampler_and_key_through_get_flops(tools, capsys):
    main = tools.get_flops.main
    status, line = run(main, [SEG_LITE, '--cfg-options',
                              'model.decode_head.upsample_cfg.type=FADELit'],
                       'get_flops.py', capsys)
    assert status == 1
    assert "unknown upsampler type 'FADELit'" in line and "did you mean 'FADELite'?" in line
    status, line = run(main, [SEG_LITE, '--cfg-options',
                              'model.decode_head.upsample_cfg.up_kernal=3'],
                       'get_flops.py', capsys)
    assert status == 1 and line.startswith(
        "get_flops.py: error: upsampler FADELite (upsample_cfg) has no key 'up_kernal' "
        "(did you mean 'up_kernel'?); valid keys: in_channels, scale_factor, up_kernel")


# ----------------------------------------------------------------------------- typo'd keys

def test_typo_in_train_cfg_names_the_loop_keys():
    from mmengine.registry import LOOPS
    with pytest.raises(TypeError) as err:
        LOOPS.build(dict(type='IterBasedTrainLoop', max_iter=10),
                    default_args=dict(runner=None, dataloader=None))
    assert explain(err.value) == (
        "IterBasedTrainLoop has no key 'max_iter' (did you mean 'max_iters'?); valid keys: "
        'runner, dataloader, max_iters, val_begin, val_interval, dynamic_intervals')
    # the Runner calls EpochBasedTrainLoop(**train_cfg) itself when train_cfg has no type
    from mmengine.runner import EpochBasedTrainLoop  # noqa: F401  (found by its name)
    with pytest.raises(TypeError) as err:
        EpochBasedTrainLoop(runner=None, dataloader=None, max_epoch=3)
    assert "'max_epoch' (did you mean 'max_epochs'?)" in explain(err.value)


def test_typo_in_default_hooks_names_the_hooks():
    from mmengine.registry import HOOKS
    from mmengine.runner import Runner

    class Stub:  # what Runner.register_default_hooks needs of the Runner
        def register_hook(self, hook):
            HOOKS.build(hook)
    with pytest.raises(KeyError) as err:
        Runner.register_default_hooks(Stub(), dict(chekpoint=dict(interval=1)))
    assert explain(err.value) == (
        "default_hooks.chekpoint is not a hook of the config (no 'type') (did you mean "
        "'checkpoint'?); default hooks: runtime_info, timer, sampler_seed, logger, "
        'param_scheduler, checkpoint')


# ----------------------------------------------------------------------------- data, files

@pytest.mark.parametrize('scope,cfg', [
    ('mmdet', dict(type='CocoDataset', data_root='/nonexistent/det',
                   ann_file='annotations/instances_train.json')),
    ('mmseg', dict(type='ADE20KDataset', data_root='/nonexistent/seg',
                   data_prefix=dict(img_path='images/training',
                                    seg_map_path='annotations/training'))),
])
def test_missing_dataset_says_synthetic(scope, cfg):
    import importlib
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    datasets = importlib.import_module(f'{scope}.registry').DATASETS
    from mmengine.registry import DefaultScope
    # mmengine builds through the current default scope's registry: name this one
    with pytest.raises(FileNotFoundError) as err, DefaultScope.overwrite_default_scope(scope):
        datasets.build(cfg)
    message = explain(err.value)
    assert message.startswith(f'dataset file not found: /nonexistent/{scope[2:]}/')
    assert message.endswith('--synthetic DATA_ROOT')


@pytest.mark.parametrize('name,status,message', [
    ('missing', 2, 'CHECKPOINT: no such file: {}'),
    ('empty', 1, 'CHECKPOINT {}: empty file (0 bytes)'),
    ('truncated', 1, 'CHECKPOINT {}: truncated or corrupt (700 bytes, the zip archive '
                     'torch.save writes is incomplete): save or copy it again'),
    ('text', 1, "CHECKPOINT {}: not a torch checkpoint (it starts with b'hello, n')"),
    ('nostate', 1, "CHECKPOINT {}: missing 'state_dict', which a checkpoint holds (top-level "
                   'keys: foo, bar)'),
])
def test_test_py_refuses_bad_checkpoints_first(tools, checkpoints, capsys, name, status,
                                                message):
    path = checkpoints.get(name, str(Path(checkpoints['good']).parent / 'missing.pth'))
    got, line = run(tools.test.main, [DET, path], 'test.py', capsys)
    assert got == status and line == 'test.py: error: ' + message.format(path)


def test_checkpoint_checks(checkpoints):
    cli.check_checkpoint(checkpoints['good'], resume=True)
    cli.check_checkpoint(checkpoints['bare'])  # a bare state dict loads as mmengine loads it
    cli.check_checkpoint('https://example.org/x.pth')  # URLs: the loader's business
    with pytest.raises(cli.CLIError, match=r"--resume .*bare.pth: missing 'state_dict' and "
                                           r"'meta', which a runner checkpoint to resume"):
        cli.check_checkpoint(checkpoints['bare'], '--resume', resume=True)


def test_resume_and_load_from_are_checked(tools, checkpoints, capsys):
    main = tools.train.main
    status, line = run(main, [DET, '--resume', checkpoints['nostate']], 'train.py', capsys)
    assert status == 1 and line.startswith(f'train.py: error: --resume {checkpoints["nostate"]}'
                                           ": missing 'state_dict' and 'meta'")
    status, line = run(main, [DET, '--cfg-options', f'load_from={checkpoints["truncated"]}'],
                       'train.py', capsys)
    assert status == 1 and line.startswith(f'train.py: error: load_from '
                                           f'{checkpoints["truncated"]}: truncated or corrupt')


def test_damaged_checkpoint_inside_a_loader():
    """A checkpoint no tool checked first (--resume of the work dir's last one): torch's
    error becomes the file and what is wrong with it."""
    from mmengine.runner.checkpoint import _load_checkpoint

    from fade_mm.compat import install_safe_checkpoint_loading
    install_safe_checkpoint_loading()
    import tempfile
    with tempfile.NamedTemporaryFile(suffix='.pth') as f:
        with pytest.raises(EOFError) as err:
            _load_checkpoint(f.name)
        assert explain(err.value) == f'checkpoint {f.name}: empty file (0 bytes)'


# ----------------------------------------------------------------------------- options

def test_config_file_errors(tools, tmp_path, capsys):
    status, line = run(tools.train.main, [str(tmp_path / 'nope.py')], 'train.py', capsys)
    assert status == 2 and line == (f'train.py: error: argument config: no such file: '
                                    f'{tmp_path / "nope.py"} (see --help)')
    bad = tmp_path / 'bad.py'
    bad.write_text("_base_ = 'x.py'\nmodel = dict(\n")
    for main, prog in ((tools.train.main, 'train.py'), (tools.get_flops.main, 'get_flops.py')):
        status, line = run(main, [str(bad)], prog, capsys)
        assert status == 1 and line == (f"{prog}: error: {bad}:2: syntax error in config: "
                                        "'(' was never closed")


def test_launcher_outside_torchrun(tools, monkeypatch, capsys):
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    status, line = run(tools.train.main, [DET, '--launcher', 'pytorch'], 'train.py', capsys)
    assert status == 2
    assert line.startswith('train.py: error: --launcher pytorch: RANK, WORLD_SIZE, '
                           'MASTER_ADDR, MASTER_PORT not set')
    assert 'torchrun' in line and 'tools/dist_train.sh' in line


def test_amp_with_incompatible_optim_wrapper(tools, capsys):
    status, line = run(tools.train.main, [DET, '--amp', '--cfg-options',
                                          'optim_wrapper.type=ApexOptimWrapper'],
                       'train.py', capsys)
    assert status == 2 and line == (
        'train.py: error: --amp needs optim_wrapper.type OptimWrapper (it becomes '
        'AmpOptimWrapper, or CPUAmpOptimWrapper without CUDA); the config has '
        'ApexOptimWrapper: drop --amp, or set --cfg-options optim_wrapper.type=OptimWrapper')


@pytest.mark.parametrize('shape,message', [
    (['100000', '100000'], '--shape 100000 100000 is too large (at most 8192 a side'),
    (['0'], '--shape takes H W (or one number), positive, got 0 0'),
    (['1', '2', '3'], '--shape takes H W (or one number), positive, got 1 2 3'),
    (['5000', '5000'], '--shape 5000 5000 is too large'),
])
def test_get_flops_refuses_bad_shapes(tools, capsys, shape, message):
    status, line = run(tools.get_flops.main, [SEG_LITE, '--shape', *shape], 'get_flops.py',
                       capsys)
    assert status == 2 and line.startswith(f'get_flops.py: error: {message}')


def test_measure_checks_the_shape_before_building():
    from mmengine.config import Config

    from fade_mm.complexity import measure
    cfg = Config(dict(default_scope='mmseg', model=dict(type='NoSuchModel')))
    with pytest.raises(cli.UsageError, match='too large'):  # not the unknown model type
        measure(cfg, (100000, 100000))


# ----------------------------------------------------------------------------- results_table

def _run_dir(root: Path, name: str, config: str, scalars: bytes = None) -> Path:
    stamp = '20260301_090000'
    (root / name / stamp / 'vis_data').mkdir(parents=True)
    (root / name / f'{name}.py').write_text(config)
    if scalars is not None:
        (root / name / stamp / 'vis_data' / 'scalars.json').write_bytes(scalars)
    return root / name


def test_results_table_executes_no_dump_and_skips_half_written_runs(tools, tmp_path):
    marker = tmp_path / 'EXECUTED'
    evil_base = tmp_path / 'evil_base.py'
    evil_base.write_text(f'import os\nopen({str(marker)!r}, "w")\n')
    good = (json.dumps(dict(mIoU=43.0, bIoU=30.0, step=100)) + '\n').encode()
    base = f'_base_ = {SEG_LITE!r}\n'
    _run_dir(tmp_path, 'lite', base, good)
    _run_dir(tmp_path, 'evil', f'import os\nopen({str(marker)!r}, "w")\n{base}'
             f'x = __import__("os").system("touch {marker}")\n', good)
    _run_dir(tmp_path, 'evil_base', f'_base_ = {str(evil_base)!r}\n', good)
    _run_dir(tmp_path, 'garbage', base, b'\x00\xff{"mIoU": 4\n[1, 2]\n')
    _run_dir(tmp_path, 'truncated', 'model = dict(type="EncoderDecoder", backbone=dict(\n',
             None)
    args = tools.results_table.parse_args([str(tmp_path), '--no-flops'])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        groups = tools.results_table.collect(args)
        text = tools.results_table.render(groups, args)
    assert not marker.exists()
    messages = [str(w.message) for w in caught if 'results_table' in str(w.message)]
    assert all('\n' not in m for m in messages)

    def said(*parts: str) -> bool:
        return any(all(p in m for p in parts) for m in messages)
    assert said('evil.py: partly read, left out: line 1: import statement', 'line 2: expr '
                'statement', "x (line 4: a call of __import__('os').system")
    assert said('evil_base.py: partly read', "outside this repository's and the installed "
                "packages' configs: not followed")
    assert said('garbage/20260301_090000/vis_data/scalars.json', 'unreadable 2 lines (1, 2)')
    assert said('garbage: no evaluation results found, skipped')
    assert said("truncated.py: not read: syntax error at line 1: '(' was never closed")
    assert said('truncated: no evaluation results found, skipped')
    # the others render: the FADE-Lite run and its evil twin (same config: one row, n=2),
    # the run whose base was not followed as a row of its own (no method, task from metrics)
    rows = [ln.split(' | ') for ln in text.splitlines()
            if ln.startswith('| ') and 'Method' not in ln]
    assert [r[:2] + r[3:5] for r in rows] == [['| evil_base', '?', '1', '1'],
                                              ['| FADE-Lite', 'MiT-B1', '2', '1']]


def test_results_table_cli_one_line_errors(tools, tmp_path, capsys):
    main = tools.results_table.main
    status, line = run(main, [str(tmp_path / 'none')], 'results_table.py', capsys)
    assert status == 2 and line == ('results_table.py: error: argument work_dirs: no such '
                                    f'directory: {tmp_path / "none"}')
    status, line = run(main, [str(tmp_path)], 'results_table.py', capsys)
    assert status == 1 and line == ('results_table.py: error: no run with evaluation '
                                    f'results under {tmp_path}')


def test_read_config_evaluates_literals_only(tools, tmp_path):
    dump = tmp_path / 'cfg.py'
    dump.write_text('"""doc"""\nimport os\nw = 64\nmodel = dict(a=w * 2, b=[1, -2.5], '
                    'c=(None, True), d={"k": "v" + "w"}, **dict(e=1))\n'
                    'path = os.path.join("a", "b")\nlst = list((1, 2))\n'
                    'bomb = [w] + [w]\n'
                    'def f():\n    pass\n')
    cfg, problems = tools.results_table.read_config(str(dump))
    assert cfg.to_dict() == dict(w=64, model=dict(a=128, b=[1, -2.5], c=(None, True),
                                                  d={'k': 'vw'}, e=1), lst=[1, 2],
                                 bomb=[64, 64])
    assert problems == ['line 2: import statement (not an assignment: not run)',
                        'line 8: functiondef statement (not an assignment: not run)',
                        'path (line 5: a call of os.path.join: not evaluated)']
    dump.write_text('x = "a"\n' + 'x = x + x\n' * 40)  # 2 ** 40 characters
    cfg, problems = tools.results_table.read_config(str(dump))
    assert 'x' not in cfg and 'more than 200000 values' in problems[0]


# ----------------------------------------------------------------------------- processes

def _process(argv: List[str], cwd: Path = ROOT, timeout: int = 300):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        env.pop(key, None)
    return subprocess.run([sys.executable, *argv], cwd=str(cwd), capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_one_stderr_line_from_a_real_process_and_traceback_with_debug(tmp_path):
    tool = str(TOOLS / 'analysis_tools' / 'results_table.py')
    proc = _process([tool, str(tmp_path / 'none')])
    assert proc.returncode == 2 and proc.stderr == (
        f'results_table.py: error: argument work_dirs: no such directory: '
        f'{tmp_path / "none"}\n')
    proc = _process([tool, str(tmp_path / 'none'), '--debug'])
    assert proc.returncode == 1
    assert 'Traceback (most recent call last)' in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith('fade_mm.cli.UsageError: ')


@pytest.mark.slow
@pytest.mark.parametrize('options,message', [
    (['--cfg-options', 'model.neck.upsample_cfg.type=FADEE'],
     "unknown upsampler type 'FADEE' in an upsample_cfg (did you mean 'FADE'?); registered "
     'upsamplers: A2U, '),
    (['--cfg-options', 'model.neck.upsample_cfg.up_kernal=3'],
     "upsampler FADE (upsample_cfg) has no key 'up_kernal' (did you mean 'up_kernel'?)"),
    (['--cfg-options', 'train_cfg.max_iter=10'],
     "IterBasedTrainLoop has no key 'max_iter' (did you mean 'max_iters'?)"),
    (['--cfg-options', 'default_hooks.chekpoint.interval=1'],
     "default_hooks.chekpoint is not a hook of the config (no 'type') (did you mean "
     "'checkpoint'?)"),
    ([], 'dataset file not found: '),
], ids=['upsampler-type', 'upsampler-key', 'train_cfg-key', 'default_hooks-key',
        'no-dataset'])
def test_train_py_runner_errors(tmp_path, options, message):
    # no --synthetic: the demo config's data/synthetic/det is missing under tmp_path, which
    # only the last case reaches (the others fail before data is read)
    proc = _process([str(TOOLS / 'train.py'), DET, '--work-dir', str(tmp_path / 'w'),
                     *options], cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f'train.py: error: {message}'), lines
