"""Export: the loop-free reassembly, ONNX with dynamic H and W, onnxruntime vs eager.

The loop-free path (``impl='shift'``) of :func:`fade_mm.ops.carafe` and
:func:`fade_mm.ops.local_similarity` must equal the training path in float64 (values and
gradients) and be picked automatically while a graph is captured. Every upsampler exports
with the TorchScript exporter (quick loop) and the dynamo exporter (slow), with dynamic H and
W; onnxruntime reproduces eager outputs at three sizes, odd ones included, and the graph size
does not depend on the input size.
"""
import collections
import importlib
import logging
import warnings

import pytest
import torch

from fade_mm.ops import carafe, graph_capture, local_similarity
from reference import carafe_ref
from zoo import IDS, ZOO, build

carafe_mod = importlib.import_module('fade_mm.ops.carafe')  # the module, not the function
onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

#: Max relative error of onnxruntime against eager (float32), from the issue.
ORT_REL = 1e-4
#: Sizes (x: h, w; guide: H, W) checked after export; the export itself uses the first.
SIZES = [(6, 7, 12, 13), (5, 9, 9, 18), (11, 4, 21, 8)]
#: Graph nodes (excluding constants) one upsampler may take.
MAX_NODES = 400


@pytest.mark.parametrize('k,g,s', [(5, 1, 2), (3, 2, 2), (5, 4, 3), (1, 1, 2), (7, 2, 4)])
def test_shift_path_equals_training_path_float64(k, g, s):
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64, requires_grad=True)
    m = torch.randn(2, g * k * k, s * 4, s * 5, dtype=torch.float64)
    m = m.view(2, g, k * k, s * 4, s * 5).softmax(2).view_as(m).requires_grad_()
    rows = carafe(x, m, k, g, s, impl='rows')
    shift = carafe(x, m, k, g, s, impl='shift')
    torch.testing.assert_close(shift, rows, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(shift, carafe_ref(x, m, k, g, s), rtol=1e-12, atol=1e-12)
    go = torch.randn_like(rows)
    for a, b in zip(torch.autograd.grad(rows, (x, m), go), torch.autograd.grad(shift, (x, m), go)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('k,s', [(5, 2), (3, 3), (1, 2)])
def test_similarity_shift_path_equals_training_path_float64(k, s):
    q = torch.randn(2, s * 4, s * 5, 6, dtype=torch.float64, requires_grad=True)
    key = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    a = local_similarity(q, key, k, s, impl='rows')
    b = local_similarity(q, key, k, s, impl='shift')
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    go = torch.randn_like(a)
    for u, v in zip(torch.autograd.grad(a, (q, key), go), torch.autograd.grad(b, (q, key), go)):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


def test_impl_is_validated():
    with pytest.raises(ValueError, match='impl'):
        carafe(torch.randn(1, 2, 3, 3), torch.rand(1, 9, 6, 6), 3, 1, 2, impl='loop')


def test_graph_capture_selects_the_shift_path(monkeypatch):
    calls = []
    real = carafe_mod.carafe_shift

    def spy(*args):
        calls.append(graph_capture())
        return real(*args)

    monkeypatch.setattr(carafe_mod, 'carafe_shift', spy)
    x, m = torch.randn(1, 2, 3, 3), torch.rand(1, 9, 6, 6)
    carafe(x, m, 3, 1, 2)
    assert calls == [] and not graph_capture()
    torch.jit.trace(lambda a, b: carafe(a, b, 3, 1, 2), (x, m))
    assert calls and all(calls)  # (trace may run the function more than once)


def _export(model, path, dynamo):
    x = torch.randn(1, 8, *SIZES[0][:2])
    g = torch.randn(1, 8, *SIZES[0][2:])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        if dynamo:
            dyn = torch.export.Dim.DYNAMIC
            prog = torch.onnx.export(model, (x, g), input_names=['x', 'guide'],
                                     output_names=['out'], opset_version=18, dynamo=True,
                                     dynamic_shapes=({2: dyn, 3: dyn}, {2: dyn, 3: dyn}),
                                     verbose=False)
            prog.save(str(path))
        else:
            torch.onnx.export(model, (x, g), str(path), input_names=['x', 'guide'],
                              output_names=['out'], opset_version=17, dynamo=False,
                              dynamic_axes={'x': {2: 'h', 3: 'w'}, 'guide': {2: 'H', 3: 'W'},
                                            'out': {2: 'H', 3: 'W'}})
    return onnx.load(str(path))


def _node_count(model):
    ops = collections.Counter(n.op_type for n in model.graph.node)
    return sum(v for op, v in ops.items() if op != 'Constant')


def _check_onnxruntime(model, path):
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [i.name for i in sess.get_inputs()]
    for h, w, big_h, big_w in SIZES:
        x, g = torch.randn(1, 8, h, w), torch.randn(1, 8, big_h, big_w)
        with torch.no_grad():
            ref = model(x, g).numpy()
        feed = dict(zip(names, (x.numpy(), g.numpy())))
        if len(names) == 1:  # an unguided upsampler whose graph dropped the unused guide
            feed = {names[0]: x.numpy()}
        out = sess.run(None, feed)[0]
        assert out.shape == ref.shape == (1, 8, big_h, big_w)
        rel = abs(out - ref).max() / abs(ref).max()
        assert rel <= ORT_REL, (h, w, big_h, big_w, rel)


@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_onnx_torchscript_exporter(name, cls, kwargs, tmp_path):
    model = build(cls, kwargs).eval()
    onnx_model = _export(model, tmp_path / f'{name}.onnx', dynamo=False)
    assert _node_count(onnx_model) <= MAX_NODES
    _check_onnxruntime(model, tmp_path / f'{name}.onnx')


@pytest.mark.slow
@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_onnx_dynamo_exporter(name, cls, kwargs, tmp_path):
    pytest.importorskip('onnxscript')
    logging.getLogger('torch.onnx').setLevel(logging.ERROR)
    model = build(cls, kwargs).eval()
    onnx_model = _export(model, tmp_path / f'{name}.onnx', dynamo=True)
    assert _node_count(onnx_model) <= MAX_NODES
    _check_onnxruntime(model, tmp_path / f'{name}.onnx')


def test_graph_size_does_not_depend_on_input_size(tmp_path):
    from fade_mm.upsamplers import FADE
    model = FADE(8).eval()
    counts = []
    for i, (h, w) in enumerate([(4, 4), (16, 21)]):
        path = tmp_path / f'{i}.onnx'
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(model, (torch.randn(1, 8, h, w), torch.randn(1, 8, 2 * h, 2 * w)),
                              str(path), opset_version=17, dynamo=False)
        counts.append(len(onnx.load(str(path)).graph.node))
    assert counts[0] == counts[1]
