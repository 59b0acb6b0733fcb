_base_ = './upernet_r101_bilinear_4xb4-80k_ade20k-512x512.py'

model = dict(
    decode_head=dict(
        upsample_cfg=dict(_delete_=True, type='CARAFE', up_kernel=5, encoder_kernel=3,
                          compressed_channels=64)))
