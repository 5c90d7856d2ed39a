"""The streamed KB index build (three passes over per-shard raw embeddings) equals the in-memory build:
the same centre, the same stored vectors, the same neighbours; an IVF index trains on a sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from records.writers import save_npy
from retrieval.build import build_from_shards
from retrieval.encoder import finish
from retrieval.index import TRAIN_PER_LIST, build_index, search, training_rows


def shards(d: Path, sizes: list[int], dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(n, dim)).astype(np.float32) + 3.0 for n in sizes]
    d.mkdir(parents=True)
    for k, E in enumerate(parts):
        save_npy(E, d / f"part-{k:05d}.npy")
    return np.concatenate(parts)


@pytest.mark.parametrize("center", [True, False])
def test_streamed_flat_build_equals_in_memory(tmp_path: Path, center: bool) -> None:
    raw = shards(tmp_path / "emb", [50, 7, 64])
    built = build_from_shards(tmp_path / "emb", 3, center, "flat", None, 0, tmp_path / "embeddings.npy")
    mean = raw.mean(axis=0, dtype=np.float64).astype(np.float32) if center else None
    E = finish(raw, mean)
    assert built.rows == 121 and built.dim == 16 and built.index.ntotal == 121
    if center:
        np.testing.assert_allclose(built.center, raw.mean(axis=0), rtol=1e-5, atol=1e-6)
    else:
        assert built.center is None
    np.testing.assert_array_equal(np.load(tmp_path / "embeddings.npy"), E.astype(np.float16))
    ids = [str(i) for i in range(121)]
    got, _ = search(built.index, E[:10], 5, ids)
    want, _ = search(build_index(E, "flat"), E[:10], 5, ids)
    assert got.tolist() == want.tolist()
    assert not (tmp_path / "embeddings.npy.tmp").exists()


def test_ivf_trains_on_a_sample(tmp_path: Path) -> None:
    raw = shards(tmp_path / "emb", [400, 400, 300], dim=8)
    built = build_from_shards(tmp_path / "emb", 3, True, "ivf", 4, 0, tmp_path / "embeddings.npy")
    rows = training_rows(built.index, len(raw), 0)
    assert built.index.is_trained and built.index.ntotal == 1100 and built.index.nlist == 4
    assert len(rows) == TRAIN_PER_LIST * 4 < 1100 and len(np.unique(rows)) == len(rows)
    assert rows.tolist() == training_rows(built.index, len(raw), 0).tolist()  # seeded
    # the same sample and seed as the in-memory build: the same lists, so the same neighbours
    E = finish(raw, built.center)
    ids = [str(i) for i in range(len(raw))]
    got, _ = search(built.index, E[:20], 5, ids, nprobe=2)
    want, _ = search(build_index(E, "ivf", 4, 0), E[:20], 5, ids, nprobe=2)
    assert got.tolist() == want.tolist()


def test_a_missing_shard_is_loud(tmp_path: Path) -> None:
    shards(tmp_path / "emb", [5, 5])
    with pytest.raises(RuntimeError, match="missing"):
        build_from_shards(tmp_path / "emb", 3, True, "flat", None, 0, tmp_path / "e.npy")
