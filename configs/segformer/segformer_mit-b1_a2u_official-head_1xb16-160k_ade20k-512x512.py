# The SegFormer head of the official code (NVlabs; the FADE paper's SegFormer runs): per-level
# linear projections without norm (`projection='linear'`) and the test-time resize of each
# image to a multiple of 32 (the official AlignedResize = mmseg's Resize + ResizeToMultiple).
_base_ = './segformer_mit-b1_a2u_1xb16-160k_ade20k-512x512.py'

model = dict(decode_head=dict(projection='linear'))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
