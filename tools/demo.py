#!/usr/bin/env python
"""fade_mm demo: train and compare upsamplers on generated data, on CPU, in minutes.

Generates synthetic data (seed 0), trains toy models from scratch through the stock mmengine
Runner (``tools/train.py``), one per upsampler, evaluates them, prints a paper-style table per
task and writes pictures (upsampled features and FADE's gate maps during training;
predictions side by side). Two trainings run at a time, one thread each. Tasks
(``--tasks``, default ``det seg``: about 9 minutes on 2 quiet cores, several times that when
other jobs share them; each further task trains four more models):

- ``det``: Faster R-CNN (ResNet-18/4, FPN) with nearest / CARAFE / FADE / FADE-Lite, box AP;
- ``seg``: SegFormer head (ResNet-18/4) with bilinear / CARAFE / FADE / FADE-Lite, mIoU, bIoU;
- ``ins``: Mask R-CNN (ResNet-18/4, FPN), box AP and mask AP;
- ``pan``: Panoptic FPN (ResNet-18/4), PQ, SQ, RQ, PQ things / stuff;
- ``rtm``: RTMDet (toy CSPNeXt, PAFPN), box AP.

The console shows progress, the tables and where the pictures are; everything the child
processes print (their logs, upstream warnings) goes to ``WORK_DIR/logs/<job>.log`` (one a
training; ``complexity.log``, ``tables.log``, ``pictures.log`` for the rest), the Runner's
own logs and checkpoints to ``WORK_DIR/<job>/``. Parameters and GFLOPs come from
``get_flops.py --json`` (``WORK_DIR/<job>/complexity.json``, counted on each run's dumped
config at 256x256), which ``results_table.py`` reads.

``--seeds N`` trains every job with the training seeds 0..N-1 (the data stays the one of seed
0), each in its own ``<task>_<upsampler>_seed<S>`` work dir, and the table shows each metric
as mean ± std over the seeds with n, marking deltas within the run-to-run spread; it takes N
times as long. The default, one seed, fits the demo's 10 minutes on 2 cores, but a single
run cannot tell a real difference from seed noise.

    python tools/demo.py                       # what `make demo` runs after the set-up
    python tools/demo.py --tasks det seg ins pan rtm   # every task, 20 trainings
    python tools/demo.py --full                # also FADE's ablation rows B1-B5 (seg)
    python tools/demo.py --seeds 3             # every job with seeds 0, 1, 2: mean ± std
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, TextIO, Tuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # a checkout without `pip install -e .` too
from fade_mm import cli  # noqa: E402

SEED = 0  # of the generated data, and the first training seed
# The images and sizes of the generated data (fade_mm.datasets generators' arguments).
NUM_TRAIN, NUM_VAL = 200, 50
# Input size GFLOPs are counted at (the toy images are 128-192 px a side).
FLOPS_SHAPE = (256, 256)


class DemoTask(NamedTuple):
    """One task of the demo: its configs (one per upsampler) and schedule.

    ``config`` has ``{}`` for the upsampler; ``data`` is the synthetic data kind (its root
    is ``DATA_ROOT/<data>``); ``iters`` / ``batch`` / ``warmup`` the schedule the demo
    trains with (the configs' toy schedules have a linear warm-up then a decay,
    ``param_scheduler`` 0 and 1); ``cost`` the relative time of one training (longest jobs
    start first); ``metrics`` the table's columns (results_table.py labels).
    """

    title: str
    config: str
    upsamplers: Tuple[str, ...]
    data: str
    iters: int
    batch: int
    warmup: int
    cost: float
    metrics: Tuple[str, ...]
    picture: str  # the upsampler compared with FADE in the side-by-side picture


# Training iterations dominate the demo's time (evaluation of the 50 val images takes seconds,
# the pictures and tables about a minute in all): detection trains 250 iterations (was 400;
# the toy config's own schedule is 200), which keeps the default demo within 10 minutes on 2
# cores and the learned upsamplers' lead over nearest; segmentation 300.
TASKS: Dict[str, DemoTask] = {
    'det': DemoTask('Detection: toy Faster R-CNN (ResNet-18/4, FPN), box AP',
                    'configs/demo/faster-rcnn_r18-tiny_fpn-{}_synthetic.py',
                    ('nearest', 'carafe', 'fade', 'fade-lite'), 'det', 250, 4, 50, 3.0,
                    ('AP', 'AP50', 'AP75', 'APS', 'APM', 'APL'), 'nearest'),
    'seg': DemoTask('Semantic segmentation: toy SegFormer head (ResNet-18/4), mIoU / bIoU',
                    'configs/demo/segformer-head_r18-tiny_{}_synthetic.py',
                    ('bilinear', 'carafe', 'fade', 'fade-lite'), 'seg', 300, 8, 30, 1.0,
                    ('mIoU', 'bIoU'), 'bilinear'),
    'ins': DemoTask('Instance segmentation: toy Mask R-CNN (ResNet-18/4, FPN), box AP and '
                    'mask AP', 'configs/demo/mask-rcnn_r18-tiny_fpn-{}_synthetic.py',
                    ('nearest', 'carafe', 'fade', 'fade-lite'), 'det', 300, 4, 50, 3.5,
                    ('AP', 'maskAP', 'maskAP50', 'maskAP75'), 'nearest'),
    'pan': DemoTask('Panoptic segmentation: toy Panoptic FPN (ResNet-18/4), PQ',
                    'configs/demo/panoptic-fpn_r18-tiny_fpn-{}_synthetic.py',
                    ('nearest', 'carafe', 'fade', 'fade-lite'), 'pan', 300, 4, 50, 3.5,
                    ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'), 'nearest'),
    'rtm': DemoTask('Detection: toy RTMDet (CSPNeXt, PAFPN), box AP',
                    'configs/demo/rtmdet_tiny-toy_pafpn-{}_synthetic.py',
                    ('nearest', 'carafe', 'fade', 'fade-lite'), 'det', 300, 8, 50, 2.0,
                    ('AP', 'AP50', 'AP75'), 'nearest'),
}
DEFAULT_TASKS = ('det', 'seg')
# The data generators of each kind: (module, function).
GENERATORS = {'det': ('fade_mm.datasets.synthetic_det', 'make_synthetic_coco'),
              'seg': ('fade_mm.datasets.synthetic_seg', 'make_synthetic_ade'),
              'pan': ('fade_mm.datasets.synthetic_pan', 'make_synthetic_coco_panoptic')}
# FADE's ablation (B6 = FADE itself): switches of the FADE module, set from the command line.
ABLATION = {
    'B1-encoder-only': "kernel_source='encoder' fusion='none'",
    'B2-decoder-only': "kernel_source='decoder' fusion='none'",
    'B3-naive': "kernel_generator='naive' fusion='none'",
    'B4-semi-shift': "fusion='none'",
    'B5-skip': "fusion='skip'",
}
# Kept for callers of the former module constants.
DET_UPSAMPLERS = TASKS['det'].upsamplers
SEG_UPSAMPLERS = TASKS['seg'].upsamplers
DET_CFG = TASKS['det'].config
SEG_CFG = TASKS['seg'].config
_print_lock = threading.Lock()


class Job(NamedTuple):
    task: str  # a key of TASKS
    name: str
    config: str
    options: List[str]
    seed: int = SEED  # training seed (randomness.seed)

    @property
    def tag(self) -> str:
        """The job's work dir and log name under the demo's work dir."""
        return f'{self.task}_{self.name}_seed{self.seed}'


def say(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


# ----------------------------------------------------------------------------- jobs

def build_jobs(tasks: Optional[Sequence[str]] = None, full: bool = False,
               seeds: int = 1) -> List[Job]:
    """The demo's trainings: one job per task, upsampler (and ablation row) and seed.

    Args:
        tasks: keys of :data:`TASKS` (a single key as a string too); None for
            :data:`DEFAULT_TASKS`.
        full: add FADE's ablation rows B1-B5 (segmentation, when ``seg`` is a task).
        seeds: training seeds per job, ``SEED .. SEED + seeds - 1``.

    Returns:
        The jobs in the order they should start: seed by seed, so that an interrupted demo
        still has complete comparisons for its first seeds; within a seed the longest tasks
        first (:attr:`DemoTask.cost`), which keeps both workers busy to the end.
    """
    if seeds < 1:
        raise ValueError(f'demo: --seeds must be at least 1, got {seeds}')
    tasks = list(DEFAULT_TASKS if tasks is None else [tasks] if isinstance(tasks, str)
                 else tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f'demo: unknown task(s) {unknown} (choose from {list(TASKS)})')
    base: List[Job] = []
    for task in dict.fromkeys(tasks):  # once each, in the order given
        spec = TASKS[task]
        base += [Job(task, up, spec.config.format(up), []) for up in spec.upsamplers]
        if task == 'seg' and full:
            base += [Job('seg', f'fade-{row}', spec.config.format('fade'),
                         [f'model.decode_head.upsample_cfg.{kv}' for kv in opts.split()])
                     for row, opts in ABLATION.items()]
    jobs = [job._replace(seed=SEED + i) for i in range(seeds) for job in base]
    jobs.sort(key=lambda j: (j.seed, -TASKS[j.task].cost))  # stable: upsampler order kept
    return jobs


def iterations(args: argparse.Namespace, task: str) -> int:
    """The training iterations of ``task``'s jobs (``--iters TASK=N``, else the default)."""
    return (args.iters or {}).get(task, TASKS[task].iters)


