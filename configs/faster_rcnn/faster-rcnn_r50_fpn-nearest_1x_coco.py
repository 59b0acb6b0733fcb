# Faster R-CNN R50, 1x COCO, with the FPN_CARAFE topology (P6 from a stride-2 conv, upsampled
# into P5: four upsamplers) and nearest upsampling: the baseline every upsampler config here
# inherits from and changes in `upsample_cfg` only.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['fade_mm.det'], allow_failed_imports=False)

model = dict(
    # mmdet's CARAFE config pads to 64: P6 of the stride-2 conv then divides evenly.
    data_preprocessor=dict(pad_size_divisor=64),
    neck=dict(
        _delete_=True,
        type='UpsamplerFPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        num_outs=5,
        topology='fpn_carafe',
        fusion='add',
        upsample_cfg=dict(type='NearestUpsample')))
