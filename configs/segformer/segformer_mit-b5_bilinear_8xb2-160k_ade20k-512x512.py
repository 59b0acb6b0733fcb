# SegFormer MiT-B5, ADE20K 160k, mmseg's layout (8 GPUs x 2 images, AdamW 6e-5, head lr
# x10, poly, 1500 warm-up iterations), with the bilinear head: the baseline that every upsampler
# config of this backbone inherits and changes in `upsample_cfg` only.
_base_ = ['mmseg::segformer/segformer_mit-b5_8xb2-160k_ade20k-512x512.py',
          '../_base_/fade_runtime_seg.py']  # fade_mm's imports, RNG states

model = dict(decode_head=dict(type='UpsamplerSegformerHead', upsample_cfg=None))

# mIoU and boundary IoU (band = 2% of the image diagonal) in one metric: a single evaluator
# entry, so that mmseg's own `tools/test.py --out DIR` works.
val_evaluator = dict(_delete_=True, type='IoUBoundaryMetric', iou_metrics=['mIoU'],
                     boundary_ratio=0.02)
test_evaluator = val_evaluator
# fade_mm.engine: atomic checkpoints (fallback to the newest intact one on --resume; another
# model's weights refused unless strict_keys=False), keeping the best validation's: the
# published numbers are the best of the runs' evaluations (every 16k iterations, 10 in all)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', save_best='mIoU', rule='greater'))
