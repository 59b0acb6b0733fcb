_base_ = './segformer-head_r18-tiny_bilinear_synthetic.py'

model = dict(decode_head=dict(upsample_cfg=dict(_delete_=True, type='FADE')))
