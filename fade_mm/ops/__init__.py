"""Pure-PyTorch operators (no mmcv/mmdet/mmseg needed)."""
from .carafe import carafe, carafe_output_flops
from .semi_shift import SEMI_SHIFT_IMPLS, semi_shift_conv

__all__ = ['carafe', 'carafe_output_flops', 'semi_shift_conv', 'SEMI_SHIFT_IMPLS']