def train_command(job: Job, args: argparse.Namespace, data_root: Path,
                  work_root: Path) -> List[str]:
    """The ``tools/train.py`` command line of one job (its seed, work dir and schedule)."""
    spec = TASKS[job.task]
    iters = iterations(args, job.task)
    warmup = min(spec.warmup, iters // 2)
    opts = [f'train_dataloader.batch_size={spec.batch}', f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}', f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}', f'param_scheduler.1.end={iters}',
            f'default_hooks.checkpoint.interval={iters}', f'randomness.seed={job.seed}'
            ] + job.options
    return [sys.executable, str(ROOT / 'tools' / 'train.py'), str(ROOT / job.config),
            '--synthetic', str(data_root / spec.data), '--work-dir', str(work_root / job.tag),
            '--cfg-options', *opts]


def table_command(jobs: Sequence[Job], work_root: Path,
                  metrics: Optional[Sequence[str]] = None) -> List[str]:
    """The ``results_table.py`` command line over exactly these jobs' work dirs: a work dir
    left by an earlier demo (other seeds, other iterations) must not join the rows. The
    complexity comes from each run's ``complexity.json``: no model is built."""
    return [sys.executable, str(ROOT / 'tools/analysis_tools/results_table.py'),
            *(str(work_root / j.tag) for j in jobs), '--format', 'markdown', '--eval', 'final',
            *(['--metrics', *metrics] if metrics else [])]


