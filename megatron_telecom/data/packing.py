"""Packing variable-length documents into fixed-capacity bins (SFT sequences), boundaries kept.

Best-fit decreasing (``bfd``): documents sorted by length, longest first (ties in input order);
each goes into the open bin whose free space is smallest but still enough, lowest-numbered
among equals; a new bin is opened when none fits. A segment tree over free-space values finds
that bin in O(log capacity), so packing n documents costs O(n log n). It is deterministic: the
same lengths always give the same bins. Inside a bin, documents keep the order they were placed
in; bins are numbered in the order they were opened. ``none`` puts each document in its own bin,
in input order (for comparisons with unpacked training).

Efficiency = packed tokens / (bins x capacity): the fraction of a trainer's fixed-length batches
that holds real tokens rather than padding.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

PackingAlgorithm = Literal["bfd", "none"]
PACKING_DESCRIPTIONS = {
    "bfd": "best-fit decreasing (longest first; tightest open bin that fits, lowest index on ties)",
    "none": "one conversation per sequence, input order",
}


class _FreeSpaceTree:
    """Bins grouped by free space 0..capacity; finds the smallest free space >= n that has a bin."""

    def __init__(self, capacity: int) -> None:
        self.size = 1
        while self.size < capacity + 1:
            self.size *= 2
        self.count = [0] * (2 * self.size)
        self.bins: dict[int, list[int]] = {}  # free space -> heap of bin ids (lowest id first)

    def _bump(self, space: int, delta: int) -> None:
        i = space + self.size
        while i:
            self.count[i] += delta
            i //= 2

    def add(self, space: int, bin_id: int) -> None:
        heapq.heappush(self.bins.setdefault(space, []), bin_id)
        self._bump(space, 1)

    def pop_at_least(self, n: int) -> tuple[int, int] | None:
        """(free space, bin id) of the tightest bin with at least ``n`` free, removed; None if none."""
        space = self._first(1, 0, self.size - 1, n)
        if space is None:
            return None
        bin_id = heapq.heappop(self.bins[space])
        self._bump(space, -1)
        return space, bin_id

    def _first(self, node: int, lo: int, hi: int, n: int) -> int | None:
        if hi < n or self.count[node] == 0:
            return None
        if lo == hi:
            return lo
        mid = (lo + hi) // 2
        left = self._first(2 * node, lo, mid, n)
        return left if left is not None else self._first(2 * node + 1, mid + 1, hi, n)


def pack(lengths: Sequence[int], capacity: int, algorithm: PackingAlgorithm = "bfd") -> list[list[int]]:
    """Bins of document indices whose lengths sum to at most ``capacity`` each (every length must fit)."""
    if any(n > capacity or n < 1 for n in lengths):
        raise ValueError(f"every document must hold 1..{capacity} tokens to be packed")
    if algorithm == "none":
        return [[i] for i in range(len(lengths))]
    if algorithm != "bfd":
        raise ValueError(f"unknown packing algorithm {algorithm!r}: choose one of {', '.join(PACKING_DESCRIPTIONS)}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free = _FreeSpaceTree(capacity)
    for i in order:
        found = free.pop_at_least(lengths[i])
        if found is None:
            space, bin_id = capacity, len(bins)
            bins.append([])
        else:
            space, bin_id = found
        bins[bin_id].append(i)
        free.add(space - lengths[i], bin_id)
    return bins


@dataclass(frozen=True)
class PackingStats:
    """What a packing achieved, as reported in the summary and the provenance sidecar."""

    algorithm: str
    capacity: int
    documents: int
    sequences: int
    tokens: int

    @property
    def efficiency(self) -> float:
        return self.tokens / (self.sequences * self.capacity) if self.sequences else 0.0

    def as_dict(self) -> dict:
        return {"algorithm": self.algorithm, "description": PACKING_DESCRIPTIONS[self.algorithm],
                "seq_length": self.capacity, "documents": self.documents, "sequences": self.sequences,
                "tokens": self.tokens, "padding_tokens": self.sequences * self.capacity - self.tokens,
                "efficiency": round(self.efficiency, 6)}
