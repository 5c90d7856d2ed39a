"""Greedy k-center (farthest-first traversal) in O(N·d) memory, with exact triangle-inequality pruning.

Each pick adds the point farthest from the current centres, ``x* = argmax_x min_{c∈S} d(x, c)``.
Winnow keeps ``d_min[x]`` and the centre ``x`` is assigned to, so nothing N×N is ever built. Two
exact accelerations: (1) a new centre ``c`` can only lower ``d_min[x]`` when ``d(c, a(x)) < 2·d_min[x]``
(triangle inequality), so clusters whose radius rules that out are skipped; (2) distances are
computed for a block of likely next picks per scan of the pool (see ``kcenter_greedy``). The picks
stay identical to the textbook traversal. Ties go to the lowest index. Non-finite rows are never picked
(and appended last when ``k >= N``). ``metric="cosine"`` runs on L2-normalised rows; the farthest-first
order is the same for Euclidean distance on the sphere and for cosine distance ``1 - cos = d²/2``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


_CENTRE = -0.5   # d_min marker of a chosen centre (never re-picked; counts as distance 0)
_INVALID = -1.0  # d_min marker of a non-finite row


@dataclass
class KCenterResult:
    """Picks in order (``initial`` rows excluded), covering radius after each pick, final assignment."""

    order: np.ndarray
    radius: np.ndarray
    assign: np.ndarray
    evaluated: int = 0  # point-centre distances computed (pruning diagnostics)


def _prep(X: np.ndarray, metric: str, chunk: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(rows as float32 torch without a copy where possible, squared norms, finite-row mask).

    Row statistics are computed in chunks so no second N×d array is ever allocated (the cosine
    metric needs one normalised copy, which is the only full-size extra)."""
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"unknown metric {metric!r}; choose euclidean or cosine")
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    n = Xt.shape[0]
    finite = torch.ones(n, dtype=torch.bool)
    sq = torch.zeros(n)
    if metric == "cosine":
        Xt = Xt.clone()
    for s in range(0, n, chunk):
        blk = Xt[s:s + chunk]
        finite[s:s + chunk] = torch.isfinite(blk).all(dim=1)
        if metric == "cosine":
            blk.nan_to_num_(0.0, 0.0, 0.0)
            blk.div_(blk.norm(dim=1, keepdim=True).clamp_(min=1e-12))
        sq[s:s + chunk] = torch.einsum("ij,ij->i", blk, blk)
    return Xt, sq, finite.numpy()


def kcenter_greedy(X: np.ndarray, k: int, *, initial: np.ndarray | list[int] | None = None, seed: int = 0,
                   metric: str = "euclidean", chunk: int = 16384, block: int = 64) -> KCenterResult:
    """Pick ``k`` new centres farthest-first; ``initial`` is an already-labelled set to grow from.

    Without ``initial`` the first centre is drawn with ``numpy.random.default_rng(seed)``. Radius
    values are Euclidean distances (cosine distances ``d²/2`` for ``metric="cosine"``).

    Blocked evaluation: one scan of the pool computes distances to up to ``block`` likely next picks
    (one matrix product, the memory traffic of a single matrix-vector product).
    The greedy then keeps picking while the exact argmax of ``d_min`` is one of those rows, applying
    its precomputed column in O(N); only when the argmax falls outside the block is the pool scanned
    again. Picks are identical to the one-at-a-time traversal.
    """
    Xt, sq, finite = _prep(X, metric, chunk)
    n = Xt.shape[0]
    d_min = torch.full((n,), float("inf"))
    d_min[torch.from_numpy(~finite)] = _INVALID  # never picked, never part of the radius
    assign = torch.full((n,), -1, dtype=torch.long)
    centres: list[int] = []
    evaluated = 0
    init = list(dict.fromkeys(int(i) for i in (initial if initial is not None else []) if finite[int(i)]))
    for s in range(0, len(init), block):  # seed the min-distance vector from the labelled set
        cand = torch.tensor(init[s:s + block])
        D, cnt = _block_distances(Xt, sq, d_min, assign, centres, cand, chunk)
        evaluated += cnt
        for col, j in enumerate(cand.tolist()):
            _apply(D[:, col], j, d_min, assign, centres)
    requested = int(k)
    k = min(requested, int(finite.sum()) - len(init))
    order: list[int] = []
    radius: list[float] = []
    if k > 0 and not init:
        valid_idx = np.flatnonzero(finite)
        first = torch.tensor([int(valid_idx[np.random.default_rng(seed).integers(len(valid_idx))])])
        D, cnt = _block_distances(Xt, sq, d_min, assign, centres, first, chunk)
        evaluated += cnt
        _apply(D[:, 0], int(first[0]), d_min, assign, centres)
        order.append(int(first[0]))
        radius.append(float(d_min.max().clamp(min=0).sqrt()))
    width = max(1, min(block, 4))
    while len(order) < k:
        cand = _candidates(d_min, assign, len(centres), min(width, k - len(order)))
        D, cnt = _block_distances(Xt, sq, d_min, assign, centres, cand, chunk)
        evaluated += cnt
        cols = {int(j): c for c, j in enumerate(cand.tolist())}
        taken = 0
        while len(order) < k:
            j = int(torch.argmax(d_min))
            if j not in cols:
                break  # the farthest point is outside this block: scan again
            _apply(D[:, cols.pop(j)], j, d_min, assign, centres)
            order.append(j)
            radius.append(float(d_min.max().clamp(min=0).sqrt()))
            taken += 1
        width = max(1, min(block, 2 * taken))  # grow while blocks pay off, shrink when they do not
    if requested >= n - len(init):  # "k >= N returns everything": unusable rows go last
        rest = [i for i in np.flatnonzero(~finite).tolist() if i not in set(init)]
        order += rest
        radius += [radius[-1] if radius else 0.0] * len(rest)
    rad = np.array(radius)
    if metric == "cosine":
        rad = rad ** 2 / 2
    return KCenterResult(np.array(order, dtype=np.int64), rad, assign.numpy(), evaluated)


