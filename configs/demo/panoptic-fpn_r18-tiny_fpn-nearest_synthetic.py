# Toy Panoptic FPN for CPU runs of the demo: a ResNet-18 at 1/4 width from scratch, the toy
# Mask R-CNN heads of mask-rcnn_r18-tiny_fpn-nearest_synthetic.py and mmdet's semantic FPN
# head for the stuff, on fade_mm's synthetic COCO-panoptic data (4 thing, 3 stuff classes).
# mmdet's standard FPN topology (three upsamplers), as the Panoptic FPN COCO configs; the
# upsampler files change `upsample_cfg` only (the semantic head keeps mmdet's conv + bilinear
# stages). Bases by role, as mmdet's configs: model, dataset, schedule, runtime. mmdet's own
# tools (and `mim train mmdet`, `Runner.from_cfg`) run it as it is, from the repository root:
#   python -m fade_mm.datasets.synthetic_pan --out data/synthetic/pan
#   python $(python -c 'import mmdet,os;print(os.path.dirname(mmdet.__file__))')/.mim/tools/\
#       train.py configs/demo/panoptic-fpn_r18-tiny_fpn-fade_synthetic.py
# or `python tools/train.py CONFIG --synthetic`, which generates the data first.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/synthetic_coco_panoptic.py',
    '../_base_/schedules/toy_iter.py',  # 200 iterations
    'mmdet::_base_/default_runtime.py',
]

width = 64
model = dict(
    type='PanopticFPN',
    data_preprocessor=dict(pad_size_divisor=32, pad_mask=True, mask_pad_value=0,
                           pad_seg=True, seg_pad_value=255),
    backbone=dict(depth=18, base_channels=16, stem_channels=16, frozen_stages=-1,
                  norm_eval=False, init_cfg=None),  # from scratch: BN statistics train too
    neck=dict(_delete_=True, type='UpsamplerFPN', in_channels=[16, 32, 64, 128],
              out_channels=width, num_outs=5, topology='fpn', top_down='add',
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
    semantic_head=dict(
        type='PanopticFPNHead', num_things_classes=4, num_stuff_classes=3,
        in_channels=width, inner_channels=32, start_level=0, end_level=4,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True), conv_cfg=None,
        loss_seg=dict(type='CrossEntropyLoss', ignore_index=255, loss_weight=0.5)),
    panoptic_fusion_head=dict(
        type='HeuristicFusionHead', num_things_classes=4, num_stuff_classes=3),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=100),
        rcnn=dict(score_thr=0.6, nms=dict(type='nms', iou_threshold=0.5, class_agnostic=True),
                  max_per_img=100, mask_thr_binary=0.5),
        # mmdet drops stuff segments under 4096 px (COCO scale): the toy images are ~160 px
        panoptic=dict(mask_overlap=0.5, stuff_area_limit=64)))

# fade_mm.engine: atomic checkpoints (fallback to the newest intact one on --resume; another
# model's weights refused unless strict_keys=False), the best PQ kept
default_hooks = dict(logger=dict(interval=50),
                     checkpoint=dict(type='SafeCheckpointHook', by_epoch=False,
                                     interval={{_base_.max_iters}},
                                     save_best='coco_panoptic/PQ', rule='greater'))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)

# PNGs of every upsampler's input, guide, output (and FADE's gate) on a fixed val image,
# every 100 iterations and after training: work_dir/upsampler_vis/; RNG states in the
# checkpoints for an exact --resume
custom_imports = dict(imports=['fade_mm.det', 'fade_mm.visualization'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='UpsamplerVisHook', interval=100), dict(type='RNGStateHook')]
