"""Boundary IoU (bIoU) for semantic segmentation, as an mmseg metric.

Boundary IoU (Cheng et al., "Boundary IoU: Improving Object-Centric Image Segmentation
Evaluation", CVPR 2021) scores only a band of width ``d`` along every mask's contour, so it
rewards sharp, well-placed boundaries and thin structures that region IoU barely notices.

Definition used here (semantic segmentation, one label map per image):

* ``d = max(1, round(ratio * sqrt(H**2 + W**2)))`` for an ``H x W`` ground truth, with
  Python's ``round`` (half to even), as in the authors' code; ``ratio`` defaults to 0.02.
* ``band(M) = M - erode(M, d)``, where ``erode`` is ``d`` iterations of a 3x3 erosion and
  pixels outside the image count as background, so the image border is boundary.
* Per class ``c`` and summed over the whole dataset: ``I_c = |band(gt_c) & band(pred_c)|``,
  ``U_c = |band(gt_c) | band(pred_c)|``, pixels whose ground truth is ``ignore_index``
  excluded from both. Ignored pixels are dropped from the counts only, not from the masks:
  ``gt == ignore_index`` is "not c" for every class (regions next to an ignored area have a
  band there), and the predicted labels inside ignored areas still shape the predicted bands
  next to them, so a prediction that is perfect outside ignored pixels can score below 100.
* ``bIoU = 100 * mean_c(I_c / U_c)`` over the classes with ``U_c > 0``.

Erosion by ``d`` iterations of a 3x3 square equals one erosion by the ``(2d+1) x (2d+1)``
square (the Minkowski sum of ``d`` 3x3 squares); with a zero border the outside stays
background at every step, so a single padded min-pool is exact. Because every pixel holds
exactly one label, the bands of all classes come from one pass over the label map: a pixel
lies in the band of its own class unless its whole ``(2d+1)`` window is inside the image and
holds only its label (window max == window min). That costs ``O(H W d)`` per image,
independent of the number of classes.
"""
from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS
from torch import Tensor

__all__ = ['BoundaryIoUMetric', 'IoUBoundaryMetric', 'reduce_boundary_iou', 'boundary_width',
           'erode', 'mask_boundary', 'label_boundary']


