_base_ = './panoptic-fpn_r50_fpn-nearest_8xb2-1x_coco.py'

model = dict(
    neck=dict(
        upsample_cfg=dict(_delete_=True, type='CARAFE', up_kernel=5, encoder_kernel=3,
                          compressed_channels=64)))
