"""Greedy k-center (farthest-first traversal) in O(N·d) memory, with exact triangle-inequality pruning.

Each pick adds the point farthest from the current centres, ``x* = argmax_x min_{c∈S} d(x, c)``.
Winnow keeps ``d_min[x]`` and the centre ``x`` is assigned to, updated once per pick, so nothing N×N
is ever built. A new centre ``c`` can only lower ``d_min[x]`` when ``d(c, a(x)) < 2·d_min[x]``
(triangle inequality), so clusters whose radius rules that out are skipped entirely: on clustered
data most of the pool is never touched after the first few hundred picks, while the picks stay
identical to the textbook traversal. Ties go to the lowest index. Non-finite rows are never picked
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


def _prep(X: np.ndarray, metric: str) -> tuple[torch.Tensor, np.ndarray]:
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"unknown metric {metric!r}; choose euclidean or cosine")
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    finite = torch.isfinite(Xt).all(dim=1)
    if metric == "cosine":
        Xt = torch.nn.functional.normalize(torch.where(finite.unsqueeze(1), Xt, 0.0), dim=1)
    return Xt, finite.numpy()


def _sqdist(Xc: torch.Tensor, sq: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared distances of rows ``Xc`` (with squared norms ``sq``) to point ``c``, clamped at 0."""
    return (sq + c.dot(c) - 2.0 * (Xc @ c)).clamp_(min=0.0)


def kcenter_greedy(X: np.ndarray, k: int, *, initial: np.ndarray | list[int] | None = None, seed: int = 0,
                   metric: str = "euclidean", chunk: int = 32768) -> KCenterResult:
    """Pick ``k`` new centres farthest-first; ``initial`` is an already-labelled set to grow from.

    Without ``initial`` the first centre is drawn with ``numpy.random.default_rng(seed)``. Radius
    values are Euclidean distances (cosine distances ``d²/2`` for ``metric="cosine"``).
    """
    Xt, finite = _prep(X, metric)
    n = Xt.shape[0]
    sq = (Xt * Xt).sum(dim=1)
    d_min = torch.full((n,), float("inf"))
    d_min[torch.from_numpy(~finite)] = _INVALID  # never picked, never part of the radius
    assign = torch.full((n,), -1, dtype=torch.long)
    centres: list[int] = []
    evaluated = 0
    init = [int(i) for i in (initial if initial is not None else []) if finite[int(i)]]
    for i in init:  # seed the min-distance vector from the labelled set
        evaluated += _update(Xt, sq, d_min, assign, centres, i, chunk, prune=True)
    requested = int(k)
    k = min(requested, int(finite.sum()) - len(set(init)))
    order, radius = [], []
    valid_idx = np.flatnonzero(finite)
    for step in range(max(k, 0)):
        if step == 0 and not init:
            j = int(valid_idx[np.random.default_rng(seed).integers(len(valid_idx))])
        else:
            j = int(torch.argmax(d_min))
        evaluated += _update(Xt, sq, d_min, assign, centres, j, chunk, prune=True)
        order.append(j)
        radius.append(float(d_min.max().clamp(min=0).sqrt()))
    if requested >= n - len(set(init)):  # "k >= N returns everything": unusable rows go last
        rest = [i for i in np.flatnonzero(~finite).tolist() if i not in set(init)]
        order += rest
        radius += [radius[-1] if radius else 0.0] * len(rest)
    order_arr = np.array(order, dtype=np.int64)
    rad = np.array(radius)
    if metric == "cosine":
        rad = rad ** 2 / 2
    return KCenterResult(order_arr, rad, assign.numpy(), evaluated)


def _update(Xt: torch.Tensor, sq: torch.Tensor, d_min: torch.Tensor, assign: torch.Tensor,
            centres: list[int], j: int, chunk: int, prune: bool) -> int:
    """Make ``j`` a centre: lower ``d_min``/``assign`` where it is closer. Returns distances computed."""
    c = Xt[j]
    todo = None
    if prune and centres:
        C = Xt[centres]
        dc = _sqdist(C, sq[centres], c).sqrt()                       # centre-centre distances
        r = torch.zeros(len(centres)).scatter_reduce_(0, assign.clamp(min=0), d_min.clamp(min=0).sqrt(),
                                                      reduce="amax", include_self=True)
        reach = dc < 2.0 * r * (1 + 1e-6) + 1e-6                      # clusters c can reach
        todo = reach[assign.clamp(min=0)] & (d_min > 0)
    slot = len(centres)
    centres.append(j)
    count = 0
    for s in range(0, Xt.shape[0], chunk):
        e = min(s + chunk, Xt.shape[0])
        if todo is None:
            idx = torch.arange(s, e)[d_min[s:e] >= 0]
        else:
            idx = torch.nonzero(todo[s:e]).squeeze(1) + s
        if idx.numel() == 0:
            continue
        d = _sqdist(Xt[idx], sq[idx], c)
        closer = d < d_min[idx]
        upd = idx[closer]
        d_min[upd] = d[closer]
        assign[upd] = slot
        count += idx.numel()
    d_min[j] = _CENTRE
    assign[j] = slot
    return count
