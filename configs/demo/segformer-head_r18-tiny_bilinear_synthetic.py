# Toy segmentation model for CPU runs of the demo: a ResNet-18 (V1c) at 1/4 width trained from
# scratch, with the SegFormer all-MLP head whose resizes to 1/4 are the six-upsampler FADE
# cascade (bilinear here, the baseline). Data: the synthetic ADE-style overlay:
#   python tools/train.py configs/demo/segformer-head_r18-tiny_fade_synthetic.py \
#       --synthetic data/synthetic/seg
_base_ = '../segformer/segformer_mit-b0_bilinear_1xb16-160k_ade20k-512x512.py'

width = 64
model = dict(
    backbone=dict(_delete_=True, type='ResNetV1c', depth=18, stem_channels=16,
                  base_channels=16, out_indices=(0, 1, 2, 3), norm_eval=False,
                  norm_cfg=dict(type='BN', requires_grad=True), init_cfg=None),
    decode_head=dict(in_channels=[16, 32, 64, 128], channels=width, num_classes=12))

max_iters = 400
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999),
                                    weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=30, end=max_iters),
]
default_hooks = dict(logger=dict(interval=50),
                     checkpoint=dict(by_epoch=False, interval=max_iters))
randomness = dict(seed=0)

# PNGs of every upsampler's input, guide, output (and FADE's gate) on a fixed val image,
# every 100 iterations and after training: work_dir/upsampler_vis/
custom_imports = dict(imports=['fade_mm.seg', 'fade_mm.visualization'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='UpsamplerVisHook', interval=100)]