def complexity_command(dumps: Sequence[Path]) -> List[str]:
    """The ``get_flops.py`` command line that writes ``complexity.json`` next to each run's
    dumped config (one process for all of them)."""
    return [sys.executable, str(ROOT / 'tools/analysis_tools/get_flops.py'),
            *map(str, dumps), '--shape', *map(str, FLOPS_SHAPE),
            '--json', '{config_dir}/complexity.json']


# ----------------------------------------------------------------------------- console

# mmengine's log prefix: "11/26 15:43:01 - mmengine - INFO - "
_LOG_PREFIX = re.compile(r'^\d\d/\d\d \d\d:\d\d:\d\d - mmengine - \w+ - ')
_TRAIN = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\].*?eta: (\S+).*?time: ([\d.]+)'
                    r'.*?\bloss: ([\d.]+)')
_METRIC = re.compile(r'([\w/]+): (-?[\d.]+)')
# What each task's evaluation line tells (the mmengine keys, without their prefix).
_SHOWN = {'det': ('bbox_mAP',), 'rtm': ('bbox_mAP',), 'ins': ('bbox_mAP', 'segm_mAP'),
          'pan': ('PQ', 'SQ', 'RQ'), 'seg': ('mIoU', 'bIoU')}
_NAMES = {'bbox_mAP': 'box AP', 'segm_mAP': 'mask AP'}


