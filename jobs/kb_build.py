"""Build a RECOST knowledge-base artifact: read trusted rows, embed them on Ray Data actors, index.

python -m jobs.kb_build kb.path=trusted.jsonl kb.output=kb/
python -m jobs.kb_build kb.path=wiki_paragraphs.parquet kb.output=kb_wiki/ kb.index_type=ivf
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs import settings, skeleton, specs
from jobs.pipeline import init_ray, run_stage, shard_item
from jobs.skeleton import timed
from records import rundir, schema, writers
from records import sources
from records.readers import FORMATS
from records.staging import scan, shard_size
from retrieval import artifact
from retrieval.build import build_from_shards
from retrieval.encoder import EncoderSpec
from retrieval.index import resolve_index_type, training_rows
from retrieval.kb import KB_COLUMNS, KB_ID, QUERY, KBRead, iter_kb

log = logging.getLogger(__name__)

STAGE = ".stage"  # scratch shards of the KB rows and their raw embeddings while the KB is built
EMB_DIR = "emb"
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
        return build(cfg, src, fmt, digest, run_dir.path, n_records)


def build(cfg: Any, src: Path, fmt: str, digest: str, out: Path, n_records: int) -> dict[str, Any]:
    """Read, embed and index the KB into the claimed artifact directory ``out``; returns its manifest.
    Streamed end to end: rows go to shards as they are read, actors write each shard's embeddings,
    and the index is trained on a sample and filled shard by shard (``retrieval.build``)."""
    timings: dict[str, float] = {}
    with timed(timings, "encoder"):
        enc, enc_id = specs.encoder_spec(cfg)
    stage = out / STAGE
    shutil.rmtree(stage, ignore_errors=True)
    (out / artifact.MANIFEST).unlink(missing_ok=True)  # the manifest marks a complete artifact: last in
    with timed(timings, "read"):
        size = shard_size(min(n_records, cfg.kb.limit) if cfg.kb.limit else n_records)
        kb = stage_kb(src, fmt, cfg, stage, out / artifact.ROWS, size)
    if not kb.rows:
        raise ValueError(
            f"no usable KB rows in {src} (rejected: {dict(kb.tally.rejected) or 'the file has no records'})"
        )
    with timed(timings, "embed"):
        embed_kb_rows(kb, stage, enc, cfg)
    with timed(timings, "index"):
        built = build_from_shards(stage / EMB_DIR, len(kb.shards), enc.center, cfg.kb.index_type, cfg.kb.nlist,
                                  int(cfg.seed), out / artifact.EMBEDDINGS)
    manifest = {
        "job": "kb_build",
        "source": {"path": str(src.resolve()), "sha256": digest, "format": fmt},
        "rows": kb.rows,
        "kinds": dict(sorted(kb.kinds.items())),
        "rejected": kb.tally.rejected,
        "rejected_examples": [{"position": p, "reason": r} for p, r in kb.tally.examples],
        "encoder": enc_id,
        "dim": built.dim,
        "index": {
            "type": resolve_index_type(cfg.kb.index_type, kb.rows),
            "ntotal": int(built.index.ntotal),
            "nlist": int(getattr(built.index, "nlist", 0)) or None,
            "trained_on": int(len(training_rows(built.index, kb.rows, int(cfg.seed)))) or None,
            "metric": "inner_product (cosine)",
        },
        "config": skeleton.as_dict(cfg),
        "timings_s": timings,
        "versions": skeleton.versions(),
    }
    artifact.finish(out, built.center, built.index, manifest)
    shutil.rmtree(stage, ignore_errors=True)
    log.info("KB artifact: %d rows (%s), %d rejected -> %s", kb.rows, kb.kinds, sum(kb.tally.rejected.values()), out)
    return manifest


@dataclass
class StagedKB:
    """KB rows staged for embedding: shards of (kb_id, position = row number, query), their bounds."""

    shards: list[str] = field(default_factory=list)
    bounds: list[tuple[int, int]] = field(default_factory=list)
    rows: int = 0
    kinds: Counter = field(default_factory=Counter)
    tally: KBRead = field(default_factory=lambda: KBRead([], {}, []))


def stage_kb(src: Path, fmt: str, cfg: Any, stage: Path, rows_path: Path, size: int) -> StagedKB:
    """Stream the usable KB rows into ``rows_path`` (every KB column, in index order; the source
    position stays in ``position``) and into embedding shards under ``stage`` whose ``position`` is
    the row's number in the KB (what the actors' results are merged by)."""
    stage.mkdir(parents=True)
    st = StagedKB()
    tmp = rows_path.with_name(rows_path.name + ".tmp")
    writer: pq.ParquetWriter | None = None
    pending: list[dict[str, object]] = []

    def flush(chunk: list[dict[str, object]]) -> None:
        nonlocal writer
        t = pa.Table.from_pylist(chunk).select(KB_COLUMNS)
        if writer is None:
            writer = pq.ParquetWriter(tmp, t.schema)
        writer.write_table(t.cast(writer.schema))
        st.kinds.update(t.column("kind").to_pylist())
        path = stage / f"part-{len(st.shards):05d}.parquet"
        numbered = t.select([KB_ID, QUERY]).append_column(schema.POSITION, pa.array(np.arange(st.rows, st.rows + t.num_rows)))
        writers.write_parquet(numbered, path)
        st.shards.append(str(path))
        st.bounds.append((st.rows, t.num_rows))
        st.rows += t.num_rows

    try:
        for chunk in iter_kb(src, fmt, settings.fields_from(cfg.kb.fields), cfg.kb.text_field, cfg.kb.limit, st.tally):
            pending.extend(chunk)
            while len(pending) >= size:
                flush(pending[:size])
                pending = pending[size:]
        if pending:
            flush(pending)
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        tmp.replace(rows_path)
    return st


def embed_kb_rows(kb: StagedKB, stage: Path, enc: EncoderSpec, cfg: Any) -> None:
    """Raw (un-normalised) float32 embeddings of every staged KB row, one ``.npy`` per shard under
    ``stage/emb/``, computed on Ray Data actors and committed shard by shard."""
    from jobs.retrieve import EmbedActor

    done_dir = stage / "done"
    done_dir.mkdir()
    items = [shard_item(s, [KB_ID, schema.POSITION, QUERY]) for s in kb.shards]
    init_ray(cfg.cluster, bool(cfg.get("verbose", False)))
    run_stage(done_dir, kb.bounds, items, EmbedActor, enc, specs.hf_resources(cfg), cfg, "embedded",
              stage / EMB_DIR, np.float32)


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("kb_build", run)


if __name__ == "__main__":
    main()
