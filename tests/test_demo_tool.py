"""tools/demo.py without training: arguments, the jobs of each task and their command lines,
the console filter (progress and tables kept, warnings and logs dropped) and the demo's
tables for a fixture set of runs (results_table.py reading complexity JSONs)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def demo():
    # by path: tools/ is no package, and `demo` is too common a module name to import bare
    spec = importlib.util.spec_from_file_location('fade_mm_tools_demo', ROOT / 'tools' / 'demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- arguments

def test_defaults_are_det_and_seg_one_seed(demo):
    args = demo.parse_args([])
    assert args.tasks == ['det', 'seg'] and args.seeds == 1 and args.iters == {}
    jobs = demo.build_jobs(args.tasks, args.full, args.seeds)
    assert [(j.task, j.name) for j in jobs] == (
        [('det', up) for up in ('nearest', 'carafe', 'fade', 'fade-lite')]
        + [('seg', up) for up in ('bilinear', 'carafe', 'fade', 'fade-lite')])
    assert {j.seed for j in jobs} == {0}
    assert jobs[0].tag == 'det_nearest_seed0'
    assert demo.build_jobs() == jobs  # None: the default tasks


def test_every_task_trains_its_four_upsamplers(demo):
    args = demo.parse_args(['--tasks', 'det', 'seg', 'ins', 'pan', 'rtm'])
    jobs = demo.build_jobs(args.tasks, args.full, args.seeds)
    assert len(jobs) == 20 and len({j.tag for j in jobs}) == 20
    by_task = {}
    for j in jobs:
        by_task.setdefault(j.task, []).append(j)
    assert sorted(by_task) == ['det', 'ins', 'pan', 'rtm', 'seg']
    for task, mine in by_task.items():
        base = 'bilinear' if task == 'seg' else 'nearest'
        assert [j.name for j in mine] == [base, 'carafe', 'fade', 'fade-lite']
    assert by_task['ins'][2].config == 'configs/demo/mask-rcnn_r18-tiny_fpn-fade_synthetic.py'
    assert by_task['pan'][3].config == (
        'configs/demo/panoptic-fpn_r18-tiny_fpn-fade-lite_synthetic.py')
    assert by_task['rtm'][0].config == 'configs/demo/rtmdet_tiny-toy_pafpn-nearest_synthetic.py'
    # the longest tasks start first, the cheap segmentation runs fill the end
    order = list(dict.fromkeys(j.task for j in jobs))
    assert order[-1] == 'seg' and order[0] in ('ins', 'pan')
    assert [TASK.cost for TASK in map(demo.TASKS.get, order)] == sorted(
        (demo.TASKS[t].cost for t in order), reverse=True)


def test_iterations_and_data_per_task(demo, tmp_path):
    args = demo.parse_args(['--tasks', 'pan', 'rtm', '--iters', 'pan=40', '--det-iters', '7'])
    assert args.iters == {'pan': 40, 'det': 7}
    jobs = demo.build_jobs(args.tasks)
    pan = next(j for j in jobs if j.task == 'pan')
    cmd = demo.train_command(pan, args, tmp_path / 'data', tmp_path / 'work')
    opts = cmd[cmd.index('--cfg-options') + 1:]
    assert cmd[cmd.index('--synthetic') + 1] == str(tmp_path / 'data' / 'pan')
    assert {'train_cfg.max_iters=40', 'train_cfg.val_interval=40', 'param_scheduler.1.end=40',
            'default_hooks.checkpoint.interval=40', 'param_scheduler.0.end=20'} <= set(opts)
    rtm = next(j for j in jobs if j.task == 'rtm')
    cmd = demo.train_command(rtm, args, tmp_path / 'data', tmp_path / 'work')
    # RTMDet and Mask R-CNN train on the detection data (which carries masks)
    assert cmd[cmd.index('--synthetic') + 1] == str(tmp_path / 'data' / 'det')
    assert f'train_cfg.max_iters={demo.TASKS["rtm"].iters}' in cmd
    assert demo.parse_args(['--only', 'ins']).tasks == ['ins']


@pytest.mark.parametrize('argv,message', [
    (['--seeds', '0'], '--seeds: must be at least 1, got 0'),
    (['--tasks', 'det', 'xyz'], "argument --tasks: invalid choice: 'xyz'"),
    (['--iters', 'det=0'], "argument --iters: 'det=0': N must be a positive integer"),
    (['--iters', 'foo=3'], 'argument --iters: expected TASK=N with TASK in'),
    (['--only', 'det', '--tasks', 'seg'], '--only and --tasks: give one of them'),
])
def test_bad_arguments_are_one_line_errors(demo, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        demo.parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and err.count('\n') == 1


def test_build_jobs_refuses_bad_input(demo):
    with pytest.raises(ValueError, match='--seeds must be at least 1'):
        demo.build_jobs(seeds=0)
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['x'\]"):
        demo.build_jobs(['x'])


def test_seeds_make_one_job_per_seed(demo, tmp_path):
    args = demo.parse_args(['--seeds', '3', '--full', '--only', 'seg'])
    jobs = demo.build_jobs(args.tasks, args.full, args.seeds)
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
    # no model is built: the complexity comes from the runs' complexity.json
    assert '--count' not in table and '--shape' not in table


def test_complexity_command_writes_next_to_each_dump(demo, tmp_path):
    dumps = [tmp_path / 'det_fade_seed0' / 'x.py', tmp_path / 'seg_fade_seed0' / 'y.py']
    cmd = demo.complexity_command(dumps)
    assert cmd[1].endswith('get_flops.py') and cmd[2:4] == [str(d) for d in dumps]
    assert cmd[cmd.index('--json') + 1] == '{config_dir}/complexity.json'
    assert cmd[cmd.index('--shape') + 1:cmd.index('--shape') + 3] == ['256', '256']


# ----------------------------------------------------------------------------- console

TRAIN_LINE = ('11/26 15:43:01 - mmengine - INFO - Iter(train) [ 50/400]  lr: 2.0000e-02  '
              'eta: 0:03:03  time: 0.5232  data_time: 0.0134  grad_norm: 3.7886  loss: 1.1778  '
              'loss_rpn_cls: 0.4072  loss_rpn_bbox: 0.0111\n')
DET_VAL = ('11/26 15:50:25 - mmengine - INFO - Iter(val) [50/50]    coco/bbox_mAP: 0.2400  '
           'coco/bbox_mAP_50: 0.4630  coco/bbox_mAP_75: 0.2190  coco/bbox_mAP_s: 0.2160  '
           'coco/bbox_mAP_m: 0.4150  coco/bbox_mAP_l: 0.7000  data_time: 0.0059  time: 0.1360\n')
INS_VAL = ('11/26 15:50:25 - mmengine - INFO - Iter(val) [50/50]    coco/bbox_mAP: 0.2400  '
           'coco/bbox_mAP_50: 0.4630  coco/segm_mAP: 0.1810  coco/segm_mAP_50: 0.3900  '
           'data_time: 0.0059  time: 0.1360\n')
PAN_VAL = ('11/26 15:50:25 - mmengine - INFO - Iter(val) [50/50]    coco_panoptic/PQ: 31.2000  '
           'coco_panoptic/SQ: 70.1000  coco_panoptic/RQ: 40.5000  coco_panoptic/PQ_th: 20.0000  '
           'coco_panoptic/PQ_st: 48.0000  data_time: 0.0059  time: 0.1360\n')
SEG_VAL = ('11/26 15:44:25 - mmengine - INFO - Iter(val) [50/50]    aAcc: 96.1600  mIoU: 54.0400  '
           'mAcc: 56.4000  bIoU: 33.3200  data_time: 0.0057  time: 0.0810\n')
DROPPED = [
    '/x/site-packages/pkg_resources/__init__.py:1: UserWarning: pkg_resources is deprecated as '
    'an API.\n',
    '/x/mmseg/models/builder.py:36: UserWarning: ``build_loss`` would be deprecated soon, please '
    'use ``mmseg.registry.MODELS.build()``\n',
    '  warnings.warn(\n',
    "UserWarning: Default ``avg_non_ignore`` is False, if you would like to ignore the certain "
    "label and average loss over non-ignore labels, which is the same with PyTorch official "
    "cross_entropy, set ``avg_non_ignore=True``.\n",
    '11/26 15:42:30 - mmengine - WARNING - Failed to search registry with scope "mmdet" in the '
    '"loop" registry tree. As a workaround, the current "loop" registry in "mmengine" is used '
    'to build the instance. This may cause unexpected failure when running the built modules. '
    'Please check whether "mmdet" is a correct scope, or whether the registry is initialized.\n',
    '11/26 15:44:25 - mmengine - INFO - Iter(val) [50/50]    eta: 0:00:00  time: 0.0888  '
    'data_time: 0.0063  \n',  # the val progress line without metrics
    '11/26 15:50:25 - mmengine - INFO - bbox_mAP_copypaste: 0.240 0.463 0.219 0.216 0.415 0.700\n',
    '    model = dict(\n',
    ' Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.240\n',
    '11/26 15:43:31 - mmengine - INFO - UpsamplerVisHook: 4 upsampler panels -> /tmp/x\n',
    '',
]


def test_console_keeps_progress_and_metrics(demo):
    assert demo.progress_line(TRAIN_LINE, 'det') == (
        'iter 50/400  loss 1.178  0.52 s/it  eta 0:03:03')
    assert demo.progress_line(DET_VAL, 'det') == 'evaluation: box AP 24.0'
    assert demo.progress_line(DET_VAL, 'rtm') == 'evaluation: box AP 24.0'
    assert demo.progress_line(INS_VAL, 'ins') == 'evaluation: box AP 24.0, mask AP 18.1'
    assert demo.progress_line(PAN_VAL, 'pan') == 'evaluation: PQ 31.2, SQ 70.1, RQ 40.5'
    assert demo.progress_line(SEG_VAL, 'seg') == 'evaluation: mIoU 54.0, bIoU 33.3'


@pytest.mark.parametrize('line', DROPPED)
@pytest.mark.parametrize('task', ['det', 'seg', 'ins', 'pan', 'rtm'])
def test_console_drops_warnings_and_logs(demo, line, task):
    assert demo.progress_line(line, task) is None


def test_last_error_names_the_exception(demo, tmp_path):
    log = tmp_path / 'job.log'
    log.write_text('Traceback (most recent call last):\n  File "x.py", line 1\n'
                   'RuntimeError: out of memory\n')
    assert demo.last_error(log) == 'RuntimeError: out of memory'
    log.write_text('some line\ntrain.py: error: unknown upsampler type \'FAED\'\n')
    assert demo.last_error(log) == "train.py: error: unknown upsampler type 'FAED'"
    assert demo.last_error(tmp_path / 'missing.log') == ''


def test_run_logged_sends_everything_to_the_log(demo, tmp_path):
    seen = []
    code = demo.run_logged(
        [sys.executable, '-c', 'import sys, warnings; print("out"); '
         'warnings.warn("noise"); sys.exit(3)'], tmp_path / 'logs' / 'x.log', on_line=seen.append)
    text = (tmp_path / 'logs' / 'x.log').read_text()
    assert code == 3 and 'out' in text and 'UserWarning: noise' in text
    assert any('noise' in s for s in seen)  # the filter sees stderr too, and drops it
    assert all(demo.progress_line(s) is None for s in seen)


def test_strip_title(demo):
    assert demo.strip_title('**Detection (COCO box AP)**\n\n| Method |\n') == '| Method |'
    assert demo.strip_title('| Method |') == '| Method |'


# ----------------------------------------------------------------------------- tables

def _demo_run(root: Path, tag: str, config: str, metrics: dict, params: int, macs: int) -> Path:
    """A run dir as the demo leaves it: the dumped config (inheriting the repository's
    config by absolute path), one evaluation, and get_flops.py's complexity.json."""
    stamp = '20260301_090000'
    run = root / tag
    (run / stamp / 'vis_data').mkdir(parents=True)
    (run / f'{Path(config).stem}.py').write_text(f'_base_ = {str(ROOT / config)!r}\n')
    (run / stamp / 'vis_data' / 'scalars.json').write_text(
        json.dumps(dict(metrics, step=300)) + '\n')
    (run / 'complexity.json').write_text(json.dumps(dict(
        params=params, macs=macs, sampling_macs=0, shape=[256, 256], config=config)))
    return run


