"""Semantic near-duplicate removal (SemDeDup), and the ``dedup=semantic`` step other jobs apply
before their selection.

    python -m jobs.dedup data.path=pool.jsonl output_dir=out/dedup [dedup.threshold=0.9]

Stages: stage the input (exact repeats already dropped by ``data.drop_duplicates``) → embed every row
on Ray Data actors (the scorer's model; mean of the last hidden state over prompt + response + EOS by
default; resumable by shard, vectors kept as float16 shards) → faiss k-means → inside each cluster,
rows in input order, a row whose cosine to an already kept row is ≥ ``dedup.threshold`` is dropped as
a copy of it (``selection.semdedup``). ``deduped.jsonl`` holds the kept rows verbatim, in input order:
a valid input for any job. A rerun with another threshold reuses the embeddings.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jobs import report, settings, skeleton, specs
from jobs.embed import embed_resumable
from jobs.method import Method
from jobs.skeleton import PoolRun, Result, timed
from records import schema, tables, writers
from records.layout import EMBEDDINGS_DIR, MANIFEST_FILE, RECORDS_DIR, REPORT_FILE, SCORES_FILE, SHARDS_DIR
from records.staging import Staged
from records.tables import read_positions
from scoring.models import content_key, model_identity
from selection.semdedup import DROP_DUPLICATE, DedupParams, DedupResult, semdedup

log = logging.getLogger(__name__)

DEDUPED_FILE = "deduped.jsonl"
PLOTS = ("outcomes.png", "duplicate_similarity.png")
WRITES = (
    RECORDS_DIR,
    SHARDS_DIR,
    EMBEDDINGS_DIR,
    SCORES_FILE,
    DEDUPED_FILE,
    MANIFEST_FILE,
    REPORT_FILE,
    *PLOTS,
)
KINDS = ("none", "semantic")
EXAMPLES = 12


def params(cfg: Any) -> DedupParams | None:
    """``dedup.*`` as checked parameters; None when the config has no dedup step (``dedup=none``)."""
    d = cfg.get("dedup")
    if d is None or d.get("kind", "none") == "none":
        return None
    if d.kind not in KINDS:
        raise ValueError(f"unknown dedup.kind {d.kind!r}; choose one of {', '.join(KINDS)}")
    p = DedupParams(
        threshold=float(d.threshold),
        clusters=None if d.clusters == "auto" else int(d.clusters),
        center=bool(d.center),
        seed=int(cfg.get("seed", 0) or 0),
    )
    p.check()
    return p


def apply(emb: np.ndarray, errored: np.ndarray, p: DedupParams | None) -> DedupResult | None:
    """The near-copies among the rows without an error (None without a dedup step)."""
    if p is None:
        return None
    res = semdedup(emb, ~np.asarray(errored, dtype=bool), p)
    log.info(
        "semantic dedup: %d near-copies among %d rows (threshold %.3f)",
        int(res.removed.sum()),
        int((~errored).sum()),
        p.threshold,
    )
    return res


def columns(res: DedupResult) -> dict[str, np.ndarray]:
    """The dedup columns every job's scores.parquet carries when it ran the step."""
    return {"duplicate_of": res.duplicate_of, "duplicate_similarity": res.similarity.astype(np.float64)}


