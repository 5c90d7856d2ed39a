"""The recommended pipeline: near-duplicates out, a quality guard, a ranking, diversity over the budget.

    python -m jobs.curate data.path=pool.jsonl selection.budget=0.05 output_dir=out/curate
    python -m jobs.curate data.path=pool.jsonl kb.index=kb/ selection.budget=0.05    # with a trusted KB

Steps (each a config knob; ``selection.curate`` holds the math):
1. exact repeats (staging, ``data.drop_duplicates``) and semantic near-copies (``dedup=semantic``,
   SemDeDup over the rows' embeddings) are kept out;
2. the quality guards (``curate.guard.*``) drop rows the scorer's own evidence marks as likely broken;
3. the ranking (``curate.method``: ``recost``, ``longest``, ``ifd``, ``superfilter`` or ``rds``: the
   rows most similar to ``target.path``, RDS+ by its best target on the rows' own embeddings; ``auto``
   = ``recost`` when ``kb.index`` is given, else ``longest``: the measured best on ``bench.curate``,
   where IFD's ranking picked dirty rows at twice the pool's rate);
4. cluster-proportional sampling over the budget (``curate.diversity``; RECOST's sampler; off by
   default: on the benchmark it doubled the dirty share of the RPE ranking's picks).
Cost: one embedding forward per row (the whole sequence, what dedup and diversity compare; the
retrieval's query embeddings hold no response), the ranking method's own passes, the conditioned pass
(the cond-tail guard and the loss the report shows) and the unconditioned pass only when a guard reads
it (``curate.guard.max_ifd`` or ``generic_tail``; ``passes_of``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jobs import dedup, ifd, rds, recost, report, settings, skeleton, specs
from jobs.embed import embed_resumable
from jobs.method import Method, rank_by
from jobs.skeleton import PoolRun, Result, timed
from records import schema, shards, tables, writers
from records.layout import (
    CARD_FILE,
    EMBEDDINGS_DIR,
    MANIFEST_FILE,
    RECORDS_DIR,
    REPORT_FILE,
    SCORES_FILE,
    SELECTED_FILE,
    SELECTED_TABLE,
    SHARDS_DIR,
)
from records.staging import Staged
from scoring.models import model_identity
from selection.budget import resolve_budget
from selection.curate import GUARDS, CurateResult, DiversityParams, GuardParams, curate_select, guard_reasons
from selection.recost import fused_order
from selection.scores import mean_loss
from selection.semdedup import DROP_DUPLICATE

log = logging.getLogger(__name__)

METHODS = ("auto", "recost", "longest", "ifd", "superfilter", "rds")
# the passes each ranking reads; longest and rds read none, but the conditioned pass always runs (the
# guards' cond tail, and the loss every report shows)
PASSES = {"ifd": ("cond", "uncond"), "superfilter": ("cond", "uncond"), "longest": ("cond",),
          "rds": ("cond",), "recost": ("cond", "uncond", "know")}
RANK_SCORE = "rank_score"  # the ranking's score per row (higher = better; NaN where not ranked)
EMBED_DIR = "embed"  # without a KB: the row embeddings (shards + vectors) that dedup and diversity use
PLOTS = ("outcomes.png", "rank_score_hist.png", report.BASELINES_PLOT)
WRITES = (RECORDS_DIR, SHARDS_DIR, EMBED_DIR, recost.RETRIEVAL_DIR, EMBEDDINGS_DIR, rds.TARGET_DIR, SCORES_FILE,
          SELECTED_FILE, SELECTED_TABLE, CARD_FILE, MANIFEST_FILE, REPORT_FILE, *PLOTS)


def method_of(cfg: Any) -> str:
    m = str(cfg.curate.method)
    if m not in METHODS:
        raise ValueError(f"unknown curate.method {m!r}; choose one of {', '.join(METHODS)}")
    return ("recost" if cfg.kb.index else "longest") if m == "auto" else m


def passes_of(cfg: Any) -> tuple[str, ...]:
    """The scoring passes a run makes: its ranking's, plus the unconditioned pass when a guard reads
    it (``curate.guard.max_ifd`` or ``generic_tail``) — so guards that need none cost no pass."""
    own = PASSES[method_of(cfg)]
    return own if "uncond" in own or not guard_params(cfg).needs_uncond else (*own, "uncond")


def guard_params(cfg: Any) -> GuardParams:
    g = cfg.curate.guard
    p = GuardParams(
        min_response_tokens=int(g.min_response_tokens or 0),
        max_ifd=None if g.max_ifd is None else float(g.max_ifd),
        cond_tail=None if g.cond_tail is None else float(g.cond_tail),
        generic_tail=None if g.generic_tail is None else float(g.generic_tail),
        min_rpe=None if g.min_rpe is None else float(g.min_rpe),
    )
    p.check()
    return p


def diversity_params(cfg: Any) -> DiversityParams:
    s = cfg.selection
    return DiversityParams(
        enabled=bool(cfg.curate.diversity),
        clusters=None if s.clusters == "auto" else int(s.clusters),
        window=int(s.window),
        tau=float(s.tau),
        seed=int(cfg.seed),
    )


def validate(cfg: Any) -> None:
    """Fail at start, naming the valid choices, before any expensive work."""
    settings.validate_common(cfg)
    settings.check_budget(cfg)
    m = method_of(cfg)
    guard_params(cfg)
    settings.render_config(cfg, passes_of(cfg))
    dedup.params(cfg)
    recost.params(cfg)
    if m == "recost" and not cfg.kb.index:
        raise ValueError("curate.method=recost needs kb.index: a directory built by `python -m jobs.kb_build`")
    if m == "rds":
        check_target(cfg)


def check_target(cfg: Any) -> None:
    """``curate.method=rds``: a readable target set (refused before anything is written)."""
    if not cfg.target.path:
        raise ValueError("curate.method=rds needs target.path: the target set (the tasks to select for)")
    try:
        rds.validate_target(cfg)
    except ValueError as e:
        raise ValueError(f"curate.method=rds: {e}") from None


def run(cfg: Any) -> Result:
    """Run the whole pipeline for a composed config (callable from tests without Hydra)."""
    validate(cfg)
    m = method_of(cfg)
    if m == "recost":
        return run_with_kb(cfg)
    inputs = [rds.target_path(cfg)] if m == "rds" else []
    with skeleton.pool_run(cfg, "curate", WRITES, validate, passes_of(cfg), inputs) as run:
        identity = model_identity(run.model_path, cfg.model.name)
        staged, sdir, reused, _ = ifd.stage_and_score(run, specs.scorer_spec(cfg, run.model_path, run.rc), identity)
        emb = embed_rows(run, staged)
        table = tables.validate_complete(shards.load_all(sdir, len(staged.shards)), staged.n_rows)
        table = tables.with_columns(table, loss_columns(table, run.rc.passes))
        extra: dict[str, Any] = {"model": identity, "shards_reused": reused}
        if m == "rds":
            T, extra["target"] = target_embeddings(run)
            table = tables.with_columns(table, {RDS_SCORE: rds_scores(emb, T)})
        return finish(run, staged, table, emb, m, extra)


def loss_columns(table: pa.Table, passes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The mean losses and IFD forms when both IFD passes ran; the conditioned loss alone otherwise."""
    if "uncond" in passes:
        return ifd.derived(table)
    return {"cond_loss": mean_loss(*tables.sums_and_counts(table, "cond"))}