def _candidates(d_min: torch.Tensor, assign: torch.Tensor, n_centres: int, width: int) -> torch.Tensor:
    """Likely next picks: the farthest row of each of the ``width`` clusters with the largest radius
    (the argmax of ``d_min`` always among them). After a pick covers its own cluster's far rows, the
    next farthest row usually heads another cluster, so one row per cluster beats a global top-k."""
    if n_centres == 0:
        return torch.topk(d_min, width).indices
    cluster = assign.clamp(min=0)
    top = torch.full((n_centres,), -1.0).scatter_reduce_(0, cluster, d_min, reduce="amax", include_self=True)
    heads = torch.nonzero((d_min == top[cluster]) & (d_min > 0)).squeeze(1)
    _, first = np.unique(cluster[heads].numpy(), return_index=True)  # one row per cluster (lowest index)
    heads = heads[torch.from_numpy(first)]
    best = torch.argmax(d_min).reshape(1)  # always a candidate, so every block makes progress
    heads = heads[torch.topk(d_min[heads], min(width, len(heads))).indices] if len(heads) else heads
    return torch.cat([best, heads[heads != best[0]]])[:max(width, 1)]


def _apply(col: torch.Tensor, j: int, d_min: torch.Tensor, assign: torch.Tensor, centres: list[int]) -> None:
    """Make ``j`` a centre given its squared distances ``col`` (+inf where pruned)."""
    closer = col < d_min
    d_min[closer] = col[closer]
    assign[closer] = len(centres)
    d_min[j] = _CENTRE
    assign[j] = len(centres)
    centres.append(j)


def _block_distances(Xt: torch.Tensor, sq: torch.Tensor, d_min: torch.Tensor, assign: torch.Tensor,
                     centres: list[int], cand: torch.Tensor, chunk: int) -> tuple[torch.Tensor, int]:
    """Squared distances ``[N, B]`` from every row to each candidate, +inf where the triangle
    inequality proves the candidate cannot lower that row's ``d_min`` (``d(c, a(x)) >= 2·d_min(x)``;
    still valid later in the block because ``d_min`` only decreases). Returns (D, distances computed)."""
    n, B = Xt.shape[0], len(cand)
    C, csq = Xt[cand], sq[cand]
    if centres:
        cc = (sq[centres].unsqueeze(1) + csq.unsqueeze(0) - 2.0 * (Xt[centres] @ C.T)).clamp_(min=0).sqrt_()
        r = torch.zeros(len(centres)).scatter_reduce_(0, assign.clamp(min=0), d_min.clamp(min=0).sqrt(),
                                                      reduce="amax", include_self=True)
        reach = cc < (2.0 * r * (1 + 1e-6) + 1e-6).unsqueeze(1)        # [centres, B]
        need = reach[assign.clamp(min=0)] & (d_min > 0).unsqueeze(1)    # [N, B]
    else:
        need = (d_min >= 0).unsqueeze(1).expand(n, B)
    D = torch.full((n, B), float("inf"))
    count = 0
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        nb = need[s:e]
        rows = nb.any(dim=1)
        n_rows = int(rows.sum())
        if n_rows == 0:
            continue
        if 4 * n_rows > e - s:  # mostly needed: read the chunk in place rather than gathering rows
            d = (sq[s:e].unsqueeze(1) + csq.unsqueeze(0) - 2.0 * (Xt[s:e] @ C.T)).clamp_(min=0)
            D[s:e] = torch.where(nb, d, D[s:e])
        else:
            idx = torch.nonzero(rows).squeeze(1) + s
            d = (sq[idx].unsqueeze(1) + csq.unsqueeze(0) - 2.0 * (Xt[idx] @ C.T)).clamp_(min=0)
            D[idx] = torch.where(need[idx], d, D[idx])
        count += int(nb.sum())
    return D, count
