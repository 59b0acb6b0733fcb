_base_ = './panoptic-fpn_r50_fpn-nearest_8xb2-1x_coco.py'

# FADE without its gate: the default of the authors' later mmdet/mmseg forks.
model = dict(
    neck=dict(
        upsample_cfg=dict(_delete_=True, type='FADE', fusion='none')))
