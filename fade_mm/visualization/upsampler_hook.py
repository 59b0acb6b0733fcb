"""Training-time view of what every feature upsampler in a model does to a fixed image.

:class:`UpsamplerVisHook` periodically runs the model in eval mode on one fixed image,
captures the decoder input, the encoder guide and the output of every upsampler (any module
of a class exported by :mod:`fade_mm.upsamplers`) with forward hooks, plus FADE's gate map,
and writes one PNG panel per upsampler -- the view of FADE's supplementary Figs. S1/S2::

    work_dir/upsampler_vis/iter_000500/decode_head.upsamplers.0.png        (panel)
    work_dir/upsampler_vis/iter_000500/decode_head.upsamplers.0_gate.png   (FADE gate G)
    work_dir/upsampler_vis/iter_000500/overview.png                        (all panels)

Enable from any mmdet / mmseg config::

    custom_imports = dict(imports=['fade_mm.seg', 'fade_mm.visualization'],
                          allow_failed_imports=False)
    custom_hooks = [dict(type='UpsamplerVisHook', interval=500)]

Only OpenCV is used for drawing (no display, no matplotlib backend to configure).
"""
from __future__ import annotations

import copy
import os
import os.path as osp
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn as nn
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import Tensor

from .. import upsamplers as _upsamplers

__all__ = ['UpsamplerVisHook', 'UPSAMPLER_CLASSES', 'find_upsamplers', 'inference_pipeline_cfg',
           'tile_shape', 'panel_shape', 'HEADER_H', 'LABEL_H', 'GAP']

#: Every upsampler class of :mod:`fade_mm.upsamplers`; modules of these classes are shown.
UPSAMPLER_CLASSES: Tuple[type, ...] = tuple(
    obj for obj in (getattr(_upsamplers, n) for n in _upsamplers.__all__)
    if isinstance(obj, type) and issubclass(obj, nn.Module))  # not the helper functions

