"""A small GPT-style model whose size is a flag, deterministic synthetic data, and a deterministic
gradient all-reduce for DDP.

The shape comes from `gemini_ft.realrun.config.parse_model_size` (the flag is validated with the rest of the
run's configuration, without torch). Batches are generated from (seed, step, rank), so a resumed run
sees exactly the data an uninterrupted one sees.
"""

import math

import torch
import torch.distributed as dist
from torch import nn

from gemini_ft.realrun.config import GPTShape


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
