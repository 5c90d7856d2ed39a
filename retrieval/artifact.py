"""The KB artifact directory written by ``jobs.kb_build`` and read by retrieval actors::

    kb/
      manifest.json     source file + sha256, encoder spec + identity, index type, counts, rejections
      rows.parquet      the indexed KB rows (retrieval/kb.py columns), in index order
      embeddings.npy    float16 [n, d], centred + L2-normalised (what the index holds)
      center.npy        float32 [d] subtracted before normalising (absent when encoder.center=false)
      index.faiss       faiss inner-product index
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from records.writers import save_npy, write_json
from retrieval.kb import KB_ID

MANIFEST = "manifest.json"
ROWS = "rows.parquet"
EMBEDDINGS = "embeddings.npy"
CENTER = "center.npy"
INDEX = "index.faiss"


def finish(out: Path, center: np.ndarray | None, index: Any, manifest: dict[str, Any]) -> None:
    """Complete an artifact whose ``rows.parquet`` and ``embeddings.npy`` are already in place (a
    streamed build): the centre, the index, then the manifest, which marks completion."""
    import faiss

    if center is not None:
        save_npy(center.astype(np.float32), out / CENTER)
    else:
        (out / CENTER).unlink(missing_ok=True)
    faiss.write_index(index, str(out / (INDEX + ".tmp")))
    os.replace(out / (INDEX + ".tmp"), out / INDEX)
    write_json(manifest, out / MANIFEST)


def read_manifest(path: Path) -> dict[str, Any]:
    m = path / MANIFEST
    if not m.exists():
        raise FileNotFoundError(f"{path} is not a complete KB artifact (no {MANIFEST}); "
                                f"build one with: python -m jobs.kb_build kb.path=<trusted file> kb.output={path}")
    return json.loads(m.read_text())


@dataclass
class KBArtifact:
    path: Path
    manifest: dict[str, Any]
    index: Any
    rows: list[dict[str, Any]]
    ids: list[str]
    center: np.ndarray | None

    @classmethod
    def load(cls, path: Path | str) -> "KBArtifact":
        import faiss

        path = Path(path)
        manifest = read_manifest(path)
        rows = pq.read_table(path / ROWS).to_pylist()
        center = np.load(path / CENTER) if (path / CENTER).exists() else None
        index = faiss.read_index(str(path / INDEX))
        if index.ntotal != len(rows):
            raise ValueError(f"KB artifact {path} is inconsistent: index has {index.ntotal} vectors, "
                             f"rows.parquet {len(rows)} rows; rebuild it")
        return cls(path, manifest, index, rows, [str(r[KB_ID]) for r in rows], center)
