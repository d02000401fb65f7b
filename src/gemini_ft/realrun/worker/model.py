"""The models a worker trains, their initial weights, and a deterministic gradient all-reduce for DDP.

`gpt`: a GPT-2-style decoder (LayerNorm, learned positions, GELU MLP). `llama`: a Llama-style one
(RMSNorm, rotary position embeddings, SwiGLU, grouped-query attention with half as many key/value
heads as query heads). Both are decoder-only over bytes, without dropout, so a step is a pure
function of the state and the data; both expose `blocks` (what FSDP2 wraps one by one) and can
recompute each block in the backward pass (activation checkpointing). The shape comes from
`gemini_ft.realrun.config.parse_model_size` (validated with the rest of the run, without torch).
"""

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from gemini_ft.realrun.config import ModelShape


class GPTBlock(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
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


class Decoder(nn.Module):
    """What both models share: embedding, blocks (optionally recomputed in the backward), head."""

    blocks: nn.ModuleList

    def __init__(self) -> None:
        super().__init__()
        self.activation_checkpointing = False

    def run_blocks(self, x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.activation_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, *args, use_reentrant=False)
            else:
                x = block(x, *args)
        return x


class GPT(Decoder):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab, shape.width)
        self.pos = nn.Parameter(torch.zeros(shape.context, shape.width))
        self.blocks = nn.ModuleList(GPTBlock(shape) for _ in range(shape.layers))
        self.ln = nn.LayerNorm(shape.width)
        self.head = nn.Linear(shape.width, shape.vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        mask = torch.triu(torch.full((length, length), float("-inf"), device=tokens.device), diagonal=1)
        x = self.embed(tokens) + self.pos[:length]
        return self.head(self.ln(self.run_blocks(x, mask)))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of `x` [batch, heads, length, head_dim] (pairs of halves, as Llama's)."""
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.heads, self.kv_heads = shape.heads, shape.kv_heads
        self.head_dim = shape.width // shape.heads
        self.attn_norm = nn.RMSNorm(shape.width, eps=1e-5)
        self.wq = nn.Linear(shape.width, shape.heads * self.head_dim, bias=False)
        self.wk = nn.Linear(shape.width, self.kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(shape.width, self.kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(shape.heads * self.head_dim, shape.width, bias=False)
        self.ffn_norm = nn.RMSNorm(shape.width, eps=1e-5)
        self.w1 = nn.Linear(shape.width, shape.ffn, bias=False)  # gate
        self.w3 = nn.Linear(shape.width, shape.ffn, bias=False)  # up
        self.w2 = nn.Linear(shape.ffn, shape.width, bias=False)  # down

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        k = self.wk(h).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(h).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        groups = self.heads // self.kv_heads  # grouped-query attention: each k/v head serves `groups` q heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.wo(attended.transpose(1, 2).reshape(batch, length, -1))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Llama(Decoder):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab, shape.width)
        self.blocks = nn.ModuleList(LlamaBlock(shape) for _ in range(shape.layers))
        self.norm = nn.RMSNorm(shape.width, eps=1e-5)
        self.head = nn.Linear(shape.width, shape.vocab, bias=False)
        head_dim = shape.width // shape.heads
        inverse = 1.0 / (10_000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        angles = torch.outer(torch.arange(shape.context, dtype=torch.float64), inverse)
        # Buffers, not parameters: derived from the shape, never trained or checkpointed.
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x = self.embed(tokens)
        cos, sin = self.cos[:length].to(x.dtype), self.sin[:length].to(x.dtype)
        return self.head(self.norm(self.run_blocks(x, cos, sin)))


MODELS = {"gpt": GPT, "llama": Llama}


def build_model(kind: str, shape: ModelShape, seed: int) -> Decoder:
    """The same initial weights on every rank and every restart, from a private generator."""
    generator = torch.Generator().manual_seed(seed)
    model = MODELS[kind](shape)
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


# No `from __future__ import annotations` in this module: DDP checks the hook's annotation of `bucket`
# at registration, and a string there is refused.
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
