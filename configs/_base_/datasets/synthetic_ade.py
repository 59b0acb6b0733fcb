# Dataset base (by role, as mmseg's _base_/datasets/ade20k.py): fade_mm's synthetic ADE-style
# segmentation data at toy scale, for CPU runs. Dataset keys only (data root, pipelines,
# dataloaders, evaluators), so it composes with any mmseg model base:
#   _base_ = ['mmseg::_base_/models/segformer_mit-b0.py',
#             '../_base_/datasets/synthetic_ade.py', ...]
# The model must predict len(classes) = 12 classes on crops of crop_size (the data
# preprocessor's `size`). Generate the data (seed 0) with
#   python -m fade_mm.datasets.synthetic_seg --out data/synthetic/seg
# As an overlay over a full ADE20K config (`tools/train.py --synthetic`):
# configs/_base_/synthetic_ade.py.
dataset_type = 'ADE20KDataset'
data_root = 'data/synthetic/seg'
# synthetic_seg_classes(12): ADE20K's first names, so mmseg's label map is the identity
classes = ('wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed ', 'windowpane',
           'grass', 'cabinet', 'sidewalk')
crop_size = (96, 96)
scale = (160, 128)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=scale, ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),  # odd sizes reach the head
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# multi-scale flip test (`tools/test.py --tta`), as mmseg's ADE20K base
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]]),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, metainfo=dict(classes=classes),
                 reduce_zero_label=True,
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, metainfo=dict(classes=classes),
                 reduce_zero_label=True,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
# mIoU and boundary IoU (band = 2% of the image diagonal) in one metric, as the ADE20K configs
# of this repository: a single evaluator entry, so that mmseg's `tools/test.py --out DIR` works
# (fade_mm.seg registers it: list 'fade_mm.seg' in custom_imports)
val_evaluator = dict(type='IoUBoundaryMetric', iou_metrics=['mIoU'], boundary_ratio=0.02)
test_evaluator = val_evaluator
