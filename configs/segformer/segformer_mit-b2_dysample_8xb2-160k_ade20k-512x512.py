_base_ = './segformer_mit-b2_bilinear_8xb2-160k_ade20k-512x512.py'

model = dict(
    decode_head=dict(
        upsample_cfg=dict(_delete_=True, type='DySample', style='lp', groups=4)))
