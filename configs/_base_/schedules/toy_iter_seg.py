# Schedule base (by role, as mmseg's _base_/schedules/schedule_160k.py, hooks included) of the
# toy segmenters of configs/demo: iteration-based, 400 iterations, AdamW with warm-up and
# linear (poly 1) decay, validation and checkpoint at the end. A config that changes
# `max_iters` sets train_cfg, param_scheduler and the checkpoint interval again.
max_iters = 400
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999),
                                    weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=30, end=max_iters),
]
# fade_mm.engine's SafeCheckpointHook: atomic checkpoints (fallback to the newest intact one on
# --resume; another model's weights refused unless strict_keys=False); the best mIoU is kept
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='SafeCheckpointHook', by_epoch=False, interval=max_iters,
                    save_best='mIoU', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
