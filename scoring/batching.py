"""Length-sorted batch planning: pack sequences so padded tokens per forward stay under a budget."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPolicy:
    """``max_batch_tokens`` bounds rows × padded width of one forward; ``max_batch_rows`` bounds rows."""

    max_batch_tokens: int = 2048
    max_batch_rows: int = 256


def plan_batches(lengths: list[int], policy: BatchPolicy) -> list[list[int]]:
    """Indices grouped into batches, longest first; each batch's ``rows × max_len`` fits the budget.

    Sorting by length keeps padding small; a sequence longer than the budget gets a batch of its own.
    Ties keep input order, so the plan is deterministic.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        width = lengths[cur[0]] if cur else lengths[i]  # first item of a batch is its longest
        if cur and ((len(cur) + 1) * width > policy.max_batch_tokens or len(cur) >= policy.max_batch_rows):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches
