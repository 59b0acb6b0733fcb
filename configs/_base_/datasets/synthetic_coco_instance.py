# Dataset base (by role, as mmdet's _base_/datasets/coco_instance.py): fade_mm's synthetic
# COCO-format instance data (boxes and masks) at toy scale, for CPU runs. Dataset keys only,
# so it composes with any mmdet model base:
#   _base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py',
#             '../_base_/datasets/synthetic_coco_instance.py', ...]
# The model must predict len(classes) = 4 classes. The detection data carries the instance
# masks: this is synthetic_coco.py (same root, classes, pipelines, dataloaders) loading the
# masks too and evaluating them. Generate the data (seed 0) with
#   python -m fade_mm.datasets.synthetic_det --out data/synthetic/det
# As an overlay over a full COCO config (`tools/train.py --synthetic`):
# configs/_base_/synthetic_coco_instance.py.
_base_ = './synthetic_coco.py'

# the detection pipelines, their LoadAnnotations loading the masks too (polygons, or RLE for
# shapes with a hole: keep poly2mask=True, the default)
train_pipeline = _base_.train_pipeline
train_pipeline[1] = dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
test_pipeline = _base_.test_pipeline
test_pipeline[2] = dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
