#!/usr/bin/env python
"""Run several trained detectors or segmentors on one image and show their predictions
side by side, titled by upsampler as the papers' tables name it
(:func:`fade_mm.tools.method_label`: ``FADE``, ``FADE w/o gate``, ``Bilinear``, ...)::

    python tools/analysis_tools/compare_predictions.py \\
        work_dirs/fade/segformer_mit-b0_fade_....py:work_dirs/fade/iter_160000.pth \\
        work_dirs/bilinear/segformer_mit-b0_bilinear_....py:work_dirs/bilinear/iter_160000.pth \\
        --img demo.jpg --out compare.png

Each model is detection or segmentation by its config's ``default_scope`` (``mmdet`` /
``mmseg``); the two may be mixed. The frameworks do the work: ``mmdet.apis.init_detector``
and ``inference_detector``, ``mmseg.apis.init_model`` and ``inference_model``, drawn by
mmdet's ``DetLocalVisualizer`` (boxes, masks with class and score above ``--score-thr``) and
mmseg's ``SegLocalVisualizer`` (class colours at ``--opacity``, with class names). Class
names come from the checkpoint's ``dataset_meta``, as those functions read them. Use the
config saved in the work dir next to the checkpoint: it carries the training-time changes
(e.g. the number of classes of the synthetic-data overlay).

Checkpoints load through mmengine's ``load_checkpoint``, which fade_mm replaces for local
files by ``torch.load(weights_only=True)`` with an allow-list of what mmengine runner
checkpoints hold (:mod:`fade_mm.compat`); ``--trust-checkpoint`` unpickles trusted files that
need more in full. A checkpoint that does not fit its config's model is an error (the
frameworks' functions load non-strictly and only print the mismatch).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import os.path as osp
import sys
from typing import Any, List, Optional, Sequence

import cv2
import numpy as np

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # usable from a checkout without `pip install -e .`

from fade_mm import cli  # noqa: E402
from fade_mm.tools import method_label, register_scope, scope_of  # noqa: E402

# what mmengine's load_checkpoint prints (logger=None, as the init functions call it)
_MISMATCH = 'The model and loaded state dict do not match exactly'
_LOADING = 'Loads checkpoint by '


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog='compare_predictions.py',
        description='Predictions of several models on one image, side by side.')
    parser.add_argument('models', nargs='+', metavar='CONFIG:CHECKPOINT',
                        help='config and checkpoint of a model, joined by the last ":"')
    parser.add_argument('--img', required=True, help='image file')
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: smallest score drawn (default 0.3)')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='segmentation: opacity of the class colours (default 0.5)')
    parser.add_argument('--no-input', action='store_true',
                        help='do not show the input image as the first panel')
    parser.add_argument('--device', default='cpu', help='torch device (default cpu)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='unpickle the checkpoints in full (weights_only=False) when they '
                        'need more than the runner-checkpoint allow-list: trusted files only')
    args = parser.parse_args(argv)
    pairs = []
    for spec in args.models:
        cfg, sep, ckpt = spec.rpartition(':')
        if not sep or not cfg or not ckpt:
            parser.error(f'expected CONFIG:CHECKPOINT, got {spec!r}')
        pairs.append((cfg, ckpt))
    args.models = pairs
    if not 0 <= args.opacity <= 1:
        parser.error(f'--opacity must be in [0, 1], got {args.opacity}')
    if not osp.isfile(args.img):
        parser.error(f'argument --img: no such file: {args.img}')
    try:
        for cfg, ckpt in pairs:
            cli.check_config_file(cfg, 'CONFIG')
            cli.check_checkpoint(ckpt, 'CHECKPOINT')
    except cli.UsageError as err:
        parser.error(str(err))
    return args


def read_rgb(path: str) -> np.ndarray:
    """The image as RGB ``uint8``; a one-line error when OpenCV cannot read it."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise cli.CLIError(f'--img {path}: not an image OpenCV can read')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class Predictor:
    """One model of the comparison, loaded by ``init_detector`` / ``init_model``.

    Args:
        config: Config file (its ``custom_imports`` are imported).
        checkpoint: Checkpoint file.
        device: Torch device of the model.
        trust_checkpoint: Unpickle a local checkpoint in full when it needs more than the
            runner-checkpoint allow-list.

    Raises:
        fade_mm.cli.CLIError: When the checkpoint does not fit the config's model.
    """

    def __init__(self, config: str, checkpoint: str, device: str = 'cpu',
                 trust_checkpoint: bool = False) -> None:
        from mmengine.config import Config
        from mmengine.registry import DefaultScope

        from fade_mm.compat import install_safe_checkpoint_loading, local_checkpoints_trusted

        self.cfg = Config.fromfile(config)
        self.scope = scope_of(self.cfg, config)
        register_scope(self.scope)
        self.title = method_label(self.cfg)
        self.name = osp.splitext(osp.basename(config))[0]
        install_safe_checkpoint_loading()
        printed = io.StringIO()
        with DefaultScope.overwrite_default_scope(self.scope), \
                (local_checkpoints_trusted() if trust_checkpoint else contextlib.nullcontext()):
            with contextlib.redirect_stdout(printed):
                model = self._init(checkpoint, device)
            self._check_fit(printed.getvalue(), config, checkpoint)
            if model is None:
                model = self._init_bare(checkpoint, device)
        # SyncBN has no single-process path on every device; BN computes the same in eval
        from mmengine.model import revert_sync_batchnorm
        self.model = revert_sync_batchnorm(model)

    def _init(self, checkpoint: str, device: str) -> Any:
        if self.scope == 'mmdet':
            from mmdet.apis import init_detector
            return init_detector(self.cfg, checkpoint, device=device)
        from mmseg.apis import init_model
        try:
            return init_model(self.cfg, checkpoint, device=device)
        except KeyError as err:
            if err.args != ('meta',):
                raise
            return None  # mmseg 1.2.2 reads checkpoint['meta'] unguarded: a bare state dict

    def _init_bare(self, checkpoint: str, device: str) -> Any:
        """A segmentor from a checkpoint without ``meta``: classes from the config's test
        dataset (as ``init_detector`` takes the palette from it)."""
        from mmengine.runner import load_checkpoint
        from mmseg.apis import init_model
        from mmseg.registry import DATASETS

        model = init_model(self.cfg, None, device=device)
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True, logger='silent')
        dataset = DATASETS.build(dict(self.cfg.test_dataloader.dataset, lazy_init=True))
        model.dataset_meta = dict(dataset.metainfo)
        return model

    @staticmethod
    def _check_fit(printed: str, config: str, checkpoint: str) -> None:
        """Refuses a checkpoint of another model; echoes what loading printed besides the
        loader's own line."""
        if _MISMATCH in printed:
            detail = ' '.join(printed[printed.index(_MISMATCH) + len(_MISMATCH):].split())
            raise cli.CLIError(f'CHECKPOINT {checkpoint} does not fit the model of {config}: '
                               f'{detail[:300]}')
        rest = [line for line in printed.splitlines() if not line.startswith(_LOADING)]
        if any(rest):
            print('\n'.join(rest))

    def __call__(self, img_path: str) -> Any:
        """The model's data sample for ``img_path`` (predictions at the image's size)."""
        from mmengine.registry import DefaultScope

        with DefaultScope.overwrite_default_scope(self.scope):
            if self.scope == 'mmdet':
                from mmdet.apis import inference_detector
                return inference_detector(self.model, img_path)
            from mmseg.apis import inference_model
            return inference_model(self.model, img_path)

    def draw(self, img_rgb: np.ndarray, sample: Any, score_thr: float = 0.3,
             opacity: float = 0.5) -> np.ndarray:
        """The prediction drawn over ``img_rgb`` by the framework's visualizer (RGB)."""
        meta = self.model.dataset_meta
        if self.scope == 'mmdet':
            from mmdet.visualization import DetLocalVisualizer
            vis = DetLocalVisualizer(name='compare_predictions')
            vis.dataset_meta = meta
            options = dict(pred_score_thr=score_thr)
        else:
            from mmseg.visualization import SegLocalVisualizer
            vis = SegLocalVisualizer(name='compare_predictions', alpha=opacity)
            vis.dataset_meta = dict(classes=meta['classes'], palette=meta['palette'])
            options = {}
        vis.add_datasample(self.name, img_rgb, sample, draw_gt=False, show=False, **options)
        return vis.get_image()


