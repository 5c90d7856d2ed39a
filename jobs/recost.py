"""RECOST-style selection (reconstructed from the paper's description; METHODS.md §6).

    python -m jobs.kb_build kb.path=trusted.jsonl kb.output=kb/          # once: embed + faiss index
    python -m jobs.recost data.path=pool.jsonl kb.index=kb/ selection.budget=0.01 output_dir=out/

Stages: stage the input → retrieval (Ray Data actors embed each query, search the KB index, render
the knowledge block; query embeddings kept as float16 shards) → scoring (cond, uncond and
knowledge-conditioned passes on the same response tokens) → fused IFD/RPE ranking and
diversity-consistent sampling on the driver. Each stage is resumable by shard.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jobs import dedup, ifd, report, settings, skeleton, specs
from jobs.method import Method, rank_by
from jobs.pipeline import run_stage, shard_item
from jobs.skeleton import PoolRun, Result, timed
from records import schema, shards, tables, writers
from records.layout import (
    EMBEDDINGS_DIR,
    MANIFEST_FILE,
    RECORDS_DIR,
    REPORT_FILE,
    SCORES_FILE,
    SELECTED_FILE,
    SELECTED_TABLE,
    CARD_FILE,
    SHARDS_DIR,
)
from records.staging import Staged
from retrieval import artifact
from retrieval.encoder import EncoderSpec
from scoring.models import model_identity
from selection.budget import resolve_budget
from selection.recost import RecostParams, RecostResult, recost_select
from selection.scores import rpe_columns

log = logging.getLogger(__name__)

RETRIEVAL_DIR = "retrieval"
PASSES = ("cond", "uncond", "know")
PLOTS = ("rpe_vs_ifd.png", "rpe_hist.png", "cluster_mix.png", "outcomes.png", report.BASELINES_PLOT)
RESELECT_WRITES = (SCORES_FILE, SELECTED_FILE, SELECTED_TABLE, CARD_FILE, MANIFEST_FILE, REPORT_FILE, *PLOTS)
WRITES = (RECORDS_DIR, SHARDS_DIR, RETRIEVAL_DIR, EMBEDDINGS_DIR, *RESELECT_WRITES)


def params(cfg: Any) -> RecostParams:
    s = cfg.selection
    p = RecostParams(
        max_score=s.max_score,
        max_inclusive=bool(s.max_inclusive),
        rpe=s.rpe,
        weight=float(s.weight),
        fusion=s.fusion,
        rrf_k=float(s.rrf_k),
        window=int(s.window),
        tau=float(s.tau),
        n_clusters=None if s.clusters == "auto" else int(s.clusters),
        seed=int(cfg.get("seed") or 0),  # jobs.select: seed null = 0, as before it had the key
    )
    p.check()
    return p


def validate(cfg: Any) -> None:
    """Fail at start, naming the valid choices, before any expensive work."""
    settings.validate_common(cfg)
    settings.check_budget(cfg)
    settings.render_config(cfg, PASSES)
    params(cfg)
    dedup.params(cfg)
    if not cfg.kb.index:
        raise ValueError("kb.index is required: a directory built by `python -m jobs.kb_build`")


def check_encoder(query: dict[str, Any], kb: dict[str, Any]) -> None:
    """Queries must be embedded exactly as the KB was (same model weights, pooling, length, centring)."""
    strip = lambda e: {**e, "model": {k: v for k, v in e["model"].items() if k != "path"}}  # noqa: E731
    if strip(query) != strip(kb):
        raise ValueError(
            f"the KB was built with encoder {kb}, but this run's encoder is {query}; "
            f"rebuild the KB with jobs.kb_build or set encoder.* to match"
        )


@dataclass(frozen=True)
class KB:
    """The KB a run retrieves from: its directory, manifest, and the query encoder (checked to match)."""

    dir: Path
    manifest: dict[str, Any]
    encoder: EncoderSpec
    encoder_id: dict[str, Any]


def open_kb(cfg: Any) -> KB:
    """``kb.index`` read and checked before any run directory is claimed."""
    kb_dir = settings.resolve_data_path(cfg.kb.index)
    kbm = artifact.read_manifest(kb_dir)
    enc, enc_id = specs.encoder_spec(cfg)
    check_encoder(enc_id, kbm["encoder"])
    return KB(kb_dir, kbm, enc, enc_id)


@dataclass
class Scored:
    """A run's retrieval and scoring stages, done: what the selection and the manifest need of them."""

    staged: Staged
    spec: specs.ScorerSpec
    rspec: specs.RetrievalSpec
    identity: dict[str, Any]
    rdir: Path
    sdir: Path
    reused: dict[str, int]


