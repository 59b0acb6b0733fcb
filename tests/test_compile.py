"""torch.compile: every upsampler of the zoo, dynamic shapes, odd sizes, no graph breaks.

Quick loop: ``backend='eager'`` (Dynamo's graph capture alone: every graph break, Python
branch on a size or ``.item()`` shows there, without code generation, which takes minutes on
two cores). Each whole module is compiled with ``fullgraph=True`` (a graph break raises) and
``dynamic=True``, run at three sizes -- odd and even heights and widths, independently -- and
must produce a single graph for all of them and the eager outputs. The reassembly ops compile
``fullgraph`` on their own and take the loop-free path while compiling.

Slow: ``backend='aot_eager'`` adds AOT autograd (forward and backward graphs) -- values and
gradients against eager, still one graph for every size -- and ``inductor`` generates code
for two upsamplers: one graph for every size in inference; in training, values and
gradients (inductor's own backward compilation specialises the sizes, see that test).

Tolerance: compiled and eager upsamplers differ only in summation order (the compiled graph
takes the loop-free reassembly, eager the row-blocked one; inductor fuses), so float32
outputs and gradients agree to ``rtol=1e-5``, ``atol=1e-5`` (measured: at most ~2e-6).
"""
import importlib

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from fade_mm.ops import carafe, local_similarity
from fade_mm.upsamplers import FADE, DySample
from zoo import IDS, ZOO, build

RTOL = ATOL = 1e-5
#: (h, w, H, W): x is (B, C, h, w), the guide (B, C, H, W); every parity of H and W.
SIZES = [(5, 6, 9, 12), (7, 4, 14, 7), (6, 8, 12, 16)]
#: Zoo entries also compiled in training mode with grad in the quick loop: batch norm in
#: training mode (IndexNet) and one of each reassembly / sampling family (Dynamo traces the
#: same ops for the others; the slow aot_eager test covers their backward graphs).
TRAIN_IDS = ['carafe', 'fade', 'sapa_b', 'indexnet', 'dysample_plus']
#: Zoo entries compiled with the AOT-autograd backends (slow). A2U is left out: AOT tracing
#: of its per-image filters takes over three minutes on two cores (its Dynamo graph is
#: checked in the quick loop).
AOT_IDS = ['carafe', 'fade', 'fade_lite', 'fade_h2l', 'sapa_b', 'indexnet', 'dysample']
INDUCTOR_IDS = ['fade', 'dysample']
ZOO_BY_ID = {z[0]: z for z in ZOO}
carafe_mod = importlib.import_module('fade_mm.ops.carafe')  # the module, not the function


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _inputs(h, w, big_h, big_w, grad=False):
    x = torch.randn(2, 8, h, w, requires_grad=grad)
    g = torch.randn(2, 8, big_h, big_w, requires_grad=grad)
    return x, g


def _compiled(fn, backend):
    """``fn`` compiled whole (``fullgraph``), dynamic; and the counter of its compilations."""
    counter = CompileCounterWithBackend(backend)
    return torch.compile(fn, backend=counter, dynamic=True, fullgraph=True), counter


class _NoRecompile:
    """Asserts that the calls after the first compile nothing new: one compiled artifact
    serves every later size. (The first call may hand the backend the frame twice: with
    ``dynamic=True`` Dynamo restarts its analysis once to specialise float constants such
    as ReLU6's bound or a norm's eps; that is still one graph.)"""

    def __init__(self, counter):
        self.counter, self.first = counter, None

    def after_call(self):
        if self.first is None:
            self.first = self.counter.frame_count
            assert 1 <= self.first <= 2, self.first
        assert self.counter.frame_count == self.first, 'recompiled for a new size'


def _inference_one_graph(model, backend):
    """Compiled inference equals eager at every size of SIZES, from a single graph."""
    compiled, counter = _compiled(model, backend)
    check = _NoRecompile(counter)
    with torch.no_grad():
        for size in SIZES:
            x, g = _inputs(*size)
            out = compiled(x, g)
            check.after_call()
            ref = model(x, g)
            assert out.shape == ref.shape == (2, 8, *size[2:])
            torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_zoo_compiles_fullgraph_once_for_all_sizes(name, cls, kwargs):
    # dynamic=True and no size-specialising Python branch: odd and even sizes share a graph
    _inference_one_graph(build(cls, kwargs).eval(), 'eager')


@pytest.mark.slow
@pytest.mark.parametrize('name', TRAIN_IDS)
def test_compiles_in_training_mode(name):
    """Training mode with grad (what a compiled training step traces): still one graph."""
    _, cls, kwargs = ZOO_BY_ID[name]
    model = build(cls, kwargs).train()
    compiled, counter = _compiled(model, 'eager')
    check = _NoRecompile(counter)
    for size in SIZES[:2]:
        x, g = _inputs(*size, grad=True)
        out = compiled(x, g)
        check.after_call()
        torch.testing.assert_close(out, model(x, g), rtol=RTOL, atol=ATOL)
        out.square().mean().backward()
        assert torch.isfinite(x.grad).all()


