# Toy Faster R-CNN for CPU runs of the demo: a ResNet-18 at 1/4 width trained from scratch on
# fade_mm's synthetic COCO-format data. Same neck (UpsamplerFPN, FPN_CARAFE topology, four
# upsamplers) as the `fpncarafe` COCO configs; the upsampler files change `upsample_cfg` only.
# Bases by role, as mmdet's configs: model, dataset, schedule, runtime. mmdet's own tools
# (and `mim train mmdet`, `Runner.from_cfg`) run it as it is, from the repository root:
#   python -m fade_mm.datasets.synthetic_det --out data/synthetic/det
#   python $(python -c 'import mmdet,os;print(os.path.dirname(mmdet.__file__))')/.mim/tools/\
#       train.py configs/demo/faster-rcnn_r18-tiny_fpn-fade_synthetic.py
# or `python tools/train.py CONFIG --synthetic`, which generates the data first.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../_base_/datasets/synthetic_coco.py',
    '../_base_/schedules/toy_iter.py',  # 200 iterations
    '../_base_/toy_runtime_det.py',  # mmdet's, with fade_mm's imports and hooks
]

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
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=4)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100)))

# a checkpoint at the end, the best box AP kept
default_hooks = dict(checkpoint=dict(interval={{_base_.max_iters}}, save_best='coco/bbox_mAP'))
