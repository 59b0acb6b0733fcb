#!/usr/bin/env python
"""fade_mm demo: train and compare upsamplers on generated data, on CPU, in minutes.

Generates the synthetic detection (COCO format) and segmentation (ADE20K layout) data, trains
toy models from scratch through the stock mmengine Runner (``tools/train.py``) -- a Faster
R-CNN whose FPN upsamples with nearest / CARAFE / FADE / FADE-Lite, and a SegFormer-head
segmenter with bilinear / CARAFE / FADE / FADE-Lite -- evaluates AP, mIoU and bIoU, prints the
paper-style table, and writes pictures (upsampled features and FADE's gate maps during
training; predictions side by side). Two jobs run at a time, one thread each.

``--seeds N`` trains every job with the training seeds 0..N-1 (the data stays the one of seed
0), each in its own ``<task>_<upsampler>_seed<S>`` work dir, and the table shows each metric
as mean ± std over the seeds with n, marking deltas within the run-to-run spread; it takes N
times as long. The default, one seed, fits the demo's 10 minutes on 2 cores, but a single
run cannot tell a real difference from seed noise.

    python tools/demo.py                 # what `make demo` runs after the set-up
    python tools/demo.py --full          # also FADE's ablation rows B1-B5 on segmentation
    python tools/demo.py --seeds 3       # every job with seeds 0, 1, 2: mean ± std
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # a checkout without `pip install -e .` too
from fade_mm import cli  # noqa: E402
SEED = 0  # of the generated data, and the first training seed
DET_UPSAMPLERS = ('nearest', 'carafe', 'fade', 'fade-lite')
SEG_UPSAMPLERS = ('bilinear', 'carafe', 'fade', 'fade-lite')
DET_CFG = 'configs/demo/faster-rcnn_r18-tiny_fpn-{}_synthetic.py'
SEG_CFG = 'configs/demo/segformer-head_r18-tiny_{}_synthetic.py'
# FADE's ablation (B6 = FADE itself): switches of the FADE module, set from the command line.
ABLATION = {
    'B1-encoder-only': "kernel_source='encoder' fusion='none'",
    'B2-decoder-only': "kernel_source='decoder' fusion='none'",
    'B3-naive': "kernel_generator='naive' fusion='none'",
    'B4-semi-shift': "fusion='none'",
    'B5-skip': "fusion='skip'",
}
_print_lock = threading.Lock()


class Job(NamedTuple):
    task: str  # 'det' or 'seg'
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


def build_jobs(only: Optional[str] = None, full: bool = False, seeds: int = 1) -> List[Job]:
    """The demo's trainings: one job per upsampler (and ablation row) and training seed.

    Args:
        only: ``'det'`` or ``'seg'`` for one task, None for both.
        full: add FADE's ablation rows B1-B5 (segmentation).
        seeds: training seeds per job, ``SEED .. SEED + seeds - 1``.

    Returns:
        The jobs in the order they should start: seed by seed, so that an interrupted demo
        still has complete comparisons for its first seeds; detection (the longest) first
        within a seed, which keeps both workers busy to the end.
    """
    if seeds < 1:
        raise ValueError(f'demo: --seeds must be at least 1, got {seeds}')
    base: List[Job] = []
    if only in (None, 'det'):
        base += [Job('det', up, DET_CFG.format(up), []) for up in DET_UPSAMPLERS]
    if only in (None, 'seg'):
        base += [Job('seg', up, SEG_CFG.format(up), []) for up in SEG_UPSAMPLERS]
        if full:
            base += [Job('seg', f'fade-{row}', SEG_CFG.format('fade'),
                         [f'model.decode_head.upsample_cfg.{kv}' for kv in opts.split()])
                     for row, opts in ABLATION.items()]
    jobs = [job._replace(seed=SEED + i) for i in range(seeds) for job in base]
    jobs.sort(key=lambda j: (j.seed, j.task != 'det'))  # stable: upsampler order kept
    return jobs


def train_command(job: Job, args: argparse.Namespace, data_root: Path,
                  work_root: Path) -> List[str]:
    """The ``tools/train.py`` command line of one job (its seed, work dir and schedule)."""
    iters = args.det_iters if job.task == 'det' else args.seg_iters
    # the overlay sets test-sized batches; the toy models train with these
    batch = 4 if job.task == 'det' else 8
    warmup = min(50 if job.task == 'det' else 30, iters // 2)
    opts = [f'train_dataloader.batch_size={batch}', f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}', f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}', f'param_scheduler.1.end={iters}',
            f'default_hooks.checkpoint.interval={iters}', f'randomness.seed={job.seed}'
            ] + job.options
    return [sys.executable, str(ROOT / 'tools' / 'train.py'), str(ROOT / job.config),
            '--synthetic', str(data_root / job.task), '--work-dir', str(work_root / job.tag),
            '--cfg-options', *opts]


def table_command(jobs: Sequence[Job], work_root: Path) -> List[str]:
    """The ``results_table.py`` command line over exactly these jobs' work dirs: a work dir
    left by an earlier demo (other seeds, other iterations) must not join the rows."""
    return [sys.executable, str(ROOT / 'tools/analysis_tools/results_table.py'),
            *(str(work_root / j.tag) for j in jobs), '--format', 'markdown', '--eval', 'final',
            '--shape', '256', '256']


def run_job(job: Job, args, data_root: Path, work_root: Path) -> int:
    """Train one config with tools/train.py; stream its progress lines with a prefix."""
    cmd = train_command(job, args, data_root, work_root)
    # One thread per job: two single-threaded jobs use the 2 cores better than one job with
    # two threads (the ops of toy models are too small to split).
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    tag = f'[{job.task}/{job.name}' + (f' seed {job.seed}]' if args.seeds > 1 else ']')
    say(f'{tag} start: {job.config} {" ".join(job.options)}')
    t0 = time.time()
    log = open(work_root / f'{job.tag}.log', 'w')
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    show = re.compile(r'Iter\(train\)|bbox_mAP_copypaste|Iter\(val\).*(mIoU|bbox)|Error')
    for line in proc.stdout:
        log.write(line)
        if show.search(line):
            line = re.sub(r'^\S+ \S+ - mmengine - \w+ - ', '', line.strip())
            say(f'{tag} {line[:150]}')
    code = proc.wait()
    log.close()
    say(f'{tag} {"done" if code == 0 else f"FAILED (exit {code}), see {log.name}"} '
        f'in {time.time() - t0:.0f} s')
    return code


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {n}')
    return n


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = cli.ArgumentParser(prog='demo.py', description=__doc__.split('\n')[0])
    p.add_argument('--full', action='store_true', help='also run the ablation rows B1-B5')
    p.add_argument('--seeds', type=_positive, default=1, metavar='N',
                   help='train every job with seeds 0..N-1 and show mean ± std (default 1; '
                   'N times the time)')
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--data-root', default='data/synthetic')
    p.add_argument('--det-iters', type=int, default=400)
    p.add_argument('--seg-iters', type=int, default=300)
    p.add_argument('--jobs', type=int, default=2, help='trainings at a time (2)')
    p.add_argument('--only', choices=['det', 'seg'], help='run one task only')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    work_root = (ROOT / args.work_dir).resolve()
    data_root = (ROOT / args.data_root).resolve()
    work_root.mkdir(parents=True, exist_ok=True)

    from fade_mm.datasets.synthetic_det import make_synthetic_coco
    from fade_mm.datasets.synthetic_seg import make_synthetic_ade
    say(f'Data (seed {SEED}) under {data_root}')
    det = make_synthetic_coco(str(data_root / 'det'), num_train=200, num_val=50, seed=SEED)
    seg = make_synthetic_ade(str(data_root / 'seg'), num_train=200, num_val=50, seed=SEED)
    say(f"  det: {det['splits']['train']['num_images']} train / "
        f"{det['splits']['val']['num_images']} val images, classes {det['classes']}")
    say(f"  seg: 200 train / 50 val images, {len(seg['classes'])} classes")

    jobs = build_jobs(args.only, args.full, args.seeds)
    with ThreadPoolExecutor(args.jobs) as pool:
        codes = list(pool.map(lambda j: run_job(j, args, data_root, work_root), jobs))
    if any(codes):
        say('Some trainings failed; see the logs above.')
        return 1

    train_seeds = (f'{SEED}' if args.seeds == 1 else
                   f'{SEED}..{SEED + args.seeds - 1} (mean ± std over them)')
    say(f'\nSeeds: data {SEED}, training {train_seeds}. Iterations: detection '
        f'{args.det_iters} (batch 4), segmentation {args.seg_iters} (batch 8). CPU, from '
        'scratch.')
    subprocess.call(table_command(jobs, work_root), cwd=ROOT)
    pictures(work_root, data_root)
    say(f'\nDemo wall time: {time.time() - t_start:.0f} s')
    return 0


def pictures(work_root: Path, data_root: Path) -> None:
    """Side-by-side predictions of the baseline and FADE; list the hook's PNGs."""
    compare = ROOT / 'tools/analysis_tools/compare_predictions.py'
    for task, base, img in (('det', 'nearest', sorted((data_root / 'det/val').glob('*'))[0]),
                            ('seg', 'bilinear',
                             sorted((data_root / 'seg/images/validation').glob('*'))[0])):
        pairs = []
        for up in (base, 'fade'):
            run = work_root / Job(task, up, '', []).tag  # the first seed's run
            ckpts = sorted(run.glob('iter_*.pth'))
            cfg = DET_CFG.format(up) if task == 'det' else SEG_CFG.format(up)
            if ckpts:
                pairs.append(f'{ROOT / cfg}:{ckpts[-1]}')
        if len(pairs) == 2:
            out = work_root / f'compare_{task}.png'
            code = subprocess.call([sys.executable, str(compare), *pairs, '--img', str(img),
                                    '--out', str(out)], cwd=ROOT)
            if code == 0:
                say(f'picture: {out}')
    vis = sorted(work_root.glob('*/upsampler_vis/**/*.png'))
    if vis:
        say(f'pictures of upsampled features and gates: {len(vis)} PNGs, e.g. {vis[-1]}')


if __name__ == '__main__':
    cli.run_cli(main, prog='demo.py')
