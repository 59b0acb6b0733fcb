# Panoptic FPN R-50, 1x COCO, mmdet's standard FPN topology (P6 by stride-2 max-pool of P5,
# three upsamplers) with nearest upsampling: numerically mmdet's panoptic-fpn_r50_fpn_1x_coco
# (PQ 40.2 in mmdet's model zoo). Every config here inherits it and changes `upsample_cfg`
# only: the published Panoptic FPN counts (deconv +1.8M, CARAFE +0.2M, IndexNet +6.3M: three
# modules at 256 channels) put the upsamplers in the FPN alone, so the semantic head keeps
# mmdet's conv + bilinear x2 stages.
# Layout 8 GPUs x 2 images (lr 0.02 for batch 16): `bash tools/dist_train.sh CONFIG 8`, or
# `--auto-scale-lr` on fewer GPUs.
_base_ = 'mmdet::panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['fade_mm.det'], allow_failed_imports=False)

model = dict(
    neck=dict(
        _delete_=True,
        type='UpsamplerFPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        num_outs=5,
        topology='fpn',
        top_down='add',
        upsample_cfg=dict(type='NearestUpsample')))

# fade_mm.engine: atomic checkpoints (fallback to the newest intact one on --resume; another
# model's weights refused unless strict_keys=False), keeping the best validation's (mmdet
# evaluates after every epoch)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', save_best='coco_panoptic/PQ',
                                     rule='greater'))
# fade_mm.engine: RNG states in the checkpoints, for an exact --resume. mmdet's base empties
# custom_hooks (to drop NumClassCheckHook), so this config sets custom_hooks and custom_imports
# itself instead of listing ../_base_/fade_runtime_det.py (two bases may not set one key).
custom_hooks = [dict(type='RNGStateHook')]
# as mmdet: off unless `--auto-scale-lr`, then lr = 0.02 * (GPUs x batch) / 16
auto_scale_lr = dict(enable=False, base_batch_size=16)