def progress_line(line: str, task: str = 'det') -> Optional[str]:
    """What the console shows of one line a training prints, or None (most lines: the
    config dump, upstream warnings, tracebacks go to the job's log only).

    Shown: the training progress (``iter 50/300  loss 1.178  0.52 s/it  eta 0:03:03``) and
    the evaluation's headline metrics (``box AP 23.1``, COCO values x100).
    """
    line = _LOG_PREFIX.sub('', line.strip())
    m = _TRAIN.search(line)
    if m:
        it, total, eta, sec, loss = m.groups()
        return f'iter {it}/{total}  loss {float(loss):.3f}  {float(sec):.2f} s/it  eta {eta}'
    if not line.startswith('Iter(val)') or 'data_time' not in line:
        return None
    values = {k.split('/')[-1]: float(v) for k, v in _METRIC.findall(line)}
    shown = [(k, values[k]) for k in _SHOWN.get(task, ()) if k in values]
    if not shown:
        return None
    # COCO metrics are logged as 0-1, PQ and mIoU already x100
    return 'evaluation: ' + ', '.join(
        f'{_NAMES.get(k, k)} {100 * v if k.endswith("_mAP") else v:.1f}' for k, v in shown)


def last_error(log: Path) -> str:
    """The last error line of a log (the exception of a traceback, a tool's one-line
    error), for the console of a failed job."""
    try:
        lines = log.read_text(errors='replace').splitlines()
    except OSError:
        return ''
    for line in reversed(lines):
        text = line.strip()
        if re.match(r'^([\w.]+(Error|Exception)|[\w.]+\.py: error:|\S+Error:)', text):
            return text[:200]
    return lines[-1].strip()[:200] if lines else ''


def run_logged(cmd: List[str], log: Path, env: Optional[Dict[str, str]] = None,
               on_line=None) -> int:
    """Runs ``cmd`` with its stdout and stderr into ``log``; ``on_line(line)`` sees every
    line. Returns the exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, 'w') as out:
        out.write('$ ' + ' '.join(cmd) + '\n')
        out.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors='replace')
        for line in proc.stdout:
            out.write(line)
            if on_line is not None:
                on_line(line)
        return proc.wait()


def run_job(job: Job, args: argparse.Namespace, data_root: Path, work_root: Path) -> int:
    """Trains one config with tools/train.py; its output goes to ``logs/<tag>.log``, the
    console gets its progress lines (:func:`progress_line`)."""
    cmd = train_command(job, args, data_root, work_root)
    # One thread per job: two single-threaded jobs use the 2 cores better than one job with
    # two threads (the ops of toy models are too small to split).
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    tag = f'[{job.task}/{job.name}' + (f' seed {job.seed}]' if args.seeds > 1 else ']')
    say(f'{tag} start' + (f' ({" ".join(job.options)})' if job.options else ''))
    t0 = time.time()
    log = log_dir(work_root) / f'{job.tag}.log'

    def show(line: str) -> None:
        text = progress_line(line, job.task)
        if text:
            say(f'{tag} {text}')

    code = run_logged(cmd, log, env, show)
    if code == 0:
        say(f'{tag} done in {time.time() - t0:.0f} s')
    else:
        say(f'{tag} FAILED (exit {code}) after {time.time() - t0:.0f} s: {last_error(log)} '
            f'-- see {rel(log)}')
    return code


def log_dir(work_root: Path) -> Path:
    return work_root / 'logs'


def rel(path: Path) -> str:
    """``path`` relative to the current directory when under it (shorter console lines)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- arguments

def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {n}')
    return n


