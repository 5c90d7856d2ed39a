"""IFD / Superfiltering: score every row (conditioned + unconditioned passes), keep the best.

python -m jobs.ifd data.path=train.jsonl selection.budget=0.05 output_dir=out/
python -m jobs.ifd method=superfilter ...        # template-free, perplexity ratio
python -m jobs.ifd method=cherry ...             # Cherry LLM reference semantics
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jobs import dry_run, merge, report, settings, skeleton, specs
from jobs.ifd_report import OUTCOME, PLOTS, ReportParts, report_streamed, write_report
from jobs.method import Method, ranked_selected
from jobs.pipeline import run_stage, shard_item
from jobs.skeleton import PoolRun, Result, timed
from records import shards, tables, writers
from records.layout import CARD_FILE, RECORDS_DIR, REPORT_FILE, SCORES_FILE, SELECTED_FILE, SELECTED_TABLE, SHARDS_DIR
from records.staging import Staged
from scoring.models import content_key, model_identity
from selection.budget import resolve_budget
from selection.scores import IFD_SCORES, ifd_columns
from selection.semdedup import DROP_DUPLICATE
from selection.topk import DROP_BUDGET, KEPT, Selection, row_outcomes, top_rows

log = logging.getLogger(__name__)

RESELECT_WRITES = (SCORES_FILE, SELECTED_FILE, SELECTED_TABLE, CARD_FILE, "manifest.json", REPORT_FILE, *PLOTS)
# top-level names this job writes under output_dir (records.rundir: owned by the run, nothing else touched)
WRITES = (RECORDS_DIR, SHARDS_DIR, *RESELECT_WRITES)
EMPTY_SELECTION = (
    "NO ROWS SELECTED: {n_scored} rows were scored but none passed the filters "
    "(selection.max_score={max_score}, min_score={min_score}); selected.jsonl is empty"
)


def validate(cfg: Any) -> None:
    """Fail at start, naming the valid choices, before any expensive work."""
    settings.validate_common(cfg)
    settings.check_budget(cfg)
    settings.render_config(cfg)
    selection_settings(cfg).check()


def run(cfg: Any) -> Result:
    """Run the whole IFD job for a composed config (callable from tests without Hydra)."""
    with skeleton.pool_run(cfg, "ifd", WRITES, validate) as run:
        return score_and_select(run)


def score_and_select(run: PoolRun, extra: dict[str, np.ndarray] | None = None) -> Result:
    """Stage, score (resumable by shard), select, write outputs + manifest + report. ``extra``: row-aligned
    columns added to the scores before selecting (Cherry's dedup columns)."""
    cfg, out, t = run.cfg, run.out, run.timings
    spec, res = specs.scorer_spec(cfg, run.model_path, run.rc), specs.scorer_resources(cfg)
    identity = model_identity(run.model_path, cfg.model.name)
    if cfg.get("dry_run"):  # stage + tokenise + a pilot forward; the shards of an earlier run stay as they are
        dry_run.refuse_finished(run)
        with timed(t, "read"):
            staged = run.stage()
        return dry_run.finish(run, staged, spec, res)
    staged, shard_dir, reused, scored = stage_and_score(run, spec, identity)
    sel = selection_settings(cfg)
    with timed(t, "select"):  # two streamed passes over the shards: the driver keeps O(budget), not O(rows)
        ranked, written, info = select_streamed(run, staged, shard_dir, sel, extra)
    m = run.write_manifest(
        staged,
        model=identity,
        selection=info,
        **scoring_record(cfg, spec, ranked.tokens),
        shards={
            "total": len(staged.shards),
            "reused": reused,
            "scored": scored,
            "rows_per_shard": staged.rows_per_shard,
        },
    )
    report_streamed(
        out,
        ReportParts(ranked, written, info["budget_rows"]),
        sel,
        info,
        int(cfg.seed),
        {
            "input": m["input"],
            "model": identity["name"],
            "variant": cfg.method.variant,
            "template": run.rc.template,
            "budget": f"{sel.budget} -> {info['budget_rows']} rows",
            "outcomes": info["outcomes"],
            "timings_s": t,
        },
    )
    n_sel = info["selected"]
    log.info("selected %d of %d rows -> %s", n_sel, staged.n_rows, out / SELECTED_FILE)
    return Result(out, staged.n_rows, n_sel, info["outcomes"], t)


def stage_and_score(run: PoolRun, spec: specs.ScorerSpec, identity: dict[str, Any]) -> tuple[Staged, Path, int, int]:
    """Stage the input and score every shard without a completion record: (staged, the score shard
    directory, shards reused, shards scored)."""
    cfg = run.cfg
    with timed(run.timings, "read"):  # refuse a mismatching resume before anything in output_dir is overwritten
        shard_dir = shards.prepare(run.out, score_key(run, identity, spec), bool(cfg.resume))
        staged = run.stage()
    with timed(run.timings, "score"):
        reused, scored = score_missing(shard_dir, staged, spec, specs.scorer_resources(cfg), cfg)
    return staged, shard_dir, reused, scored


def select_streamed(run: PoolRun, staged: Staged, shard_dir: Path, sel: IFDSelection,
                    extra: dict[str, np.ndarray] | None) -> tuple[merge.Ranked, merge.Written, dict[str, Any]]:
    """Rank (pass 1), then write scores.parquet, selected.jsonl and selected.parquet (pass 2)."""
    sel.check()
    k = resolve_budget(sel.budget, staged.n_rows)
    label = lambda table: shard_outcomes(table, sel)  # noqa: E731
    ranked = merge.rank_pass(shard_dir, staged.bounds, derived, label, k, int(run.cfg.seed), extra)
    order = ranked.order(k)
    show = np.concatenate([order[: report.EXAMPLE_ROWS], ranked.below(len(order))])
    out = run.out
    written = merge.write_pass(shard_dir, staged.bounds, derived, label, OUTCOME, order, staged.shards,
                               merge.OutPaths(out / SCORES_FILE, out / SELECTED_FILE, out / SELECTED_TABLE),
                               extra, show)
    lowest = float(ranked.top["key"][: len(order)].min()) if len(order) else None
    info = describe(sel, k, written.counts, ranked.stats["scored"], ranked.stats["above"], lowest)
    return ranked, written, info


def scoring_record(cfg: Any, spec: specs.ScorerSpec, tokens: int) -> dict[str, Any]:
    """The manifest's scoring fields: how rows were scored and the tokens seen (prompt + response)."""
    return {
        "scoring": {
            "variant": cfg.method.variant,
            "backend": spec.backend,
            "render": asdict(spec.render),
            "device": spec.model.device,
        },
        "approx_tokens_scored": int(tokens),
    }


def score_missing(
    shard_dir: Path, staged: Staged, spec: specs.ScorerSpec, res: specs.Resources, cfg: Any
) -> tuple[int, int]:
    """Score every shard without a completion record; returns (shards reused, shards scored)."""
    from jobs.actor import ScoringActor

    return run_stage(
        shard_dir,
        staged.bounds,
        [shard_item(s) for s in staged.shards],
        ScoringActor,
        spec,
        res,
        cfg,
        "scored",
    )


def score_key(run: PoolRun, identity: dict[str, Any], spec: specs.ScorerSpec) -> dict[str, Any]:
    """What the scores depend on. The input's path, batch sizes, actor counts and the selection are
    deliberately absent: scores do not depend on them, so they may change between a run and its resume."""
    return {**run.input_parts(), "model": content_key(identity), **spec.identity()}


def derived(table: pa.Table) -> dict[str, np.ndarray]:
    """Mean losses and both IFD forms from the stored sums and counts."""
    return ifd_columns(*tables.sums_and_counts(table, "cond", "uncond"))


# ---- the selection stage (also what jobs.select runs on a finished IFD or Cherry run) ----


@dataclass
class IFDSelection:
    """The resolved selection settings (variant presets already applied)."""

    budget: float
    score: str
    max_score: float | None
    max_inclusive: bool
    min_score: float | None
    warn_above_fraction: float = 0.3

    def check(self) -> None:
        if self.score not in IFD_SCORES:
            raise ValueError(f"unknown selection.score {self.score!r}; choose one of {', '.join(IFD_SCORES)}")


def selection_settings(cfg: Any, variant: str | None = None) -> IFDSelection:
    """``selection.*`` with the variant's presets filled in (the run's own variant when re-selecting)."""
    s, presets = cfg.selection, settings.variant_preset(variant or cfg.method.variant)
    pick = lambda key: presets[key] if s.get(key) is None else s.get(key)  # noqa: E731
    return IFDSelection(
        budget=s.budget,
        score=pick("score"),
        max_score=s.max_score,
        max_inclusive=bool(pick("max_inclusive")),
        min_score=s.min_score,
        warn_above_fraction=float(s.warn_above_fraction),
    )


def select_ifd(table: pa.Table, sel: IFDSelection) -> tuple[pa.Table, Selection, dict[str, Any]]:
    """Apply the IFD selection to a complete, position-sorted score table."""
    sel.check()
    score = table.column(sel.score).to_numpy(zero_copy_only=False).astype(np.float64)
    result, info = select_scores(score, tables.errored(table), merge.near_copies(table), sel)
    return tables.with_columns(table, {OUTCOME: result.outcome.astype(str)}), result, info


def select_scores(
    score: np.ndarray, errored: np.ndarray, copies: np.ndarray, sel: IFDSelection
) -> tuple[Selection, dict[str, Any]]:
    """The IFD selection on per-row arrays (the score named by ``sel.score``, error and copy masks)."""
    sel.check()
    k = resolve_budget(sel.budget, len(score))
    outcome = outcomes(score, errored, copies, sel)
    order = top_rows(score, np.flatnonzero(outcome == DROP_BUDGET), k)
    outcome[order] = KEPT
    result = Selection(order, outcome)
    n_scored, n_above = above_counts(score, errored, sel)
    lowest = float(score[order].min()) if len(order) else None
    return result, describe(sel, k, result.counts(), n_scored, n_above, lowest)


def outcomes(score: np.ndarray, errored: np.ndarray, copies: np.ndarray, sel: IFDSelection) -> np.ndarray:
    """Each row's outcome before the budget (row by row: a shard gives what the whole pool gives)."""
    out = row_outcomes(score, errored | copies, sel.max_score, sel.min_score, sel.max_inclusive)
    out[copies & ~errored] = DROP_DUPLICATE
    return out


def above_counts(score: np.ndarray, errored: np.ndarray, sel: IFDSelection) -> tuple[int, int]:
    """(rows with a finite score and no error, how many of them are above ``max_score``)."""
    scored = np.isfinite(score) & ~errored
    above = int((score[scored] > sel.max_score).sum()) if sel.max_score is not None else 0
    return int(scored.sum()), above


def shard_outcomes(table: pa.Table, sel: IFDSelection) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """:data:`jobs.merge.Label` of the IFD selection: (score, outcome before the budget, counts)."""
    score = table.column(sel.score).to_numpy(zero_copy_only=False).astype(np.float64)
    errored, copies = tables.errored(table), merge.near_copies(table)
    n_scored, n_above = above_counts(score, errored, sel)
    return score, outcomes(score, errored, copies, sel), {"scored": n_scored, "above": n_above}


def describe(sel: IFDSelection, k: int, counts: dict[str, int], n_scored: int, n_above: int,
             lowest: float | None) -> dict[str, Any]:
    """The manifest's selection record (and the warnings a user should see)."""
    above = n_above / n_scored if sel.max_score is not None and n_scored else 0.0
    if above > sel.warn_above_fraction:
        log.warning(
            "%.0f%% of scored rows have %s > %g: the template may not suit this model "
            "(Cherry#22); consider method.variant=superfilter or a chat template",
            100 * above,
            sel.score,
            sel.max_score,
        )
    n_sel = counts.get(KEPT, 0)
    info = {
        "budget_rows": k,
        "selected": n_sel,
        "outcomes": counts,
        "fraction_above_max": above,
        "lowest_selected_score": lowest,
    }
    if n_sel == 0 and k > 0:
        info["notice"] = EMPTY_SELECTION.format(n_scored=n_scored, max_score=sel.max_score, min_score=sel.min_score)
        log.warning("=" * 20 + " %s " + "=" * 20, info["notice"])
    elif n_sel < k:
        log.warning("only %d rows passed the filters for a budget of %d", n_sel, k)
    return info


def reselect(
    cfg: Any, table: pa.Table, prev: dict[str, Any], out: Path
) -> tuple[np.ndarray, dict[str, Any], pa.Table]:
    """``jobs.select`` on an IFD (or Cherry) run: new budget / score / thresholds, no rescoring."""
    if "rpe" in cfg.selection:
        raise ValueError("selection=recost needs the scores.parquet of a jobs.recost run")
    variant = prev.get("config", {}).get("method", {}).get("variant", "default")
    sel = selection_settings(cfg, variant)
    table, result, info = select_ifd(table, sel)
    writers.write_parquet(table, out / SCORES_FILE)
    seed = int(prev.get("config", {}).get("seed", 0))
    write_report(
        out,
        table,
        sel,
        info,
        seed,
        {"variant": variant, "selection": sel.__dict__, **info, "rows": table.num_rows},
    )
    return result.order, {**info, "variant": variant, "selection_settings": sel.__dict__}, table


def rank(table: pa.Table, manifest: dict[str, Any]) -> np.ndarray:
    """An IFD run's picks, highest score first (the score its last selection used)."""
    last = manifest.get("selection", {}).get("selection_settings", {}).get("score")
    if last is None:
        cfg = settings.as_config(manifest["config"])
        last = selection_settings(cfg, cfg.method.variant).score
    return ranked_selected(table, last, descending=True)


METHOD = Method("ifd", ("cond", "uncond"), WRITES, reselect, RESELECT_WRITES, rank=rank)


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("ifd", run)


if __name__ == "__main__":
    main()
