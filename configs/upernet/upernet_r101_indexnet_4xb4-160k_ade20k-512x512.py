_base_ = './upernet_r101_bilinear_4xb4-160k_ade20k-512x512.py'

model = dict(
    decode_head=dict(
        upsample_cfg=dict(_delete_=True, type='IndexNet')))
