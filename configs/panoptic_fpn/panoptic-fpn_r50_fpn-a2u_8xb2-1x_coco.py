_base_ = './panoptic-fpn_r50_fpn-nearest_8xb2-1x_coco.py'

model = dict(
    neck=dict(
        upsample_cfg=dict(_delete_=True, type='A2U')))
# A2U keeps its (unused when upsampling) downsampling-kernel projection so the module has the
# published 20,042 parameters; DDP must then allow unused parameters, as FADE's A2U runs did.
find_unused_parameters = True
