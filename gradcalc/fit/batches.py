"""SPEC 10's mini-batches: which data leaves are batched, and the rows of every batch.

The leaves whose first axis has the common length N are cut into consecutive batches of
`--batch-size` rows along that axis, the last one possibly shorter, in file order, as
`DataLoader(batch_size=B, shuffle=False)` does; other leaves go whole into every batch.
`--shuffle` permutes the rows each epoch with numpy's PCG64 generator seeded by
`(seed, epoch)`, so epoch e's order depends on the seed and e alone. torch's RandomSampler
draws from torch's own Mersenne Twister through `torch.randperm`, which cannot be reproduced
without torch: a shuffled fit matches torch's statistics, never its order. This module never
evaluates the loss and never copies an unshuffled batch (it hands out views).
"""
from __future__ import annotations

from collections import Counter
from typing import Iterator, Mapping

import numpy as np

from ..errors import GradcalcError


class Batch:
    """One mini-batch: its 1-based number in the epoch, its rows and the row selection.
    Plain classes here and in the loop: a dataclass costs 0.3-0.7 ms to define, at every
    start-up of `gradcalc fit` (issue 15, figure 17a)."""

    __slots__ = ("number", "rows", "index")

    def __init__(self, number: int, rows: int, index: slice | np.ndarray):
        self.number, self.rows, self.index = number, rows, index

    def take(self, data: Mapping[str, np.ndarray], batched: tuple[str, ...]) -> dict:
        """The leaves of this batch: the batched ones cut to its rows, the others whole."""
        return {name: value[self.index] if name in batched else value
                for name, value in data.items()}


class BatchPlan:
    """How every epoch is cut: N rows (1 when no leaf is batched: one batch of everything),
    the leaves cut along their first axis (in data order), the batch size, the order."""

    __slots__ = ("rows", "batched", "batch_size", "shuffle", "seed")

    def __init__(self, rows: int, batched: tuple[str, ...], batch_size: int,
                 shuffle: bool = False, seed: int = 0):
        self.rows, self.batched, self.batch_size = rows, batched, batch_size
        self.shuffle, self.seed = shuffle, seed

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.rows // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch `epoch` (1-based), in order."""
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.rows)
                 if self.shuffle else None)
        for number, start in enumerate(range(0, self.rows, self.batch_size), 1):
            stop = min(start + self.batch_size, self.rows)
            index = slice(start, stop) if order is None else order[start:stop]
            yield Batch(number, stop - start, index)

    def take(self, data: Mapping[str, np.ndarray], batch: Batch) -> dict:
        return batch.take(data, self.batched)


def common_rows(data: Mapping[str, np.ndarray]) -> int | None:
    """N: the first-axis length shared by the most leaves of at least one axis (the larger
    length on a tie), or None when every leaf is a scalar."""
    counts = Counter(np.shape(v)[0] for v in data.values() if np.ndim(v) >= 1)
    if not counts:
        return None
    return max(counts, key=lambda n: (counts[n], n))


def plan_batches(data: Mapping[str, np.ndarray], batch_size: int | None = None, *,
                 shuffle: bool = False, seed: int = 0) -> BatchPlan:
    """The plan for `data` (the data leaves only, never the parameters): batch_size None
    means all N rows at once; a batch size above N gives one batch, as DataLoader does."""
    if batch_size is not None and batch_size < 1:
        raise GradcalcError("usage", f"--batch-size must be at least 1, got {batch_size}")
    if seed < 0:
        raise GradcalcError("usage", f"--seed must be 0 or more, got {seed}")
    rows = common_rows(data)
    if rows is None or rows == 0:
        return BatchPlan(1, (), 1, shuffle, seed)
    batched = tuple(name for name, value in data.items()
                    if np.ndim(value) >= 1 and np.shape(value)[0] == rows)
    return BatchPlan(rows, batched, min(batch_size or rows, rows), shuffle, seed)
