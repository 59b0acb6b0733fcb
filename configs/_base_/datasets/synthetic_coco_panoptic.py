# Dataset base (by role, as mmdet's _base_/datasets/coco_panoptic.py): fade_mm's synthetic
# COCO-panoptic data (the shapes of synthetic_coco.py as things over sky/ground/water stuff) at
# toy scale, for CPU runs. Dataset keys only, so it composes with any mmdet model base. The
# model must predict 4 thing and 3 stuff classes. Pipelines and dataloaders are those of
# synthetic_coco.py (scale, batch sizes, samplers) on the panoptic root, annotations and metric.
# Generate the data (seed 0) with
#   python -m fade_mm.datasets.synthetic_pan --out data/synthetic/pan
# mmdet's panoptic loading and metric import panopticapi: where it is not installed,
# fade_mm.datasets.panopticapi_fallback.install() stands in for it (importing fade_mm.det
# installs it: list 'fade_mm.det' in custom_imports).
# As an overlay over a full COCO config (`tools/train.py --synthetic`):
# configs/_base_/synthetic_coco_panoptic.py.
_base_ = './synthetic_coco.py'

dataset_type = 'CocoPanopticDataset'
data_root = 'data/synthetic/pan'
classes = ('rectangle', 'ellipse', 'triangle', 'ring',  # things: synthetic_det_classes(4)
           'sky', 'ground', 'water')                     # stuff: STUFF_CLASSES

train_pipeline = _base_.train_pipeline
train_pipeline[1] = dict(type='LoadPanopticAnnotations')
test_pipeline = _base_.test_pipeline
test_pipeline[2] = dict(type='LoadPanopticAnnotations')
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root,
                 metainfo=dict(classes=classes, thing_classes=classes[:4],
                               stuff_classes=classes[4:]),
                 ann_file='annotations/panoptic_train.json',
                 data_prefix=dict(img='train/', seg='annotations/panoptic_train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root,
                 metainfo=dict(classes=classes, thing_classes=classes[:4],
                               stuff_classes=classes[4:]),
                 ann_file='annotations/panoptic_val.json',
                 data_prefix=dict(img='val/', seg='annotations/panoptic_val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
# the panoptic metric in place of the box metric (both paths start with data_root, for
# fade_mm.configs.apply_overlay to re-point them)
val_evaluator = dict(_delete_=True, type='CocoPanopticMetric',
                     ann_file=data_root + '/annotations/panoptic_val.json',
                     seg_prefix=data_root + '/annotations/panoptic_val/', nproc=1)
test_evaluator = val_evaluator
