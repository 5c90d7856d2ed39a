"""The Bloom-filter repeat finder names exactly the repeats (and their first rows) that an exact
in-memory table names, however the ids are batched and however full the filter is."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from records.first_seen import FirstSeen
from records.repeats import RepeatFinder


def ids_with_repeats(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = [f"{int(x):020x}" for x in rng.integers(0, 2**62, n)]
    for _ in range(n // 10):  # repeats across and within batches, some three or more times
        a, b = sorted(rng.integers(0, n, 2))
        ids[b] = ids[a]
    ids[7] = ids[6]  # next to each other
    ids[9] = ids[8][:16] + "ffff"  # same 64-bit key, another tag: not a repeat
    return ids


def exact(ids: list[str]) -> tuple[list[int], list[int]]:
    first = FirstSeen(len(ids)).first(ids, np.arange(len(ids)))
    again = np.flatnonzero(first != np.arange(len(ids)))
    return again.tolist(), first[again].tolist()


@pytest.mark.parametrize("expected", [5, 2000])  # a tiny filter: nearly every row is a false candidate
@pytest.mark.parametrize("batch", [1, 13, 500])
def test_repeats_equal_the_exact_table(tmp_path: Path, expected: int, batch: int) -> None:
    ids = ids_with_repeats(2000, expected + batch)
    finder = RepeatFinder(expected, tmp_path / "spill")
    for lo in range(0, len(ids), batch):
        finder.add(ids[lo : lo + batch])
    pos, first = finder.repeats()
    assert (pos.tolist(), first.tolist()) == exact(ids)
    assert 9 not in pos.tolist() and 7 in pos.tolist()
    assert not (tmp_path / "spill").exists()


def test_no_repeats_and_few_candidates(tmp_path: Path) -> None:
    ids = [f"{i:020x}" for i in range(0, 50_000 * 7919, 7919)]
    finder = RepeatFinder(len(ids), tmp_path / "spill")
    for lo in range(0, len(ids), 4096):
        finder.add(ids[lo : lo + 4096])
    candidates = sum(len(c) for c in finder._cand)
    pos, _ = finder.repeats()
    assert len(pos) == 0 and candidates < 0.03 * len(ids)  # about 1% false positives at 10 bits a row
    assert finder.filter.nbytes <= 2 * len(ids) * 10 / 8


@pytest.mark.parametrize("drop", [True, False])
def test_staging_marks_repeats_across_shards(tmp_path: Path, drop: bool) -> None:
    import json

    import pyarrow.parquet as pq

    from records.readers import Fields
    from records.staging import stage_input

    texts = [0, 1, 2, 0, 3, 1, 4, 0, 5, 5, 6]  # row 3 and 7 repeat row 0, row 5 row 1, row 9 row 8
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"q{t}", "output": f"a{t}"}) + "\n" for t in texts)
                   + "{broken\n{broken\n")  # two identical broken rows: the repeat keeps its parse error
    staged = stage_input(src, tmp_path / "run", fields=Fields(), drop_duplicates=drop, rows_per_shard=3)
    t = pq.read_table(staged.shards)
    ids, errors = t.column("id").to_pylist(), t.column("error").to_pylist()
    want = {3: 0, 7: 0, 5: 1, 9: 8}
    for p, f in want.items():
        assert ids[p] == f"{ids[f]}-{p}"
        assert errors[p] == (f"duplicate:{f}" if drop else None)
    assert ids[12] == f"{ids[11]}-12" and errors[12] == errors[11] and errors[12].startswith("malformed_json")
    assert len(set(ids)) == len(ids) == 13
    assert staged.errors["duplicate"] == (4 if drop else 0) and staged.errors["ok"] == (7 if drop else 11)
    assert not list((tmp_path / "run" / "records").glob(".ids*"))
