# UPerNet R-50, ADE20K 160k, bilinear: the baseline that every upsampler config of this backbone
# inherits and changes in `upsample_cfg` only (set `upsample_fpn_outs=True` to replace the
# resizes to 1/4 as well).
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'

custom_imports = dict(imports=['fade_mm.seg'], allow_failed_imports=False)

model = dict(decode_head=dict(type='UpsamplerUPerHead', upsample_cfg=None))

# FADE's runs: batch 16 on one GPU; mmseg's schedule otherwise.
train_dataloader = dict(batch_size=16)

# mIoU and boundary IoU (band = 2% of the image diagonal) in one evaluation.
val_evaluator = [
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='BoundaryIoUMetric', ratio=0.02),
]
test_evaluator = val_evaluator
