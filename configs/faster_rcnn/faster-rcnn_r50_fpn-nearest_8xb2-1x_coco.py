# Faster R-CNN R-50, 1x COCO, mmdet's standard FPN topology (P6 by stride-2 max-pool of P5,
# three upsamplers) with nearest upsampling: numerically mmdet's faster-rcnn_r50_fpn_1x_coco
# (41,753,056 parameters; 37.4 AP in mmdet's model zoo). Every `fpn-*` config inherits it and
# changes `upsample_cfg` only; the `fpncarafe-*` set switches the topology.
# Layout 8 GPUs x 2 images (lr 0.02 for batch 16): `bash tools/dist_train.sh CONFIG 8`, or
# `--auto-scale-lr` on fewer GPUs.
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
          '../_base_/fade_runtime_det.py']  # fade_mm's imports, RNG states

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
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', save_best='coco/bbox_mAP',
                                     rule='greater'))
# as mmdet: off unless `--auto-scale-lr`, then lr = 0.02 * (GPUs x batch) / 16
auto_scale_lr = dict(enable=False, base_batch_size=16)
