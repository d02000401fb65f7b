"""A seeded synthetic token stream whose position is part of the training state.

Each micro-batch is drawn from a generator seeded by (seed, data rank, position), so the stream is a
pure function of its position; the position itself lives in a one-element tensor that the checkpoint
shard carries (`extra/data_position`), so a recovered run resumes the stream exactly where the
checkpointed step left it and sees the batches an uninterrupted one sees.
"""

from __future__ import annotations

import torch

from gemini_ft.realrun.config import ModelShape


class SyntheticStream:
    """Next-token batches of random bytes for one data-parallel rank."""

    def __init__(self, seed: int, rank: int, batch: int, shape: ModelShape) -> None:
        self.seed, self.rank, self.size, self.shape = seed, rank, batch, shape
        self.position = torch.zeros(1, dtype=torch.int64)
        """Micro-batches this rank has consumed (checkpointed with the shard)."""

    def batch(self, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of the micro-batch `offset` places past the current position. Reading
        does not move the position: a snapshot may still be copying it (`advance` once it is out)."""
        at = int(self.position) + offset
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + at) * 4099 + self.rank)
        tokens = torch.randint(0, self.shape.vocab, (self.size, self.shape.context + 1), generator=generator)
        return tokens[:, :-1], tokens[:, 1:]

    def advance(self, count: int) -> None:
        """Move past `count` micro-batches (in place: the shard holds this very tensor)."""
        self.position += count

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The micro-batch at the current position, then advance (where no snapshot reads the position)."""
        drawn = self.batch()
        self.advance(1)
        return drawn
