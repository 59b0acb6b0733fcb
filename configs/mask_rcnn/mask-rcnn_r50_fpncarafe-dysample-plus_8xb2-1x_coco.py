_base_ = './mask-rcnn_r50_fpncarafe-nearest_8xb2-1x_coco.py'

# DySample+ (dynamic scope) with the biased scope conv of the authors' later forks:
# 16,448 parameters per module at 256 channels.
model = dict(
    neck=dict(
        upsample_cfg=dict(_delete_=True, type='DySample', style='lp', groups=4, dyscope=True,
                          scope_bias=True)))
