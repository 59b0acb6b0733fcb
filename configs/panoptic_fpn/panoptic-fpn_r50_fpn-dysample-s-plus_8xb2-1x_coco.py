_base_ = './panoptic-fpn_r50_fpn-nearest_8xb2-1x_coco.py'

# DySample-S+ (pixel-shuffle-first 'pl' style, dynamic scope, 8 groups): 2,064 parameters per
# module at 256 channels, three modules = the published +6.2K of the Panoptic FPN row.
model = dict(
    neck=dict(
        upsample_cfg=dict(_delete_=True, type='DySample', style='pl', groups=8, dyscope=True)))
