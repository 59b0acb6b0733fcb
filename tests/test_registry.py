import subprocess
import sys

import pytest
import torch
from mmengine.registry import MODELS, DefaultScope

import fade_mm  # noqa: F401  (registers)


def _scope_registry(scope):
    if scope == 'mmdet':
        import mmdet.registry as reg
    else:
        import mmseg.registry as reg
    return reg.MODELS


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('name,count', [('FADE', 47_514), ('FADELite', 13_332)])
def test_build_under_scope(scope, name, count):
    scoped = _scope_registry(scope)
    with DefaultScope.overwrite_default_scope(scope):
        for registry in (MODELS, scoped):
            m = registry.build(dict(type=name, in_channels=256))
            assert type(m).__name__ == name
            assert sum(p.numel() for p in m.parameters()) == count
        small = MODELS.build(dict(type=name, in_channels=8, fusion='none'))
        out = small(torch.randn(1, 8, 3, 4), torch.randn(1, 8, 5, 8))
        assert out.shape == (1, 8, 5, 8)


def test_mmcv_upsamplers_untouched():
    import mmcv.ops  # noqa: F401  registers mmcv's 'carafe'
    import torch.nn as nn
    from mmcv.cnn import build_upsample_layer
    assert isinstance(build_upsample_layer(dict(type='nearest', scale_factor=2)), nn.Upsample)
    assert isinstance(build_upsample_layer(dict(type='deconv', in_channels=4, out_channels=4,
                                                kernel_size=2, stride=2)), nn.ConvTranspose2d)
    assert type(build_upsample_layer(dict(type='carafe', channels=8, scale_factor=2))
                ).__name__ == 'CARAFEPack'
    assert MODELS.get('FADE').__module__ == 'fade_mm.upsamplers.fade'


@pytest.mark.slow
def test_ops_and_upsamplers_import_without_mmcv_mmdet_mmseg():
    code = (
        'import sys\n'
        'for name in ("mmcv", "mmdet", "mmseg"):\n'
        '    sys.modules[name] = None  # any import of them now fails\n'
        'import torch, fade_mm.ops, fade_mm.upsamplers\n'
        'm = fade_mm.upsamplers.FADE(4)\n'
        'print(tuple(m(torch.randn(1, 4, 3, 3), torch.randn(1, 4, 6, 5)).shape))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '(1, 4, 6, 5)'
