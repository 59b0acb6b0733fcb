"""UpsamplerVisHook in a real mmseg Runner run and tools/analysis_tools/compare_predictions.py.

One module-scoped pair of short SegFormer-B0 FADE trainings on synthetic data (with and
without the hook, same seed) serves every Runner test; the hook is enabled exactly as a user
would, through a config file's ``custom_imports`` and ``custom_hooks``.
"""
import glob
import importlib.util
import os
import random

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

pytestmark = pytest.mark.threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(ROOT, 'configs')
SEG = os.path.join(CFG, 'segformer')
TAIL = '1xb16-160k_ade20k-512x512.py'
FADE_CFG = os.path.join(SEG, f'segformer_mit-b0_fade_{TAIL}')
TOOL = os.path.join(ROOT, 'tools', 'analysis_tools', 'compare_predictions.py')
ITERS = 2
TILE = 128


@pytest.fixture(scope='module', autouse=True)
def _mmseg():
    from mmseg.utils import register_all_modules
    register_all_modules()
    import fade_mm.seg  # noqa: F401


def _tool():
    spec = importlib.util.spec_from_file_location('compare_predictions', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(tmp, data_root, name, hook):
    """A user's config: the FADE config plus (optionally) the hook, as one would write it."""
    path = tmp / f'{name}.py'
    lines = [f'_base_ = {FADE_CFG!r}']
    if hook:
        lines += ["custom_imports = dict(imports=['fade_mm.seg', 'fade_mm.visualization'], "
                  "allow_failed_imports=False)",
                  f"custom_hooks = [dict(type='UpsamplerVisHook', interval=1, tile_size={TILE})]"]
    path.write_text('\n'.join(lines) + '\n')
    from fade_mm.configs import apply_overlay
    cfg = Config.fromfile(str(path))
    apply_overlay(cfg, os.path.join(CFG, '_base_', 'synthetic_ade.py'), data_root=data_root,
                  work_dir=tmp / name)
    # val_begin past the end: no validation run, only the val dataset the hook reads
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=ITERS, val_interval=ITERS,
                         val_begin=ITERS + 1)
    cfg.param_scheduler = []
    cfg.train_dataloader.batch_size = 2
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=ITERS)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.randomness = dict(seed=0)
    cfg.experiment_name = name  # both runners start in the same second
    return cfg


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    from mmengine.runner import Runner

    from fade_mm.datasets.synthetic_seg import make_synthetic_ade
    tmp = tmp_path_factory.mktemp('vis')
    info = make_synthetic_ade(str(tmp / 'data'), num_train=4, num_val=1, seed=0)
    out = {'tmp': tmp, 'info': info}
    for name, hook in (('plain', False), ('hooked', True)):
        runner = Runner.from_cfg(_config(tmp, tmp / 'data', name, hook))
        runner.train()
        out[name] = runner
    return out


def _read(path):
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return img


@pytest.mark.slow
def test_hook_writes_panels_and_gate_maps(runs):
    from fade_mm.visualization import UpsamplerVisHook, panel_shape, tile_shape
    runner = runs['hooked']
    hook = next(h for h in runner.hooks if isinstance(h, UpsamplerVisHook))
    img_hw = runner.val_loop.dataloader.dataset[0]['inputs'].shape[-2:]
    vis = os.path.join(runner.work_dir, 'upsampler_vis')
    # every iteration; after_train does not repeat the last one
    assert sorted(os.listdir(vis)) == [f'iter_{i:06d}' for i in range(1, ITERS + 1)]
    assert hook._done == set(range(1, ITERS + 1))
    for it in range(1, ITERS + 1):
        folder = os.path.join(vis, f'iter_{it:06d}')
        names = [f'decode_head.upsamplers.{i}' for i in range(6)]
        assert sorted(os.listdir(folder)) == sorted(
            ['overview.png'] + [f'{n}.png' for n in names] + [f'{n}_gate.png' for n in names])
        for n in names:
            panel = _read(os.path.join(folder, f'{n}.png'))
            # image | input | guide | output | gate
            assert panel.shape[:2] == panel_shape(img_hw, TILE, 5)
            gate = _read(os.path.join(folder, f'{n}_gate.png'))
            assert gate.shape[:2] == tile_shape(img_hw, TILE)
            assert panel.std() > 10 and gate.std() > 0
            # the feature tiles themselves vary (not a flat colour)
            th, tw = tile_shape(img_hw, TILE)
            from fade_mm.visualization.upsampler_hook import GAP, HEADER_H, LABEL_H
            for i in range(1, 4):
                x0 = i * (tw + GAP)
                assert panel[HEADER_H + LABEL_H:, x0:x0 + tw].std() > 5
        overview = _read(os.path.join(folder, 'overview.png'))
        assert overview.shape[0] > 6 * panel.shape[0]


