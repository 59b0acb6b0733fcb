# Toy segmentation model for CPU runs of the demo: a ResNet-18 (V1c) at 1/4 width trained from
# scratch, with the SegFormer all-MLP head whose resizes to 1/4 are the six-upsampler FADE
# cascade (bilinear here, the baseline). Bases by role, as mmseg's configs: model, dataset,
# schedule (hooks included, as mmseg's), runtime. mmseg's own tools (and `mim train mmseg`,
# `Runner.from_cfg`) run it as it is, from the repository root, once the data exists:
#   python -m fade_mm.datasets.synthetic_seg --out data/synthetic/seg
# or `python tools/train.py CONFIG --synthetic`, which generates the data first.
_base_ = [
    'mmseg::_base_/models/segformer_mit-b0.py',
    '../_base_/datasets/synthetic_ade.py',
    '../_base_/schedules/toy_iter_seg.py',  # 400 iterations
    '../_base_/toy_runtime_seg.py',  # mmseg's, with fade_mm's imports and hooks
]

width = 64
model = dict(
    data_preprocessor=dict(size=(96, 96)),  # the dataset base's crop_size
    backbone=dict(_delete_=True, type='ResNetV1c', depth=18, stem_channels=16,
                  base_channels=16, out_indices=(0, 1, 2, 3), norm_eval=False,
                  norm_cfg=dict(type='BN', requires_grad=True), init_cfg=None),
    decode_head=dict(type='UpsamplerSegformerHead', upsample_cfg=None,
                     in_channels=[16, 32, 64, 128], channels=width, num_classes=12))
