# Runtime keys that every ADE20K config of this repository adds to its full mmseg config,
# listed next to it: `_base_ = ['mmseg::...', '../_base_/fade_runtime_seg.py']` (mmengine
# refuses a key that two bases both set; mmseg's configs set neither of these). The checkpoint
# hook and the evaluator (mmseg's default_hooks, val_evaluator) are set in each root.
custom_imports = dict(imports=['fade_mm.seg'], allow_failed_imports=False)
# fade_mm.engine: RNG states in the checkpoints, for an exact --resume
custom_hooks = [dict(type='RNGStateHook')]
