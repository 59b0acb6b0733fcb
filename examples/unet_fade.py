"""A small UNet whose three x2 upsampling steps are FADE -- plain PyTorch, no OpenMMLab.

The decoder is twice as wide as the encoder skips (64 vs 32 channels), so every FADE is
built with ``guide_channels=32``: its kernels are predicted from the 32-channel skip and
the decoder feature, and its gate mixes in a 1x1 projection of the skip (``guide_proj``,
32 -> 64 channels). Images are odd-sized (29 x 37): FADE upsamples each decoder feature to
the exact size of its skip, so nothing is padded or cropped by hand.

Task (synthetic, generated with torch): segment the discs and boxes of noisy images.

    pip install .                              # or: pip install -e .   (torch only)
    python examples/unet_fade.py               # 60 steps, ~5 s on one CPU core
    python examples/unet_fade.py --steps 200
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from fade_mm.upsamplers import FADE

SKIP, WIDE = 32, 64        # encoder (skip) channels, decoder channels
SIZE = (29, 37)            # odd on purpose: 29x37 -> 15x19 -> 8x10 -> 4x5


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (stride 2 halves the size, rounding up) + GroupNorm + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout),
                         nn.ReLU(inplace=True))


class UNetFADE(nn.Module):
    """Tiny encoder (three stride-2 convs) and a FADE decoder (three x2 steps)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 1) -> None:
        super().__init__()
        self.stem = conv_block(in_channels, SKIP)       # skip 0: H x W
        self.down1 = conv_block(SKIP, SKIP, stride=2)   # skip 1: H/2
        self.down2 = conv_block(SKIP, SKIP, stride=2)   # skip 2: H/4
        self.down3 = conv_block(SKIP, WIDE, stride=2)   # bottleneck: H/8, decoder width
        # decoder feature: WIDE channels; guide (the skip): SKIP channels
        self.ups = nn.ModuleList(FADE(WIDE, guide_channels=SKIP) for _ in range(3))
        self.refines = nn.ModuleList(conv_block(WIDE, WIDE) for _ in range(3))
        self.head = nn.Conv2d(WIDE, num_classes, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        s0 = self.stem(img)
        s1 = self.down1(s0)
        s2 = self.down2(s1)
        y = self.down3(s2)
        for up, refine, skip in zip(self.ups, self.refines, (s2, s1, s0)):
            y = refine(up(y, skip))   # x2, to the skip's size: (B, WIDE, *skip.shape[-2:])
        return self.head(y)


def make_batch(n: int, generator: torch.Generator, size=SIZE):
    """``n`` noisy images ``(n, 1, H, W)`` with one disc and one box each, and their masks."""
    h, w = size
    rand = lambda *shape: torch.rand(*shape, 1, 1, generator=generator)  # noqa: E731
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    cy, cx, r = rand(n) * h, rand(n) * w, 3 + rand(n) * 7
    disc = (ys - cy) ** 2 + (xs - cx) ** 2 < r ** 2
    y0, x0 = rand(n) * (h - 8), rand(n) * (w - 8)
    bh, bw = 4 + rand(n) * 10, 4 + rand(n) * 10
    box = (ys >= y0) & (ys < y0 + bh) & (xs >= x0) & (xs < x0 + bw)
    mask = (disc | box).float()
    img = mask + 0.6 * torch.randn(n, h, w, generator=generator)
    return img[:, None], mask[:, None]


def train(steps: int = 60, seed: int = 0, batch: int = 4, lr: float = 3e-3) -> list:
    """Train a fresh UNetFADE for ``steps`` Adam steps on fresh batches; returns the losses."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = UNetFADE()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        img, mask = make_batch(batch, gen)
        loss = F.binary_cross_entropy_with_logits(model(img), mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


if __name__ == '__main__':
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=60)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (1: these tensors are too small to gain from '
                             'more, and extra threads only hurt on a busy machine)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    fade = FADE(WIDE, guide_channels=SKIP)
    print(f'FADE({WIDE}, guide_channels={SKIP}): '
          f'{sum(p.numel() for p in fade.parameters()):,} parameters, '
          f'{sum(p.numel() for p in fade.guide_proj.parameters()):,} of them in guide_proj')
    t0 = time.perf_counter()
    losses = train(args.steps, args.seed)
    for i, loss in enumerate(losses):
        if i % 10 == 0 or i == len(losses) - 1:
            print(f'step {i:4d}  loss {loss:.4f}')
    k = max(1, min(10, len(losses) // 4))
    print(f'mean loss, first {k} steps {sum(losses[:k]) / k:.4f} -> last {k} steps '
          f'{sum(losses[-k:]) / k:.4f}  ({time.perf_counter() - t0:.1f} s)')
