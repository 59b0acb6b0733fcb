# Toy Mask R-CNN for CPU runs of the demo: the toy Faster R-CNN of
# faster-rcnn_r18-tiny_fpn-nearest_synthetic.py (ResNet-18 at 1/4 width from scratch, the
# FPN_CARAFE topology with four upsamplers) plus mmdet's FCN mask head at the same width, on
# fade_mm's synthetic COCO-format data with instance masks. The upsampler files change
# `upsample_cfg` only (the mask head keeps its own 2x2 deconv, as in the COCO configs).
# Bases by role, as mmdet's configs: model, dataset, schedule, runtime. mmdet's own tools (and
# `mim train mmdet`, `Runner.from_cfg`) run it as it is, from the repository root:
#   python -m fade_mm.datasets.synthetic_det --out data/synthetic/det
#   python $(python -c 'import mmdet,os;print(os.path.dirname(mmdet.__file__))')/.mim/tools/\
#       train.py configs/demo/mask-rcnn_r18-tiny_fpn-fade_synthetic.py
# or `python tools/train.py CONFIG --synthetic`, which generates the data first.
_base_ = [
    '../_base_/models/mask-rcnn_r18-tiny_fpn.py',  # mmdet's, scaled down
    '../_base_/datasets/synthetic_coco_instance.py',
    '../_base_/schedules/toy_iter.py',  # 200 iterations
    '../_base_/toy_runtime_det.py',  # mmdet's, with fade_mm's imports and hooks
]

# a checkpoint at the end, the best mask AP kept
default_hooks = dict(checkpoint=dict(interval={{_base_.max_iters}}, save_best='coco/segm_mAP'))
