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
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jobs import outputs, report, rundir, settings, shards
from jobs.ifd import Result, run_parts, timed
from jobs.pipeline import run_stage, shard_item
from jobs.staging import RECORDS_DIR, Staged, inspect_input, stage_input
from retrieval import artifact
from scoring import schema
from scoring.models import resolve_model
from selection.budget import resolve_budget
from selection.recost import RecostParams, RecostResult, recost_select
from selection.scores import mean_loss, rpe_diff, rpe_ratio

log = logging.getLogger(__name__)

RETRIEVAL_DIR = "retrieval"
EMBEDDINGS_DIR = shards.EMBEDDINGS_DIR
PASSES = ("cond", "uncond", "know")
PLOTS = ("rpe_vs_ifd.png", "rpe_hist.png", "cluster_mix.png", "outcomes.png")
WRITES = (RECORDS_DIR, shards.SHARDS_DIR, RETRIEVAL_DIR, EMBEDDINGS_DIR, outputs.SCORES, outputs.SELECTED,
          outputs.MANIFEST, report.REPORT, *PLOTS)


def params(cfg: Any) -> RecostParams:
    s = cfg.selection
    p = RecostParams(max_score=s.max_score, max_inclusive=bool(s.max_inclusive), rpe=s.rpe,
                     weight=float(s.weight), fusion=s.fusion, rrf_k=float(s.rrf_k), window=int(s.window),
                     tau=float(s.tau), n_clusters=None if s.clusters == "auto" else int(s.clusters),
                     seed=int(cfg.get("seed", 0)))
    p.check()
    return p


def check_encoder(query: dict[str, Any], kb: dict[str, Any]) -> None:
    """Queries must be embedded exactly as the KB was (same model weights, pooling, length, centring)."""
    strip = lambda e: {**e, "model": {k: v for k, v in e["model"].items() if k != "path"}}  # noqa: E731
    if strip(query) != strip(kb):
        raise ValueError(f"the KB was built with encoder {kb}, but this run's encoder is {query}; "
                         f"rebuild the KB with jobs.kb_build or set encoder.* to match")


def retrieval_spec(cfg: Any, enc: dict[str, Any], template: str, kb_dir: Path) -> dict[str, Any]:
    kb = cfg.kb
    return {"encoder": enc, "device": enc["device"], "threads": int(cfg.backend.threads_per_actor),
            "kb_path": str(kb_dir.resolve()), "k": int(kb.k), "exclude_self": bool(kb.exclude_self),
            "exclude_sim": None if kb.exclude_sim is None else float(kb.exclude_sim),
            "nprobe": int(kb.nprobe), "template": template, "style": kb.style,
            "paragraph_prefix": kb.paragraph_prefix}


def run(cfg: Any) -> Result:
    """Run the whole RECOST job for a composed config (callable from tests without Hydra)."""
    settings.validate_common(cfg)
    settings.check_budget(cfg)
    rc = settings.render_config(cfg, PASSES)
    p = params(cfg)
    if not cfg.kb.index:
        raise ValueError("kb.index is required: a directory built by `python -m jobs.kb_build`")
    kb_dir = settings.resolve_data_path(cfg.kb.index)
    kbm = artifact.read_manifest(kb_dir)
    timings: dict[str, float] = {}
    with timed(timings, "model"):
        model_path = resolve_model(cfg.model.name)
        enc = settings.encoder_spec(cfg)
    check_encoder(enc["identity"], kbm["encoder"])
    settings.check_chat_template(rc, model_path, bool(cfg.model.trust_remote_code))
    data_path = settings.data_path(cfg)
    rundir.check_inputs(Path(cfg.output_dir), WRITES, [data_path])  # before the input is even read
    with timed(timings, "inspect"):
        src = inspect_input(data_path, cfg.data.format, cfg.data.limit, cfg.data.rows_per_shard)
    with rundir.claim(cfg.output_dir, "recost", WRITES, [data_path, kb_dir]) as run_dir:
        out = run_dir.path
        spec = settings.actor_spec(cfg, model_path, rc)
        rspec = retrieval_spec(cfg, enc, rc.template, kb_dir)
        identity = outputs.model_identity(model_path, cfg.model.name)
        with timed(timings, "read"):
            rparts = retrieval_parts(run_parts(cfg, src, identity, spec), kbm, enc, rspec)
            rdir = shards.prepare(out, rparts, bool(cfg.resume), RETRIEVAL_DIR)
            sdir = shards.prepare(out, {**run_parts(cfg, src, identity, spec), "retrieval": shards.run_key(rparts)},
                                  bool(cfg.resume))
            staged = stage_input(data_path, out, cfg.data.format, settings.fields(cfg),
                                 bool(cfg.data.drop_duplicates), cfg.data.limit, cfg.data.rows_per_shard, src)
        emb_dir = out / EMBEDDINGS_DIR
        r_reused, s_reused = run_stages(cfg, staged, rdir, sdir, emb_dir, spec, rspec, timings)
        with timed(timings, "select"):
            table, result, info = merge_and_select(sdir, rdir, emb_dir, staged, cfg.selection.budget, p)
            outputs.write_parquet(table, out / outputs.SCORES)
            n_sel = outputs.write_selected(staged.shards, result.order, out / outputs.SELECTED, table)
        manifest = build_manifest(cfg, staged, data_path, identity, kbm, kb_dir, spec, rspec, info, timings,
                                  {"total": len(staged.shards), "retrieval_reused": r_reused,
                                   "scoring_reused": s_reused, "rows_per_shard": staged.rows_per_shard})
        outputs.write_json(manifest, out / outputs.MANIFEST)
        write_report(out, table, result, info, {
            "input": manifest["input"], "model": identity["name"], "kb": manifest["kb"],
            "budget": f"{cfg.selection.budget} -> {info['budget_rows']} rows", "outcomes": info["outcomes"],
            "selection": manifest["selection_params"], "timings_s": timings})
        log.info("selected %d of %d rows -> %s", n_sel, staged.n_rows, out / outputs.SELECTED)
        return Result(out, staged.n_rows, n_sel, info["outcomes"], timings)


