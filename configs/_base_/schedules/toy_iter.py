# Schedule base (by role, as mmdet's _base_/schedules/schedule_1x.py) of the toy detectors of
# configs/demo: iteration-based, 200 iterations, SGD with warm-up and cosine decay, validation
# at the end. No hooks (mmdet keeps them in default_runtime.py). A config that changes
# `max_iters` sets train_cfg and param_scheduler again (their ends are computed here).
max_iters = 200
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
                     clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min=1e-4),
]
# as mmdet: off unless `--auto-scale-lr`, then lr = 0.02 * (GPUs x batch) / 16
auto_scale_lr = dict(enable=False, base_batch_size=16)
