# Runtime base (by role, as mmseg's _base_/default_runtime.py, which it extends) of the toy
# segmenters of configs/demo: fade_mm's imports and hooks, seed 0. The checkpoint hook is in
# the schedule base (schedules/toy_iter_seg.py), as mmseg keeps its hooks.
_base_ = 'mmseg::_base_/default_runtime.py'

randomness = dict(seed=0)

# PNGs of every upsampler's input, guide, output (and FADE's gate) on a fixed val image,
# every 100 iterations and after training: work_dir/upsampler_vis/; RNG states in the
# checkpoints for an exact --resume
custom_imports = dict(imports=['fade_mm.seg', 'fade_mm.visualization'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='UpsamplerVisHook', interval=100), dict(type='RNGStateHook')]