def retrieval_parts(scoring_parts: dict[str, Any], kbm: dict[str, Any], enc: dict[str, Any],
                    rspec: dict[str, Any]) -> dict[str, Any]:
    """What the retrieval shards depend on: the input, the KB, the encoder and the retrieval knobs
    (not the scorer's rendering, which only the scoring stage uses)."""
    return {**{k: v for k, v in scoring_parts.items() if k not in ("render", "head_only")},
            "kb": {"source": kbm["source"], "rows": kbm["rows"], "index": kbm["index"]}, "encoder": enc["identity"],
            "retrieval": {k: v for k, v in rspec.items() if k not in ("encoder", "kb_path", "threads")}}


def run_stages(cfg: Any, staged: Staged, rdir: Path, sdir: Path, emb_dir: Path, spec: dict[str, Any],
               rspec: dict[str, Any], timings: dict[str, float]) -> tuple[int, int]:
    """Retrieval then scoring, each over the shards it has not finished; returns the shards reused."""
    from jobs.actor import ScoringActor
    from jobs.retrieve import RetrievalActor

    if not shards.done_shards(rdir):
        shutil.rmtree(emb_dir, ignore_errors=True)  # no stale embeddings from an earlier retrieval
    with timed(timings, "retrieve"):
        r_reused, _ = run_stage(rdir, staged.bounds, [shard_item(s) for s in staged.shards], RetrievalActor,
                                rspec, cfg, "retrieved", emb_dir)
    with timed(timings, "score"):
        items = [shard_item(s, extra=str(rdir / f"part-{k:05d}.parquet"), extra_columns=[schema.KNOWLEDGE])
                 for k, s in enumerate(staged.shards)]
        s_reused, _ = run_stage(sdir, staged.bounds, items, ScoringActor, spec, cfg, "scored")
    return r_reused, s_reused


def recost_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """H(A|K,Q) and both RPE forms from the stored sums and counts."""
    c = [table.column(k).to_numpy(zero_copy_only=False) for k in
         (schema.nll_sum_col("cond"), schema.tokens_col("cond"), schema.nll_sum_col("know"), schema.tokens_col("know"))]
    return {"know_loss": mean_loss(c[2], c[3]), "rpe_diff": rpe_diff(*c), "rpe_ratio": rpe_ratio(*c)}


def merge_and_select(sdir: Path, rdir: Path, emb_dir: Path, staged: Staged, budget: float, p: RecostParams
                     ) -> tuple[pa.Table, RecostResult, dict[str, Any]]:
    """Join the score and retrieval shards (both complete, position-sorted), derive, select."""
    n_shards = len(staged.shards)
    table = outputs.validate_complete(shards.load_all(sdir, n_shards), staged.n_rows)
    retr = outputs.validate_complete(shards.load_all(rdir, n_shards), staged.n_rows)
    table = outputs.with_columns(table, {**outputs.derived(table), **recost_columns(table)})
    for name in (schema.KB_IDS, schema.KB_SIMS):
        table = table.append_column(name, retr.column(name))
    return select_table(table, shards.load_embeddings(emb_dir, n_shards), budget, p)


