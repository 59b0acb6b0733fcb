# The official SegFormer head (see the bilinear official-head config) with deconv.
_base_ = './segformer_mit-b1_bilinear_official-head_1xb16-160k_ade20k-512x512.py'

# 3x3 transposed conv with output padding (as mmdet's FPN_CARAFE builds it): 590,080
# parameters per module at 256 channels, the published deconv rows. kernel_size=None
# gives the 4x4 one (1,048,832).
model = dict(
    decode_head=dict(
        upsample_cfg=dict(_delete_=True, type='DeconvUpsample', kernel_size=3)))
