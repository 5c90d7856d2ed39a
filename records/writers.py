"""Atomic writers: every file is written under a temporary name and renamed into place, so a reader
(or a resumed run) never sees half a file, and a hard link to an earlier version never changes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from records import schema, tables


def write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str, ensure_ascii=False))
    os.replace(tmp, path)


def write_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_npy(a: np.ndarray, path: Path) -> None:
    """Write a ``.npy`` file via a temporary name + rename (like the other writers here)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, a)
    os.replace(tmp, path)


def write_selected(
    shards: Iterable[str],
    positions: np.ndarray,
    path: Path,
    scores: pa.Table | None = None,
    table_path: Path | None = None,
) -> int:
    """Write the raw input records at ``positions`` in input order, one per line; returns the count.
    With ``scores`` (position-sorted score rows that include every selected position: the whole table
    or just the selected rows), each written record's id must be the id the scores hold for that
    position, and exactly the selected rows must be written: anything else is a loud error.
    ``table_path``: the same rows as Parquet too (:func:`write_selected_table`)."""
    positions = np.sort(np.asarray(positions, dtype=np.int64))
    want_ids = None if scores is None else scores_at(scores, positions).column(schema.ID)
    n = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for shard in sorted(shards):  # shards are position-ordered
            t = pq.read_table(shard, columns=[schema.ID, schema.POSITION, schema.RAW])
            pos = t.column(schema.POSITION).to_numpy()
            lo, hi = np.searchsorted(positions, [pos[0], pos[-1] + 1]) if len(pos) else (0, 0)
            keep = np.flatnonzero(np.isin(pos, positions[lo:hi]))
            if want_ids is not None and len(keep):
                ids = t.column(schema.ID).take(pa.array(keep))
                if not ids.equals(want_ids.slice(n, len(keep))):
                    tmp.unlink(missing_ok=True)
                    raise RuntimeError(
                        f"the records in {Path(shard).parent} do not belong to these scores "
                        f"(ids differ); refusing to write {path.name}"
                    )
            raws = t.column(schema.RAW).to_pylist()
            for i in keep:
                f.write(raws[i] + "\n")
            n += len(keep)
    if n != len(positions):
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"{len(positions)} rows were selected but {n} records were found; refusing to write {path.name}"
        )
    os.replace(tmp, path)
    if table_path is not None:
        write_selected_table(shards, positions, table_path, scores)
    return n


SELECTED_RECORD = [c for c in schema.RECORD_COLUMNS if c != schema.ERROR]  # selected.parquet's record columns


def selected_rows(records: pa.Table, scores: pa.Table) -> pa.Table:
    """``selected.parquet``'s rows: the record columns, then every score column not among them (both
    tables row-aligned)."""
    t = records.select(SELECTED_RECORD)
    for name in scores.column_names:
        if name not in schema.RECORD_COLUMNS:
            t = t.append_column(name, scores.column(name))
    return t


def selected_table(shards: Iterable[str], positions: np.ndarray, scores: pa.Table | None = None) -> pa.Table:
    """The rows at ``positions`` in input order: the normalised record columns, then every column of
    ``scores`` (position-sorted, one row per input row) that is not a record column."""
    positions = np.sort(np.asarray(positions, dtype=np.int64))
    t = tables.read_positions(list(shards), positions, SELECTED_RECORD).select(SELECTED_RECORD)
    return t if scores is None else selected_rows(t, scores_at(scores, positions))


def scores_at(scores: pa.Table, positions: np.ndarray) -> pa.Table:
    """The rows of ``scores`` (position-sorted) at sorted ``positions``; a position it lacks is a loud error."""
    have = scores.column(schema.POSITION).to_numpy()
    at = np.searchsorted(have, positions)
    if len(positions) and (at.max() >= len(have) or not np.array_equal(have[at], positions)):
        raise RuntimeError("the scores do not hold every selected position; refusing to write the selection")
    return scores.take(pa.array(at))


def write_selected_table(
    shards: Iterable[str], positions: np.ndarray, path: Path, scores: pa.Table | None = None
) -> None:
    """``selected.parquet``: :func:`selected_table`, loadable with ``datasets.load_dataset("parquet", ...)``."""
    write_parquet(selected_table(shards, positions, scores), path)


def check_records(shards: Iterable[str], scores: pa.Table) -> None:
    """The run's record shards must hold exactly the rows (ids, positions) of its scores table."""
    t = tables.shard_columns(shards, [schema.ID, schema.POSITION])
    same = (
        t.num_rows == scores.num_rows
        and t.column(schema.POSITION).to_pylist() == scores.column(schema.POSITION).to_pylist()
        and t.column(schema.ID).to_pylist() == scores.column(schema.ID).to_pylist()
    )
    if not same:
        raise ValueError(
            f"the records of this run ({t.num_rows} rows) do not match its scores.parquet "
            f"({scores.num_rows} rows, ids differ): the run directory is inconsistent"
        )


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` (and of its subdirectories) into ``dst`` (a copy where links cannot be made), replacing what
    ``dst`` held. Winnow's writers replace files by rename, never in place, so a link never changes."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.is_dir() and not f.is_symlink():
            link_tree(f, dst / f.name)  # e.g. a target set's records/, shards/, embeddings/
        elif f.is_file():
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)
