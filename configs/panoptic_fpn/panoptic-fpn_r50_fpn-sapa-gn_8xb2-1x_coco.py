_base_ = './panoptic-fpn_r50_fpn-nearest_8xb2-1x_coco.py'

# SAPA-B as in the authors' later forks: GroupNorm(32) instead of per-pixel LayerNorm
# before the (1x1) embeddings; same parameter count, a different function.
model = dict(
    neck=dict(
        upsample_cfg=dict(_delete_=True, type='SAPA', variant='B', norm='group')))
