"""Score tables: completeness of a merge, error masks, column updates (pyarrow only)."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from records import schema


def shard_columns(shards: Iterable[str], columns: list[str]) -> pa.Table:
    """``columns`` of every Parquet shard, concatenated in shard (= position) order."""
    return pa.concat_tables([pq.read_table(s, columns=columns) for s in sorted(shards)])


def validate_complete(table: pa.Table, n_rows: int) -> pa.Table:
    """Sort by position and check every input row appears exactly once; raise loudly otherwise."""
    pos = table.column(schema.POSITION).to_numpy()
    counts = np.bincount(pos, minlength=n_rows) if len(pos) else np.zeros(n_rows, dtype=int)
    missing, dup = np.flatnonzero(counts == 0), np.flatnonzero(counts > 1)
    if len(counts) != n_rows or len(missing) or len(dup):
        raise RuntimeError(
            f"score merge is inconsistent: {len(missing)} input rows missing "
            f"(e.g. {missing[:5].tolist()}), {len(dup)} duplicated (e.g. {dup[:5].tolist()}), "
            f"{max(len(counts) - n_rows, 0)} unknown positions; refusing to select"
        )
    return table.take(pa.array(np.argsort(pos, kind="stable")))


def errored(table: pa.Table) -> np.ndarray:
    """Bool per row: the row carries an error reason."""
    return table.column(schema.ERROR).is_valid().to_numpy(zero_copy_only=False)


def with_columns(table: pa.Table, cols: dict[str, Any]) -> pa.Table:
    """Add or replace columns."""
    for name, values in cols.items():
        arr = pa.array(values)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, arr)
        else:
            table = table.append_column(name, arr)
    return table


def labels(n: int, value: str) -> np.ndarray:
    """An object array of ``n`` references to the one ``value`` (``np.full(n, "x", dtype=object)``
    makes ``n`` separate string objects instead: about 60 bytes a row)."""
    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


def label_counts(values: Any) -> dict[str, int]:
    """How many rows carry each label (e.g. an outcome), as plain str -> int, sorted by label. Counted
    by hashing, not by converting to a fixed-width string array (which costs 4 bytes per character
    per row: half a gigabyte for 10M outcome labels)."""
    from collections import Counter

    out: dict[str, int] = {}
    for value, n in Counter(np.asarray(values, dtype=object).ravel().tolist()).items():
        out[str(value)] = out.get(str(value), 0) + n  # 1 and "1" are one label, as before
    return dict(sorted(out.items()))


def numeric(table: pa.Table, *names: str) -> list[np.ndarray]:
    """Columns as numpy arrays (nulls as NaN for floats)."""
    return [table.column(n).to_numpy(zero_copy_only=False) for n in names]


def sums_and_counts(table: pa.Table, *passes: str) -> list[np.ndarray]:
    """``[<p>_nll_sum, <p>_tokens]`` for each pass, in order (what the score formulas take)."""
    return numeric(table, *(c for p in passes for c in (schema.nll_sum_col(p), schema.tokens_col(p))))


def position_range(path: str) -> tuple[int, int] | None:
    """(first, last) position a shard holds, from its Parquet footer's statistics (no data read);
    None when the footer has none."""
    meta = pq.ParquetFile(path).metadata
    if meta.num_rows == 0:
        return (0, -1)
    if schema.POSITION not in meta.schema.names:
        return None
    col = meta.schema.names.index(schema.POSITION)
    lo, hi = None, None
    for g in range(meta.num_row_groups):
        st = meta.row_group(g).column(col).statistics
        if st is None or not st.has_min_max:
            return None
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    return (int(lo), int(hi)) if lo is not None else None


def read_positions(shards: list[str], positions: np.ndarray | list[int], columns: list[str]) -> pa.Table:
    """The staged records at ``positions`` (any order in; position order out), reading only the
    shards that hold them: a shard's position range comes from its footer, so a subset of a 10M-row
    pool opens the data of its own shards only (training subsets, report examples, selected rows)."""
    import pyarrow.compute as pc

    want = np.unique(np.asarray(positions, dtype=np.int64))
    cols = list(dict.fromkeys([schema.POSITION, *columns]))
    parts = []
    for s in sorted(shards):
        if not len(want):
            break
        span = position_range(s)
        here = want
        if span is not None:
            here = want[np.searchsorted(want, span[0], "left"):np.searchsorted(want, span[1], "right")]
            if not len(here):
                continue  # none of the wanted positions is in this shard
        t = pq.read_table(s, columns=cols)
        hit = t.filter(pc.is_in(t.column(schema.POSITION), value_set=pa.array(here)))
        if hit.num_rows:
            parts.append(hit)
    if parts:
        return pa.concat_tables(parts)
    return pa.table({c: pa.array([], pa.int64() if c == schema.POSITION else pa.string()) for c in cols})
