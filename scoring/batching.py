"""Length-sorted batch planning: pack sequences so padded tokens per forward stay under a budget."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPolicy:
    """``max_batch_tokens`` bounds rows × padded width of one forward; ``max_batch_rows`` bounds rows."""

    max_batch_tokens: int = 2048
    max_batch_rows: int = 256
    pack_width: int = 0  # > 0: pack passes end to end into rows of this many tokens (block-diagonal masks)


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


def pack_rows(lengths: list[int], width: int) -> list[list[int]]:
    """Indices packed end to end into rows of at most ``width`` tokens (first-fit, longest first).

    A sequence longer than ``width`` gets a row of its own. Rows come out fullest first; inside a row
    items keep the order they were placed in. Deterministic: ties keep input order.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    fill: list[int] = []
    for i in order:
        for r, used in enumerate(fill):
            if used + lengths[i] <= width:
                rows[r].append(i)
                fill[r] += lengths[i]
                break
        else:
            rows.append([i])
            fill.append(lengths[i])
    return [rows[r] for r in sorted(range(len(rows)), key=lambda r: (-fill[r], r))]


def plan_packed(lengths: list[int], policy: BatchPolicy, width: int) -> list[list[list[int]]]:
    """Batches of packed rows: each batch a list of rows, each row a list of item indices; a batch's
    ``rows × widest row`` stays within ``policy.max_batch_tokens`` (as :func:`plan_batches`)."""
    rows = pack_rows(lengths, width)
    fills = [sum(lengths[i] for i in row) for row in rows]
    return [[rows[r] for r in batch] for batch in plan_batches(fills, policy)]
