# The official SegFormer head (see the bilinear official-head config) with a2u.
_base_ = './segformer_mit-b1_bilinear_official-head_1xb16-160k_ade20k-512x512.py'

model = dict(
    decode_head=dict(
        upsample_cfg=dict(_delete_=True, type='A2U')))
# A2U keeps its (unused when upsampling) downsampling-kernel projection so the module has the
# published 20,042 parameters; DDP must then allow unused parameters, as FADE's A2U runs did.
find_unused_parameters = True
