# UPerNet R-50, ADE20K 80k: the schedule on which the FADE and SAPA
# authors compared upsamplers (SGD 0.01, poly 0.9, eta_min 1e-4, 4 GPUs x 4 images,
# validation every 8k).
# Bilinear: the baseline that every upsampler config of this backbone and schedule inherits and
# changes in `upsample_cfg` only (`upsample_fpn_outs=True` replaces the resizes to 1/4 too).
_base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py',
          '../_base_/fade_runtime_seg.py']  # fade_mm's imports, RNG states

model = dict(decode_head=dict(type='UpsamplerUPerHead', upsample_cfg=None))

# mIoU and boundary IoU (band = 2% of the image diagonal) in one metric: a single evaluator
# entry, so that mmseg's own `tools/test.py --out DIR` works.
val_evaluator = dict(_delete_=True, type='IoUBoundaryMetric', iou_metrics=['mIoU'],
                     boundary_ratio=0.02)
test_evaluator = val_evaluator
# fade_mm.engine: atomic checkpoints (fallback to the newest intact one on --resume; another
# model's weights refused unless strict_keys=False), keeping the best validation's: the
# published numbers are the best of the runs' evaluations (every 8k iterations, 10 in all)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', save_best='mIoU', rule='greater'))
