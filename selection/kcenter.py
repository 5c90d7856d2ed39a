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


def _prep(X: np.ndarray, metric: str, chunk: int, device: torch.device
          ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(rows as float32 torch on ``device`` — without a copy on CPU where possible — squared norms,
    finite-row mask). Row statistics are computed in chunks so no second N×d array is allocated (the
    cosine metric needs one normalised copy on CPU, the only full-size extra)."""
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"unknown metric {metric!r}; choose euclidean or cosine")
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    if device.type != "cpu":
        Xt = Xt.to(device)  # the device copy is the normalised one, too
    elif metric == "cosine":
        Xt = Xt.clone()
    n = Xt.shape[0]
    finite = torch.ones(n, dtype=torch.bool, device=device)
    sq = torch.zeros(n, device=device)
    for s in range(0, n, chunk):
        blk = Xt[s:s + chunk]
        finite[s:s + chunk] = torch.isfinite(blk).all(dim=1)
        if metric == "cosine":
            blk.nan_to_num_(0.0, 0.0, 0.0)
            blk.div_(blk.norm(dim=1, keepdim=True).clamp_(min=1e-12))
        sq[s:s + chunk] = torch.einsum("ij,ij->i", blk, blk)
    return Xt, sq, finite.cpu().numpy()


def kcenter_greedy(X: np.ndarray, k: int, *, initial: np.ndarray | list[int] | None = None, seed: int = 0,
                   metric: str = "euclidean", chunk: int = 16384, block: int = 64,
                   device: str | torch.device = "cpu") -> KCenterResult:
    """Pick ``k`` new centres farthest-first; ``initial`` is an already-labelled set to grow from.

    Without ``initial`` the first centre is drawn with ``numpy.random.default_rng(seed)``. Radius
    values are Euclidean distances (cosine distances ``d²/2`` for ``metric="cosine"``). ``device``:
    where the pool and the distance work live (``"cuda"`` for a GPU; the picks are the same).

    Blocked evaluation: one scan of the pool computes distances to up to ``block`` likely next picks
    (one matrix product, the memory traffic of a single matrix-vector product), for the rows of the
    clusters some candidate can reach only (the triangle inequality rules the rest out).
    The greedy then keeps picking while the exact argmax of ``d_min`` is one of those rows, applying
    its precomputed column to those rows; only when the argmax falls outside the block is the pool
    scanned again. Picks are identical to the one-at-a-time traversal.
    """
    dev = torch.device(device)
    Xt, sq, finite = _prep(X, metric, chunk, dev)
    n = Xt.shape[0]
    d_min = torch.full((n,), float("inf"), device=dev)
    d_min[torch.from_numpy(~finite).to(dev)] = _INVALID  # never picked, never part of the radius
    assign = torch.full((n,), -1, dtype=torch.long, device=dev)
    centres: list[int] = []
    evaluated = 0
    init = list(dict.fromkeys(int(i) for i in (initial if initial is not None else []) if finite[int(i)]))
    for s in range(0, len(init), block):  # seed the min-distance vector from the labelled set
        cand = torch.tensor(init[s:s + block], device=dev)
        rows, D = _block_distances(Xt, sq, d_min, assign, centres, cand, chunk)
        evaluated += D.numel()
        for col, j in enumerate(cand.tolist()):
            _apply(rows, D[col], j, d_min, assign, centres)
    requested = int(k)
    k = min(requested, int(finite.sum()) - len(init))
    order: list[int] = []
    radius: list[float] = []
    if k > 0 and not init:
        valid_idx = np.flatnonzero(finite)
        first = torch.tensor([int(valid_idx[np.random.default_rng(seed).integers(len(valid_idx))])], device=dev)
        rows, D = _block_distances(Xt, sq, d_min, assign, centres, first, chunk)
        evaluated += D.numel()
        _apply(rows, D[0], int(first[0]), d_min, assign, centres)
        order.append(int(first[0]))
        radius.append(_radius(d_min))
    width = max(1, min(block, 4))
    far = int(torch.argmax(d_min))  # the next pick; its d_min is the covering radius (squared)
    while len(order) < k:
        cand = _candidates(d_min, assign, len(centres), min(width, k - len(order)))
        rows, D = _block_distances(Xt, sq, d_min, assign, centres, cand, chunk)
        evaluated += D.numel()
        cols = {int(j): c for c, j in enumerate(cand.tolist())}
        taken = 0
        while len(order) < k:
            j = far
            if j not in cols:
                break  # the farthest point is outside this block: scan again
            _apply(rows, D[cols.pop(j)], j, d_min, assign, centres)
            far = int(torch.argmax(d_min))
            order.append(j)
            radius.append(float(d_min[far].clamp(min=0).sqrt()))
            taken += 1
        width = max(1, min(block, 2 * taken))  # grow while blocks pay off, shrink when they do not
    if requested >= n - len(init):  # "k >= N returns everything": unusable rows go last
        rest = [i for i in np.flatnonzero(~finite).tolist() if i not in set(init)]
        order += rest
        radius += [radius[-1] if radius else 0.0] * len(rest)
    rad = np.array(radius)
    if metric == "cosine":
        rad = rad ** 2 / 2
    return KCenterResult(np.array(order, dtype=np.int64), rad, assign.cpu().numpy(), evaluated)


def _radius(d_min: torch.Tensor) -> float:
    return float(d_min.max().clamp(min=0).sqrt())


def _candidates(d_min: torch.Tensor, assign: torch.Tensor, n_centres: int, width: int) -> torch.Tensor:
    """Likely next picks: the farthest row of each of the ``width`` clusters with the largest radius
    (the argmax of ``d_min`` always among them). After a pick covers its own cluster's far rows, the
    next farthest row usually heads another cluster, so one row per cluster beats a global top-k."""
    if n_centres == 0:
        return torch.topk(d_min, width).indices
    n = len(d_min)
    cluster = assign.clamp(min=0)
    top = torch.full((n_centres,), -1.0, device=d_min.device).scatter_reduce_(
        0, cluster, d_min, reduce="amax", include_self=True)
    heads = torch.nonzero((d_min == top[cluster]) & (d_min > 0)).squeeze(1)
    lowest = torch.full((n_centres,), n, dtype=torch.long, device=d_min.device).scatter_reduce_(
        0, cluster[heads], heads, reduce="amin", include_self=True)
    heads = lowest[lowest < n]  # one row per cluster (the lowest index among its farthest)
    best = torch.argmax(d_min).reshape(1)  # always a candidate, so every block makes progress
    heads = heads[torch.topk(d_min[heads], min(width, len(heads))).indices] if len(heads) else heads
    return torch.cat([best, heads[heads != best[0]]])[:max(width, 1)]


def _apply(rows: torch.Tensor, col: torch.Tensor, j: int, d_min: torch.Tensor, assign: torch.Tensor,
           centres: list[int]) -> None:
    """Make ``j`` a centre given its squared distances ``col`` to ``rows`` (every other row is
    provably no closer to ``j`` than to its own centre)."""
    closer = col < d_min[rows]
    hit = rows[closer]
    d_min[hit] = col[closer]
    assign[hit] = len(centres)
    d_min[j] = _CENTRE
    assign[j] = len(centres)
    centres.append(j)


def _block_distances(Xt: torch.Tensor, sq: torch.Tensor, d_min: torch.Tensor, assign: torch.Tensor,
                     centres: list[int], cand: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, squared distances ``[B, rows]`` from each candidate) for the rows some candidate may bring
    closer: a row is left out when the triangle inequality proves no candidate can lower its
    ``d_min`` (``d(c, a(x)) >= 2·r(a(x)) >= 2·d_min(x)`` for every candidate ``c``; still valid later
    in the block because ``d_min`` only decreases). Rows are in ascending order."""
    n = Xt.shape[0]
    C, csq = Xt[cand], sq[cand]
    if centres:
        cc = (sq[centres].unsqueeze(1) + csq.unsqueeze(0) - 2.0 * (Xt[centres] @ C.T)).clamp_(min=0).sqrt_()
        r = torch.zeros(len(centres), device=Xt.device).scatter_reduce_(
            0, assign.clamp(min=0), d_min.clamp(min=0).sqrt(), reduce="amax", include_self=True)
        reach = (cc < (2.0 * r * (1 + 1e-6) + 1e-6).unsqueeze(1)).any(dim=1)  # [centres]
        need = reach[assign.clamp(min=0)] & (d_min > 0)
    else:
        need = d_min >= 0
    rows = torch.nonzero(need).squeeze(1)
    D = torch.empty((len(cand), len(rows)), device=Xt.device)  # a candidate's column is contiguous
    at = 0
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        nb = need[s:e]
        n_rows = int(nb.sum())
        if n_rows == 0:
            continue
        if 4 * n_rows > e - s:  # mostly needed: read the chunk in place rather than gathering rows
            d = (sq[s:e].unsqueeze(1) + csq.unsqueeze(0) - 2.0 * (Xt[s:e] @ C.T)).clamp_(min=0)
            D[:, at:at + n_rows] = (d if n_rows == e - s else d[nb]).T
        else:
            idx = rows[at:at + n_rows]
            D[:, at:at + n_rows] = (sq[idx].unsqueeze(1) + csq.unsqueeze(0) - 2.0 * (Xt[idx] @ C.T)).clamp_(min=0).T
        at += n_rows
    return rows, D
