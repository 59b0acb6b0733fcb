#!/usr/bin/env python
"""fade_mm demo: train and compare upsamplers on generated data, on CPU, in minutes.

Generates the synthetic detection (COCO format) and segmentation (ADE20K layout) data, trains
toy models from scratch through the stock mmengine Runner (``tools/train.py``) -- a Faster
R-CNN whose FPN upsamples with nearest / CARAFE / FADE / FADE-Lite, and a SegFormer-head
segmenter with bilinear / CARAFE / FADE / FADE-Lite -- evaluates AP, mIoU and bIoU, prints the
paper-style table, and writes pictures (upsampled features and FADE's gate maps during
training; predictions side by side). Two jobs run at a time, one thread each.

    python tools/demo.py                 # what `make demo` runs after the set-up
    python tools/demo.py --full          # also FADE's ablation rows B1-B5 on segmentation
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
from typing import List, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
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


def say(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


def run_job(job: Job, args, data_root: Path, work_root: Path) -> int:
    """Train one config with tools/train.py; stream its progress lines with a prefix."""
    work_dir = work_root / f'{job.task}_{job.name}'
    iters = args.det_iters if job.task == 'det' else args.seg_iters
    # the overlay sets test-sized batches; the toy models train with these
    batch = 4 if job.task == 'det' else 8
    warmup = min(50 if job.task == 'det' else 30, iters // 2)
    opts = [f'train_dataloader.batch_size={batch}', f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}', f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}', f'param_scheduler.1.end={iters}',
            f'default_hooks.checkpoint.interval={iters}', f'randomness.seed={SEED}'
            ] + job.options
    cmd = [sys.executable, str(ROOT / 'tools' / 'train.py'), str(ROOT / job.config),
           '--synthetic', str(data_root / job.task), '--work-dir', str(work_dir),
           '--cfg-options', *opts]
    # One thread per job: two single-threaded jobs use the 2 cores better than one job with
    # two threads (the ops of toy models are too small to split).
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    tag = f'[{job.task}/{job.name}]'
    say(f'{tag} start: {job.config} {" ".join(job.options)}')
    t0 = time.time()
    log = open(work_root / f'{job.task}_{job.name}.log', 'w')
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--full', action='store_true', help='also run the ablation rows B1-B5')
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--data-root', default='data/synthetic')
    p.add_argument('--det-iters', type=int, default=400)
    p.add_argument('--seg-iters', type=int, default=300)
    p.add_argument('--jobs', type=int, default=2, help='trainings at a time (2)')
    p.add_argument('--only', choices=['det', 'seg'], help='run one task only')
    args = p.parse_args()
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

    jobs: List[Job] = []
    if args.only in (None, 'det'):
        jobs += [Job('det', up, DET_CFG.format(up), [])
                 for up in ('nearest', 'carafe', 'fade', 'fade-lite')]
    if args.only in (None, 'seg'):
        jobs += [Job('seg', up, SEG_CFG.format(up), [])
                 for up in ('bilinear', 'carafe', 'fade', 'fade-lite')]
        if args.full:
            jobs += [Job('seg', f'fade-{row}', SEG_CFG.format('fade'),
                         [f'model.decode_head.upsample_cfg.{kv}' for kv in opts.split()])
                     for row, opts in ABLATION.items()]
    # longest first keeps both workers busy to the end
    jobs.sort(key=lambda j: j.task != 'det')
    with ThreadPoolExecutor(args.jobs) as pool:
        codes = list(pool.map(lambda j: run_job(j, args, data_root, work_root), jobs))
    if any(codes):
        say('Some trainings failed; see the logs above.')
        return 1

    say(f'\nSeeds: data {SEED}, training {SEED}. Iterations: detection {args.det_iters} '
        f'(batch 4), segmentation {args.seg_iters} (batch 8). CPU, from scratch.')
    table = [sys.executable, str(ROOT / 'tools/analysis_tools/results_table.py'),
             str(work_root), '--format', 'markdown', '--eval', 'final', '--shape', '256', '256']
    subprocess.call(table, cwd=ROOT)
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
            run = work_root / f'{task}_{up}'
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
    sys.exit(main())
