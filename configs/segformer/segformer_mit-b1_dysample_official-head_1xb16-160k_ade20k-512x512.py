# The official SegFormer head (see the bilinear official-head config) with dysample.
_base_ = './segformer_mit-b1_bilinear_official-head_1xb16-160k_ade20k-512x512.py'

model = dict(
    decode_head=dict(
        upsample_cfg=dict(_delete_=True, type='DySample', style='lp', groups=4)))