class _IterAction(argparse.Action):
    """``--iters TASK=N ...`` into a dict; ``--det-iters N`` / ``--seg-iters N`` into it."""

    def __call__(self, parser, namespace, values, option_string=None):
        iters = dict(getattr(namespace, 'iters', None) or {})
        if option_string in ('--det-iters', '--seg-iters'):
            values = [f'{option_string[2:5]}={values}']
        for item in values:
            task, sep, n = item.partition('=')
            if not sep or task not in TASKS:
                raise argparse.ArgumentError(
                    self, f'expected TASK=N with TASK in {list(TASKS)}, got {item!r}')
            try:
                iters[task] = _positive(n)
            except (ValueError, argparse.ArgumentTypeError):
                raise argparse.ArgumentError(
                    self, f'{item!r}: N must be a positive integer') from None
        setattr(namespace, 'iters', iters)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = cli.ArgumentParser(prog='demo.py', description=__doc__.split('\n')[0])
    p.add_argument('--tasks', nargs='+', choices=list(TASKS), metavar='TASK',
                   help=f'tasks to train and tabulate, of {", ".join(TASKS)} (default: '
                   f'{" ".join(DEFAULT_TASKS)})')
    p.add_argument('--only', choices=list(TASKS), help='one task only (as --tasks TASK)')
    p.add_argument('--full', action='store_true', help='also run the ablation rows B1-B5')
    p.add_argument('--seeds', type=_positive, default=1, metavar='N',
                   help='train every job with seeds 0..N-1 and show mean ± std (default 1; '
                   'N times the time)')
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--data-root', default='data/synthetic')
    p.add_argument('--iters', nargs='+', action=_IterAction, metavar='TASK=N',
                   help='training iterations per task (default: ' +
                   ', '.join(f'{t} {s.iters}' for t, s in TASKS.items()) + ')')
    p.add_argument('--det-iters', action=_IterAction, metavar='N', help='as --iters det=N')
    p.add_argument('--seg-iters', action=_IterAction, metavar='N', help='as --iters seg=N')
    p.add_argument('--jobs', type=_positive, default=2, help='trainings at a time (2)')
    p.add_argument('--no-pictures', action='store_true',
                   help='skip the side-by-side prediction pictures')
    args = p.parse_args(argv)
    if args.only and args.tasks:
        p.error('--only and --tasks: give one of them')
    args.tasks = [args.only] if args.only else list(dict.fromkeys(args.tasks or DEFAULT_TASKS))
    args.iters = args.iters or {}
    return args


# ----------------------------------------------------------------------------- steps

def make_data(tasks: Sequence[str], data_root: Path, log: TextIO) -> None:
    """Generates (or reuses) the synthetic data the tasks train on, seed :data:`SEED`."""
    import importlib
    kinds = list(dict.fromkeys(TASKS[t].data for t in tasks))
    parts = []
    with warnings.catch_warnings():
        warnings.simplefilter('default')
        _log_warnings(log)
        for kind in kinds:
            module, func = GENERATORS[kind]
            info = getattr(importlib.import_module(module), func)(
                str(data_root / kind), num_train=NUM_TRAIN, num_val=NUM_VAL, seed=SEED)
            splits = info.get('splits', {})
            n = [splits.get(s, {}).get('num_images', NUM_TRAIN if s == 'train' else NUM_VAL)
                 for s in ('train', 'val')]
            parts.append(f'{kind} {n[0]}/{n[1]} ({len(info.get("classes", ()))} classes)')
    say(f'Data (seed {SEED}, train/val images) under {rel(data_root)}: ' + ', '.join(parts))


def _log_warnings(log: TextIO) -> None:
    """Sends this process' warnings to ``log`` instead of the console."""
    def show(message, category, filename, lineno, file=None, line=None):
        log.write(warnings.formatwarning(message, category, filename, lineno, line))
        log.flush()
    warnings.showwarning = show


def write_complexity(jobs: Sequence[Job], work_root: Path) -> None:
    """``get_flops.py --json``: ``complexity.json`` in every run dir, from its dumped
    config (the model as trained: the synthetic data's classes included)."""
    dumps = []
    for job in jobs:
        found = sorted((work_root / job.tag).glob('*.py'))
        if found:
            dumps.append(found[0])
    if not dumps:
        return
    log = log_dir(work_root) / 'complexity.log'
    code = run_logged(complexity_command(dumps), log)
    shape = 'x'.join(map(str, FLOPS_SHAPE))
    if code == 0:
        say(f'Params and GFLOPs ({shape}, get_flops.py): <run>/complexity.json')
    else:
        say(f'Params and GFLOPs not counted: {last_error(log)} -- see {rel(log)}')


def tables(jobs: Sequence[Job], args: argparse.Namespace, work_root: Path) -> None:
    """One table per task (results_table.py); its warnings go to ``logs/tables.log``."""
    log = log_dir(work_root) / 'tables.log'
    with open(log, 'w') as err:
        for task in args.tasks:
            mine = [j for j in jobs if j.task == task]
            if not mine:
                continue
            cmd = table_command(mine, work_root, TASKS[task].metrics)
            err.write('$ ' + ' '.join(cmd) + '\n')
            err.flush()
            proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                                  text=True)
            say(f'\n### {task}: {TASKS[task].title}\n')
            if proc.returncode == 0:
                say(strip_title(proc.stdout))
            else:
                say(f'(no table: results_table.py failed, see {rel(log)})')