def stage_and_score(run: PoolRun, kb: KB) -> Scored:
    """Stage the input, then retrieval and the three passes, each resumable by shard."""
    cfg = run.cfg
    spec = specs.scorer_spec(cfg, run.model_path, run.rc)
    rspec = specs.retrieval_spec(cfg, kb.encoder, run.rc.template, kb.dir)
    identity = model_identity(run.model_path, cfg.model.name)
    with timed(run.timings, "read"):
        skey = ifd.score_key(run, identity, spec)
        rkey = retrieval_key(skey, kb.manifest, kb.encoder_id, rspec)
        rdir = shards.prepare(run.out, rkey, bool(cfg.resume), RETRIEVAL_DIR)
        sdir = shards.prepare(run.out, {**skey, "retrieval": shards.run_key(rkey)}, bool(cfg.resume))
        staged = run.stage()
    reused = run_stages(run, staged, rdir, sdir, spec, rspec)
    return Scored(staged, spec, rspec, identity, rdir, sdir, reused)


def run(cfg: Any) -> Result:
    """Run the whole RECOST job for a composed config (callable from tests without Hydra)."""
    validate(cfg)
    kb = open_kb(cfg)
    with skeleton.pool_run(cfg, "recost", WRITES, validate, PASSES, [kb.dir]) as run:
        sc = stage_and_score(run, kb)
        staged = sc.staged
        with timed(run.timings, "select"):
            table, emb = merge(sc.sdir, sc.rdir, run.out / EMBEDDINGS_DIR, staged)
            table, result, info = select_table(
                table, emb, cfg.selection.budget, params(cfg), dedup.params(cfg)
            )
            writers.write_parquet(table, run.out / SCORES_FILE)
            n_sel = writers.write_selected(staged.shards, result.order, run.out / SELECTED_FILE, table, run.out / SELECTED_TABLE)
        m = run.write_manifest(
            staged,
            **manifest_fields(run, staged, sc.identity, kb.manifest, kb.dir, sc.spec, sc.rspec, info, sc.reused),
        )
        write_report(run.out, table, result, info, report_summary(m, info, cfg), emb, int(cfg.seed))
        log.info("selected %d of %d rows -> %s", n_sel, staged.n_rows, run.out / SELECTED_FILE)
        return Result(run.out, staged.n_rows, n_sel, info["outcomes"], run.timings)


