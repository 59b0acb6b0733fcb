_base_ = './upernet_r101_bilinear_4xb4-80k_ade20k-512x512.py'

# DySample+ (dynamic scope) with the biased scope conv of the authors' later forks:
# 16,448 parameters per module at 256 channels.
model = dict(
    decode_head=dict(
        upsample_cfg=dict(_delete_=True, type='DySample', style='lp', groups=4, dyscope=True,
                          scope_bias=True)))
