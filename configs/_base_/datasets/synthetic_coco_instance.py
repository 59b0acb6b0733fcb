# Dataset base (by role, as mmdet's _base_/datasets/coco_instance.py): fade_mm's synthetic
# COCO-format instance data (boxes and masks) at toy scale, for CPU runs. Dataset keys only,
# so it composes with any mmdet model base:
#   _base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py',
#             '../_base_/datasets/synthetic_coco_instance.py', ...]
# The model must predict len(classes) = 4 classes. The detection data carries the instance
# masks, so the root is the one of synthetic_coco.py; generate it (seed 0) with
#   python -m fade_mm.datasets.synthetic_det --out data/synthetic/det
# As an overlay over a full COCO config (`tools/train.py --synthetic`):
# configs/_base_/synthetic_coco_instance.py.
dataset_type = 'CocoDataset'
data_root = 'data/synthetic/det'
classes = ('rectangle', 'ellipse', 'triangle', 'ring')  # synthetic_det_classes(4)
scale = (192, 192)

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
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 # keep images without objects: training must cope with them
                 filter_cfg=dict(filter_empty_gt=False, min_size=0),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + '/annotations/instances_val.json',
                     metric=['bbox', 'segm'], format_only=False)
test_evaluator = val_evaluator
