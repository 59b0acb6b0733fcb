_base_ = './segformer_mit-b0_bilinear_8xb2-160k_ade20k-512x512.py'

model = dict(
    decode_head=dict(
        upsample_cfg=dict(_delete_=True, type='PixelShuffleUpsample')))
