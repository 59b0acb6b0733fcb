# Mask R-CNN R-50, 1x COCO, with the FPN_CARAFE topology (P6 from a stride-2 conv of C5,
# upsampled into P5: four upsamplers; 49,705,264 parameters with nearest) -- the topology
# of mmdet's CARAFE Mask R-CNN config and the one the published DySample Mask R-CNN counts
# (+32.7K, +65.5K: four modules) imply. Every `fpncarafe-*` config inherits it and changes
# `upsample_cfg` only.
_base_ = './mask-rcnn_r50_fpn-nearest_8xb2-1x_coco.py'

model = dict(
    # mmdet's CARAFE config pads to 64: P6 of the stride-2 conv then divides evenly.
    data_preprocessor=dict(pad_size_divisor=64),
    neck=dict(topology='fpn_carafe'))