def select_table(table: pa.Table, emb: np.ndarray, budget: float, p: RecostParams
                 ) -> tuple[pa.Table, RecostResult, dict[str, Any]]:
    """The RECOST selection over a complete scores table and its row-aligned embeddings."""
    if len(emb) != table.num_rows:
        raise RuntimeError(f"{len(emb)} embeddings for {table.num_rows} rows; refusing to select")
    k = resolve_budget(budget, table.num_rows)
    errored = outputs.errored(table)
    ifd = table.column("ifd_loss").to_numpy(zero_copy_only=False)
    rpe = table.column(f"rpe_{p.rpe}").to_numpy(zero_copy_only=False)
    result = recost_select(ifd, rpe, errored, emb.astype(np.float32), k, p)
    table = outputs.with_columns(table, {"outcome": result.outcome, "fused_rank": result.fused_rank,
                                         "cluster": result.cluster})
    n_know = np.array([len(x) for x in table.column(schema.KB_IDS).to_pylist()])
    info = {"budget_rows": k, "selected": int(len(result.order)), "outcomes": result.counts(),
            "clusters": int(result.cluster.max() + 1) if len(result.cluster) else 0,
            "rows_without_knowledge": int(np.sum((n_know == 0) & ~errored)),
            "knowledge_truncated": int(np.sum(table.column(schema.KNOWLEDGE_TRUNCATED).to_numpy())),
            "mean_top1_similarity": _mean_top1(table.column(schema.KB_SIMS).to_pylist()),
            "mean_rpe_selected": _mean(rpe[result.order]), "mean_rpe_eligible": _mean(rpe[result.fused_rank >= 0]),
            "mean_ifd_selected": _mean(ifd[result.order])}
    if len(result.order) == 0 and k > 0:
        info["notice"] = f"NO ROWS SELECTED: no row passed the filters (selection.max_score={p.max_score}); " \
                         f"selected.jsonl is empty"
        log.warning("=" * 20 + " %s " + "=" * 20, info["notice"])
    elif len(result.order) < k:
        log.warning("only %d rows passed the filters for a budget of %d", len(result.order), k)
    return table, result, info


def reselect(cfg: Any, scores: pa.Table, prev: dict[str, Any], out: Path
             ) -> tuple[np.ndarray, dict[str, Any], pa.Table]:
    """``jobs.select`` on a RECOST run held in ``out``: new fusion / diversity / budget knobs, no
    rescoring. Returns (selected positions, info, table); writes scores.parquet and the report."""
    if "rpe" not in cfg.selection:
        raise ValueError("this scores.parquet comes from jobs.recost: add selection=recost to re-select it")
    p = params(cfg)
    emb = shards.load_embeddings(out / EMBEDDINGS_DIR, int(prev["shards"]["total"]))
    table, result, info = select_table(scores, emb, cfg.selection.budget, p)
    outputs.write_parquet(table, out / outputs.SCORES)
    write_report(out, table, result, info, {"source": prev.get("input"), "budget": cfg.selection.budget,
                                            "selection": as_dict(cfg.selection), "outcomes": info["outcomes"]})
    return result.order, info, table


def as_dict(node: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return round(float(x.mean()), 6) if len(x) else None


def _mean_top1(sims: list[list[float]]) -> float | None:
    top = [s[0] for s in sims if s]
    return round(float(np.mean(top)), 6) if top else None


def build_manifest(cfg: Any, staged: Staged, data_path: Path, identity: dict[str, Any], kbm: dict[str, Any],
                   kb_dir: Path, spec: dict[str, Any], rspec: dict[str, Any], info: dict[str, Any],
                   timings: dict[str, float], shard_info: dict[str, Any]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return {
        "job": "recost", "config": OmegaConf.to_container(cfg, resolve=True),
        "input": {"path": str(data_path.resolve()), "sha256": staged.sha256, "format": staged.format,
                  "rows": staged.n_rows, "read_outcomes": dict(staged.errors)},
        "model": identity,
        "kb": {"path": str(kb_dir.resolve()), "source": kbm["source"], "rows": kbm["rows"], "kinds": kbm.get("kinds"),
               "index": kbm["index"], "encoder": kbm["encoder"]},
        "retrieval": {k: v for k, v in rspec.items() if k not in ("encoder", "threads")},
        "shards": shard_info,
        "scoring": {"backend": spec["backend"], "render": spec["render"], "device": spec["device"]},
        "selection_params": OmegaConf.to_container(cfg.selection, resolve=True),
        "selection": info, "records_dir": RECORDS_DIR, "embeddings_dir": EMBEDDINGS_DIR,
        "timings_s": timings, "rows_per_s": round(staged.n_rows / max(timings["retrieve"] + timings["score"], 1e-9), 3),
        "versions": outputs.versions(),
    }


def write_report(out: Path, table: pa.Table, result: RecostResult, info: dict[str, Any],
                 summary: dict[str, Any]) -> Path:
    ifd = table.column("ifd_loss").to_numpy(zero_copy_only=False)
    rpe = table.column("rpe_diff").to_numpy(zero_copy_only=False)
    sel = result.outcome == "selected"
    scatter, hist, mix, outcomes = (out / name for name in PLOTS)
    report.plot_scatter(ifd, rpe, sel, "IFD (loss ratio)", "RPE = H(A|Q) - H(A|K,Q)", scatter)
    report.plot_histogram(rpe, None, None, "RPE (difference form, nats/token)", hist)
    report.plot_cluster_mix(result.cluster, result.cluster[result.order], mix)
    report.plot_counts(info["outcomes"], "rows by outcome", outcomes)
    imgs = list(zip(PLOTS, ("relative predictive entropy vs IFD (selected in orange)", "RPE distribution",
                            "cluster mix: pool vs selection", "rows by outcome")))
    return report.write_report(out, "Winnow RECOST selection", {**summary, "selection_info": info}, imgs,
                               info.get("notice"))


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("recost", run)


if __name__ == "__main__":
    main()
