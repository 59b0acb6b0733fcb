"""fade_mm.tools: what the command-line tools share (scope, registration, the upsampler of a
config and its label, building the model offline)."""
import argparse
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from fade_mm import cli
from fade_mm.tools import (
    build_model,
    find_upsample_cfg,
    method_label,
    register_scope,
    scope_of,
    upsampler_label,
)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CFG = osp.join(ROOT, 'configs')
DEMO_DET = osp.join(CFG, 'demo', 'faster-rcnn_r18-tiny_fpn-{}_synthetic.py')
DEMO_SEG = osp.join(CFG, 'demo', 'segformer-head_r18-tiny_{}_synthetic.py')
SEG_B0 = osp.join(CFG, 'segformer', 'segformer_mit-b0_{}_8xb2-160k_ade20k-512x512.py')
FRCNN = osp.join(CFG, 'faster_rcnn', 'faster-rcnn_r50_fpn-{}_8xb2-1x_coco.py')
UPERNET = osp.join(CFG, 'upernet', 'upernet_r50_{}_4xb4-80k_ade20k-512x512.py')


def test_import_is_cheap_and_register_scope_sets_the_default_scope():
    code = ('import sys\nimport fade_mm.tools as t\n'
            "assert not {'mmdet', 'mmseg'} & set(sys.modules), 'imported at import'\n"
            "t.register_scope('mmseg', init_default_scope=True)\n"
            'from mmengine.registry import DefaultScope\n'
            'from mmseg.registry import MODELS\n'
            "assert DefaultScope.get_current_instance().scope_name == 'mmseg'\n"
            "assert MODELS.get('UpsamplerSegformerHead') is not None  # fade_mm.seg\n")
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_scope_of():
    assert scope_of(Config.fromfile(DEMO_DET.format('fade'))) == 'mmdet'
    assert scope_of(Config.fromfile(DEMO_SEG.format('fade'))) == 'mmseg'
    for scope in ('mmpretrain', None):
        with pytest.raises(ValueError, match=rf"my_cfg.py: default_scope is {scope!r}; "
                           r"fade_mm tools support \['mmdet', 'mmseg'\]") as err:
            scope_of(Config(dict(default_scope=scope, model=dict())), 'my_cfg.py')
        assert isinstance(err.value, cli.UsageError)  # one line, exit status 2
    with pytest.raises(ValueError, match='scope must be one of'):
        register_scope('mmpretrain')


@pytest.mark.parametrize('path,where,label', [
    (FRCNN.format('fade'), 'neck', 'FADE'),
    (FRCNN.format('nearest'), 'neck', 'Nearest'),
    (FRCNN.format('sapa'), 'neck', 'SAPA-B'),
    (SEG_B0.format('fade-lite'), 'decode_head', 'FADE-Lite'),
    (SEG_B0.format('fade-nogate'), 'decode_head', 'FADE w/o gate'),
    (UPERNET.format('bilinear'), 'decode_head', 'Bilinear'),
    (DEMO_DET.format('nearest'), 'neck', 'Nearest'),
    (DEMO_DET.format('fade-lite'), 'neck', 'FADE-Lite'),
    (DEMO_SEG.format('bilinear'), 'decode_head', 'Bilinear'),
    (DEMO_SEG.format('carafe'), 'decode_head', 'CARAFE'),
    (DEMO_SEG.format('fade'), 'decode_head', 'FADE'),
], ids=lambda v: osp.basename(v) if isinstance(v, str) and v.endswith('.py') else None)
def test_upsample_cfg_and_method_label_of_repo_configs(path, where, label):
    cfg = Config.fromfile(path)
    assert find_upsample_cfg(cfg) == cfg.model[where]['upsample_cfg']
    assert method_label(cfg) == label