def strip_title(table: str) -> str:
    """A results_table.py table without its bold title line (the demo prints its own)."""
    lines = table.strip('\n').splitlines()
    if lines and lines[0].startswith('**') and lines[0].endswith('**'):
        lines = lines[1:]
        while lines and not lines[0].strip():
            lines = lines[1:]
    return '\n'.join(lines)


def pictures(jobs: Sequence[Job], work_root: Path, data_root: Path) -> None:
    """Side-by-side predictions of the baseline and FADE (first seed) for each task; the
    paths of the hook's pictures of upsampled features and gates."""
    compare = ROOT / 'tools/analysis_tools/compare_predictions.py'
    log = log_dir(work_root) / 'pictures.log'
    log.write_text('')
    done = set()
    for job in jobs:
        spec = TASKS[job.task]
        if job.task in done or job.seed != SEED:
            continue
        done.add(job.task)
        images = sorted((data_root / spec.data / 'val').glob('*')) or sorted(
            (data_root / spec.data / 'images' / 'validation').glob('*'))
        pairs = []
        for up in (spec.picture, 'fade'):
            run = work_root / Job(job.task, up, '', []).tag
            ckpts = sorted(run.glob('iter_*.pth'))
            dumps = sorted(run.glob('*.py'))
            if ckpts and dumps and images:
                pairs.append(f'{dumps[0]}:{ckpts[-1]}')
        if len(pairs) == 2:
            out = work_root / f'compare_{job.task}.png'
            code = run_logged_append([sys.executable, str(compare), *pairs, '--img',
                                      str(images[0]), '--out', str(out)], log)
            if code == 0:
                say(f'picture: {rel(out)} ({spec.picture} | FADE predictions)')
            else:
                say(f'picture of {job.task} failed: {last_error(log)} -- see {rel(log)}')
    vis = sorted(work_root.glob('*/upsampler_vis/**/*.png'))
    if vis:
        say(f'pictures of upsampled features and gates: {len(vis)} PNGs under '
            f'{rel(work_root)}/<run>/upsampler_vis/, e.g. {rel(vis[-1])}')


def run_logged_append(cmd: List[str], log: Path) -> int:
    with open(log, 'a') as out:
        out.write('$ ' + ' '.join(cmd) + '\n')
        out.flush()
        return subprocess.call(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def _load_average() -> str:
    try:
        return ' / '.join(f'{x:.2f}' for x in os.getloadavg())
    except OSError:
        return '?'


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    work_root = (ROOT / args.work_dir).resolve()
    data_root = (ROOT / args.data_root).resolve()
    log_dir(work_root).mkdir(parents=True, exist_ok=True)
    jobs = build_jobs(args.tasks, args.full, args.seeds)
    say(f'fade_mm demo: {len(jobs)} trainings ({", ".join(args.tasks)}), {args.jobs} at a '
        f'time; load average {_load_average()} (1/5/15 min) on {os.cpu_count()} CPUs')
    say(f'Logs of every step: {rel(log_dir(work_root))}/ (runs: {rel(work_root)}/<job>/)')
    with open(log_dir(work_root) / 'demo.log', 'w') as log:
        make_data(args.tasks, data_root, log)
    t_train = time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        codes = list(pool.map(lambda j: run_job(j, args, data_root, work_root), jobs))
    say(f'Trainings: {time.time() - t_train:.0f} s')
    done = [j for j, c in zip(jobs, codes) if c == 0]
    schedule = ', '.join(f'{t} {iterations(args, t)} iterations (batch {TASKS[t].batch})'
                         for t in args.tasks)
    train_seeds = (f'{SEED}' if args.seeds == 1 else
                   f'{SEED}..{SEED + args.seeds - 1} (mean ± std over them)')
    say(f'\nSeeds: data {SEED}, training {train_seeds}. {schedule}. CPU, from scratch.')
    write_complexity(done, work_root)
    tables(done, args, work_root)
    if not args.no_pictures:
        say('')
        pictures(done, work_root, data_root)
    say(f'\nDemo wall time: {time.time() - t_start:.0f} s (load average now '
        f'{_load_average()})')
    if any(codes):
        say(f'{sum(1 for c in codes if c)} training(s) failed; see the lines above and '
            f'{rel(log_dir(work_root))}/')
        return 1
    return 0


if __name__ == '__main__':
    cli.run_cli(main, prog='demo.py')
