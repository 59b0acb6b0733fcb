# Toy RTMDet for CPU runs of the demo: RTMDet-tiny's CSPNeXt backbone, PAFPN and shared
# separable-BN head at 1/3 of its width, trained from scratch on fade_mm's synthetic
# COCO-format data with the plain pipeline of the dataset base (no Mosaic caching, no EMA, an
# iteration-based loop). The neck is UpsamplerCSPNeXtPAFPN, as in the RTMDet COCO configs (two
# top-down upsamplers); the upsampler files change `upsample_cfg` only.
# Bases by role, as mmdet's configs: dataset, schedule, runtime; the model is written out here,
# as in mmdet's RTMDet configs. mmdet's own tools (and `mim train mmdet`, `Runner.from_cfg`) run
# it as it is, from the repository root:
#   python -m fade_mm.datasets.synthetic_det --out data/synthetic/det
#   python $(python -c 'import mmdet,os;print(os.path.dirname(mmdet.__file__))')/.mim/tools/\
#       train.py configs/demo/rtmdet_tiny-toy_pafpn-fade_synthetic.py
# or `python tools/train.py CONFIG --synthetic`, which generates the data first.
_base_ = [
    '../_base_/datasets/synthetic_coco.py',
    '../_base_/schedules/toy_iter.py',  # its loops; 500 iterations below
    '../_base_/toy_runtime_det.py',  # mmdet's, with fade_mm's imports and hooks
]

width = 32
norm_cfg = dict(type='BN')
act_cfg = dict(type='SiLU', inplace=True)
model = dict(
    type='RTMDet',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[103.53, 116.28, 123.675],
                           std=[57.375, 57.12, 58.395], bgr_to_rgb=False,
                           pad_size_divisor=32, batch_augments=None),
    backbone=dict(type='CSPNeXt', arch='P5', expand_ratio=0.5, deepen_factor=0.167,
                  widen_factor=0.125, channel_attention=True, norm_cfg=norm_cfg,
                  act_cfg=act_cfg, init_cfg=None),  # from scratch
    neck=dict(type='UpsamplerCSPNeXtPAFPN', in_channels=[32, 64, 128], out_channels=width,
              num_csp_blocks=1, expand_ratio=0.5, norm_cfg=norm_cfg, act_cfg=act_cfg,
              upsample_cfg=dict(type='NearestUpsample')),
    bbox_head=dict(
        type='RTMDetSepBNHead', num_classes=4, in_channels=width, stacked_convs=2,
        feat_channels=width,
        anchor_generator=dict(type='MlvlPointGenerator', offset=0, strides=[8, 16, 32]),
        bbox_coder=dict(type='DistancePointBBoxCoder'),
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        with_objectness=False, exp_on_reg=False, share_conv=True, pred_kernel_size=1,
        norm_cfg=norm_cfg, act_cfg=act_cfg),
    train_cfg=dict(assigner=dict(type='DynamicSoftLabelAssigner', topk=13),
                   allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.001,
                  nms=dict(type='nms', iou_threshold=0.65), max_per_img=100))

# A one-stage detector from scratch needs more steps than the two-stage toys (an RTMDet step
# costs a third of theirs): 500 iterations, AdamW as RTMDet's (lr 0.004, no weight decay on
# norms and biases) with the toy schedule's warm-up and cosine decay.
max_iters = 500
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=0.004, weight_decay=0.05),
                     paramwise_cfg=dict(norm_decay_mult=0, bias_decay_mult=0,
                                        bypass_duplicate=True),
                     clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min=1e-4),
]

# a checkpoint at the end, the best box AP kept
default_hooks = dict(checkpoint=dict(interval=max_iters, save_best='coco/bbox_mAP'))
