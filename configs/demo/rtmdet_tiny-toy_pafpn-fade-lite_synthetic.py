_base_ = './rtmdet_tiny-toy_pafpn-nearest_synthetic.py'

model = dict(neck=dict(upsample_cfg=dict(_delete_=True, type='FADELite')))
