"""Visualisation of upsamplers during training:
``custom_imports=dict(imports=['fade_mm.visualization'])`` registers
:class:`UpsamplerVisHook` in mmengine's root ``HOOKS`` (seen by mmdet and mmseg configs)."""
from .upsampler_hook import (
                             UPSAMPLER_CLASSES,
                             UpsamplerVisHook,
                             find_upsamplers,
                             inference_pipeline_cfg,
                             panel_shape,
                             tile_shape,
)

__all__ = ['UPSAMPLER_CLASSES', 'UpsamplerVisHook', 'find_upsamplers', 'inference_pipeline_cfg',
           'panel_shape', 'tile_shape']
