# Overlay: points any full Panoptic FPN config at fade_mm's synthetic COCO-panoptic data, at
# toy scale, for CPU runs: `tools/train.py CONFIG --synthetic`, or
# fade_mm.configs.apply_overlay(cfg, this file). The dataset keys are those of the by-role
# dataset base below; what only an overlay needs follows. Its `model` keys are applied where
# the config's model has that part.
_base_ = './datasets/synthetic_coco_panoptic.py'

model = dict(  # 4 thing, 3 stuff classes of the dataset base
    backbone=dict(init_cfg=None),  # no pretrained weights can be downloaded here
    roi_head=dict(bbox_head=dict(num_classes=4), mask_head=dict(num_classes=4)),
    semantic_head=dict(num_things_classes=4, num_stuff_classes=3),
    panoptic_fusion_head=dict(num_things_classes=4, num_stuff_classes=3),
    # mmdet drops stuff segments under 4096 px (COCO scale): the toy images are ~160 px wide
    test_cfg=dict(panoptic=dict(stuff_area_limit=64)))
# merged over a COCO config's dataloader: drop its AspectRatioBatchSampler
train_dataloader = dict(batch_sampler=None)
