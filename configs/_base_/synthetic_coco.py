# Overlay: points any full mmdet detection config at fade_mm's synthetic COCO-format data, at
# toy scale, for CPU runs: `tools/train.py CONFIG --synthetic`, or
# fade_mm.configs.apply_overlay(cfg, this file). The dataset keys are those of the by-role
# dataset base below; what only an overlay needs follows. Its `model` keys are applied where
# the config's model has that part (a two-stage or a single-stage detector alike).
_base_ = './datasets/synthetic_coco.py'

model = dict(  # the dataset base's 4 classes
    backbone=dict(init_cfg=None),  # no pretrained weights can be downloaded here
    roi_head=dict(bbox_head=dict(num_classes=4)),  # two-stage
    bbox_head=dict(num_classes=4))                 # single-stage
# merged over a COCO config's dataloader: drop its AspectRatioBatchSampler
train_dataloader = dict(batch_sampler=None)
