_base_ = './rtmdet_s_pafpn-nearest_8xb32-300e_coco.py'

model = dict(
    neck=dict(
        upsample_cfg=dict(_delete_=True, type='CARAFE', up_kernel=5, encoder_kernel=3,
                          compressed_channels=64)))
