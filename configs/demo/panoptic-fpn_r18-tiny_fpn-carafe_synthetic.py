_base_ = './panoptic-fpn_r18-tiny_fpn-nearest_synthetic.py'

model = dict(neck=dict(upsample_cfg=dict(_delete_=True, type='CARAFE')))