#: Height in pixels of a panel's title line (module name, class, iteration).
HEADER_H = 22
#: Height in pixels of the caption above each tile.
LABEL_H = 16
#: Pixels between tiles.
GAP = 4
FEATURE_MODES = ('energy', 'pca')
_BG = 255  # white background: captions in black stay readable on any viewer
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def find_upsamplers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Named upsampler modules of ``model``, outermost only, in registration order.

    Args:
        model: a model, possibly wrapped (DDP); its inner module is searched.

    Returns:
        ``(qualified name, module)`` pairs, e.g. ``('decode_head.upsamplers.0', FADE(...))``.
    """
    if is_model_wrapper(model):
        model = model.module
    found: List[Tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if not isinstance(module, UPSAMPLER_CLASSES):
            continue
        # an upsampler built from other upsamplers is shown once, as a whole
        if any(name.startswith(outer + '.') for outer, _ in found):
            continue
        found.append((name, module))
    return found


def inference_pipeline_cfg(cfg: Any) -> List[dict]:
    """Test pipeline of a config, without annotation loading, for a bare image path.

    Looks at ``test_dataloader``, ``val_dataloader`` (through dataset wrappers) and
    ``test_pipeline``, in that order.

    Raises:
        ValueError: when the config has none of them.
    """
    pipeline = None
    for key in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(key) or {}).get('dataset')
        while dataset is not None and 'pipeline' not in dataset and 'dataset' in dataset:
            dataset = dataset['dataset']  # RepeatDataset / ClassBalancedDataset wrappers
        if dataset is not None and dataset.get('pipeline'):
            pipeline = dataset['pipeline']
            break
    if pipeline is None:
        pipeline = cfg.get('test_pipeline')
    if not pipeline:
        raise ValueError('no test pipeline in the config (test_dataloader.dataset.pipeline, '
                         'val_dataloader.dataset.pipeline or test_pipeline)')
    # an image given by path has no ground truth to load
    return [copy.deepcopy(dict(t)) for t in pipeline
            if not str(t.get('type', '')).endswith('LoadAnnotations')]


def tile_shape(img_hw: Sequence[int], tile_size: int) -> Tuple[int, int]:
    """``(height, width)`` of every tile: the image's aspect, longer side ``tile_size``."""
    h, w = int(img_hw[0]), int(img_hw[1])
    f = tile_size / max(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def panel_shape(img_hw: Sequence[int], tile_size: int, num_tiles: int) -> Tuple[int, int]:
    """``(height, width)`` of a panel of ``num_tiles`` tiles in a row."""
    th, tw = tile_shape(img_hw, tile_size)
    return HEADER_H + LABEL_H + th, num_tiles * tw + (num_tiles - 1) * GAP


def _put_text(canvas: np.ndarray, text: str, org: Tuple[int, int], width: int, scale: float,
              colour: Tuple[int, int, int]) -> None:
    """Draws ``text`` shrunk (then cut) to ``width`` pixels, so small tiles keep their
    captions apart."""
    while scale > 0.25 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width:
        scale -= 0.05
    while len(text) > 1 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width:
        text = text[:-1]
    cv2.putText(canvas, text, org, _FONT, scale, colour, 1, cv2.LINE_AA)


def _colormap(name: str) -> int:
    code = getattr(cv2, f'COLORMAP_{name.upper()}', None)
    if code is None:
        raise ValueError(f'UpsamplerVisHook: unknown OpenCV colormap {name!r} (e.g. '
                         "'viridis', 'jet', 'turbo', 'inferno')")
    return code


def _unit(m: np.ndarray) -> np.ndarray:
    """Robust per-map scaling to [0, 1] (1st/99th percentiles), per channel if ``m`` is HxWx3;
    a few extreme activations would otherwise wash out the whole map."""
    m = m.astype(np.float32)
    axes = (0, 1)
    lo = np.percentile(m, 1, axis=axes, keepdims=True)
    hi = np.percentile(m, 99, axis=axes, keepdims=True)
    return np.clip((m - lo) / np.maximum(hi - lo, 1e-12), 0, 1)


def _energy(t: Tensor) -> np.ndarray:
    return t[0].float().abs().mean(0).cpu().numpy()


def _pca_rgb(feats: List[Tensor], max_samples: int = 16384) -> List[np.ndarray]:
    """Project each ``(1, C, h, w)`` map on the top-3 principal directions of the last one.

    One basis for input, guide and output (all ``C``-channel) makes equal colours mean equal
    feature directions across the three; a map with another channel count gets its own.
    """
    def basis(t: Tensor) -> Tuple[Tensor, Tensor]:
        x = t[0].float().flatten(1)
        step = max(1, x.shape[1] // max_samples)  # strided, not random: keeps RNG untouched
        x = x[:, ::step]
        mean = x.mean(1, keepdim=True)
        xc = x - mean
        _, vecs = torch.linalg.eigh(xc @ xc.T / max(1, xc.shape[1]))
        v = vecs[:, -3:].flip(1)
        if v.shape[1] < 3:
            v = torch.cat([v, v.new_zeros(v.shape[0], 3 - v.shape[1])], 1)
        # eigenvectors have no sign; fix one so colours do not flip between iterations
        idx = v.abs().argmax(0)
        v = v * torch.where(v[idx, torch.arange(3)] < 0, -1.0, 1.0)
        return mean, v

    shared = basis(feats[-1])
    out = []
    for t in feats:
        mean, v = shared if t.shape[1] == feats[-1].shape[1] else basis(t)
        x = t[0].float().flatten(1)
        out.append((v.T @ (x - mean)).T.reshape(*t.shape[-2:], 3).cpu().numpy())
    return out


class _Capture:
    """Forward hook of one upsampler: reduces its first call to small numpy maps at once, so
    full-size detection features are never kept."""

    def __init__(self, name: str, mode: str, records: Dict[str, dict]) -> None:
        self.name, self.mode, self.records = name, mode, records

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self.name in self.records:  # e.g. slide inference: the first window is enough
            return
        x = args[0] if args else kwargs.get('x')
        guide = args[1] if len(args) > 1 else kwargs.get('guide')
        if not isinstance(x, Tensor) or not isinstance(output, Tensor):
            return
        feats = [t for t in (x, guide, output) if isinstance(t, Tensor)]
        maps = _pca_rgb(feats) if self.mode == 'pca' else [_energy(t) for t in feats]
        rec: Dict[str, Any] = dict(cls=type(module).__name__, x=maps[0], out=maps[-1],
                                   x_shape=tuple(x.shape[1:]), out_shape=tuple(output.shape[1:]),
                                   guide=None, gate=None)
        if isinstance(guide, Tensor):
            rec['guide'], rec['guide_shape'] = maps[1], tuple(guide.shape[1:])
        # only FADE-style modules with an actual gate (fusion='gate') have a G to show
        gated = getattr(module, 'fusion', None) == 'gate'
        if gated and callable(getattr(module, 'gate_map', None)):
            g = module.gate_map(x, *output.shape[-2:])
            rec['gate'] = g[0, 0].float().cpu().numpy()
        self.records[self.name] = rec


def _rng_state() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _set_rng_state(state: tuple) -> None:
    py, npy, cpu, cuda = state
    random.setstate(py)
    np.random.set_state(npy)
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


@HOOKS.register_module()
class UpsamplerVisHook(Hook):
    """Saves, every ``interval`` training iterations, what each upsampler sees and produces.

    The model runs in eval mode (``mode='tensor'``, no gradients) on a fixed image: the first
    sample of the val dataloader, or ``img_path`` through the config's test pipeline. Forward
    hooks on every upsampler (modules of :data:`UPSAMPLER_CLASSES`, e.g. the entries of
    ``model.neck.upsamplers`` or ``model.decode_head.upsamplers``) capture the first call's
    decoder input ``x``, encoder guide and output; for FADE / FADE-Lite with
    ``fusion='gate'`` the gate ``G = module.gate_map(x, H, W)`` (weight of the encoder
    feature) too. Under ``work_dir/<out_dir>/iter_XXXXXX/`` it writes, per upsampler named
    e.g. ``decode_head.upsamplers.0``, ``<name>.png``: a row of tiles

        image | decoder input x | encoder guide | upsampled output | gate G (if any)

    every tile of :func:`tile_shape` (the image's aspect ratio, longer side ``tile_size``),
    feature maps cropped to the un-padded image area and enlarged with nearest-neighbour
    interpolation so the low resolution of ``x`` stays visible; ``<name>_gate.png``: the gate
    tile alone (fixed [0, 1] colour scale, so iterations compare); and ``overview.png``: all
    panels stacked.

    Training is unaffected: no gradients, every module's train/eval flag and the Python,
    NumPy and torch RNG states are restored, and only rank 0 does any work (nothing in it is a
    collective, so other ranks need not wait).

    Args:
        interval: visualise after every ``interval`` training iterations.
        img_path: image to use instead of the val dataloader's first sample.
        vis_after_train: also visualise once after training (skipped when the last
            iteration was just visualised).
        feature_mode: ``'energy'`` (mean |x| over channels, colormapped) or ``'pca'``
            (projection on the top-3 principal directions of the output, as RGB).
        tile_size: longer side of every tile in pixels.
        out_dir: folder under ``runner.work_dir``.
        cmap: OpenCV colormap of energy maps.
        gate_cmap: OpenCV colormap of the gate.
        max_upsamplers: show only the first ``max_upsamplers`` upsamplers (None: all).
        add_to_visualizer: also send the panels to ``runner.visualizer`` (TensorBoard, W&B
            backends), as ``upsampler_vis/<name>``.
    """

    priority = 'LOW'  # after hooks that change weights at iteration end (e.g. EMA)

    def __init__(self, interval: int = 500, img_path: Optional[str] = None,
                 vis_after_train: bool = True, feature_mode: str = 'energy',
                 tile_size: int = 192, out_dir: str = 'upsampler_vis', cmap: str = 'viridis',
                 gate_cmap: str = 'jet', max_upsamplers: Optional[int] = None,
                 add_to_visualizer: bool = False) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'UpsamplerVisHook: `interval` must be an int >= 1, got {interval!r}')
        if feature_mode not in FEATURE_MODES:
            raise ValueError(f'UpsamplerVisHook: `feature_mode` must be one of {FEATURE_MODES}, '
                             f'got {feature_mode!r}')
        if not isinstance(tile_size, int) or tile_size < 16:
            raise ValueError(f'UpsamplerVisHook: `tile_size` must be an int >= 16, '
                             f'got {tile_size!r}')
        if max_upsamplers is not None and max_upsamplers < 1:
            raise ValueError(f'UpsamplerVisHook: `max_upsamplers` must be None or >= 1, '
                             f'got {max_upsamplers!r}')
        if img_path is not None and not osp.isfile(img_path):
            raise FileNotFoundError(f'UpsamplerVisHook: `img_path` {img_path!r} not found')
        self.interval = interval
        self.img_path = img_path
        self.vis_after_train = vis_after_train
        self.feature_mode = feature_mode
        self.tile_size = tile_size
        self.out_dir = out_dir
        self.cmap = _colormap(cmap)
        self.gate_cmap = _colormap(gate_cmap)
        self.max_upsamplers = max_upsamplers
        self.add_to_visualizer = add_to_visualizer
        self._batch: Optional[dict] = None
        self._done: set = set()
        self._disabled = False

    # ---- hook points ------------------------------------------------------------------
    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Any = None) -> None:
        if self.every_n_train_iters(runner, self.interval):
            self.visualize(runner, runner.iter + 1)

    def after_train(self, runner) -> None:
        if self.vis_after_train:
            self.visualize(runner, runner.iter)

    # ---- work -------------------------------------------------------------------------
    def visualize(self, runner, iteration: int) -> Optional[str]:
        """Writes the panels of ``iteration``; returns their folder (None if nothing done)."""
        if not is_main_process() or self._disabled or iteration in self._done:
            return None
        self._done.add(iteration)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        ups = find_upsamplers(model)[:self.max_upsamplers]
        if not ups:
            runner.logger.warning('UpsamplerVisHook: the model has no fade_mm upsampler; '
                                  'the hook does nothing')
            self._disabled = True
            return None
        batch = self._fixed_batch(runner)
        if batch is None:
            return None
        records, padded = self._run(model, ups, batch)
        img = self._image(batch)
        out = osp.join(runner.work_dir, self.out_dir, f'iter_{iteration:06d}')
        os.makedirs(out, exist_ok=True)
        panels = []
        for name, _ in ups:
            if name not in records:  # not called on this input (e.g. an unused branch)
                continue
            panel, gate = self._panel(name, records[name], img, padded, iteration)
            cv2.imwrite(osp.join(out, f'{name}.png'), panel)
            if gate is not None:
                cv2.imwrite(osp.join(out, f'{name}_gate.png'), gate)
            if self.add_to_visualizer:
                runner.visualizer.add_image(f'upsampler_vis/{name}', panel[..., ::-1].copy(),
                                            step=iteration)
            panels.append(panel)
        if panels:
            width = max(p.shape[1] for p in panels)
            rows = [cv2.copyMakeBorder(p, 0, GAP, 0, width - p.shape[1], cv2.BORDER_CONSTANT,
                                       value=(_BG,) * 3) for p in panels]
            cv2.imwrite(osp.join(out, 'overview.png'), np.concatenate(rows, 0)[:-GAP])
        runner.logger.info(f'UpsamplerVisHook: {len(panels)} upsampler panels -> {out}')
        return out

    def _fixed_batch(self, runner) -> Optional[dict]:
        if self._batch is None:
            if self.img_path is not None:
                from mmengine.dataset import Compose, pseudo_collate
                pipeline = Compose(inference_pipeline_cfg(runner.cfg))
                self._batch = pseudo_collate([pipeline(dict(img_path=self.img_path, img_id=0))])
            else:
                loop = runner.val_loop
                if loop is None:
                    runner.logger.warning('UpsamplerVisHook: no val dataloader to take the '
                                          'fixed image from; set `img_path`. Hook disabled')
                    self._disabled = True
                    return None
                loader = loop.dataloader
                # indexing the dataset, not iterating the loader: no sampler/worker state used
                self._batch = loader.collate_fn([loader.dataset[0]])
        # data preprocessors annotate data samples in place (batch_input_shape, pad_shape)
        return copy.deepcopy(self._batch)

    def _run(self, model: nn.Module, ups: List[Tuple[str, nn.Module]],
             batch: dict) -> Tuple[Dict[str, dict], Tuple[int, int]]:
        """Captured maps per upsampler name, and the padded network input size."""
        records: Dict[str, dict] = {}
        flags = [(m, m.training) for m in model.modules()]
        rng = _rng_state()
        handles = [m.register_forward_hook(_Capture(n, self.feature_mode, records),
                                           with_kwargs=True) for n, m in ups]
        try:
            model.eval()
            with torch.no_grad():
                data = model.data_preprocessor(batch, False)
                padded = tuple(data['inputs'].shape[-2:])
                model(**data, mode='tensor')
        finally:
            for h in handles:
                h.remove()
            # flags one by one, not model.train(): train() overrides (frozen stages, norm_eval)
            # already decided them, and must not be re-run
            for m, flag in flags:
                m.training = flag
            _set_rng_state(rng)
        return records, padded

    @staticmethod
    def _image(batch: dict) -> np.ndarray:
        """The fixed image as the network sees it before normalisation and padding (BGR)."""
        img = batch['inputs'][0]
        img = img.detach().cpu().numpy().transpose(1, 2, 0)
        if img.shape[2] == 1:
            img = np.repeat(img, 3, 2)
        return np.ascontiguousarray(img[..., :3]).astype(np.uint8)

    # ---- drawing ----------------------------------------------------------------------
    def _panel(self, name: str, rec: dict, img: np.ndarray, padded: Tuple[int, int],
               iteration: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        th, tw = tile_shape(img.shape[:2], self.tile_size)
        valid = (img.shape[0] / padded[0], img.shape[1] / padded[1])

        def fit(m: np.ndarray, interp: int = cv2.INTER_NEAREST) -> np.ndarray:
            # keep the part of the map over the real image; padding would distort the aspect
            h = max(1, min(m.shape[0], int(np.ceil(m.shape[0] * valid[0]))))
            w = max(1, min(m.shape[1], int(np.ceil(m.shape[1] * valid[1]))))
            return cv2.resize(np.ascontiguousarray(m[:h, :w]), (tw, th), interpolation=interp)

        def feature_tile(m: np.ndarray) -> np.ndarray:
            m = _unit(fit(m))
            if m.ndim == 3:  # PCA: already three channels
                return (m * 255).astype(np.uint8)
            return cv2.applyColorMap((m * 255).astype(np.uint8), self.cmap)

        def dims(shape: tuple) -> str:
            return f'{shape[1]}x{shape[2]}'

        tiles = [(cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA),
                  f'image {img.shape[0]}x{img.shape[1]}'),
                 (feature_tile(rec['x']), f'input x {dims(rec["x_shape"])}')]
        if rec['guide'] is not None:
            tiles.append((feature_tile(rec['guide']), f'guide {dims(rec["guide_shape"])}'))
        tiles.append((feature_tile(rec['out']), f'output {dims(rec["out_shape"])}'))
        gate = None
        if rec['gate'] is not None:
            g = rec['gate']
            # absolute [0, 1] scale: G is a mixing weight, its level is the information
            gate = cv2.applyColorMap((np.clip(fit(g), 0, 1) * 255).astype(np.uint8),
                                     self.gate_cmap)
            tiles.append((gate, f'gate G {g.min():.2f}-{g.max():.2f}'))

        height, width = HEADER_H + LABEL_H + th, len(tiles) * tw + (len(tiles) - 1) * GAP
        panel = np.full((height, width, 3), _BG, np.uint8)
        _put_text(panel, f'{name}  {rec["cls"]}  iter {iteration}  C={rec["x_shape"][0]}',
                  (2, HEADER_H - 7), width - 4, 0.5, (0, 0, 0))
        for i, (tile, caption) in enumerate(tiles):
            x0 = i * (tw + GAP)
            panel[HEADER_H + LABEL_H:, x0:x0 + tw] = tile
            _put_text(panel, caption, (x0 + 1, HEADER_H + LABEL_H - 4), tw - 2, 0.35,
                      (60, 60, 60))
        return panel, gate
