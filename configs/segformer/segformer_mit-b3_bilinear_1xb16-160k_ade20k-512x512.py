# SegFormer MiT-B3, ADE20K 160k, with the bilinear head: the baseline that every upsampler
# config of this backbone inherits and changes in `upsample_cfg` only.
_base_ = 'mmseg::segformer/segformer_mit-b3_8xb2-160k_ade20k-512x512.py'

custom_imports = dict(imports=['fade_mm.seg'], allow_failed_imports=False)

model = dict(decode_head=dict(type='UpsamplerSegformerHead', upsample_cfg=None))

# FADE's runs: batch 16 on one GPU; mmseg's schedule otherwise.
train_dataloader = dict(batch_size=16)

# mIoU and boundary IoU (band = 2% of the image diagonal) in one evaluation.
val_evaluator = [
    dict(type='IoUMetric', iou_metrics=['mIoU']),
    dict(type='BoundaryIoUMetric', ratio=0.02),
]
test_evaluator = val_evaluator
