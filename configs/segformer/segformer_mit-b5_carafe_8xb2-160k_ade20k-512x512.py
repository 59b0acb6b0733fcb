_base_ = './segformer_mit-b5_bilinear_8xb2-160k_ade20k-512x512.py'

model = dict(
    decode_head=dict(
        upsample_cfg=dict(_delete_=True, type='CARAFE', up_kernel=5, encoder_kernel=3,
                          compressed_channels=64)))
