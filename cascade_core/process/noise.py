"""Per-image random streams, drawn on the CPU so a seed gives the same image anywhere.

Image ``i`` of a batch seeded with ``seed`` uses its own generator seeded
``seed + i``, so one image of a batch can be reproduced alone with
``seed + i`` and a batch of one.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

# A stage that needs a second, independent stream of noise beside its sampling noise (a refiner's
# own conditioning augmentation, a DAE's hand-over) seeds it at ``seed + AUGMENT_SEED_OFFSET``:
# a prime far from the ``seed + i`` streams of any batch a person would run.
AUGMENT_SEED_OFFSET = 7919


class NoiseSource:
    """One CPU generator per image of a batch; draws (B, *shape) tensors row by row."""

    def __init__(self, generators: Sequence[torch.Generator]):
        if not generators:
            raise ValueError("NoiseSource needs at least one generator")
        self.generators = list(generators)

    @classmethod
    def from_seed(cls, seed: int, batch: int) -> NoiseSource:
        """Streams ``seed``, ``seed + 1``, ... ``seed + batch - 1`` (mod 2**64)."""
        return cls([torch.Generator("cpu").manual_seed((int(seed) + i) % 2 ** 64)
                    for i in range(batch)])

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape, device=None, dtype=torch.float32) -> torch.Tensor:
        """A (B, *shape) unit Gaussian, one row per generator, built on the CPU then moved."""
        rows = [torch.randn(tuple(shape), generator=g, dtype=torch.float32)
                for g in self.generators]
        return torch.stack(rows).to(device=device, dtype=dtype)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        """Unit Gaussian noise of ``x``'s shape, device and dtype; one row per stream."""
        self._check(x)
        return self.randn(x.shape[1:], x.device, x.dtype)

    def rand(self, device=None) -> torch.Tensor:
        """One uniform [0, 1) number per image."""
        return torch.cat([torch.rand(1, generator=g) for g in self.generators]).to(device)

    def _check(self, x: torch.Tensor):
        if x.shape[0] != len(self.generators):
            raise ValueError(f"batch of {x.shape[0]} but {len(self.generators)} noise streams")


def as_noise_source(noise, batch: int) -> NoiseSource:
    """Accept a NoiseSource, an int seed, or a single torch.Generator (shared by the batch)."""
    if isinstance(noise, NoiseSource):
        if len(noise) != batch:
            raise ValueError(f"batch of {batch} but {len(noise)} noise streams")
        return noise
    if isinstance(noise, torch.Generator):
        return _SharedGenerator(noise, batch)
    return NoiseSource.from_seed(int(noise), batch)


class _SharedGenerator(NoiseSource):
    """One generator drawing the whole batch at once (training-style randomness)."""

    def __init__(self, generator: torch.Generator, batch: int):
        super().__init__([generator])
        self.batch = batch

    def __len__(self) -> int:
        return self.batch

    def randn(self, shape, device=None, dtype=torch.float32):
        g = self.generators[0]
        x = torch.randn((self.batch, *shape), generator=g, device=g.device)
        return x.to(device=device, dtype=dtype)

    def rand(self, device=None):
        g = self.generators[0]
        return torch.rand(self.batch, generator=g, device=g.device).to(device)

    def _check(self, x):
        if x.shape[0] != self.batch:
            raise ValueError(f"batch of {x.shape[0]} but noise for {self.batch}")
