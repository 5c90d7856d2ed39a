"""RDS+ (Ivison et al. 2025, "Large-Scale Data Selection for Instruction Tuning"): pick the pool rows
whose embeddings are most similar (cosine) to the rows of a target set.

Embeddings are the position-weighted mean of a causal LM's last hidden state over each row's whole
training sequence (``scoring.embed`` ``weighted_mean``), unit-normalised; similarity is the inner
product, searched exactly with faiss.

Aggregates:
- ``round_robin`` (the paper's default): targets take turns, in target-file order; on its turn a
  target takes its most similar pool row not yet taken, until the budget is filled. Every target gets
  ⌊k/T⌋ or ⌈k/T⌉ picks.
- ``max``: each pool row's score is its best similarity to any target; the top ``k`` rows.
Ties are broken by the lower pool position in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from records.tables import label_counts

AGGREGATES = ("round_robin", "max")


@dataclass
class RDSResult:
    order: np.ndarray  # selected positions, in pick order
    score: np.ndarray  # [N] best cosine to any target (NaN for ineligible rows)
    nearest_target: np.ndarray  # [N] index of that target (-1 for ineligible rows)
    picked_by: np.ndarray  # [N] target whose turn picked the row (round_robin), -1 otherwise
    outcome: np.ndarray  # [N] selected | below_budget | error

    def counts(self) -> dict[str, int]:
        return label_counts(self.outcome)


def unit(E: np.ndarray) -> np.ndarray:
    X = np.nan_to_num(np.asarray(E, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    return np.ascontiguousarray(np.divide(X, norm, out=np.zeros_like(X), where=norm > 0))


def _flat_ip(X: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(X.shape[1])
    index.add(np.ascontiguousarray(X, dtype=np.float32))
    return index


def nearest_targets(P: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pool row: (best cosine to a target, that target's index; lower index on ties)."""
    sims, ids = _flat_ip(T).search(P, min(len(T), 8))
    best = sims[:, :1]
    tied = np.where(np.isclose(sims, best, rtol=0, atol=0), ids, np.iinfo(np.int64).max)
    return sims[:, 0].astype(np.float64), tied.min(axis=1).astype(np.int64)


def ranked_lists(index, T: np.ndarray, pool_ids: np.ndarray, k: int) -> list[np.ndarray]:
    """Per target, up to ``k`` pool positions by similarity (ties: lower position). The last group of
    equal similarities is dropped when it may be cut by ``k``, so every list is an exact prefix of the
    full ranking."""
    sims, ids = index.search(T, min(k, index.ntotal))
    out = []
    for s, i in zip(sims, ids):
        ok = i >= 0
        s, i = s[ok], pool_ids[i[ok]]
        order = np.lexsort((i, -s))
        s, i = s[order], i[order]
        if len(i) < index.ntotal and len(s):
            i = i[s > s[-1]] if (s == s[-1]).sum() < len(s) else i[:0]
        out.append(i)
    return out


def round_robin(P: np.ndarray, T: np.ndarray, pool_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(picks in order, the target whose turn took each). ``P`` holds the eligible pool rows, whose
    positions are ``pool_ids``. Each target's list is fetched in growing prefixes as turns need."""
    k = min(int(k), len(pool_ids))
    index = _flat_ip(P)
    depth = min(len(pool_ids), k + -(-k // max(len(T), 1)) + 8)
    lists = ranked_lists(index, T, pool_ids, depth)
    asked = np.full(len(T), depth, dtype=np.int64)  # how deep each target's list was fetched
    ptr = np.zeros(len(T), dtype=np.int64)
    taken = np.zeros(int(pool_ids.max()) + 1 if len(pool_ids) else 0, dtype=bool)
    order, by = [], []
    while len(order) < k:
        for t in range(len(T)):
            if len(order) >= k:
                break
            lst = lists[t]
            while True:
                while ptr[t] < len(lst) and taken[lst[ptr[t]]]:
                    ptr[t] += 1
                if ptr[t] < len(lst) or len(lst) >= len(pool_ids):
                    break
                asked[t] = min(2 * max(int(asked[t]), 16), len(pool_ids))  # grows even when ties trim it
                lst = lists[t] = ranked_lists(index, T[t : t + 1], pool_ids, int(asked[t]))[0]
            if ptr[t] >= len(lst):
                continue  # this target has no untaken row left (cannot happen while len(order) < k)
            row = lst[ptr[t]]
            taken[row] = True
            order.append(row)
            by.append(t)
    return np.asarray(order, dtype=np.int64), np.asarray(by, dtype=np.int64)


def rds_select(
    pool: np.ndarray, targets: np.ndarray, eligible: np.ndarray, k: int, aggregate: str = "round_robin"
) -> RDSResult:
    """Select ``k`` eligible pool rows for the target embeddings (both raw; normalised here)."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown rds.aggregate {aggregate!r}; choose one of {', '.join(AGGREGATES)}")
    if len(targets) == 0:
        raise ValueError("the target set has no usable rows")
    n = len(pool)
    eligible = np.asarray(eligible, dtype=bool)
    ids = np.flatnonzero(eligible)
    P, T = unit(pool[ids]), unit(targets)
    score = np.full(n, np.nan)
    nearest = np.full(n, -1, dtype=np.int64)
    picked_by = np.full(n, -1, dtype=np.int64)
    outcome = np.where(eligible, "below_budget", "error").astype(object)
    if not len(ids) or k <= 0:
        return RDSResult(np.zeros(0, np.int64), score, nearest, picked_by, outcome.astype(str))
    score[ids], nearest[ids] = nearest_targets(P, T)
    if aggregate == "max":
        order = ids[np.lexsort((ids, -score[ids]))][: min(k, len(ids))]
    else:
        order, by = round_robin(P, T, ids, k)
        picked_by[order] = by
    outcome[order] = "selected"
    return RDSResult(order, score, nearest, picked_by, outcome.astype(str))
