_base_ = './yolox_s_pafpn-nearest_8xb8-300e_coco.py'

model = dict(neck=dict(upsample_cfg=dict(_delete_=True, type='DySample', style='lp', groups=4)))