@pytest.mark.slow
def test_hook_does_not_change_training(runs):
    plain, hooked = runs['plain'].model.state_dict(), runs['hooked'].model.state_dict()
    assert plain.keys() == hooked.keys()
    for key in plain:
        torch.testing.assert_close(hooked[key], plain[key], rtol=0, atol=0, msg=key)
    # training did happen (AdamW stepped ITERS times), and its state is identical too
    opt_p = runs['plain'].optim_wrapper.optimizer.state_dict()['state']
    opt_h = runs['hooked'].optim_wrapper.optimizer.state_dict()['state']
    assert opt_p and opt_p.keys() == opt_h.keys()
    for idx in opt_p:
        assert float(opt_p[idx]['step']) == ITERS
        for k in ('exp_avg', 'exp_avg_sq'):
            torch.testing.assert_close(opt_h[idx][k], opt_p[idx][k], rtol=0, atol=0)
    assert any(float(s['exp_avg'].abs().max()) > 0 for s in opt_p.values())


@pytest.mark.slow
def test_hook_restores_modes_and_rng_pca_and_img_path(runs, monkeypatch):
    from fade_mm.visualization import UpsamplerVisHook
    from fade_mm.visualization import upsampler_hook as mod
    runner = runs['hooked']
    model = runner.model
    model.train()
    model.backbone.eval()  # a deliberately mixed state must survive as it is
    flags = [m.training for m in model.modules()]
    img = runs['info']['splits']['validation']['images'][0]
    hook = UpsamplerVisHook(interval=1, img_path=img, feature_mode='pca', tile_size=64,
                            out_dir='vis_pca', gate_cmap='turbo')
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    want = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    folder = hook.visualize(runner, 99)
    assert (random.random(), np.random.rand(), torch.rand(1)) == want
    assert [m.training for m in model.modules()] == flags
    assert folder.endswith('iter_000099')
    panel = _read(os.path.join(folder, 'decode_head.upsamplers.5.png'))
    assert panel.shape[1] == 5 * 64 + 4 * mod.GAP and panel.std() > 10
    # other ranks do nothing
    monkeypatch.setattr(mod, 'is_main_process', lambda: False)
    assert hook.visualize(runner, 100) is None
    assert not os.path.exists(os.path.join(runner.work_dir, 'vis_pca', 'iter_000100'))


def test_find_upsamplers_and_arguments():
    from mmseg.registry import MODELS

    from fade_mm.visualization import UpsamplerVisHook, find_upsamplers
    cfg = Config.fromfile(os.path.join(SEG, f'segformer_mit-b0_fade-lite_{TAIL}'))
    model = MODELS.build(cfg.model)
    found = find_upsamplers(model)
    assert [n for n, _ in found] == [f'decode_head.upsamplers.{i}' for i in range(6)]
    assert all(type(m).__name__ == 'FADELite' for _, m in found)
    bilinear = MODELS.build(Config.fromfile(
        os.path.join(SEG, f'segformer_mit-b0_bilinear_{TAIL}')).model)
    assert find_upsamplers(bilinear) == []
    for bad in (dict(interval=0), dict(feature_mode='rgb'), dict(cmap='nope'),
                dict(tile_size=4), dict(max_upsamplers=0)):
        with pytest.raises(ValueError):
            UpsamplerVisHook(**bad)
    with pytest.raises(FileNotFoundError):
        UpsamplerVisHook(img_path='/nonexistent.jpg')


def test_compare_tool_titles():
    """Panels are titled as the papers' tables name the upsampler (fade_mm.tools)."""
    tool = _tool()
    titles = {up: tool.method_label(Config.fromfile(os.path.join(
        SEG, f'segformer_mit-b0_{up}_{TAIL}'))) for up in ('fade', 'fade-nogate', 'bilinear')}
    assert titles == {'fade': 'FADE', 'fade-nogate': 'FADE w/o gate', 'bilinear': 'Bilinear'}
    det = Config.fromfile(os.path.join(CFG, 'faster_rcnn',
                                       'faster-rcnn_r50_fpncarafe-fade_8xb2-1x_coco.py'))
    assert tool.method_label(det) == 'FADE'
    with pytest.raises(SystemExit):
        tool.parse_args(['no-colon', '--img', 'x.jpg', '--out', 'y.png'])


