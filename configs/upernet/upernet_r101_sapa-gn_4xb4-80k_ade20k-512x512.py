_base_ = './upernet_r101_bilinear_4xb4-80k_ade20k-512x512.py'

# SAPA-B as in the authors' later forks: GroupNorm(32) instead of per-pixel LayerNorm
# before the (1x1) embeddings; same parameter count, a different function.
model = dict(
    decode_head=dict(
        upsample_cfg=dict(_delete_=True, type='SAPA', variant='B', norm='group')))
