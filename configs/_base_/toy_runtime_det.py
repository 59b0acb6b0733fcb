# Runtime base (by role, as mmdet's _base_/default_runtime.py, which it extends) of the toy
# detectors of configs/demo: fade_mm's imports and hooks, iteration-based logging, seed 0.
# Each config sets its checkpoint's `interval` (the schedule's max_iters) and `save_best`.
_base_ = 'mmdet::_base_/default_runtime.py'

# fade_mm.engine: atomic checkpoints (fallback to the newest intact one on --resume; another
# model's weights refused unless strict_keys=False), the best validation kept
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', by_epoch=False, rule='greater'))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)

# PNGs of every upsampler's input, guide, output (and FADE's gate) on a fixed val image,
# every 100 iterations and after training: work_dir/upsampler_vis/; RNG states in the
# checkpoints for an exact --resume
custom_imports = dict(imports=['fade_mm.det', 'fade_mm.visualization'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='UpsamplerVisHook', interval=100), dict(type='RNGStateHook')]
