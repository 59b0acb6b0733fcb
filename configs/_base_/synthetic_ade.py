# Overlay: points any full mmseg config at fade_mm's synthetic ADE-style data, at toy scale,
# for CPU runs: `tools/train.py CONFIG --synthetic`, or fade_mm.configs.apply_overlay(cfg,
# this file). The dataset keys are those of the by-role dataset base below; what only an
# overlay needs follows. Its `model` keys are applied where the config's model has that part.
_base_ = './datasets/synthetic_ade.py'

model = dict(  # the dataset base's crop_size and 12 classes
    data_preprocessor=dict(size=(96, 96)),
    backbone=dict(init_cfg=None),  # no pretrained weights can be downloaded here
    decode_head=dict(num_classes=12))
