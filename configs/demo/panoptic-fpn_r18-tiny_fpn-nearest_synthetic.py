# Toy Panoptic FPN for CPU runs of the demo: the toy Mask R-CNN of the model base (ResNet-18 at
# 1/4 width from scratch, as mask-rcnn_r18-tiny_fpn-nearest_synthetic.py) and mmdet's semantic
# FPN head for the stuff, on fade_mm's synthetic COCO-panoptic data (4 thing, 3 stuff classes).
# mmdet's standard FPN topology (three upsamplers), as the Panoptic FPN COCO configs; the
# upsampler files change `upsample_cfg` only (the semantic head keeps mmdet's conv + bilinear
# stages). Bases by role, as mmdet's configs: model, dataset, schedule, runtime. mmdet's own
# tools (and `mim train mmdet`, `Runner.from_cfg`) run it as it is, from the repository root:
#   python -m fade_mm.datasets.synthetic_pan --out data/synthetic/pan
#   python $(python -c 'import mmdet,os;print(os.path.dirname(mmdet.__file__))')/.mim/tools/\
#       train.py configs/demo/panoptic-fpn_r18-tiny_fpn-fade_synthetic.py
# or `python tools/train.py CONFIG --synthetic`, which generates the data first.
_base_ = [
    '../_base_/models/mask-rcnn_r18-tiny_fpn.py',  # mmdet's, scaled down
    '../_base_/datasets/synthetic_coco_panoptic.py',
    '../_base_/schedules/toy_iter.py',  # 200 iterations
    '../_base_/toy_runtime_det.py',  # mmdet's, with fade_mm's imports and hooks
]

# Panoptic FPN over the toy Mask R-CNN, as mmdet's panoptic-fpn_r50_fpn_1x_coco.py over its
# Mask R-CNN base
model = dict(
    type='PanopticFPN',
    data_preprocessor=dict(pad_size_divisor=32, pad_mask=True, mask_pad_value=0,
                           pad_seg=True, seg_pad_value=255),
    neck=dict(topology='fpn'),  # mmdet's standard topology, as the Panoptic FPN COCO configs
    semantic_head=dict(
        type='PanopticFPNHead', num_things_classes=4, num_stuff_classes=3,
        in_channels={{_base_.width}}, inner_channels=32, start_level=0, end_level=4,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True), conv_cfg=None,
        loss_seg=dict(type='CrossEntropyLoss', ignore_index=255, loss_weight=0.5)),
    panoptic_fusion_head=dict(
        type='HeuristicFusionHead', num_things_classes=4, num_stuff_classes=3),
    test_cfg=dict(
        rcnn=dict(score_thr=0.6, nms=dict(type='nms', iou_threshold=0.5, class_agnostic=True),
                  max_per_img=100, mask_thr_binary=0.5),
        # mmdet drops stuff segments under 4096 px (COCO scale): the toy images are ~160 px
        panoptic=dict(mask_overlap=0.5, stuff_area_limit=64)))

# a checkpoint at the end, the best PQ kept
default_hooks = dict(checkpoint=dict(interval={{_base_.max_iters}}, save_best='coco_panoptic/PQ'))
