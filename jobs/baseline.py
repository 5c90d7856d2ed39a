"""The baselines a selection must beat, run like any method: a seeded random subset, or the rows with
the longest responses (response tokens under the scorer's tokenizer and template).

    python -m jobs.baseline baseline=random  data.path=pool.jsonl selection.budget=0.05 output_dir=out/
    python -m jobs.baseline baseline=longest data.path=pool.jsonl selection.budget=1000 output_dir=out/

One tokenisation pass on CPU actors (no model forward), resumable by shard; same outputs as every job
(scores.parquet with an outcome per row, selected.jsonl, manifest.json, report.html).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jobs import report, settings, skeleton, specs
from jobs.method import Method, rank_by
from jobs.pipeline import run_stage, shard_item
from jobs.skeleton import Result, timed
from records import schema, shards, tables, writers
from records.layout import MANIFEST_FILE, RECORDS_DIR, REPORT_FILE, SCORES_FILE, SELECTED_FILE, SELECTED_TABLE, CARD_FILE, SHARDS_DIR
from scoring.models import content_key, model_identity
from selection.baselines import BASELINES, baseline_subset
from selection.budget import resolve_budget

log = logging.getLogger(__name__)

PASSES = ("cond", "uncond")  # the scorer's rendering (method=cherry needs both); counts come from cond
RESELECT_WRITES = (SCORES_FILE, SELECTED_FILE, SELECTED_TABLE, CARD_FILE, MANIFEST_FILE, REPORT_FILE, report.BASELINES_PLOT)
WRITES = (RECORDS_DIR, SHARDS_DIR, *RESELECT_WRITES)
RANK = "baseline_rank"  # pick order among the selected rows (longest: 0 = longest); -1 not selected


def check_kind(kind: Any) -> str:
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
    return str(kind)


def validate(cfg: Any) -> None:
    settings.validate_common(cfg)
    settings.check_budget(cfg)
    settings.render_config(cfg, PASSES)
    check_kind(cfg.baseline)


def run(cfg: Any) -> Result:
    """Tokenise every row (resumable), pick the baseline subset, write the outputs."""
    with skeleton.pool_run(cfg, "baseline", WRITES, validate, PASSES) as run:
        spec = specs.scorer_spec(cfg, run.model_path, run.rc)
        identity = model_identity(run.model_path, cfg.model.name)
        with timed(run.timings, "read"):
            key = {**run.input_parts(), "tokenizer": content_key(identity), "render": asdict(spec.render)}
            shard_dir = shards.prepare(run.out, key, bool(cfg.resume))
            staged = run.stage()
        with timed(run.timings, "tokenize"):
            from jobs.actor import TokenCountActor

            res = specs.Resources(specs.hf_resources(cfg).actors, 1.0, 0.0)
            run_stage(
                shard_dir,
                staged.bounds,
                [shard_item(s) for s in staged.shards],
                TokenCountActor,
                spec,
                res,
                cfg,
                "tokenized",
            )
        with timed(run.timings, "select"):
            table = tables.validate_complete(shards.load_all(shard_dir, len(staged.shards)), staged.n_rows)
            order, table, info = select(table, check_kind(cfg.baseline), cfg.selection.budget, int(cfg.seed))
            writers.write_parquet(table, run.out / SCORES_FILE)
            n_sel = writers.write_selected(staged.shards, order, run.out / SELECTED_FILE, table, run.out / SELECTED_TABLE)
        m = run.write_manifest(
            staged, model=identity, baseline=cfg.baseline, seed=int(cfg.seed), selection=info
        )
        write_report(
            run.out,
            table,
            order,
            info,
            cfg.baseline,
            int(cfg.seed),
            {
                "input": m["input"],
                "baseline": cfg.baseline,
                "seed": int(cfg.seed),
                "budget": f"{cfg.selection.budget} -> {info['budget_rows']} rows",
                "outcomes": info["outcomes"],
                "timings_s": run.timings,
            },
        )
        log.info(
            "selected %d of %d rows (%s) -> %s", n_sel, staged.n_rows, cfg.baseline, run.out / SELECTED_FILE
        )
        return Result(run.out, staged.n_rows, n_sel, info["outcomes"], run.timings)


def select(
    table: pa.Table, kind: str, budget: float, seed: int
) -> tuple[np.ndarray, pa.Table, dict[str, Any]]:
    """The baseline's picks over a complete token-count table: (order, table with outcome/rank, info)."""
    k = resolve_budget(budget, table.num_rows)
    errored = tables.errored(table)
    lengths = table.column(schema.RESPONSE_TOKENS).to_numpy(zero_copy_only=False)
    order = baseline_subset(kind, lengths, ~errored, k, seed)
    rank = np.full(table.num_rows, -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    outcome = np.where(rank >= 0, "selected", np.where(errored, "error", "not_selected"))
    table = tables.with_columns(table, {"outcome": outcome.astype(str), RANK: rank})
    counts = tables.label_counts(outcome)
    info = {
        "budget_rows": k,
        "selected": int(len(order)),
        "outcomes": counts,
        "mean_response_tokens_selected": float(lengths[order].mean()) if len(order) else None,
        "mean_response_tokens_pool": float(lengths[~errored].mean()) if (~errored).any() else None,
    }
    return order, table, info


def write_report(
    out: Path,
    table: pa.Table,
    order: np.ndarray,
    info: dict[str, Any],
    kind: str,
    seed: int,
    summary: dict[str, Any],
) -> Path:
    lengths = table.column(schema.RESPONSE_TOKENS).to_numpy(zero_copy_only=False)
    section, plot, _ = report.baseline_section(out, kind, order, lengths, ~tables.errored(table), seed)
    rank = None
    if RANK in table.column_names:  # -1: not selected (no rank)
        rank = table.column(RANK).to_numpy(zero_copy_only=False).astype(np.float64)
        rank[rank < 0] = np.nan
    headline, examples = report.run_examples(out, table, rank, f"{kind} rank (0 = first)", descending=False)
    return report.write_report(
        out, f"Winnow baseline: {kind}", summary, [plot], sections=[examples, section], headline=headline
    )


def reselect(
    cfg: Any, table: pa.Table, prev: dict[str, Any], out: Path
) -> tuple[np.ndarray, dict[str, Any], pa.Table]:
    """``jobs.select`` on a baseline run: another budget, ``baseline`` or ``seed`` (null: the run's)."""
    pc = prev.get("config", {})
    kind = check_kind(cfg.get("baseline") or pc.get("baseline"))
    seed = int(pc.get("seed", 0) if cfg.get("seed") is None else cfg.seed)
    order, table, info = select(table, kind, cfg.selection.budget, seed)
    writers.write_parquet(table, out / SCORES_FILE)
    write_report(out, table, order, info, kind, seed, {"baseline": kind, "seed": seed, **info})
    return order, {**info, "baseline": kind, "seed": seed}, table


METHOD = Method("baseline", (), WRITES, reselect, RESELECT_WRITES, rank=rank_by(RANK))


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("baseline", run)


if __name__ == "__main__":
    main()
