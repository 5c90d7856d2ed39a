"""Build a RECOST knowledge-base artifact: read trusted rows, embed them on Ray Data actors, index.

python -m jobs.kb_build kb.path=trusted.jsonl kb.output=kb/
python -m jobs.kb_build kb.path=wiki_paragraphs.parquet kb.output=kb_wiki/ kb.index_type=ivf
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jobs import settings, skeleton, specs
from jobs.pipeline import init_ray, shard_item, stream
from jobs.skeleton import timed
from records import rundir, tables, writers
from records import sources
from records.readers import FORMATS
from records.shards import emb_matrix
from records.staging import scan, shard_size
from retrieval import artifact
from retrieval.encoder import EncoderSpec, finish
from retrieval.index import build_index, resolve_index_type
from retrieval.kb import KB_COLUMNS, KB_ID, QUERY, read_kb

log = logging.getLogger(__name__)

STAGE = ".stage"  # scratch shards of the KB rows while they are embedded
WRITES = (artifact.MANIFEST, artifact.ROWS, artifact.EMBEDDINGS, artifact.CENTER, artifact.INDEX, STAGE)


def validate(cfg: Any) -> None:
    """Fail at start, naming the valid choices, before any expensive work."""
    settings.validate_backend(cfg)
    if not cfg.kb.path:
        raise ValueError("kb.path is required: the trusted KB file to index")
    if cfg.kb.format not in FORMATS:
        raise ValueError(f"unknown kb.format {cfg.kb.format!r}; choose one of {', '.join(FORMATS)}")
    resolve_index_type(cfg.kb.index_type, 0)


def run(cfg: Any) -> dict[str, Any]:
    """Build the artifact described by ``cfg.kb`` with ``cfg.encoder``; returns its manifest."""
    validate(cfg)
    src = settings.resolve_data_path(cfg.kb.path)
    if not src.exists():
        raise FileNotFoundError(f"KB file not found: {src}")
    fmt = cfg.kb.format if src.is_dir() else sources.parts(src, cfg.kb.format)[0].format
    n_records, digest = scan(src, fmt)
    if n_records == 0:
        raise ValueError(f"no records in KB file {src}: nothing to index")
    with rundir.claim(cfg.kb.output, "kb_build", WRITES, [src]) as run_dir:
        return build(cfg, src, fmt, digest, run_dir.path)


def build(cfg: Any, src: Path, fmt: str, digest: str, out: Path) -> dict[str, Any]:
    """Read, embed and index the KB into the claimed artifact directory ``out``; returns its manifest."""
    timings: dict[str, float] = {}
    with timed(timings, "encoder"):
        enc, enc_id = specs.encoder_spec(cfg)
    with timed(timings, "read"):
        kb = read_kb(src, fmt, settings.fields_from(cfg.kb.fields), cfg.kb.text_field, cfg.kb.limit)
    if not kb.rows:
        raise ValueError(
            f"no usable KB rows in {src} (rejected: {dict(kb.rejected) or 'the file has no records'})"
        )
    rows = pa.Table.from_pylist(kb.rows).select(KB_COLUMNS)
    with timed(timings, "embed"):
        raw = embed_kb_rows(rows, out, enc, cfg)
    with timed(timings, "index"):
        center = raw.mean(axis=0) if enc.center else None
        E = finish(raw, center)
        index = build_index(E, cfg.kb.index_type, cfg.kb.nlist, int(cfg.seed))
    kinds = tables.label_counts(rows.column("kind").to_numpy(zero_copy_only=False))
    manifest = {
        "job": "kb_build",
        "source": {"path": str(src.resolve()), "sha256": digest, "format": fmt},
        "rows": rows.num_rows,
        "kinds": kinds,
        "rejected": kb.rejected,
        "rejected_examples": [{"position": p, "reason": r} for p, r in kb.examples],
        "encoder": enc_id,
        "dim": int(E.shape[1]),
        "index": {
            "type": resolve_index_type(cfg.kb.index_type, rows.num_rows),
            "ntotal": int(index.ntotal),
            "nlist": int(getattr(index, "nlist", 0)) or None,
            "metric": "inner_product (cosine)",
        },
        "config": skeleton.as_dict(cfg),
        "timings_s": timings,
        "versions": skeleton.versions(),
    }
    artifact.save(out, rows, E, center, index, manifest)
    log.info(
        "KB artifact: %d rows (%s), %d rejected -> %s", rows.num_rows, kinds, sum(kb.rejected.values()), out
    )
    return manifest


def embed_kb_rows(rows: pa.Table, out: Path, enc: EncoderSpec, cfg: Any) -> np.ndarray:
    """Raw (un-normalised) embeddings of every KB row's query text, in row order, via Ray Data."""
    from jobs.retrieve import EmbedActor

    stage = out / STAGE
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    size = shard_size(rows.num_rows)
    items = []
    for k, s in enumerate(range(0, rows.num_rows, size)):
        path = stage / f"part-{k:05d}.parquet"
        writers.write_parquet(rows.slice(s, size).select([KB_ID, "position", QUERY]), path)
        items.append(shard_item(str(path), [KB_ID, "position", QUERY]))
    init_ray(cfg.cluster, bool(cfg.get("verbose", False)))
    parts = list(stream(items, EmbedActor, enc, specs.hf_resources(cfg), cfg, rows.num_rows, "embedded"))
    table = pa.concat_tables(parts)
    pos = table.column("position").to_numpy()
    E = emb_matrix(table.column("emb"))[np.argsort(pos, kind="stable")]
    want = rows.column("position").to_numpy()
    if not np.array_equal(np.sort(pos), np.sort(want)):
        raise RuntimeError(f"embedding returned {len(pos)} rows for {len(want)} KB rows; refusing to index")
    # rows are in position order already; E was sorted the same way
    shutil.rmtree(stage, ignore_errors=True)
    return E


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("kb_build", run)


if __name__ == "__main__":
    main()
