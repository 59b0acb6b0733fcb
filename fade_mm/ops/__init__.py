"""Pure-PyTorch operators (no mmcv/mmdet/mmseg needed)."""
from .carafe import CARAFE_IMPLS, carafe, carafe_output_flops, carafe_shift, graph_capture
from .semi_shift import SEMI_SHIFT_IMPLS, semi_shift_conv
from .similarity import local_similarity, similarity_shift

__all__ = ['carafe', 'carafe_shift', 'carafe_output_flops', 'CARAFE_IMPLS', 'graph_capture',
           'local_similarity', 'similarity_shift', 'semi_shift_conv', 'SEMI_SHIFT_IMPLS']