def _check_ratio(owner: str, name: str, ratio) -> float:
    """``ratio`` as a float; ValueError unless it is a real number in ``(0, 1]``: the band
    width is a fraction of the image diagonal (at 1 every pixel is already boundary; NaN
    and infinity have no width)."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio <= 1:
        raise ValueError(f'{owner}: `{name}` must be a number in (0, 1] (a fraction of the '
                         f'image diagonal), got {ratio!r}')
    return float(ratio)


def boundary_width(height: int, width: int, ratio: float = 0.02) -> int:
    """Band width ``d`` in pixels for an image of ``height x width``.

    Args:
        height: image height ``H``.
        width: image width ``W``.
        ratio: fraction of the image diagonal, in ``(0, 1]``.

    Returns:
        ``max(1, round(ratio * sqrt(H**2 + W**2)))``.
    """
    ratio = _check_ratio('boundary_width', 'ratio', ratio)
    # Python's round (half to even) matches the Boundary IoU authors' implementation.
    return max(1, int(round(ratio * math.hypot(height, width))))


def erode(mask: Tensor, d: int) -> Tensor:
    """Binary erosion by ``d`` iterations of a 3x3 square, outside the image = background.

    Computed as one ``(2d+1) x (2d+1)`` min-pool over the zero-padded mask.

    Args:
        mask: boolean tensor ``(..., H, W)``.
        d: number of 3x3 erosions, ``>= 0``.

    Returns:
        Boolean tensor of the same shape: pixels whose whole ``(2d+1)`` window is inside the
        image and inside ``mask``.
    """
    if d < 0:
        raise ValueError(f'erode: `d` must be >= 0, got {d}')
    if d == 0:
        return mask.clone()
    shape = mask.shape
    background = (~mask.bool()).reshape(-1, 1, *shape[-2:]).float()
    # Pad with background explicitly: max_pool2d's own padding would ignore the outside.
    background = F.pad(background, (d, d, d, d), value=1.0)
    k = 2 * d + 1
    grown = F.max_pool2d(background, kernel_size=(k, 1), stride=1)
    grown = F.max_pool2d(grown, kernel_size=(1, k), stride=1)
    return (grown == 0).reshape(shape)


def mask_boundary(mask: Tensor, d: int) -> Tensor:
    """Boundary band ``mask - erode(mask, d)`` of a boolean ``(..., H, W)`` mask."""
    mask = mask.bool()
    return mask & ~erode(mask, d)


def label_boundary(label: Tensor, d: int) -> Tensor:
    """Boundary band of every class of one or more label maps at once.

    For every pixel ``p`` with label ``c = label[..., p]``, ``out[..., p]`` is True iff ``p``
    lies in ``mask_boundary(label == c, d)``; any value (ignore labels included) counts as
    its own class, so a region next to ignored pixels has a boundary there.

    Args:
        label: integer label maps ``(..., H, W)`` with values that fit in int32.
        d: band width, ``>= 1``.

    Returns:
        Boolean tensor of the shape of ``label``.
    """
    if label.dim() < 2:
        raise ValueError(f'label_boundary: `label` must be (..., H, W), got {tuple(label.shape)}')
    if d < 1:
        raise ValueError(f'label_boundary: `d` must be >= 1, got {d}')
    h, w = label.shape[-2:]
    # Pixels within d of the border see the outside (background) in their window: band.
    band = torch.ones(label.shape, dtype=torch.bool, device=label.device)
    if h > 2 * d and w > 2 * d:
        # Remaining pixels are interior iff their (2d+1)^2 window holds a single value, i.e.
        # window min == window max. Separable sliding windows via unfold + reductions: int32
        # keeps memory traffic low and is several times faster than max_pool2d on CPU.
        k = 2 * d + 1
        x = label.reshape(-1, h, w).to(torch.int32)
        cols = x.unfold(1, k, 1)
        lo = cols.amin(-1).unfold(2, k, 1).amin(-1)
        hi = cols.amax(-1).unfold(2, k, 1).amax(-1)
        band[..., d:h - d, d:w - d] = (lo != hi).reshape(*label.shape[:-2], h - 2 * d, w - 2 * d)
    return band


def _label_map(sample: Any, key: str) -> Tensor:
    """``sample[key].data`` as an ``(H, W)`` tensor, from a dict or a ``SegDataSample``."""
    field = sample[key] if isinstance(sample, dict) else getattr(sample, key)
    data = field['data'] if isinstance(field, dict) else field.data
    if data.dim() > 2:
        # Keep H, W even when one of them is 1 (a plain squeeze() would drop it).
        if math.prod(data.shape[:-2]) != 1:
            raise ValueError(f'BoundaryIoUMetric: `{key}.data` must be (1, H, W) or (H, W), '
                             f'got {tuple(data.shape)}')
        data = data.reshape(data.shape[-2:])
    return data


@METRICS.register_module()
class BoundaryIoUMetric(BaseMetric):
    """Boundary IoU (bIoU) over a dataset, per class accumulated, mean over present classes.

    Reads ``pred_sem_seg.data`` and ``gt_sem_seg.data`` of each sample like mmseg's
    ``IoUMetric`` and keeps two small per-class count vectors per image, so results gather
    across ranks like any mmengine metric. Can be used alone or next to ``IoUMetric`` in one
    evaluator: its result key ``bIoU`` (and ``bIoU_<class>`` with ``classwise=True``) is
    distinct from every ``IoUMetric`` key (``aAcc``, ``mIoU``, ``mAcc``, ...).

    Args:
        ratio: band width as a fraction of the image diagonal, in ``(0, 1]`` (``d`` from
            :func:`boundary_width`). 0.02 in the Boundary IoU paper.
        ignore_index: ground-truth label excluded from the counts.
        classwise: also return ``bIoU_<class name>`` for each class (NaN when the class is
            absent from both ground truth and prediction bands).
        collect_device: ``'cpu'`` or ``'gpu'``, for gathering results across ranks.
        prefix: prefix of the result keys (``'<prefix>/bIoU'``); ``None`` keeps ``bIoU``.

    Example:
        >>> val_evaluator = [dict(type='IoUMetric', iou_metrics=['mIoU']),
        ...                  dict(type='BoundaryIoUMetric', ratio=0.02)]
    """

    default_prefix: Optional[str] = None

    def __init__(self,
                 ratio: float = 0.02,
                 ignore_index: int = 255,
                 classwise: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ratio = _check_ratio('BoundaryIoUMetric', 'ratio', ratio)
        self.ignore_index = ignore_index
        self.classwise = classwise

    @staticmethod
    def boundary_intersect_and_union(pred_label: Tensor, label: Tensor, num_classes: int,
                                     ignore_index: int = 255,
                                     ratio: float = 0.02) -> Tuple[Tensor, Tensor, int]:
        """Per-class boundary-band intersection and union of one image.

        Args:
            pred_label: predicted label map ``(H, W)``.
            label: ground-truth label map ``(H, W)``; ``ignore_index`` pixels are excluded.
            num_classes: number of classes ``C``; labels outside ``[0, C)`` belong to none.
            ignore_index: ignored ground-truth label.
            ratio: band width as a fraction of the image diagonal.

        Returns:
            ``(intersection, union, d)``: two int64 CPU tensors of shape ``(C,)`` and the
            band width used.
        """
        if pred_label.shape != label.shape or label.dim() != 2:
            raise ValueError('BoundaryIoUMetric: prediction and ground truth must both be '
                             f'(H, W) of one size, got {tuple(pred_label.shape)} and '
                             f'{tuple(label.shape)}')
        gt = label.to(device=pred_label.device, dtype=torch.int32)
        pred = pred_label.to(torch.int32)
        d = boundary_width(gt.shape[0], gt.shape[1], ratio)
        gt_band, pred_band = label_boundary(torch.stack([gt, pred]), d)
        valid = gt != ignore_index
        gt_in = gt_band & valid & (gt >= 0) & (gt < num_classes)
        pred_in = pred_band & valid & (pred >= 0) & (pred < num_classes)
        both = gt_in & pred_in & (gt == pred)
        # One bincount for the three histograms: excluded pixels go to the spare bin C.
        n = num_classes + 1
        codes = torch.stack([torch.where(gt_in, gt, num_classes),
                             torch.where(pred_in, pred, num_classes) + n,
                             torch.where(both, gt, num_classes) + 2 * n])
        counts = torch.bincount(codes.flatten().long(), minlength=3 * n).reshape(3, n)
        area_gt, area_pred, intersect = counts[:, :num_classes].cpu()
        union = area_gt + area_pred - intersect
        return intersect, union, d

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Append ``(intersection, union, d)`` of every sample to ``self.results``.

        Args:
            data_batch: the dataloader batch (unused).
            data_samples: model outputs holding ``pred_sem_seg`` and ``gt_sem_seg``.
        """
        num_classes = len(self.dataset_meta['classes'])
        for sample in data_samples:
            pred = _label_map(sample, 'pred_sem_seg')
            gt = _label_map(sample, 'gt_sem_seg')
            self.results.append(self.boundary_intersect_and_union(
                pred, gt, num_classes, self.ignore_index, self.ratio))

    def compute_metrics(self, results: List[Tuple[Tensor, Tensor, int]]) -> Dict[str, float]:
        """Sum the per-image counts and reduce them to bIoU (in %).

        Args:
            results: ``(intersection, union, d)`` per image, gathered from all ranks.

        Returns:
            ``{'bIoU': value}``, plus ``bIoU_<class>`` entries when ``classwise``. ``bIoU``
            is NaN when no class has a boundary band anywhere.

        Raises:
            ValueError: when ``results`` is empty (mmseg's ``IoUMetric`` fails there too).
        """
        return reduce_boundary_iou(results, list(self.dataset_meta['classes']), self.ratio,
                                   self.classwise)



