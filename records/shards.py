"""Resumable score shards: one Parquet file per input shard, committed atomically with a completion
record, under ``output_dir/shards/``. A rerun with the same run key skips completed shards; a
different key (changed input, model or scoring config) is refused unless told to start over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from records import remote, schema
from records.layout import SHARDS_DIR
from records.writers import save_npy, write_json, write_parquet

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


def run_key(parts: dict[str, Any]) -> str:
    """Digest of everything that changes the scores (not the selection, batch sizes or actor count)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def prepare(out: Path, parts: dict[str, Any], resume: bool, name: str = SHARDS_DIR) -> Path:
    """The shard directory ``out/name`` for this run; refuses to mix results of a different run key."""
    d = out / name
    key = run_key(parts)
    run_file = d / RUN_FILE
    if run_file.exists() and resume:
        old = json.loads(run_file.read_text())
        if old["key"] != key:
            changed = sorted(
                k
                for k in set(old["parts"]) | set(parts)
                if json.dumps(old["parts"].get(k), sort_keys=True, default=str)
                != json.dumps(parts.get(k), sort_keys=True, default=str)
            )
            raise ValueError(
                f"{out} holds scores of a different run (changed: {', '.join(changed)}); "
                f"use another output_dir, or resume=false to discard them and start over"
            )
        return d
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    write_json({"key": key, "parts": parts}, run_file)
    remote.reset(d)  # a mirrored run: the remote's stale shards go before the new key is up
    return d


def done_shards(d: Path) -> set[int]:
    """Indices of shards whose completion record exists (written after their Parquet file)."""
    return {int(p.name.split("-")[1].split(".")[0]) for p in d.glob("part-*.done")}


def write_shard(d: Path, k: int, table: pa.Table, emb_dir: Path | None = None, emb_dtype: Any = np.float16) -> None:
    """Commit shard ``k``: embeddings (``emb_dtype`` ``.npy``, when the table has an ``emb`` column) and
    Parquet via temp name + rename, then the completion record (with the Ray nodes that produced the
    rows, when the table carries a ``_node_id`` column)."""
    nodes: list[str] = []
    if schema.NODE_ID in table.column_names:
        nodes = sorted({str(n) for n in table.column(schema.NODE_ID).to_pylist()})
        table = table.drop_columns([schema.NODE_ID])
    if schema.EMB in table.column_names:
        if emb_dir is None:
            raise ValueError("an embedding column arrived but no embedding directory was given")
        emb_dir.mkdir(parents=True, exist_ok=True)
        save_npy(emb_matrix(table.column(schema.EMB)).astype(emb_dtype), emb_dir / f"part-{k:05d}.npy")
        table = table.drop_columns([schema.EMB])
    write_parquet(table, d / f"part-{k:05d}.parquet")
    write_json({"rows": table.num_rows, **({"nodes": nodes} if nodes else {})}, d / f"part-{k:05d}.done")
    committed = [d / f"part-{k:05d}.parquet", d / f"part-{k:05d}.done"]
    if emb_dir is not None and (emb_dir / f"part-{k:05d}.npy").exists():
        committed.insert(0, emb_dir / f"part-{k:05d}.npy")
    remote.committed(committed)  # a mirrored run: uploaded now, data before its .done


def shard_nodes(d: Path) -> dict[str, int]:
    """Rows per Ray node id over the completed shards of ``d`` (from their completion records; a shard
    whose rows came from several actors counts its rows once, under each node it names)."""
    out: dict[str, int] = {}
    for p in sorted(d.glob("part-*.done")):
        rec = json.loads(p.read_text())
        for node in rec.get("nodes", []):
            out[node] = out.get(node, 0) + int(rec["rows"])
    return out


def emb_matrix(col: pa.ChunkedArray) -> np.ndarray:
    """A fixed-size-list column as a ``[n, d]`` float32 matrix."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(arr) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(arr), -1)


def emb_column(E: np.ndarray) -> pa.Array:
    """``[n, d]`` matrix → fixed-size-list column (how embeddings travel between Ray stages)."""
    E = np.ascontiguousarray(E, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(E.reshape(-1)), E.shape[1])


def load_embeddings(emb_dir: Path, n_shards: int) -> np.ndarray:
    """All shards' embeddings in position order (``[n, d]`` float16); the shards must be complete."""
    parts = [np.load(emb_dir / f"part-{k:05d}.npy") for k in range(n_shards)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float16)


def require_done(d: Path, n_shards: int) -> None:
    """Every one of the ``n_shards`` shards of ``d`` has its completion record, else a loud error."""
    missing = sorted(set(range(n_shards)) - done_shards(d))
    if missing:
        raise RuntimeError(f"score shards {missing[:10]} are not complete; refusing to merge")


def iter_shards(d: Path, bounds: list[tuple[int, int]], columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Every shard's results in order, one at a time, each checked to hold exactly its input rows
    (positions ``start .. start+rows-1`` in order, ``bounds[k] = (start, rows)``); a missing or
    inconsistent shard is a loud error (checked for all shards before the first is read)."""
    require_done(d, len(bounds))
    for k, (start, rows) in enumerate(bounds):
        t = pq.read_table(d / f"part-{k:05d}.parquet", columns=columns)
        pos = t.column(schema.POSITION).to_numpy()
        if len(pos) != rows or not np.array_equal(pos, np.arange(start, start + rows)):
            raise RuntimeError(
                f"score shard {k} holds {len(pos)} rows for input rows {start}..{start + rows - 1} "
                f"(missing or duplicated positions); refusing to merge"
            )
        yield t


def load_all(d: Path, n_shards: int) -> pa.Table:
    """All shard results; a missing shard is a loud error."""
    require_done(d, n_shards)
    tables = [pq.read_table(d / f"part-{k:05d}.parquet") for k in range(n_shards)]
    return pa.concat_tables(tables, promote_options="default")


class ShardCollector:
    """Groups scored rows arriving in any batching back into their input shards and commits each
    shard as soon as all its rows are in. ``bounds[k] = (first position, rows)``."""

    def __init__(
        self, d: Path, bounds: list[tuple[int, int]], pending: list[int], emb_dir: Path | None = None,
        emb_dtype: Any = np.float16,
    ) -> None:
        self.d = d
        self.emb_dir = emb_dir
        self.emb_dtype = emb_dtype
        self.bounds = bounds
        self.starts = np.array([b[0] for b in bounds])
        self.parts: dict[int, list[pa.Table]] = {k: [] for k in pending}
        self.have = {k: 0 for k in pending}

    def add(self, batch: pa.Table) -> None:
        shard = np.searchsorted(self.starts, batch.column(schema.POSITION).to_numpy(), side="right") - 1
        for k in np.unique(shard).tolist():
            part = batch.filter(pa.array(shard == k))
            self.parts[k].append(part)
            self.have[k] += part.num_rows
            if self.have[k] == self.bounds[k][1]:
                table = pa.concat_tables(self.parts.pop(k), promote_options="default")
                table = table.take(pa.array(np.argsort(table.column(schema.POSITION).to_numpy())))
                err = table.schema.get_field_index(schema.ERROR)  # all-None batches arrive as type null
                if err >= 0:
                    table = table.set_column(err, schema.ERROR, table.column(err).cast(pa.string()))
                write_shard(self.d, k, table, self.emb_dir, self.emb_dtype)

    def finish(self) -> None:
        if self.parts:
            raise RuntimeError(
                f"scoring ended with shards {sorted(self.parts)[:10]} incomplete "
                f"({sum(self.have[k] for k in self.parts)} rows held); refusing to merge"
            )
