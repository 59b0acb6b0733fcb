# Overlay: points any full mmdet instance-segmentation config (Mask R-CNN) at fade_mm's
# synthetic COCO-format instance data (the detection data, which carries the masks), at toy
# scale, for CPU runs: `tools/train.py CONFIG --synthetic`, or
# fade_mm.configs.apply_overlay(cfg, this file). The dataset keys are those of the by-role
# dataset base below; what only an overlay needs follows. Its `model` keys are applied where
# the config's model has that part.
_base_ = './datasets/synthetic_coco_instance.py'

model = dict(  # the dataset base's 4 classes
    backbone=dict(init_cfg=None),  # no pretrained weights can be downloaded here
    roi_head=dict(bbox_head=dict(num_classes=4),
                  mask_head=dict(num_classes=4)))
# merged over a COCO config's dataloader: drop its AspectRatioBatchSampler
train_dataloader = dict(batch_sampler=None)
