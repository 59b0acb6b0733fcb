# Model base (by role, as mmdet's _base_/models/mask-rcnn_r50_fpn.py, which it scales down) of
# the toy Mask R-CNN and Panoptic FPN of configs/demo: the toy Faster R-CNN of
# configs/demo/faster-rcnn_r18-tiny_fpn-nearest_synthetic.py (ResNet-18 at 1/4 width from
# scratch, UpsamplerFPN with the FPN_CARAFE topology and four nearest upsamplers) plus mmdet's
# FCN mask head at the same width, for 4 classes. (mmengine merges a config's keys over one
# model base: the Faster R-CNN parts are written here again, over mmdet's Mask R-CNN.)
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

width = 64
model = dict(
    # as mmdet's CARAFE config: P6 of the stride-2 conv then divides evenly
    data_preprocessor=dict(pad_size_divisor=64),
    backbone=dict(depth=18, base_channels=16, stem_channels=16, frozen_stages=-1,
                  norm_eval=False, init_cfg=None),  # from scratch: BN statistics train too
    neck=dict(_delete_=True, type='UpsamplerFPN', in_channels=[16, 32, 64, 128],
              out_channels=width, num_outs=5, topology='fpn_carafe', top_down='add',
              upsample_cfg=dict(type='NearestUpsample')),
    rpn_head=dict(
        in_channels=width, feat_channels=width,
        # objects from a few pixels up: anchors of 16 px at stride 4 instead of 32
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        # fixed 1x1 sampling per bin: mmcv's CPU RoIAlign backward dominates a step otherwise
        bbox_roi_extractor=dict(out_channels=width,
                                roi_layer=dict(type='RoIAlign', output_size=7,
                                               sampling_ratio=1)),
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=4),
        mask_roi_extractor=dict(out_channels=width,
                                roi_layer=dict(type='RoIAlign', output_size=14,
                                               sampling_ratio=1)),
        mask_head=dict(in_channels=width, conv_out_channels=width, num_classes=4)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100)))
