# Toy Faster R-CNN for CPU runs of the demo: a ResNet-18 at 1/4 width trained from scratch on
# fade_mm's synthetic COCO-format data. Same neck (UpsamplerFPN, FPN_CARAFE topology, four
# upsamplers) as the COCO configs; the upsampler files change `upsample_cfg` only. The data
# comes from the synthetic overlay:
#   python tools/train.py configs/demo/faster-rcnn_r18-tiny_fpn-fade_synthetic.py \
#       --synthetic data/synthetic/det
_base_ = '../faster_rcnn/faster-rcnn_r50_fpn-nearest_1x_coco.py'

width = 64
model = dict(
    backbone=dict(depth=18, base_channels=16, stem_channels=16, frozen_stages=-1,
                  norm_eval=False, init_cfg=None),  # from scratch: BN statistics train too
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=width),
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

max_iters = 200
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=0.02, weight_decay=1e-4),
                     clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min=1e-4),
]
default_hooks = dict(logger=dict(interval=50),
                     checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False)

# PNGs of every upsampler's input, guide, output (and FADE's gate) on a fixed val image,
# every 100 iterations and after training: work_dir/upsampler_vis/
custom_imports = dict(imports=['fade_mm.det', 'fade_mm.visualization'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='UpsamplerVisHook', interval=100)]
