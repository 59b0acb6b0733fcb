_base_ = './mask-rcnn_r50_fpncarafe-sapa_8xb2-1x_coco.py'

# as mmdet's mask-rcnn_r101_fpn_1x_coco.py
model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
