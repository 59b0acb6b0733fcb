# YOLOX-s, 300 epochs COCO, with UpsamplerYOLOXPAFPN and nearest upsampling: numerically
# mmdet's yolox_s_8xb8-300e_coco (same layers and state dict, so mmdet's checkpoint loads;
# 8,968,255 parameters; 40.5 box AP in mmdet's metafile). Every `pafpn-*` config of YOLOX-s
# inherits it and changes `upsample_cfg` only (two top-down upsamplers, at 256 and 128
# channels). Layout 8 GPUs x 8 images, as mmdet's.
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'

custom_imports = dict(imports=['fade_mm.det'], allow_failed_imports=False)

model = dict(
    neck=dict(
        type='UpsamplerYOLOXPAFPN',
        # mmdet's base writes nn.Upsample arguments here; name the registry module instead
        upsample_cfg=dict(_delete_=True, type='NearestUpsample')))

# crash-safe checkpoints (fade_mm.engine), keeping the best validation's as well (mmdet keeps
# the last three); mmdet's auto_scale_lr (base_batch_size=64 = 8 x 8) is kept
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', save_best='coco/bbox_mAP',
                                     rule='greater'))
# mmdet's hooks as they are (a config cannot append to a base list), then exact resume
custom_hooks = [
    dict(type='YOLOXModeSwitchHook', num_last_epochs={{_base_.num_last_epochs}}, priority=48),
    dict(type='SyncNormHook', priority=48),
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True,
         priority=49),
    dict(type='RNGStateHook'),
]
