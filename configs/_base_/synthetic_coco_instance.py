# Overlay: point any Mask R-CNN config at fade_mm's synthetic COCO-format instance data, at toy
# scale, for CPU runs (tests, demo). The detection data carries instance masks, so the root is
# the one of configs/_base_/synthetic_coco.py; generate it with
#   python -m fade_mm.datasets.synthetic_det --out data/synthetic/det
# and merge this file over a real config (fade_mm.configs.apply_overlay).
data_root = 'data/synthetic/det'
classes = ('rectangle', 'ellipse', 'triangle', 'ring')  # synthetic_det_classes(4)
scale = (192, 192)

model = dict(
    backbone=dict(init_cfg=None),  # no pretrained weights can be downloaded here
    roi_head=dict(bbox_head=dict(num_classes=len(classes)),
                  mask_head=dict(num_classes=len(classes))))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # masks are polygons, or RLE for shapes with a hole: keep poly2mask=True (the default)
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
_dataset = dict(type='CocoDataset', data_root=data_root, metainfo=dict(classes=classes))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(_dataset, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'),
                 # keep images without objects: training must cope with them
                 filter_cfg=dict(filter_empty_gt=False, min_size=0),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_dataset, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + '/annotations/instances_val.json',
                     metric=['bbox', 'segm'], format_only=False)
test_evaluator = val_evaluator
