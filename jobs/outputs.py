"""Output files: scores.parquet, selected.jsonl, manifest.json (all written atomically)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scoring import schema
from selection.scores import ifd_loss, ifd_ppl, mean_loss

log = logging.getLogger(__name__)

SCORES = "scores.parquet"
SELECTED = "selected.jsonl"
MANIFEST = "manifest.json"


def validate_complete(table: pa.Table, n_rows: int) -> pa.Table:
    """Sort by position and check every input row appears exactly once; raise loudly otherwise."""
    pos = table.column(schema.POSITION).to_numpy()
    counts = np.bincount(pos, minlength=n_rows) if len(pos) else np.zeros(n_rows, dtype=int)
    missing, dup = np.flatnonzero(counts == 0), np.flatnonzero(counts > 1)
    if len(counts) != n_rows or len(missing) or len(dup):
        raise RuntimeError(f"score merge is inconsistent: {len(missing)} input rows missing "
                           f"(e.g. {missing[:5].tolist()}), {len(dup)} duplicated (e.g. {dup[:5].tolist()}), "
                           f"{max(len(counts) - n_rows, 0)} unknown positions; refusing to select")
    return table.take(pa.array(np.argsort(pos, kind="stable")))


def errored(table: pa.Table) -> np.ndarray:
    """Bool per row: the row carries an error reason."""
    return table.column(schema.ERROR).is_valid().to_numpy(zero_copy_only=False)


def derived(table: pa.Table) -> dict[str, np.ndarray]:
    """Mean losses and both IFD forms, computed from the stored sums and counts."""
    c = {k: table.column(k).to_numpy(zero_copy_only=False) for k in
         (schema.nll_sum_col("cond"), schema.tokens_col("cond"),
          schema.nll_sum_col("uncond"), schema.tokens_col("uncond"))}
    args = list(c.values())
    return {"cond_loss": mean_loss(args[0], args[1]), "uncond_loss": mean_loss(args[2], args[3]),
            "ifd_loss": ifd_loss(*args), "ifd_ppl": ifd_ppl(*args)}


def with_columns(table: pa.Table, cols: dict[str, Any]) -> pa.Table:
    """Add or replace columns."""
    for name, values in cols.items():
        arr = pa.array(values)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, arr)
        else:
            table = table.append_column(name, arr)
    return table


def write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_selected(shards: Iterable[str], positions: np.ndarray, path: Path, scores: pa.Table | None = None) -> int:
    """Write the raw input records at ``positions`` in input order, one per line; returns the count.
    With ``scores`` (position-sorted), each written record's id must be the id the scores hold for that
    position, and exactly the selected rows must be written: anything else is a loud error."""
    positions = np.sort(np.asarray(positions, dtype=np.int64))
    want_ids = None if scores is None else np.asarray(scores.column(schema.ID).to_pylist(), dtype=object)
    n = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for shard in sorted(shards):  # shards are position-ordered
            t = pq.read_table(shard, columns=[schema.ID, schema.POSITION, schema.RAW])
            pos = t.column(schema.POSITION).to_numpy()
            keep = np.flatnonzero(np.isin(pos, positions))
            if want_ids is not None and len(keep):
                ids = np.asarray(t.column(schema.ID).to_pylist(), dtype=object)[keep]
                if pos[keep].max() >= len(want_ids) or not np.array_equal(ids, want_ids[pos[keep]]):
                    tmp.unlink(missing_ok=True)
                    raise RuntimeError(f"the records in {Path(shard).parent} do not belong to these scores "
                                       f"(ids differ); refusing to write {path.name}")
            raws = t.column(schema.RAW).to_pylist()
            for i in keep:
                f.write(raws[i] + "\n")
            n += len(keep)
    if n != len(positions):
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{len(positions)} rows were selected but {n} records were found; refusing to "
                           f"write {path.name}")
    os.replace(tmp, path)
    return n


def check_records(shards: Iterable[str], scores: pa.Table) -> None:
    """The run's record shards must hold exactly the rows (ids, positions) of its scores table."""
    t = pa.concat_tables([pq.read_table(s, columns=[schema.ID, schema.POSITION]) for s in sorted(shards)])
    same = (t.num_rows == scores.num_rows
            and t.column(schema.POSITION).to_pylist() == scores.column(schema.POSITION).to_pylist()
            and t.column(schema.ID).to_pylist() == scores.column(schema.ID).to_pylist())
    if not same:
        raise ValueError(f"the records of this run ({t.num_rows} rows) do not match its scores.parquet "
                         f"({scores.num_rows} rows, ids differ): the run directory is inconsistent")


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` into ``dst`` (a copy where links cannot be made), replacing what
    ``dst`` held. Winnow's writers replace files by rename, never in place, so a link never changes."""
    import shutil

    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.is_file():
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)


def save_npy(a: np.ndarray, path: Path) -> None:
    """Write a ``.npy`` file via a temporary name + rename (like the other writers here)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, a)
    os.replace(tmp, path)


def write_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str, ensure_ascii=False))
    os.replace(tmp, path)


def model_identity(path: Path, name: str) -> dict[str, Any]:
    """Name, architecture and a digest of the model directory's contents (weights, config,
    tokenizer): what resume and the KB encoder check compare."""
    from scoring.models import model_digest

    cfg = json.loads((path / "config.json").read_text())
    return {"name": name, "path": str(path), "architectures": cfg.get("architectures"),
            "model_type": cfg.get("model_type"), "digest": model_digest(path)[:16]}


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("winnow", "torch", "transformers", "ray", "pyarrow", "faiss-cpu", "hydra-core"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
