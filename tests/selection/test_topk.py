"""The streamed top-k keeps exactly what one top-k over the whole array keeps, ties included."""
from __future__ import annotations

import numpy as np
import pytest

from selection.topk import TopK, best, top_rows


def test_best_orders_by_key_then_position() -> None:
    key = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    pos = np.array([10, 4, 2, 7, 9])
    assert best(key, pos, 3).tolist() == [2, 1, 4]  # the three 3.0s, lowest position first
    assert best(key, pos, 0).tolist() == [] and best(key, pos, 9).tolist() == [2, 1, 4, 3, 0]


@pytest.mark.parametrize("cap", [0, 1, 5, 37, 400])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_stream_equals_top_rows(monkeypatch, cap: int, chunk: int) -> None:
    monkeypatch.setattr(TopK, "BUFFER", 3)  # cut back after nearly every chunk
    rng = np.random.default_rng(cap * 100 + chunk)
    score = rng.integers(0, 20, 300).astype(float)  # many ties
    valid = np.flatnonzero(rng.random(300) < 0.8)
    acc = TopK(cap, ("twice",))
    for lo in range(0, len(valid), chunk):
        part = valid[lo : lo + chunk]
        acc.add(score[part], part, twice=2 * part)
    got = acc.result()
    want = top_rows(score, valid, cap)
    assert got["pos"].tolist() == want.tolist()
    assert got["key"].tolist() == score[want].tolist() and got["twice"].tolist() == (2 * want).tolist()


def test_empty_stream() -> None:
    got = TopK(4, ("x",)).result()
    assert all(len(v) == 0 for v in got.values()) and got["pos"].dtype == np.int64