def test_demo_table_for_fixture_runs(demo, tmp_path):
    """The table the demo prints for one task: from logs and complexity.json alone."""
    sys.path.insert(0, str(ROOT / 'tools' / 'analysis_tools'))
    import results_table
    ap = {'nearest': 0.200, 'carafe': 0.215, 'fade': 0.240, 'fade-lite': 0.230}
    extra = {'nearest': 0, 'carafe': 74_148, 'fade': 4 * 47_514, 'fade-lite': 4 * 13_332}
    jobs = demo.build_jobs(['det'])
    for job in jobs:
        _demo_run(tmp_path, job.tag, job.config,
                  {'coco/bbox_mAP': ap[job.name], 'coco/bbox_mAP_50': 0.45,
                   'coco/bbox_mAP_75': 0.2, 'coco/bbox_mAP_s': 0.1, 'coco/bbox_mAP_m': 0.3,
                   'coco/bbox_mAP_l': -1.0},
                  2_000_000 + extra[job.name], 800_000_000 + 1000 * extra[job.name])
    cmd = demo.table_command(jobs, tmp_path, demo.TASKS['det'].metrics)
    args = results_table.parse_args(cmd[2:])
    text = demo.strip_title(results_table.render(results_table.collect(args), args))
    lines = text.splitlines()
    assert lines[0] == '| Method | Backbone | ΔParams | ΔGFLOPs | n | Evals | AP | AP50 | AP75 | ' \
                       'APS | APM | APL |'
    rows = [ln for ln in lines if ln.startswith('| ') and 'Method' not in ln]
    assert [r.split(' | ')[0] for r in rows] == ['| Nearest', '| CARAFE', '| FADE', '| FADE-Lite']
    assert rows[0] == '| Nearest | R-18 | 2.00M | 0.80 | 1 | 1 | 20.0 | 45.0 | 20.0 | 10.0 | ' \
                      '30.0 | – |'
    assert rows[2].startswith('| FADE | R-18 | +0.19M | +0.19 | 1 | 1 | 24.0 (+4.0) |')
    assert 'GFLOPs: multiply-adds for one 256x256 input' in text
