"""Feature upsamplers as plain ``nn.Module``s (torch only): ``forward(x, guide=None)``.

Every one subclasses :class:`Upsampler`: ``init_weights()`` (called by ``__init__``, and by
mmengine's ``BaseModule.init_weights`` through the necks and heads) gives the initialisation
of its paper. With mmengine present, :mod:`fade_mm.registry` registers each class under its
own name in mmengine's root ``MODELS``; mmcv's lowercase 'nearest', 'bilinear', 'deconv',
'pixel_shuffle' and 'carafe' stay mmcv's. ``CARAFE`` is the former name of
``CARAFEUpsample`` (a thin subclass, still registered); ``FADELite`` is
``FADE(depthwise=True)`` under its own name. :func:`set_with_cp` and :func:`saved_tensor_bytes`
switch gradient checkpointing and measure the activation memory it saves.

Shared behaviour at the edges: an empty batch (``B = 0``) gives an empty output of the right
shape (and an empty gradient); a map with no rows or columns (``x`` or guide) is refused
with a ValueError naming it; a NaN/Inf input pixel never yields finite values where it is
read (its own children at least); double backward (``create_graph=True``) works (with
DySample's default sampler, on torch releases whose ``grid_sample`` has one); sizes and
counts accept Python and numpy integers, not bools or floats.
"""
from ._common import Upsampler, saved_tensor_bytes, set_with_cp  # noqa: F401 (Upsampler)
from .a2u import A2U
from .bilinear import BilinearUpsample
from .carafe import CARAFE, CARAFEUpsample
from .convert import convert_official_checkpoint, convert_official_state_dict
from .deconv import DeconvUpsample
from .dysample import DySample
from .fade import FADE
from .fade_lite import FADELite
from .indexnet import IndexNet
from .nearest import NearestUpsample
from .pixel_shuffle import PixelShuffleUpsample
from .sapa import SAPA

#: The upsamplers (registered under these names), then the helpers. ``Upsampler``, their
#: base class, is not an upsampler and is left out.
__all__ = ['A2U', 'BilinearUpsample', 'CARAFE', 'CARAFEUpsample', 'DeconvUpsample', 'DySample',
           'FADE', 'FADELite', 'IndexNet', 'NearestUpsample', 'PixelShuffleUpsample', 'SAPA',
           'convert_official_checkpoint', 'convert_official_state_dict', 'saved_tensor_bytes',
           'set_with_cp']
