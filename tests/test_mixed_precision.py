"""Mixed precision: every upsampler under CPU bf16 autocast and as a bf16/fp16 module.

Policy (README, "Mixed precision"): convolutions run in the autocast dtype, softmax in
float32, and the reassembly in the features' dtype with the kernels cast to it. Outside
autocast the dtype checks stay strict.
"""
import pytest
import torch
import torch.nn as nn

from fade_mm.ops import carafe, local_similarity
from fade_mm.upsamplers import FADE
from zoo import IDS, ZOO, build, every_class_is_covered

# bf16 keeps 8 mantissa bits (relative rounding 2**-8 = 0.4 %); a few rounded layers in a row
# stay well under 3 % of the output norm.
BF16_REL = 3e-2


def test_zoo_covers_every_upsampler():
    assert every_class_is_covered()


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize('in_dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_cpu_bf16_autocast_close_to_float32(name, cls, kwargs, in_dtype):
    m = build(cls, kwargs)
    x, g = torch.randn(2, 8, 5, 6), torch.randn(2, 8, 9, 12)
    ref = m(x, g)
    xx = x.to(in_dtype).requires_grad_()
    gg = g.to(in_dtype).requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = m(xx, gg)
    assert out.shape == ref.shape
    assert _rel(out, ref) < BF16_REL
    out.float().square().mean().backward()
    assert torch.isfinite(xx.grad).all() and xx.grad.abs().sum() > 0
    for p in m.parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters()) or \
        not list(m.parameters())


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('name,cls,kwargs', ZOO, ids=IDS)
def test_module_converted_to_low_precision(name, cls, kwargs, dtype):
    m = build(cls, kwargs)
    x, g = torch.randn(2, 8, 5, 6), torch.randn(2, 8, 9, 12)
    ref = m(x, g)
    low = m.to(dtype)
    xx = x.to(dtype).requires_grad_()
    out = low(xx, g.to(dtype))
    assert out.dtype == dtype
    assert _rel(out, ref) < (BF16_REL if dtype == torch.bfloat16 else 5e-3)
    out.float().sum().backward()
    assert torch.isfinite(xx.grad).all()


def test_checks_stay_strict_outside_autocast():
    x = torch.randn(1, 4, 3, 3)
    masks = torch.rand(1, 9, 6, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match='masks'):
        carafe(x, masks, 3, 1, 2)
    with pytest.raises(ValueError, match='guide'):
        FADE(4)(x, torch.randn(1, 4, 6, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match='query'):
        local_similarity(torch.randn(1, 6, 6, 2, dtype=torch.float64), torch.randn(1, 3, 3, 2),
                         3, 2)
    # ... and the same mismatch is accepted under autocast, computing in the features' dtype
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = carafe(x, masks, 3, 1, 2)
    assert out.dtype == torch.float32


class _TinyDecoder(nn.Module):
    """Encoder conv at full and half resolution, FADE back up, a 1x1 head."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.down = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.up = FADE(c)
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, img):
        skip = torch.relu(self.stem(img))
        low = torch.relu(self.down(skip))
        return self.head(self.up(low, skip))


def test_tiny_model_trains_under_bf16_autocast():
    torch.manual_seed(0)
    model = _TinyDecoder()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    img = torch.randn(4, 3, 15, 17)
    target = (img.mean(1, keepdim=True) > 0).float()
    losses = []
    for _ in range(30):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            logits = model(img)
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