@pytest.mark.parametrize('options,label', [
    # the demo's FADE ablation rows (tools/demo.py ABLATION), set on the command line
    (dict(kernel_source='encoder', fusion='none'), 'FADE w/o gate (kernel_source=encoder)'),
    (dict(kernel_generator='naive', fusion='none'), 'FADE w/o gate (kernel_generator=naive)'),
    (dict(fusion='skip'), 'FADE (skip)'),
    (dict(fusion='gate', in_channels=64, scale_factor=2), 'FADE'),  # filled in: not a switch
])
def test_method_label_of_fade_ablation_options(options, label):
    cfg = Config.fromfile(DEMO_SEG.format('fade'))
    cfg.merge_from_dict({f'model.decode_head.upsample_cfg.{k}': v for k, v in options.items()})
    assert method_label(cfg) == label


def test_upsampler_label():
    assert upsampler_label(None, 'mmseg') == 'Bilinear'
    assert upsampler_label(None, 'mmdet') == upsampler_label(None) == 'Nearest'
    assert upsampler_label(dict(type='CARAFEUpsample', up_kernel=5)) == 'CARAFE (up_kernel=5)'
    assert upsampler_label(dict(type='DySample', style='pl', dyscope=True, groups=4)) == \
        'DySample-S+'
    assert upsampler_label(dict(type='SAPA', variant='G')) == 'SAPA-G'
    assert upsampler_label(dict(type='MyUpsampler')) == 'MyUpsampler'
    # a model config without any upsample_cfg: the scope's stock interpolation
    assert method_label(Config(dict(default_scope='mmseg', model=dict(type='X')))) == 'Bilinear'
    assert find_upsample_cfg(dict(model=dict(heads=[dict(a=1), dict(upsample_cfg=dict(
        type='FADE'))]))) == dict(type='FADE')


@pytest.mark.parametrize('path', [DEMO_DET.format('fade'), DEMO_SEG.format('fade-lite')],
                         ids=['det', 'seg'])
def test_build_model_equals_the_scope_registry(path):
    import importlib
    cfg = Config.fromfile(path)
    scope = scope_of(cfg)
    register_scope(scope)
    models = importlib.import_module(f'{scope}.registry').MODELS
    ref = models.build(cfg.model)
    model = build_model(cfg)
    assert type(model) is type(ref) and not model.training
    assert sum(p.numel() for p in model.parameters()) == \
        sum(p.numel() for p in ref.parameters())
    assert list(model.state_dict()) == list(ref.state_dict())


def test_build_model_offline_on_a_copy():
    """Pretrained sources are cleared from a copy: init_weights() downloads nothing, the
    caller's config keeps them; SyncBN becomes BN."""
    cfg = Config.fromfile(SEG_B0.format('fade'))
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    model = build_model(cfg, init_weights=True)
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())


def test_build_model_loads_checkpoints_strictly_and_safely(tmp_path):
    from mmengine.runner import save_checkpoint

    from fade_mm.compat import UntrustedCheckpointError, local_checkpoints_trusted
    cfg = Config.fromfile(DEMO_SEG.format('fade'))
    torch.manual_seed(1)
    src = build_model(cfg, init_weights=True)
    ckpt = str(tmp_path / 'seg.pth')
    save_checkpoint({'state_dict': src.state_dict(), 'meta': {}}, ckpt)
    torch.manual_seed(2)
    model = build_model(cfg, ckpt)
    for key, value in src.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    # another model's weights: refused (strict)
    with pytest.raises(RuntimeError, match='do not match'):
        build_model(Config.fromfile(DEMO_SEG.format('fade-lite')), ckpt)
    # a pickle beyond the runner-checkpoint allow-list: refused unless trusted
    odd = str(tmp_path / 'odd.pth')
    torch.save({'state_dict': src.state_dict(), 'meta': {'args': argparse.Namespace(a=1)}},
               odd)
    with pytest.raises(UntrustedCheckpointError, match='argparse.Namespace'):
        build_model(cfg, odd)
    with local_checkpoints_trusted():
        build_model(cfg, odd)
