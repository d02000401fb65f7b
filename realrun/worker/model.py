"""A small GPT-style model whose size is a flag, deterministic synthetic data, and a deterministic
gradient all-reduce for DDP.

Sizes: `tiny` (~0.2M parameters), or a count such as `1m`, `25m`, `1b` (about 1M to 1B): the width
is picked by size and the depth fills the rest. Batches are generated from (seed, step, rank), so a
resumed run sees exactly the data an uninterrupted one sees.
"""

import math
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from scenarios.errors import UserError

VOCAB = 256
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kmb]?)$")
_UNITS = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}


@dataclass(frozen=True)
class GPTShape:
    """Width, depth and context of the model; parameters ≈ 12·layers·width² + 2·vocab·width."""

    width: int
    layers: int
    heads: int
    context: int
    vocab: int = VOCAB

    @property
    def parameters(self) -> int:
        w = self.width
        block = 12 * w * w + 13 * w
        return self.layers * block + 2 * self.vocab * w + self.context * w + 2 * w


def parse_model_size(text: str) -> GPTShape:
    """`tiny` or a parameter count with an optional k/m/b suffix, between 100k and 2b."""
    text = text.strip().lower()
    if text == "tiny":
        return GPTShape(width=64, layers=2, heads=2, context=32)
    match = _SIZE.match(text)
    target = float(match.group(1)) * _UNITS[match.group(2)] if match else -1
    if not 1e5 <= target <= 2e9:
        raise UserError("model_size", text, "'tiny' or a parameter count from 100k to 2b, e.g. 1m, 50m, 1b")
    width = 128 if target < 3e6 else 256 if target < 3e7 else 768 if target < 3e8 else 2048
    layers = max(1, round((target - 2 * VOCAB * width) / (12 * width * width)))
    return GPTShape(width=width, layers=layers, heads=max(1, width // 64), context=64)


class Block(nn.Module):
    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(shape.width)
        self.attn = nn.MultiheadAttention(shape.width, shape.heads, bias=True, batch_first=True)
        self.ln2 = nn.LayerNorm(shape.width)
        self.mlp = nn.Sequential(
            nn.Linear(shape.width, 4 * shape.width), nn.GELU(), nn.Linear(4 * shape.width, shape.width)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer over bytes; no dropout, so a step is a pure function of state and data."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab, shape.width)
        self.pos = nn.Parameter(torch.zeros(shape.context, shape.width))
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.layers))
        self.ln = nn.LayerNorm(shape.width)
        self.head = nn.Linear(shape.width, shape.vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        mask = torch.triu(torch.full((length, length), float("-inf"), device=tokens.device), diagonal=1)
        x = self.embed(tokens) + self.pos[:length]
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln(x))


def build_model(shape: GPTShape, seed: int) -> GPT:
    """The same initial weights on every rank and every restart, from a private generator."""
    generator = torch.Generator().manual_seed(seed)
    model = GPT(shape)
    with torch.no_grad():
        # Every parameter is set here: torch's default init would draw biases from the global RNG.
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.copy_(
                    torch.randn(param.shape, generator=generator) * (0.02 / math.sqrt(max(1, shape.layers)))
                )
            else:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
    return model


def synthetic_batch(
    seed: int, step: int, rank: int, batch: int, shape: GPTShape
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets drawn from a generator seeded by (seed, step, rank)."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + step) * 4099 + rank)
    tokens = torch.randint(0, shape.vocab, (batch, shape.context + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


def ordered_allreduce_hook(
    group: dist.ProcessGroup | None, bucket: dist.GradBucket
) -> torch.futures.Future[torch.Tensor]:
    """Average gradients by summing every rank's bucket in rank order.

    gloo's ring all-reduce sums in an order that depends on where a value sits in the bucket, and DDP
    rebuilds its buckets after the first iteration — so a resumed run could differ from an
    uninterrupted one in the last bit. Gathering and summing in rank order makes the sum independent
    of the bucket layout.
    """
    buffer = bucket.buffer()
    world = dist.get_world_size(group)
    gathered = [torch.empty_like(buffer) for _ in range(world)]
    dist.all_gather(gathered, buffer, group=group)
    total = gathered[0].clone()
    for part in gathered[1:]:
        total += part
    total /= world
    future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    future.set_result(total)
    return future
