#!/usr/bin/env python
"""Run several trained detectors or segmentors on one image and show their predictions
side by side, titled by upsampler (the config's ``upsample_cfg`` type)::

    python tools/analysis_tools/compare_predictions.py \\
        work_dirs/fade/segformer_mit-b0_fade_....py:work_dirs/fade/iter_160000.pth \\
        work_dirs/bilinear/segformer_mit-b0_bilinear_....py:work_dirs/bilinear/iter_160000.pth \\
        --img demo.jpg --out compare.png

Each model is detection or segmentation by its config's ``default_scope`` (``mmdet`` /
``mmseg``); the two may be mixed. Detection: boxes with class and score above
``--score-thr``; segmentation: class colours blended over the image, with class boundaries.
Use the config saved in the work dir next to the checkpoint: it carries the training-time
changes (e.g. the number of classes of the synthetic-data overlay).

Checkpoints load with ``torch.load(weights_only=True)`` and fade_mm's allow-list of what
mmengine runner checkpoints hold (:mod:`fade_mm.compat`); ``--trust-checkpoint`` unpickles
trusted files that need more in full.
"""
from __future__ import annotations

import argparse
import colorsys
import contextlib
import os
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from fade_mm import cli  # noqa: E402  (the repository, also without `pip install -e .`)

SCOPES = ('mmdet', 'mmseg')
# no upsample_cfg: what the adapters then do themselves
_DEFAULT_UPSAMPLER = {'mmdet': 'NearestUpsample', 'mmseg': 'bilinear'}


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


def _scope(cfg: Config) -> str:
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise cli.UsageError(f'{cfg.filename}: default_scope must be one of {SCOPES} to '
                             f'tell detection from segmentation, got {scope!r}')
    return scope


def _register(scope: str) -> None:
    # datasets, transforms and models of the scope; fade_mm's adapters for configs that do
    # not list them in custom_imports
    if scope == 'mmdet':
        from mmdet.utils import register_all_modules
        import fade_mm.det  # noqa: F401
    else:
        from mmseg.utils import register_all_modules
        import fade_mm.seg  # noqa: F401
    register_all_modules(init_default_scope=False)


def _find_key(node: Any, key: str) -> Tuple[bool, Any]:
    if isinstance(node, dict):
        if key in node:
            return True, node[key]
        for value in node.values():
            found, got = _find_key(value, key)
            if found:
                return True, got
    elif isinstance(node, (list, tuple)):
        for value in node:
            found, got = _find_key(value, key)
            if found:
                return True, got
    return False, None


def upsampler_title(cfg: Config) -> str:
    """Upsampler of a config as a short title, e.g. ``"FADE"``, ``"FADE (fusion='none')"``."""
    found, up = _find_key(cfg.model, 'upsample_cfg')
    if not found:
        return '?'
    if up is None:
        return _DEFAULT_UPSAMPLER.get(cfg.get('default_scope'), 'none')
    up = dict(up)
    name = str(up.pop('type', '?'))
    up.pop('_delete_', None)
    if up:  # ablation switches (fusion='none', kernel_source=...) tell configs apart
        name += ' (' + ', '.join(f'{k}={v!r}' for k, v in sorted(up.items())) + ')'
    return name


def _load_weights(model: torch.nn.Module, checkpoint: str,
                  trust: bool = False) -> Dict[str, Any]:
    from mmengine.runner import load_checkpoint

    from fade_mm.compat import install_safe_checkpoint_loading, local_checkpoints_trusted

    install_safe_checkpoint_loading()
    with local_checkpoints_trusted() if trust else contextlib.nullcontext():
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                               logger='silent')
    return ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}


def _dataset_meta(cfg: Config, meta: Dict[str, Any]) -> Dict[str, Any]:
    dataset_meta = dict(meta.get('dataset_meta') or {})
    if not dataset_meta.get('classes'):
        for key in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
            found, metainfo = _find_key((cfg.get(key) or {}).get('dataset'), 'metainfo')
            if found and metainfo and metainfo.get('classes'):
                dataset_meta = dict(metainfo)
                break
    return dataset_meta


def _palette(dataset_meta: Dict[str, Any], n: int) -> np.ndarray:
    """``(n, 3)`` RGB: the dataset's palette, else evenly spaced hues."""
    pal = dataset_meta.get('palette')
    if pal is not None and len(pal) >= n:
        return np.asarray(pal[:n], np.uint8).reshape(n, 3)
    hues = [colorsys.hsv_to_rgb((i * 0.618034) % 1, 0.75, 0.95) for i in range(n)]
    return (np.asarray(hues) * 255).astype(np.uint8).reshape(n, 3)


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


