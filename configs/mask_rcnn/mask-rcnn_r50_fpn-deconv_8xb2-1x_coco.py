_base_ = './mask-rcnn_r50_fpn-nearest_8xb2-1x_coco.py'

# 3x3 transposed conv with output padding (as mmdet's FPN_CARAFE builds it): 590,080
# parameters per module at 256 channels, the published deconv rows. kernel_size=None
# gives the 4x4 one (1,048,832).
model = dict(
    neck=dict(
        upsample_cfg=dict(_delete_=True, type='DeconvUpsample', kernel_size=3)))