RDS_SCORE = "rds_score"  # curate.method=rds: cosine similarity to the row's nearest target


def target_embeddings(run: PoolRun) -> tuple[np.ndarray, dict[str, Any]]:
    """The target set staged and embedded exactly as the pool rows are (``embed.*``), resumable under
    ``target/``: (usable target vectors, the manifest's target record)."""
    cfg = run.cfg
    tstaged = rds.stage_target(run)
    what, pooling = str(cfg.embed.what), str(cfg.embed.pooling)
    spec = specs.embed_spec(cfg, run.model_path, run.rc, what, pooling)
    key = {**rds.embed_key(run, tstaged.sha256, pooling), "what": what, "shards": tstaged.bounds}
    with timed(run.timings, "embed_target"):
        ttable, T = embed_resumable(tstaged, spec, specs.hf_resources(cfg), run.out / rds.TARGET_DIR, key, cfg)
    T = rds.usable_targets(ttable, T)
    return T, {"path": str(rds.target_path(cfg).resolve()), "sha256": tstaged.sha256, "rows": tstaged.n_rows,
               "usable": int(len(T))}


def rds_scores(emb: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Each row's cosine similarity to its nearest target (NaN where the row has no embedding)."""
    from selection.rds import nearest_targets, unit

    score = np.full(len(emb), np.nan)
    ok = np.flatnonzero(np.isfinite(emb).all(axis=1) & (np.abs(emb).sum(axis=1) > 0))
    if len(ok):
        score[ok] = nearest_targets(unit(emb[ok]), unit(targets))[0]
    return score


def run_with_kb(cfg: Any) -> Result:
    """The pipeline ranked by RECOST: retrieval + the three passes (``jobs.recost``'s stages)."""
    kb = recost.open_kb(cfg)
    with skeleton.pool_run(cfg, "curate", WRITES, validate, passes_of(cfg), [kb.dir]) as run:
        sc = recost.stage_and_score(run, kb)
        emb = embed_rows(run, sc.staged)  # the whole row, as without a KB (the queries hold no response)
        table, _ = recost.merge(sc.sdir, sc.rdir, run.out / EMBEDDINGS_DIR, sc.staged)
        extra = {"model": sc.identity, "kb": {"path": str(kb.dir.resolve()), "rows": kb.manifest["rows"],
                                              "source": kb.manifest["source"]}, **sc.reused}
        return finish(run, sc.staged, table, emb, "recost", extra)


def embed_rows(run: PoolRun, staged: Staged) -> np.ndarray:
    """Every row's embedding (``embed.what``: the whole sequence by default) for dedup and diversity:
    one forward per row, resumable per shard under ``embed/``."""
    with timed(run.timings, "embed"):
        return dedup.embed_rows(run, staged, run.out / EMBED_DIR)[1]


def ranking(table: pa.Table, method: str, reasons: np.ndarray, p: recost.RecostParams) -> np.ndarray:
    """The ranking's score per row, higher = better (NaN where the method cannot rank the row)."""
    if method in ("ifd", "superfilter"):
        return table.column("ifd_loss" if method == "ifd" else "ifd_ppl").to_numpy(zero_copy_only=False).astype(float)
    if method == "longest":
        return table.column(schema.RESPONSE_TOKENS).to_numpy().astype(float)
    if method == "rds":
        return table.column(RDS_SCORE).to_numpy(zero_copy_only=False).astype(float)
    ifd_loss = table.column("ifd_loss").to_numpy(zero_copy_only=False).astype(float)
    rpe = table.column(f"rpe_{p.rpe}").to_numpy(zero_copy_only=False).astype(float)
    score = np.full(len(ifd_loss), np.nan)
    elig = np.flatnonzero((reasons == "") & np.isfinite(ifd_loss) & np.isfinite(rpe))
    if len(elig):
        order = fused_order(ifd_loss[elig], rpe[elig], p)
        score[elig[order]] = -np.arange(len(elig), dtype=float)  # RECOST's fused rank, best = 0
    return score


def curate_table(table: pa.Table, emb: np.ndarray, cfg: Any, method: str
                 ) -> tuple[pa.Table, CurateResult, dict[str, Any]]:
    """Steps 1–4 over a complete, position-sorted scores table and its row-aligned embeddings."""
    if len(emb) != table.num_rows:
        raise RuntimeError(f"{len(emb)} embeddings for {table.num_rows} rows; refusing to select")
    k = resolve_budget(cfg.selection.budget, table.num_rows)
    guards, dd, div = guard_params(cfg), dedup.params(cfg), diversity_params(cfg)
    errored = tables.errored(table)
    removed, dd_cols = dedup.step(emb, errored, dd)
    col = lambda name: (table.column(name).to_numpy(zero_copy_only=False).astype(float)  # noqa: E731
                        if name in table.column_names else None)
    rpe = col("rpe_diff") if method == "recost" else None
    reasons = guard_reasons(table.column(schema.RESPONSE_TOKENS).to_numpy(), col("cond_loss"), col("uncond_loss"),
                            col("ifd_loss"), errored, guards, rpe)
    reasons[removed & ~errored] = DROP_DUPLICATE  # step 1 before step 2: a near-copy is reported as one
    score = ranking(table, method, reasons, recost.params(cfg))
    result = curate_select(score, True, reasons, emb, k, div)
    table = tables.with_columns(table, {"outcome": result.outcome, RANK_SCORE: score,
                                        "cluster": result.cluster, **dd_cols})
    counts = tables.label_counts(result.outcome)
    info = {
        "method": method,
        "budget_rows": k,
        "selected": int(len(result.order)),
        "outcomes": counts,
        "steps": steps(table, counts),
        "guards": guards.__dict__,
        "diversity": div.__dict__,
        "dedup": dd.__dict__ if dd else None,
    }
    if len(result.order) < k:
        log.warning("only %d rows passed every step for a budget of %d", len(result.order), k)
    return table, result, info


def steps(table: pa.Table, counts: dict[str, int]) -> list[dict[str, Any]]:
    """Rows each step removed, in pipeline order (what the report's first table shows)."""
    errors = tables.label_counts(
        [e.split(":")[0] for e in table.column(schema.ERROR).to_pylist() if e is not None]
    )
    exact = errors.pop(schema.E_DUPLICATE, 0)
    rows = [
        {"step": "errors (unreadable input, missing fields, too long, scorer failures)", "removed": sum(errors.values())},
        {"step": "exact repeats (data.drop_duplicates)", "removed": exact},
        {"step": "near-copies (dedup=semantic)", "removed": counts.get(DROP_DUPLICATE, 0)},
        *({"step": f"guard: {g.removeprefix('guard_')}", "removed": counts.get(g, 0)} for g in GUARDS),
        {"step": "no score (score_nan)", "removed": counts.get("score_nan", 0)},
        {"step": "ranked below the budget", "removed": counts.get("below_budget", 0)},
        {"step": "selected", "removed": None, "kept": counts.get("selected", 0)},
    ]
    return rows


def finish(run: PoolRun, staged: Staged, table: pa.Table, emb: np.ndarray, method: str,
           extra: dict[str, Any]) -> Result:
    """Select, write every output, the manifest and the report."""
    cfg, out = run.cfg, run.out
    with timed(run.timings, "select"):
        table, result, info = curate_table(table, emb, cfg, method)
        writers.write_parquet(table, out / SCORES_FILE)
        n_sel = writers.write_selected(staged.shards, result.order, out / SELECTED_FILE, table, out / SELECTED_TABLE)
    m = run.write_manifest(staged, curate=info, selection=info, **extra)
    write_report(out, table, result, info, emb, int(cfg.seed), {
        "input": m["input"], "model": m["model"]["name"], "method": method,
        "budget": f"{cfg.selection.budget} -> {info['budget_rows']} rows", "outcomes": info["outcomes"],
        "timings_s": run.timings})
    log.info("selected %d of %d rows -> %s", n_sel, staged.n_rows, out / SELECTED_FILE)
    return Result(out, staged.n_rows, n_sel, info["outcomes"], run.timings)


def steps_html(rows: list[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{r['step']}</td><td>{r['removed'] if r['removed'] is not None else ''}</td>"
        f"<td>{r.get('kept', '')}</td></tr>" for r in rows
    )
    return ("<h2>What each step removed</h2><table class='arms'><tr><th>step</th><th>rows removed</th>"
            f"<th>rows kept</th></tr>{body}</table>")


def write_report(out: Path, table: pa.Table, result: CurateResult, info: dict[str, Any], emb: np.ndarray,
                 seed: int, summary: dict[str, Any]) -> Path:
    score = table.column(RANK_SCORE).to_numpy(zero_copy_only=False).astype(float)
    outcomes, hist = out / PLOTS[0], out / PLOTS[1]
    report.plot_counts(info["outcomes"], "rows by outcome (selected / step that removed them)", outcomes)
    report.plot_histogram(score, None, float(np.nanmin(score[result.order])) if len(result.order) else None,
                          f"{info['method']} ranking score", hist)
    errored = tables.errored(table)
    section, plot, _ = report.baseline_section(
        out, "curate", result.order, table.column(schema.RESPONSE_TOKENS).to_numpy(), ~errored, seed,
        score, f"{info['method']} ranking score", emb, result.cluster if (result.cluster >= 0).any() else None,
    )
    headline, examples = report.run_examples(out, table, score, f"{info['method']} ranking score")
    imgs = [(PLOTS[0], "rows by outcome"), (PLOTS[1], "the ranking score, with the lowest selected"), plot]
    return report.write_report(out, "Winnow curate: dedup → guard → rank → diversity", summary, imgs, None,
                               [steps_html(info["steps"]), examples, section], headline)


METHOD = Method("curate", PASSES["ifd"], WRITES, rank=rank_by(RANK_SCORE, descending=True))


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("curate", run)


if __name__ == "__main__":
    main()
