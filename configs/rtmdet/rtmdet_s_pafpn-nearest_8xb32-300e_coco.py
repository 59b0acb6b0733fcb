# RTMDet-s, 300 epochs COCO, with UpsamplerCSPNeXtPAFPN and nearest upsampling: numerically
# mmdet's rtmdet_s_8xb32-300e_coco (same layers and state dict, so mmdet's checkpoint loads;
# 8,886,924 parameters; 44.5 box AP in mmdet's metafile). Every `pafpn-*` config of RTMDet-s
# inherits it and changes `upsample_cfg` only (two top-down upsamplers, at 256 and 128
# channels). Layout 8 GPUs x 32 images, as mmdet's.
_base_ = 'mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py'

custom_imports = dict(imports=['fade_mm.det'], allow_failed_imports=False)

model = dict(
    neck=dict(
        type='UpsamplerCSPNeXtPAFPN',
        upsample_cfg=dict(type='NearestUpsample')))

# crash-safe checkpoints (fade_mm.engine), keeping the best validation's as well (mmdet keeps
# the last three)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', save_best='coco/bbox_mAP',
                                     rule='greater'))
# mmdet's hooks as they are (a config cannot append to a base list), then exact resume
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True,
         priority=49),
    dict(type='PipelineSwitchHook', switch_epoch=280,
         switch_pipeline={{_base_.train_pipeline_stage2}}),
    dict(type='RNGStateHook'),
]
# lr 0.004 is for batch 8 x 32 = 256; mmdet's RTMDet configs inherit schedule_1x's
# base_batch_size=16, which would make `--auto-scale-lr` multiply it by 16 on 8 x 32
auto_scale_lr = dict(enable=False, base_batch_size=256)
