"""Vector index over L2-normalised embeddings (cosine = inner product) and top-k search that never
returns the query's own row.

``flat`` is exact (``IndexFlatIP``); ``ivf`` (``IndexIVFFlat`` with inner product, ``nlist`` lists,
``nprobe`` probed) is for large KBs; ``auto`` picks flat up to ``IVF_FROM`` rows.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from selection.diversity import normalise

INDEX_TYPES = ("auto", "flat", "ivf")
IVF_FROM = 200_000


def resolve_index_type(index_type: str, n: int) -> str:
    if index_type not in INDEX_TYPES:
        raise ValueError(f"unknown kb.index_type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
    if index_type == "auto":
        return "ivf" if n >= IVF_FROM else "flat"
    return index_type


TRAIN_PER_LIST = 40  # training vectors per inverted list (faiss warns below 39)


def default_nlist(n: int) -> int:
    return max(1, min(int(4 * np.sqrt(n)), n // 39 or 1))


def empty_index(d: int, n: int, index_type: str = "auto", nlist: int | None = None, seed: int = 0) -> Any:
    """An untrained faiss inner-product index for ``n`` vectors of dimension ``d``."""
    import faiss

    if resolve_index_type(index_type, n) == "flat":
        return faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, int(nlist or default_nlist(n)), faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    return index


def training_rows(index: Any, n: int, seed: int = 0) -> np.ndarray:
    """Sorted rows an IVF index trains on: all rows up to ``TRAIN_PER_LIST`` per list, else a seeded
    uniform sample of that many (a flat index trains on none)."""
    if not hasattr(index, "nlist"):
        return np.zeros(0, dtype=np.int64)
    want = TRAIN_PER_LIST * int(index.nlist)
    if n <= want:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, want, replace=False))


def build_index(E: np.ndarray, index_type: str = "auto", nlist: int | None = None, seed: int = 0) -> Any:
    """A faiss inner-product index over the rows of ``E`` (normalised here); an IVF index is trained on
    :func:`training_rows` (as the streamed build in ``retrieval.build`` does)."""
    X = np.ascontiguousarray(normalise(E), dtype=np.float32)
    n, d = X.shape
    index = empty_index(d, n, index_type, nlist, seed)
    train = training_rows(index, n, seed)
    if len(train):
        index.train(X[train])
    index.add(X)
    return index


def search(index: Any, Q: np.ndarray, k: int, kb_ids: Sequence[str], exclude: Sequence[str | None] = (),
           exclude_sim: float | None = None, nprobe: int | None = None, extra: int = 4
           ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` KB rows per query: ``(indices [n, k] with -1 padding, cosine [n, k] with NaN)``.

    A hit is dropped when its KB id equals ``exclude[i]`` (the query row itself sits in the KB) or
    its similarity is ``>= exclude_sim`` (near-copies). ``extra`` more hits are fetched so that
    exclusions still leave ``k``; if many more are excluded the search is repeated wider.
    """
    n = len(Q)
    idx = np.full((n, k), -1, dtype=np.int64)
    sim = np.full((n, k), np.nan, dtype=np.float32)
    if n == 0 or k <= 0 or index.ntotal == 0:
        return idx, sim
    if nprobe is not None and hasattr(index, "nprobe"):
        index.nprobe = int(nprobe)
    Qn = np.ascontiguousarray(normalise(Q), dtype=np.float32)
    excl = list(exclude) + [None] * (n - len(exclude))
    todo = np.arange(n)
    width = min(k + extra, index.ntotal)
    while len(todo):
        D, I = index.search(Qn[todo], width)
        short = []
        for row, (d, i) in enumerate(zip(D, I)):
            q = todo[row]
            keep = [(j, s) for j, s in zip(i.tolist(), d.tolist())
                    if j >= 0 and kb_ids[j] != excl[q] and (exclude_sim is None or s < exclude_sim)][:k]
            if len(keep) < k and width < index.ntotal:
                short.append(q)
                continue
            for c, (j, s) in enumerate(keep):
                idx[q, c], sim[q, c] = j, s
        todo = np.array(short, dtype=np.int64)
        width = min(width * 4, index.ntotal)
    return idx, sim
