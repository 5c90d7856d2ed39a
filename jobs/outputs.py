"""Output files: scores.parquet, selected.jsonl, manifest.json (all written atomically)."""
from __future__ import annotations

import hashlib
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


def write_selected(shards: Iterable[str], positions: np.ndarray, path: Path) -> int:
    """Write the raw input records at ``positions`` in input order, one per line; returns the count."""
    positions = np.sort(np.asarray(positions, dtype=np.int64))
    n = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for shard in sorted(shards):  # shards are position-ordered
            t = pq.read_table(shard, columns=[schema.POSITION, schema.RAW])
            keep = np.flatnonzero(np.isin(t.column(schema.POSITION).to_numpy(), positions))
            raws = t.column(schema.RAW).to_pylist()
            for i in keep:
                f.write(raws[i] + "\n")
            n += len(keep)
    os.replace(tmp, path)
    return n


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
    """Name, architecture and a digest of config + weight file sizes (cheap, stable)."""
    cfg = json.loads((path / "config.json").read_text())
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    if (path / "train_log.json").exists():  # a checkpoint Winnow trained: same sizes, different weights
        h.update((path / "train_log.json").read_bytes())
    return {"name": name, "path": str(path), "architectures": cfg.get("architectures"),
            "model_type": cfg.get("model_type"), "digest": h.hexdigest()[:16]}


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("winnow", "torch", "transformers", "ray", "pyarrow", "faiss-cpu", "hydra-core"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