def _wrap(name: str, width: int) -> str:
    """Breaks a config stem after underscores into lines of at most ~``width`` characters."""
    lines = ['']
    for part in name.split('_'):
        piece = part if not lines[-1] else '_' + part
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines[-1] += '_'
            lines.append(part)
        else:
            lines[-1] += piece
    return '\n'.join(lines)


def render(img_rgb: np.ndarray, predictors: List[Predictor], panels: List[np.ndarray],
           out: str, show_input: bool = True) -> None:
    """Writes the panels side by side to ``out`` (PNG), each titled by its upsampler and
    config name."""
    # the Figure API, not pyplot: no GUI backend is touched, so it runs headless and leaves
    # the caller's matplotlib state alone
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = img_rgb.shape[:2]
    n = len(panels) + int(show_input)
    panel_w = max(3.0, w / 100)
    fig = Figure(figsize=(n * panel_w, panel_w * h / w + 0.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    if show_input:
        axes[0].imshow(img_rgb)
        axes[0].set_title(f'input {w}x{h}', fontsize=9)
    for ax, pred, panel in zip(axes[int(show_input):], predictors, panels):
        ax.imshow(panel)
        # config stems are long (..._1xb16-160k_ade20k-512x512): wrap, or neighbours overlap
        name = _wrap(pred.name, int(panel_w * 100 / 7))
        ax.set_title(pred.title, fontsize=10, fontweight='bold', pad=18 + 8 * name.count('\n'))
        ax.text(0.5, 1.01, name, transform=ax.transAxes, ha='center', va='bottom', fontsize=7)
    for ax in axes:
        ax.axis('off')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, bbox_inches='tight', pad_inches=0.05, facecolor='white')


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    img = read_rgb(args.img)
    predictors, panels = [], []
    for config, checkpoint in args.models:
        pred = Predictor(config, checkpoint, args.device, args.trust_checkpoint)
        predictors.append(pred)
        panels.append(pred.draw(img, pred(args.img), args.score_thr, args.opacity))
    render(img, predictors, panels, args.out, not args.no_input)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    cli.run_cli(main, prog='compare_predictions.py')
