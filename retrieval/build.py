"""The KB artifact's vectors from per-shard raw embeddings, streamed: the driver never holds the
whole embedding matrix (1M rows × 576 dims would be 2.3 GB in float32).

Three passes over ``emb_dir/part-NNNNN.npy`` (raw float32, one file per KB shard, in row order):
1. the KB mean (float64 sums), when the encoder centres;
2. an IVF index's training sample (``retrieval.index.training_rows``, read through a memory map:
   only the sampled rows), centred and normalised;
3. every shard centred, normalised, added to the index and appended to ``embeddings.npy`` (float16).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from retrieval.encoder import finish
from retrieval.index import empty_index, training_rows


@dataclass
class Built:
    index: Any
    center: np.ndarray | None
    dim: int
    rows: int


def shard_files(emb_dir: Path, n_shards: int) -> list[Path]:
    files = [emb_dir / f"part-{k:05d}.npy" for k in range(n_shards)]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise RuntimeError(f"embedding shards {missing[:5]} are missing; refusing to index")
    return files


def _blocks(files: list[Path], mmap: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, raw block) per shard; with ``mmap`` the block is read only where it is indexed."""
    at = 0
    for f in files:
        E = np.load(f, mmap_mode="r" if mmap else None)
        yield at, E
        at += len(E)


def kb_mean(files: list[Path]) -> np.ndarray:
    total, n = None, 0
    for _, E in _blocks(files):
        s = E.sum(axis=0, dtype=np.float64)
        total = s if total is None else total + s
        n += len(E)
    return (total / max(n, 1)).astype(np.float32)


def build_from_shards(emb_dir: Path, n_shards: int, center: bool, index_type: str, nlist: int | None,
                      seed: int, embeddings_path: Path) -> Built:
    """The index over every shard's finished vectors; ``embeddings_path`` gets them as float16
    (written under a temporary name, renamed when complete)."""
    files = shard_files(emb_dir, n_shards)
    shapes = [np.load(f, mmap_mode="r").shape for f in files]
    n, d = sum(s[0] for s in shapes), (shapes[0][1] if shapes else 0)
    mean = kb_mean(files) if center else None
    index = empty_index(d, n, index_type, nlist, seed)
    train = training_rows(index, n, seed)
    if len(train):
        picked = [finish(E[train[(train >= at) & (train < at + len(E))] - at], mean)
                  for at, E in _blocks(files, mmap=True)]
        index.train(np.ascontiguousarray(np.concatenate(picked), dtype=np.float32))
        del picked
    tmp = embeddings_path.with_name(embeddings_path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False, "shape": (n, d)})
        for _, E in _blocks(files):
            X = np.ascontiguousarray(finish(E, mean), dtype=np.float32)
            index.add(X)
            f.write(X.astype(np.float16).tobytes())
    os.replace(tmp, embeddings_path)
    return Built(index, mean, d, n)