def _masks(h, w):
    masks = torch.randn(2, 2, 25, 2 * h, 2 * w).softmax(2)
    return masks.flatten(1, 2)


@pytest.mark.slow
def test_reassembly_takes_the_loop_free_path_while_compiling(monkeypatch):
    calls = []
    real = carafe_mod.carafe_shift

    def spy(*args):
        calls.append(True)
        return real(*args)

    monkeypatch.setattr(carafe_mod, 'carafe_shift', spy)
    feats = torch.randn(2, 8, 5, 6)
    compiled, _ = _compiled(lambda f, m: carafe(f, m, 5, 2, 2), 'eager')
    compiled(feats, _masks(5, 6))
    assert calls, 'the loop-free reassembly was not taken while compiling'


@pytest.mark.slow
def test_reassembly_ops_compile_fullgraph_once_for_all_sizes():
    # (sizes chosen so that no two dimensions coincide at the first call: dynamic=True gives
    # equal sizes one symbol, and carafe's shape check would then guard on their equality)
    compiled, counter = _compiled(lambda f, m: carafe(f, m, 5, 2, 2), 'eager')
    for h, w in [(5, 6), (7, 3)]:
        feats, masks = torch.randn(2, 8, h, w), _masks(h, w)
        torch.testing.assert_close(compiled(feats, masks), carafe(feats, masks, 5, 2, 2),
                                   rtol=RTOL, atol=ATOL)
    assert counter.frame_count == 1  # both sizes

    compiled, counter = _compiled(lambda q, k: local_similarity(q, k, 5, 2), 'eager')
    for h, w in [(5, 4), (7, 3)]:
        q, k = torch.randn(2, 2 * h, 2 * w, 6), torch.randn(2, h, w, 6)
        torch.testing.assert_close(compiled(q, k), local_similarity(q, k, 5, 2),
                                   rtol=RTOL, atol=ATOL)
    assert counter.frame_count == 1  # both sizes


def test_dynamo_explain_finds_no_graph_break():
    model = FADE(8)
    x, g = _inputs(*SIZES[0])
    explanation = torch._dynamo.explain(model)(x, g)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.slow
@pytest.mark.parametrize('module', [
    pytest.param(lambda: FADE(8, with_cp=True), id='fade_with_cp'),
    pytest.param(lambda: DySample(8, sampler='gather'), id='dysample_gather')])
def test_options_compile_fullgraph(module):
    """The non-default paths added for memory and determinism compile whole too."""
    model = module().train()
    compiled, counter = _compiled(model, 'eager')
    check = _NoRecompile(counter)
    for size in SIZES[:2]:
        x, g = _inputs(*size, grad=True)
        out = compiled(x, g)
        check.after_call()
        torch.testing.assert_close(out, model(x, g), rtol=RTOL, atol=ATOL)
        out.sum().backward()


def _grads(out, model, x, g, go):
    params = [p for p in model.parameters()]
    return torch.autograd.grad(out, [x, g] + params, go, allow_unused=True)


def _check_against_eager(name, backend, sizes, recompiles=False):
    _, cls, kwargs = ZOO_BY_ID[name]
    model = build(cls, kwargs).train()
    compiled, counter = _compiled(model, backend)
    check = _NoRecompile(counter)
    for size in sizes:
        x, g = _inputs(*size, grad=True)
        out, ref = compiled(x, g), model(x, g)
        if not recompiles:
            check.after_call()
        torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL)
        go = torch.randn_like(ref)
        for a, b in zip(_grads(out, model, x, g, go), _grads(ref, model, x, g, go)):
            if b is None:  # unguided upsamplers: the guide gives its size only
                assert a is None
            else:
                torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize('name', AOT_IDS)
def test_aot_autograd_values_and_gradients(name):
    _check_against_eager(name, 'aot_eager', SIZES)


@pytest.mark.slow
@pytest.mark.parametrize('name', INDUCTOR_IDS)
def test_inductor_inference_one_graph_for_all_sizes(name):
    _, cls, kwargs = ZOO_BY_ID[name]
    _inference_one_graph(build(cls, kwargs).eval(), 'inductor')


@pytest.mark.slow
@pytest.mark.parametrize('name', INDUCTOR_IDS)
def test_inductor_training_values_and_gradients(name):
    """Recompilation allowed here: inductor's backward compilation specialises the sizes
    (torch 2.13 adds a guard such as ``Eq(8*h*w, 240)`` in ``_aot_stage2b_bw_compile``)
    although the graph it receives is size-generic (see the aot_eager test)."""
    _check_against_eager(name, 'inductor', SIZES[:2], recompiles=True)
