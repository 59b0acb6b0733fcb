"""Every upsampler of the package at a small width, for tests that sweep the whole zoo."""
import torch.nn as nn

import fade_mm.upsamplers as U

#: (id, class, extra constructor arguments); guided ones take the guide as encoder feature.
ZOO = [
    ('nearest', U.NearestUpsample, {}),
    ('bilinear', U.BilinearUpsample, {}),
    ('deconv', U.DeconvUpsample, {}),
    ('pixel_shuffle', U.PixelShuffleUpsample, {}),
    ('carafe', U.CARAFEUpsample, {}),
    ('fade', U.FADE, {}),
    ('fade_lite', U.FADELite, {}),
    ('fade_h2l', U.FADE, {'semi_shift_impl': 'h2l'}),
    ('sapa_b', U.SAPA, {}),
    ('sapa_g', U.SAPA, {'variant': 'G'}),
    ('a2u', U.A2U, {}),
    ('indexnet', U.IndexNet, {}),
    ('dysample', U.DySample, {}),
    ('dysample_plus', U.DySample, {'dyscope': True}),
    ('dysample_pl', U.DySample, {'style': 'pl'}),
]
IDS = [z[0] for z in ZOO]


#: Classes that only rename a zoo class (``CARAFE``: the old name of ``CARAFEUpsample``).
ALIASES = {U.CARAFE}


def every_class_is_covered() -> bool:
    classes = {getattr(U, n) for n in U.__all__
               if isinstance(getattr(U, n), type) and issubclass(getattr(U, n), nn.Module)}
    return classes - ALIASES <= {z[1] for z in ZOO}


def build(cls, kwargs, channels=8):
    m = cls(channels, **kwargs)
    if kwargs.get('dyscope'):
        # The scope conv starts at zero (static scope); perturb it so it matters in tests.
        nn.init.normal_(m.scope.weight, std=0.1)
    return m