def report_summary(m: dict[str, Any], info: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """What the report's table shows of a finished RECOST run."""
    return {
        "input": m["input"],
        "model": m["model"]["name"],
        "kb": m["kb"],
        "outcomes": info["outcomes"],
        "budget": f"{cfg.selection.budget} -> {info['budget_rows']} rows",
        "selection": m["selection_params"],
        "timings_s": m["timings_s"],
    }


def retrieval_key(
    score_key: dict[str, Any], kbm: dict[str, Any], enc_id: dict[str, Any], rspec: specs.RetrievalSpec
) -> dict[str, Any]:
    """What the retrieval shards depend on: the input, the KB, the encoder and the retrieval knobs
    (not the scorer's rendering, which only the scoring stage uses)."""
    return {
        **{k: v for k, v in score_key.items() if k not in ("render", "head_only")},
        "kb": {"source": kbm["source"], "rows": kbm["rows"], "index": kbm["index"]},
        "encoder": enc_id,
        "retrieval": rspec.identity(),
    }


def run_stages(
    run: PoolRun, staged: Staged, rdir: Path, sdir: Path, spec: specs.ScorerSpec, rspec: specs.RetrievalSpec
) -> dict[str, int]:
    """Retrieval then scoring, each over the shards it has not finished; returns the shards reused."""
    from jobs.actor import ScoringActor
    from jobs.retrieve import RetrievalActor

    emb_dir = run.out / EMBEDDINGS_DIR
    if not shards.done_shards(rdir):
        shutil.rmtree(emb_dir, ignore_errors=True)  # no stale embeddings from an earlier retrieval
    with timed(run.timings, "retrieve"):
        r_reused, _ = run_stage(
            rdir,
            staged.bounds,
            [shard_item(s) for s in staged.shards],
            RetrievalActor,
            rspec,
            specs.hf_resources(run.cfg),
            run.cfg,
            "retrieved",
            emb_dir,
        )
    with timed(run.timings, "score"):
        items = [
            shard_item(s, extra=str(rdir / f"part-{k:05d}.parquet"), extra_columns=[schema.KNOWLEDGE])
            for k, s in enumerate(staged.shards)
        ]
        s_reused, _ = run_stage(
            sdir, staged.bounds, items, ScoringActor, spec, specs.scorer_resources(run.cfg), run.cfg, "scored"
        )
    return {"retrieval_reused": r_reused, "scoring_reused": s_reused}


def manifest_fields(
    run: PoolRun,
    staged: Staged,
    identity: dict[str, Any],
    kbm: dict[str, Any],
    kb_dir: Path,
    spec: specs.ScorerSpec,
    rspec: specs.RetrievalSpec,
    info: dict[str, Any],
    reused: dict[str, int],
) -> dict[str, Any]:
    """RECOST's own manifest fields (beside the skeleton's job, config, input, timings, versions)."""
    n, t = staged.n_rows, run.timings
    return {
        "model": identity,
        "kb": {
            "path": str(kb_dir.resolve()),
            "source": kbm["source"],
            "rows": kbm["rows"],
            "kinds": kbm.get("kinds"),
            "index": kbm["index"],
            "encoder": kbm["encoder"],
        },
        "retrieval": {k: v for k, v in asdict(rspec).items() if k != "encoder"},
        "shards": {"total": len(staged.shards), **reused, "rows_per_shard": staged.rows_per_shard},
        "scoring": {"backend": spec.backend, "render": asdict(spec.render), "device": spec.model.device},
        "selection_params": skeleton.as_dict(run.cfg.selection),
        "selection": info,
        "embeddings_dir": EMBEDDINGS_DIR,
        "rows_per_s": round(n / max(t["retrieve"] + t["score"], 1e-9), 3),
    }


def recost_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """H(A|K,Q) and both RPE forms from the stored sums and counts."""
    return rpe_columns(*tables.sums_and_counts(table, "cond", "know"))


def merge(sdir: Path, rdir: Path, emb_dir: Path, staged: Staged) -> tuple[pa.Table, np.ndarray]:
    """Join the score and retrieval shards (both complete, position-sorted), derive; with the rows'
    query embeddings."""
    n_shards = len(staged.shards)
    table = tables.validate_complete(shards.load_all(sdir, n_shards), staged.n_rows)
    retr = tables.validate_complete(shards.load_all(rdir, n_shards), staged.n_rows)
    table = tables.with_columns(table, {**ifd.derived(table), **recost_columns(table)})
    for name in (schema.KB_IDS, schema.KB_SIMS):
        table = table.append_column(name, retr.column(name))
    return table, shards.load_embeddings(emb_dir, n_shards)


def select_table(
    table: pa.Table, emb: np.ndarray, budget: float, p: RecostParams, dp: Any = None
) -> tuple[pa.Table, RecostResult, dict[str, Any]]:
    """The RECOST selection over a complete scores table and its row-aligned embeddings; with ``dp``
    (``selection.semdedup.DedupParams``), semantic near-copies are dropped first."""
    if len(emb) != table.num_rows:
        raise RuntimeError(f"{len(emb)} embeddings for {table.num_rows} rows; refusing to select")
    k = resolve_budget(budget, table.num_rows)
    errored = tables.errored(table)
    ifd = table.column("ifd_loss").to_numpy(zero_copy_only=False)
    rpe = table.column(f"rpe_{p.rpe}").to_numpy(zero_copy_only=False)
    emb = emb.astype(np.float32)
    removed, extra = dedup.step(emb, errored, dp)
    result = recost_select(ifd, rpe, errored | removed, emb, k, p)
    result.outcome = dedup.relabel(result.outcome, removed)
    table = tables.with_columns(
        table,
        {"outcome": result.outcome, "fused_rank": result.fused_rank, "cluster": result.cluster, **extra},
    )
    n_know = np.array([len(x) for x in table.column(schema.KB_IDS).to_pylist()])
    info = {
        "budget_rows": k,
        "selected": int(len(result.order)),
        "outcomes": result.counts(),
        "clusters": int(result.cluster.max() + 1) if len(result.cluster) else 0,
        "rows_without_knowledge": int(np.sum((n_know == 0) & ~errored)),
        "knowledge_truncated": int(np.sum(table.column(schema.KNOWLEDGE_TRUNCATED).to_numpy())),
        "mean_top1_similarity": _mean_top1(table.column(schema.KB_SIMS).to_pylist()),
        "mean_rpe_selected": _mean(rpe[result.order]),
        "mean_rpe_eligible": _mean(rpe[result.fused_rank >= 0]),
        "mean_ifd_selected": _mean(ifd[result.order]),
    }
    if len(result.order) == 0 and k > 0:
        info["notice"] = (
            f"NO ROWS SELECTED: no row passed the filters (selection.max_score={p.max_score}); "
            f"selected.jsonl is empty"
        )
        log.warning("=" * 20 + " %s " + "=" * 20, info["notice"])
    elif len(result.order) < k:
        log.warning("only %d rows passed the filters for a budget of %d", len(result.order), k)
    return table, result, info


def reselect(
    cfg: Any, scores: pa.Table, prev: dict[str, Any], out: Path
) -> tuple[np.ndarray, dict[str, Any], pa.Table]:
    """``jobs.select`` on a RECOST run held in ``out``: new fusion / diversity / budget knobs, no
    rescoring. Returns (selected positions, info, table); writes scores.parquet and the report."""
    if "rpe" not in cfg.selection:
        raise ValueError("this scores.parquet comes from jobs.recost: add selection=recost to re-select it")
    p = params(cfg)
    emb = shards.load_embeddings(out / EMBEDDINGS_DIR, int(prev["shards"]["total"]))
    dp = dedup.params(cfg if cfg.get("dedup") is not None else settings.as_config(prev.get("config", {})))
    table, result, info = select_table(scores, emb, cfg.selection.budget, p, dp)
    writers.write_parquet(table, out / SCORES_FILE)
    write_report(
        out,
        table,
        result,
        info,
        {
            "source": prev.get("input"),
            "budget": cfg.selection.budget,
            "selection": skeleton.as_dict(cfg.selection),
            "outcomes": info["outcomes"],
        },
        emb,
        int(prev.get("config", {}).get("seed", 0)),
    )
    return result.order, info, table


METHOD = Method(
    "recost", PASSES, WRITES, reselect, RESELECT_WRITES, linked=(RECORDS_DIR, EMBEDDINGS_DIR), rank=rank_by("fused_rank")
)


def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return round(float(x.mean()), 6) if len(x) else None


def _mean_top1(sims: list[list[float]]) -> float | None:
    top = [s[0] for s in sims if s]
    return round(float(np.mean(top)), 6) if top else None


def write_report(
    out: Path,
    table: pa.Table,
    result: RecostResult,
    info: dict[str, Any],
    summary: dict[str, Any],
    emb: np.ndarray,
    seed: int,
) -> Path:
    ifd = table.column("ifd_loss").to_numpy(zero_copy_only=False)
    rpe = table.column("rpe_diff").to_numpy(zero_copy_only=False)
    sel = result.outcome == "selected"
    scatter, hist, mix, outcomes = (out / name for name in PLOTS[:4])
    report.plot_scatter(ifd, rpe, sel, "IFD (loss ratio)", "RPE = H(A|Q) - H(A|K,Q)", scatter)
    report.plot_histogram(rpe, None, None, "RPE (difference form, nats/token)", hist)
    report.plot_cluster_mix(result.cluster, result.cluster[result.order], mix)
    report.plot_counts(info["outcomes"], "rows by outcome", outcomes)
    imgs = list(
        zip(
            PLOTS,
            (
                "relative predictive entropy vs IFD (selected in orange)",
                "RPE distribution",
                "cluster mix: pool vs selection",
                "rows by outcome",
            ),
        )
    )
    errored = tables.errored(table)
    section, plot, _ = report.baseline_section(
        out,
        "recost",
        result.order,
        table.column(schema.RESPONSE_TOKENS).to_numpy(),
        ~errored,
        seed,
        np.where(result.fused_rank >= 0, result.fused_rank, np.nan).astype(np.float64),
        "fused rank (0 = best)",
        emb.astype(np.float32),
        result.cluster,
    )
    fused = np.where(result.fused_rank >= 0, result.fused_rank, np.nan).astype(np.float64)
    headline, examples = report.run_examples(out, table, fused, "fused rank (0 = best)", descending=False)
    return report.write_report(
        out,
        "Winnow RECOST selection",
        {**summary, "selection_info": info},
        imgs + [plot],
        info.get("notice"),
        [examples, section],
        headline,
    )


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("recost", run)


if __name__ == "__main__":
    main()