class Predictor:
    """One model of the comparison: config, weights, scope and class metadata."""

    def __init__(self, config: str, checkpoint: str, device: str = 'cpu',
                 trust_checkpoint: bool = False) -> None:
        from mmengine.model import revert_sync_batchnorm
        from mmengine.registry import MODELS

        self.cfg = Config.fromfile(config)  # imports the config's custom_imports
        self.scope = _scope(self.cfg)
        _register(self.scope)
        self.title = upsampler_title(self.cfg)
        self.name = osp.splitext(osp.basename(config))[0]
        model_cfg = self.cfg.model.copy()
        if self.scope == 'mmseg':
            model_cfg.train_cfg = None  # as mmseg's init_model; mmdet detectors require it
        with DefaultScope.overwrite_default_scope(self.scope):
            # SyncBN has no single-process CPU path; BN computes the same in eval mode
            model = revert_sync_batchnorm(MODELS.build(model_cfg))
        meta = _load_weights(model, checkpoint, trust_checkpoint)
        self.model = model.to(device).eval()
        self.dataset_meta = _dataset_meta(self.cfg, meta)

    def __call__(self, img_path: str) -> Any:
        """The model's data sample for ``img_path`` (predictions at the image's size)."""
        from mmengine.dataset import Compose, pseudo_collate

        from fade_mm.visualization import inference_pipeline_cfg

        with DefaultScope.overwrite_default_scope(self.scope):
            pipeline = Compose(inference_pipeline_cfg(self.cfg))
            batch = pseudo_collate([pipeline(dict(img_path=img_path, img_id=0))])
            with torch.no_grad():
                return self.model.test_step(batch)[0]


def draw_seg(ax: Any, img_rgb: np.ndarray, sample: Any, dataset_meta: Dict[str, Any],
             opacity: float) -> None:
    """Class colours over the image, class boundaries in white, legend of present classes."""
    from matplotlib.patches import Patch

    seg = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.int64)
    classes = list(dataset_meta.get('classes') or [])
    n = max(len(classes), int(seg.max()) + 1)
    pal = _palette(dataset_meta, n)
    blend = img_rgb.astype(np.float32) * (1 - opacity) + pal[seg] * opacity
    edge = np.zeros(seg.shape, bool)
    edge[:, 1:] |= seg[:, 1:] != seg[:, :-1]
    edge[1:, :] |= seg[1:, :] != seg[:-1, :]
    blend[edge] = 255
    ax.imshow(blend.astype(np.uint8), interpolation='nearest')
    ids, counts = np.unique(seg, return_counts=True)
    top = ids[np.argsort(-counts)][:8]  # the legend must not hide the panel
    handles = [Patch(color=pal[i] / 255, label=classes[i] if i < len(classes) else str(i))
               for i in top]
    ax.legend(handles=handles, loc='upper center', bbox_to_anchor=(0.5, -0.01), ncol=2,
              fontsize=7, frameon=False, handlelength=1)


def draw_det(ax: Any, img_rgb: np.ndarray, sample: Any, dataset_meta: Dict[str, Any],
             score_thr: float) -> None:
    """Boxes above ``score_thr``, coloured by class, with class name and score."""
    from matplotlib.patches import Rectangle

    ax.imshow(img_rgb)
    inst = sample.pred_instances
    keep = inst.scores >= score_thr
    boxes = inst.bboxes[keep].cpu().numpy()
    scores = inst.scores[keep].cpu().numpy()
    labels = inst.labels[keep].cpu().numpy()
    classes = list(dataset_meta.get('classes') or [])
    pal = _palette(dataset_meta, max(len(classes), int(labels.max(initial=-1)) + 1, 1)) / 255
    for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels):
        colour = pal[label]
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                               linewidth=1.5))
        name = classes[label] if label < len(classes) else str(label)
        ax.text(x1, y1, f'{name} {score:.2f}', fontsize=6, color='white', va='bottom',
                bbox=dict(facecolor=colour, alpha=0.8, pad=0.5, edgecolor='none'),
                clip_on=True)  # labels at the top edge must not cover the panel's title
    ax.set_xlim(0, img_rgb.shape[1])
    ax.set_ylim(img_rgb.shape[0], 0)


def render(img_path: str, predictors: List[Predictor], samples: List[Any], out: str,
           score_thr: float = 0.3, opacity: float = 0.5, show_input: bool = True) -> None:
    """Writes the side-by-side figure to ``out`` (PNG)."""
    # the Figure API, not pyplot: no GUI backend is touched, so it runs headless and leaves
    # the caller's matplotlib state alone
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    img = cv2.imread(img_path, cv2.IMREAD_COLOR)
    if img is None:
        raise cli.CLIError(f'--img {img_path}: not an image OpenCV can read')
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    n = len(predictors) + int(show_input)
    panel_w = max(3.0, w / 100)
    fig = Figure(figsize=(n * panel_w, panel_w * h / w + 1.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    if show_input:
        axes[0].imshow(img)
        axes[0].set_title(f'input {w}x{h}', fontsize=9)
    for ax, pred, sample in zip(axes[int(show_input):], predictors, samples):
        if pred.scope == 'mmdet':
            draw_det(ax, img, sample, pred.dataset_meta, score_thr)
        else:
            draw_seg(ax, img, sample, pred.dataset_meta, opacity)
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
    predictors, samples = [], []
    for config, checkpoint in args.models:
        pred = Predictor(config, checkpoint, args.device, args.trust_checkpoint)
        predictors.append(pred)
        samples.append(pred(args.img))
    render(args.img, predictors, samples, args.out, args.score_thr, args.opacity,
           not args.no_input)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    cli.run_cli(main, prog='compare_predictions.py')
