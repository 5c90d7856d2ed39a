"""The driver's merge of score shards, streamed: one shard in memory at a time, so a 10M-row pool
costs the driver a few per-row numpy arrays (≈ 23 bytes a row), not the whole score table.

Pass 1 (:func:`merge_scores`) checks each committed shard holds exactly its input rows and keeps what
the selection and the report need per row (the selection score, error and copy masks, response
length; error reasons of errored rows only). Pass 2 (:func:`write_scores`) reads the shards again and
writes ``scores.parquet`` (every score column, the derived ones and the outcome) row group by row
group, returning the score rows of the selected positions (for ``selected.parquet`` and the id check).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from records import schema, shards, tables

Derive = Callable[[pa.Table], dict[str, np.ndarray]]


@dataclass
class Merged:
    """Per-row arrays of a complete, position-ordered merge."""

    score: np.ndarray  # float64, the selection score
    errored: np.ndarray  # bool: the row carries an error reason
    copies: np.ndarray  # bool: a semantic dedup step marked the row a near-copy
    length: np.ndarray  # response tokens (int32)
    errors: dict[int, str]  # position -> error reason, errored rows only
    tokens: int  # prompt + response tokens over the pool (the manifest's approx_tokens_scored)

    @property
    def n_rows(self) -> int:
        return len(self.score)

    def error_list(self) -> np.ndarray:
        """Error reason per row (None where valid), as the report's examples take it."""
        out = np.full(self.n_rows, None, dtype=object)
        if self.errors:
            out[np.fromiter(self.errors, np.int64, len(self.errors))] = list(self.errors.values())
        return out


def near_copies(table: pa.Table) -> np.ndarray:
    """Rows a semantic dedup step marked as copies (``duplicate_of`` ≥ 0); none without that column."""
    if "duplicate_of" not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    return table.column("duplicate_of").to_numpy(zero_copy_only=False) >= 0


def _with_extra(t: pa.Table, derive: Derive, extra: dict[str, np.ndarray] | None, start: int) -> pa.Table:
    cols = dict(derive(t))
    for name, values in (extra or {}).items():
        cols[name] = np.asarray(values)[start : start + t.num_rows]
    return tables.with_columns(t, cols)


def merge_scores(
    shard_dir: Path, bounds: list[tuple[int, int]], score: str, derive: Derive,
    extra: dict[str, np.ndarray] | None = None,
) -> Merged:
    """Pass 1 over the committed shards of ``shard_dir`` (one per input shard, ``bounds[k] = (first
    position, rows)``); a missing, short or misnumbered shard is a loud error."""
    n = sum(rows for _, rows in bounds)
    m = Merged(np.empty(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), np.empty(n, dtype=np.int32), {}, 0)
    for (start, rows), t in zip(bounds, shards.iter_shards(shard_dir, bounds)):
        t = _with_extra(t, derive, extra, start)
        at = slice(start - bounds[0][0], start - bounds[0][0] + rows)
        err = tables.errored(t)
        m.score[at] = t.column(score).to_numpy(zero_copy_only=False)
        m.errored[at] = err
        m.copies[at] = near_copies(t)
        length = t.column(schema.RESPONSE_TOKENS).to_numpy()
        m.length[at] = length
        m.tokens += int(length.sum() + t.column(schema.PROMPT_TOKENS).to_numpy().sum())
        if err.any():
            reasons = t.column(schema.ERROR).to_pylist()
            m.errors.update({start + int(i): reasons[i] for i in np.flatnonzero(err)})
    return m


def write_scores(
    shard_dir: Path, bounds: list[tuple[int, int]], derive: Derive, extra: dict[str, np.ndarray] | None,
    added: dict[str, np.ndarray], selected: np.ndarray, path: Path,
) -> pa.Table:
    """Pass 2: ``scores.parquet`` at ``path`` (written under a temporary name, renamed when complete),
    with the derived columns, ``extra`` and ``added`` (row-aligned, e.g. the outcome); returns the
    rows at ``selected`` positions, position-sorted."""
    want = np.sort(np.asarray(selected, dtype=np.int64))
    tmp = path.with_name(path.name + ".tmp")
    writer: pq.ParquetWriter | None = None
    picked: list[pa.Table] = []
    try:
        for (start, n), t in zip(bounds, shards.iter_shards(shard_dir, bounds)):
            t = _with_extra(t, derive, {**(extra or {}), **added}, start)
            if writer is None:
                writer = pq.ParquetWriter(tmp, t.schema)
            t = t.cast(writer.schema)
            writer.write_table(t)
            lo, hi = np.searchsorted(want, [start, start + n])
            if hi > lo:
                picked.append(t.take(pa.array(want[lo:hi] - start)))
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)
    return pa.concat_tables(picked) if picked else pa.table({schema.ID: pa.array([], pa.string()),
                                                              schema.POSITION: pa.array([], pa.int64())})
