# Overlay: point any segmentation config at fade_mm's synthetic ADE-style data, at toy scale,
# for CPU runs (tests, demo). Generate the data with
#   python -m fade_mm.datasets.synthetic_seg --out data/synthetic/seg
# and merge this file over a real config (see fade_mm.configs.apply_overlay).
data_root = 'data/synthetic/seg'
# synthetic_seg_classes(12): ADE20K's first names, so mmseg's label map is the identity
classes = ('wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed ', 'windowpane',
           'grass', 'cabinet', 'sidewalk')
crop_size = (96, 96)
scale = (160, 128)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None),  # no pretrained weights can be downloaded here
    decode_head=dict(num_classes=len(classes)))

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
_dataset = dict(type='ADE20KDataset', data_root=data_root, metainfo=dict(classes=classes),
                reduce_zero_label=True)
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(_dataset, data_prefix=dict(img_path='images/training',
                                            seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_dataset, data_prefix=dict(img_path='images/validation',
                                            seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