def _bilinear_checkpoint(runs, meta=True):
    """The bilinear SegFormer-B0 on the synthetic data, built and saved by hand in mmengine's
    checkpoint format (``meta=False``: a bare ``{'state_dict': ...}``)."""
    from mmengine.runner import save_checkpoint
    from mmseg.registry import MODELS

    from fade_mm.configs import apply_overlay
    tmp, hooked = runs['tmp'], runs['hooked']
    cfg = Config.fromfile(os.path.join(SEG, f'segformer_mit-b0_bilinear_{TAIL}'))
    apply_overlay(cfg, os.path.join(CFG, '_base_', 'synthetic_ade.py'),
                  data_root=tmp / 'data')
    name = 'bilinear' if meta else 'bilinear_bare'
    bil_cfg, bil_ckpt = str(tmp / f'{name}.py'), str(tmp / f'{name}.pth')
    cfg.dump(bil_cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    ckpt = {'state_dict': model.state_dict()}
    if meta:
        ckpt['meta'] = {'dataset_meta': hooked.train_dataloader.dataset.metainfo}
    save_checkpoint(ckpt, bil_ckpt)
    return bil_cfg, bil_ckpt


@pytest.mark.slow
def test_compare_tool_two_seg_checkpoints(runs, capsys):
    tmp, hooked = runs['tmp'], runs['hooked']
    # the FADE model: the runner's checkpoint and the config it dumped into its work dir
    fade_cfg = os.path.join(hooked.work_dir, 'hooked.py')
    fade_ckpt = os.path.join(hooked.work_dir, f'iter_{ITERS}.pth')
    bil_cfg, bil_ckpt = _bilinear_checkpoint(runs)
    img = runs['info']['splits']['validation']['images'][0]
    out = tmp / 'cmp' / 'compare.png'
    assert _tool().main([f'{fade_cfg}:{fade_ckpt}', f'{bil_cfg}:{bil_ckpt}', '--img', img,
                         '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'wrote' in printed and 'Loads checkpoint' not in printed
    png = _read(out)
    src = _read(img)
    # three panels (input, FADE, bilinear) side by side, each at least the image's width
    assert png.shape[1] > 3 * src.shape[1] and png.shape[1] > png.shape[0]
    assert png.std() > 10
    assert len(glob.glob(str(tmp / 'cmp' / '*.png'))) == 1


@pytest.mark.slow
def test_compare_tool_panel_is_mmseg_visualizer_drawing(runs):
    """A panel is SegLocalVisualizer's drawing of mmseg's inference_model result, with the
    classes of the checkpoint; a bare state dict takes them from the config's dataset."""
    from mmseg.apis import inference_model, init_model
    from mmseg.visualization import SegLocalVisualizer

    tool = _tool()
    img = runs['info']['splits']['validation']['images'][0]
    rgb = tool.read_rgb(img)
    for meta in (True, False):
        cfg, ckpt = _bilinear_checkpoint(runs, meta=meta)
        pred = tool.Predictor(cfg, ckpt)
        assert pred.title == 'Bilinear' and pred.scope == 'mmseg'
        classes = runs['hooked'].train_dataloader.dataset.metainfo['classes']
        assert tuple(pred.model.dataset_meta['classes']) == tuple(classes)
        panel = pred.draw(rgb, pred(img), opacity=0.7)
        assert panel.shape == rgb.shape
        if meta:  # the same as drawing mmseg's own way
            model = init_model(cfg, ckpt, device='cpu')
            vis = SegLocalVisualizer(name='reference', alpha=0.7)
            vis.dataset_meta = dict(classes=model.dataset_meta['classes'],
                                    palette=model.dataset_meta['palette'])
            vis.add_datasample('ref', rgb, inference_model(model, img), draw_gt=False)
            np.testing.assert_array_equal(panel, vis.get_image())


@pytest.mark.slow
def test_compare_tool_refuses_another_models_checkpoint(runs, capsys):
    """init_model loads non-strictly; the tool turns the mismatch into its one-line error."""
    from fade_mm import cli
    hooked = runs['hooked']
    fade_ckpt = os.path.join(hooked.work_dir, f'iter_{ITERS}.pth')
    bil_cfg, _ = _bilinear_checkpoint(runs)
    with pytest.raises(cli.CLIError, match='does not fit the model of'):
        _tool().Predictor(bil_cfg, fade_ckpt)
    assert 'do not match exactly' not in capsys.readouterr().out


@pytest.mark.parametrize('mode', ['energy', 'pca'])
def test_capture_and_panel_without_gate_or_guide(mode):
    """FADE without gate: no gate tile; an unguided call: no guide tile; padded input: maps are
    cropped to the image area before the resize."""
    from fade_mm.upsamplers import FADE, NearestUpsample
    from fade_mm.visualization import UpsamplerVisHook, panel_shape
    from fade_mm.visualization.upsampler_hook import _Capture
    records = {}
    fade, near = FADE(16, fusion='none'), NearestUpsample(16)
    fade.register_forward_hook(_Capture('fade', mode, records), with_kwargs=True)
    near.register_forward_hook(_Capture('near', mode, records), with_kwargs=True)
    x, guide = torch.randn(1, 16, 6, 8), torch.randn(1, 16, 12, 16)
    with torch.no_grad():
        fade(x, guide)
        fade(x * 0, guide)  # only the first call is kept
        near(x=x)
    assert records['fade']['gate'] is None and records['near']['guide'] is None
    hook = UpsamplerVisHook(tile_size=64, feature_mode=mode)
    img = np.random.RandomState(0).randint(0, 255, (40, 64, 3), np.uint8)
    for name, tiles in (('fade', 4), ('near', 3)):
        panel, gate = hook._panel(name, records[name], img, (48, 64), 7)
        assert gate is None
        assert panel.shape == panel_shape(img.shape[:2], 64, tiles) + (3,)
        assert panel.std() > 10