@METRICS.register_module()
class IoUBoundaryMetric(IoUMetric):
    """mmseg's ``IoUMetric`` and boundary IoU in one metric: ``aAcc``, ``mIoU``, ``mAcc``
    (and ``mDice`` ... as ``iou_metrics`` asks) plus ``bIoU``, from one pass over the data.

    One evaluator entry instead of a list, so that mmseg's stock ``tools/test.py --out DIR``
    works (it sets ``test_evaluator['output_dir']`` and ``['keep_results']``, which needs a
    dict): ``output_dir`` writes the prediction PNGs exactly as ``IoUMetric`` does;
    ``keep_results`` is accepted and has nothing to keep (no raw results are stored).
    ``aAcc``/``mIoU``/``mAcc`` are ``IoUMetric``'s numbers and ``bIoU`` is
    :class:`BoundaryIoUMetric`'s, bit for bit.

    Args:
        boundary_ratio: band width as a fraction of the image diagonal, in ``(0, 1]``
            (0.02).
        boundary_classwise: also return ``bIoU_<class>``.
        **kwargs: as ``IoUMetric`` (``ignore_index``, ``iou_metrics``, ``nan_to_num``,
            ``beta``, ``collect_device``, ``output_dir``, ``format_only``, ``prefix``);
            ``ignore_index`` applies to both.

    Example:
        >>> val_evaluator = dict(type='IoUBoundaryMetric', iou_metrics=['mIoU'],
        ...                      boundary_ratio=0.02)
        >>> test_evaluator = val_evaluator
    """

    def __init__(self, boundary_ratio: float = 0.02, boundary_classwise: bool = False,
                 keep_results: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.boundary_ratio = _check_ratio('IoUBoundaryMetric', 'boundary_ratio',
                                          boundary_ratio)
        self.boundary_classwise = boundary_classwise
        self.keep_results = keep_results

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """``IoUMetric.process`` (areas, PNGs under ``output_dir``), then each sample's
        boundary counts appended to its result: ``(4 IoU areas..., b_inter, b_union, d)``.
        """
        first = len(self.results)
        super().process(data_batch, data_samples)
        if self.format_only:
            return
        num_classes = len(self.dataset_meta['classes'])
        for i, sample in enumerate(data_samples):
            band = BoundaryIoUMetric.boundary_intersect_and_union(
                _label_map(sample, 'pred_sem_seg'), _label_map(sample, 'gt_sem_seg'),
                num_classes, self.ignore_index, self.boundary_ratio)
            self.results[first + i] = tuple(self.results[first + i]) + band

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """``IoUMetric``'s metrics of the first four entries of each result, and ``bIoU``
        of the last three; ValueError when ``results`` is empty (unless ``format_only``)."""
        if not results and not self.format_only:
            raise ValueError(_no_results('IoUBoundaryMetric'))
        metrics = super().compute_metrics([r[:4] for r in results])
        if self.format_only:
            return metrics
        metrics.update(reduce_boundary_iou([r[4:] for r in results],
                                           list(self.dataset_meta['classes']),
                                           self.boundary_ratio, self.boundary_classwise))
        return metrics


def reduce_boundary_iou(results: Sequence[Tuple[Tensor, Tensor, int]],
                        class_names: Sequence[str], ratio: float,
                        classwise: bool = False) -> Dict[str, float]:
    """bIoU (in %) from per-image ``(intersection, union, d)`` counts; logs the class table.

    Args:
        results: per image, as :meth:`BoundaryIoUMetric.boundary_intersect_and_union`.
        class_names: the dataset's classes.
        ratio: the band ratio used (stated in the log).
        classwise: also return ``bIoU_<class>``.

    Returns:
        ``{'bIoU': mean over classes with a band}`` (NaN when none has one), plus
        ``bIoU_<class>`` entries when ``classwise``.

    Raises:
        ValueError: when ``results`` is empty.
    """
    if not results:
        raise ValueError(_no_results('BoundaryIoUMetric'))
    logger: MMLogger = MMLogger.get_current_instance()
    intersect = torch.stack([r[0] for r in results]).sum(0).double()
    union = torch.stack([r[1] for r in results]).sum(0).double()
    widths = [int(r[2]) for r in results]
    per_class = torch.where(union > 0, intersect / union.clamp(min=1),
                            torch.full_like(union, float('nan'))).numpy() * 100
    present = union > 0
    mean = float(per_class[present.numpy()].mean()) if bool(present.any()) else float('nan')

    # The band width depends on the ratio, so every table must state it.
    d_text = (f'd={widths[0]} px' if min(widths) == max(widths) else
              f'd={min(widths)}..{max(widths)} px')
    header = f'Boundary IoU per class (ratio={ratio:g}, {d_text}, {len(results)} images):'
    print_log(header, logger=logger)
    print_log('\n' + _table(class_names, per_class), logger=logger)
    print_log(f'bIoU (ratio={ratio:g}): {mean:.2f}', logger=logger)

    metrics: Dict[str, float] = OrderedDict(bIoU=round(mean, 2))
    if classwise:
        for name, value in zip(class_names, per_class):
            metrics[f'bIoU_{str(name).strip()}'] = round(float(value), 2)
    return metrics


def _no_results(owner: str) -> str:
    return (f'{owner}: no results to compute bIoU from (0 images were processed); check '
            f'that the evaluation dataloader is not empty')


def _table(class_names: Sequence[str], per_class: np.ndarray) -> str:
    """Class / bIoU table, with prettytable when available (mmseg depends on it)."""
    values = [f'{v:.2f}' for v in per_class]
    try:
        from prettytable import PrettyTable
    except ImportError:  # plain fallback keeps the metric usable without it
        width = max([5] + [len(str(n)) for n in class_names])
        rows = [f'{"Class":<{width}}  bIoU']
        rows += [f'{str(n):<{width}}  {v}' for n, v in zip(class_names, values)]
        return '\n'.join(rows)
    table = PrettyTable()
    table.add_column('Class', [str(n) for n in class_names])
    table.add_column('bIoU', values)
    return table.get_string()