def step(
    emb: np.ndarray, errored: np.ndarray, p: DedupParams | None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The dedup step as a selection uses it: (rows to keep out, columns for scores.parquet); nothing
    kept out and no columns without a dedup step."""
    res = apply(emb, errored, p)
    if res is None:
        return np.zeros(len(errored), dtype=bool), {}
    return res.removed, columns(res)


def relabel(outcome: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """``outcome`` as str with the ``removed`` rows labelled as near-copies."""
    out = np.asarray(outcome).astype(object)  # a fixed-width str array would cut the new label
    out[removed] = DROP_DUPLICATE
    return out.astype(str)


def validate(cfg: Any) -> None:
    settings.validate_common(cfg)
    settings.render_config(cfg)
    if params(cfg) is None:
        raise ValueError("jobs.dedup needs dedup=semantic (dedup.kind=semantic)")
    if cfg.embed.what not in ("full", "instruction"):
        raise ValueError(f"unknown embed.what {cfg.embed.what!r}; choose full or instruction")


def embed_key(run: PoolRun, what: str, pooling: str) -> dict[str, Any]:
    """What the embeddings depend on (not the threshold, so a rerun with another one reuses them)."""
    return {
        **run.input_parts(),
        "model": content_key(model_identity(run.model_path, run.cfg.model.name)),
        "render": asdict(run.rc),
        "what": what,
        "pooling": pooling,
    }


def embed_rows(run: PoolRun, staged: Staged, base: Path) -> tuple[pa.Table, np.ndarray]:
    """Every row's embedding (``embed.what``, ``embed.pooling``), resumable per shard under ``base``
    (``base/shards``, ``base/embeddings``): the per-row table and the ``[n, hidden]`` vectors."""
    cfg = run.cfg
    what, pooling = str(cfg.embed.what), str(cfg.embed.pooling)
    spec = specs.embed_spec(cfg, run.model_path, run.rc, what, pooling)
    return embed_resumable(staged, spec, specs.hf_resources(cfg), base, embed_key(run, what, pooling), cfg)


def run(cfg: Any) -> Result:
    with skeleton.pool_run(cfg, "dedup", WRITES, validate) as run:
        p = params(cfg)
        what, pooling = str(cfg.embed.what), str(cfg.embed.pooling)
        with timed(run.timings, "read"):
            staged = run.stage()
        with timed(run.timings, "embed"):
            emb_table, E = embed_rows(run, staged, run.out)
        with timed(run.timings, "dedup"):
            errored = tables.errored(emb_table)
            res = apply(E, errored, p)
            table = scores_table(emb_table, res, errored)
            writers.write_parquet(table, run.out / SCORES_FILE)
            kept = np.flatnonzero(table.column("outcome").to_numpy(zero_copy_only=False) == "kept")
            n_kept = writers.write_selected(staged.shards, kept, run.out / DEDUPED_FILE, table)
        counts = tables.label_counts(table.column("outcome").to_numpy(zero_copy_only=False))
        info = {
            "kept": n_kept,
            "outcomes": counts,
            "params": asdict(p),
            "clusters": int(res.cluster.max() + 1) if (res.cluster >= 0).any() else 0,
        }
        m = run.write_manifest(
            staged,
            model=model_identity(run.model_path, cfg.model.name),
            embedding={"what": what, "pooling": pooling},
            dedup=info,
            embeddings_dir=EMBEDDINGS_DIR,
        )
        write_report(
            run.out,
            staged,
            res,
            p,
            {"input": m["input"], "model": m["model"]["name"], **info, "timings_s": run.timings},
        )
        log.info(
            "kept %d of %d rows (%d near-copies) -> %s",
            n_kept,
            staged.n_rows,
            counts.get(DROP_DUPLICATE, 0),
            run.out / DEDUPED_FILE,
        )
        return Result(run.out, staged.n_rows, n_kept, counts, run.timings)


def scores_table(emb_table: pa.Table, res: DedupResult, errored: np.ndarray) -> pa.Table:
    outcome = np.where(errored, "error", np.where(res.removed, DROP_DUPLICATE, "kept"))
    base = emb_table.select([schema.ID, schema.POSITION, schema.ERROR, schema.RESPONSE_TOKENS])
    return tables.with_columns(base, {**columns(res), "cluster": res.cluster, "outcome": outcome.astype(str)})


def row_text(r: dict[str, Any]) -> str:
    """A staged record's instruction, input and output, one per line (empty parts left out)."""
    return "\n".join(x for x in (r.get(schema.INSTRUCTION), r.get(schema.INPUT), r.get(schema.OUTPUT)) if x)


def example_pairs(
    staged: Staged, res: DedupResult, p: DedupParams, n: int = EXAMPLES
) -> list[dict[str, Any]]:
    """The dropped rows nearest the threshold (where a wrong threshold shows first), each with the
    kept row it copies."""
    dropped = np.flatnonzero(res.removed)
    dropped = dropped[np.lexsort((dropped, res.similarity[dropped]))][:n]
    want = np.concatenate([dropped, res.duplicate_of[dropped]])
    t = read_positions(staged.shards, want, [schema.INSTRUCTION, schema.INPUT, schema.OUTPUT]).to_pylist()
    by_pos = {r[schema.POSITION]: r for r in t}
    return [
        {
            "similarity": float(res.similarity[d]),
            "dropped": int(d),
            "kept": int(res.duplicate_of[d]),
            "dropped_text": row_text(by_pos.get(int(d), {})),
            "kept_text": row_text(by_pos.get(int(res.duplicate_of[d]), {})),
        }
        for d in dropped
    ]


def write_report(
    out: Path, staged: Staged, res: DedupResult, p: DedupParams, summary: dict[str, Any]
) -> Path:
    report.plot_counts(summary["outcomes"], "rows by outcome", out / PLOTS[0])
    sims = res.similarity[res.removed]
    report.plot_histogram(
        sims, None, p.threshold, "cosine of each dropped row to the kept row it copies", out / PLOTS[1]
    )
    section = report.pairs_html(example_pairs(staged, res, p), p.threshold)
    imgs = [(PLOTS[0], "rows by outcome"), (PLOTS[1], "similarity of the dropped near-copies")]
    return report.write_report(out, "Winnow semantic dedup", summary, imgs, sections=[section])


METHOD = Method("dedup", (), WRITES)


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("dedup", run)


if __name__ == "__main__":
    main()
