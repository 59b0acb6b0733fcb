# Runtime keys that a COCO detection config of this repository adds to its full mmdet config,
# listed next to it: `_base_ = ['mmdet::...', '../_base_/fade_runtime_det.py']`. mmengine refuses
# a key that two bases both set, so this holds the keys mmdet's Faster and Mask R-CNN configs
# leave unset; the Panoptic FPN, RTMDet and YOLOX configs (whose mmdet configs set
# custom_hooks) write them themselves. The checkpoint hook (mmdet's default_hooks) is set in
# each family's root, with the metric of its best checkpoint.
custom_imports = dict(imports=['fade_mm.det'], allow_failed_imports=False)
# fade_mm.engine: RNG states in the checkpoints, for an exact --resume
custom_hooks = [dict(type='RNGStateHook')]
