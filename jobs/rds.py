"""RDS+ (Ivison et al. 2025): select the pool rows most similar to a target set.

    python -m jobs.rds target.path=targets.jsonl data.path=pool.jsonl selection.budget=0.05 output_dir=out/

Stages: stage pool and target → embed both with the same model on Ray Data actors (position-weighted
mean of the last hidden state over each row's prompt + response + EOS; resumable by shard; float16
vectors kept) → faiss inner-product search of the unit vectors → ``rds.aggregate``: targets take turns
(``round_robin``) or each row's best similarity (``max``). Matches and deviations from the reference
code: README "RDS+".
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jobs import dedup, report, settings, skeleton, specs
from jobs.embed import embed_resumable
from jobs.method import Method, rank_by
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
from records.staging import Staged, inspect_input, stage_input
from scoring.embed import POOLINGS
from scoring.models import content_key, model_identity
from selection.budget import resolve_budget
from selection.baselines import coverage_clusters
from selection.rds import AGGREGATES, rds_select

log = logging.getLogger(__name__)

TARGET_DIR = "target"
PLOTS = ("rds_hist.png", "outcomes.png", report.BASELINES_PLOT)
RESELECT_WRITES = (SCORES_FILE, SELECTED_FILE, SELECTED_TABLE, CARD_FILE, MANIFEST_FILE, REPORT_FILE, *PLOTS)
WRITES = (RECORDS_DIR, SHARDS_DIR, EMBEDDINGS_DIR, TARGET_DIR, *RESELECT_WRITES)


def target_path(cfg: Any) -> Path:
    if not cfg.target.path:
        raise ValueError("target.path is required: the target set (the tasks to select for)")
    return settings.resolve_data_path(cfg.target.path)


def check_rds(r: Any) -> None:
    if r.aggregate not in AGGREGATES:
        raise ValueError(f"unknown rds.aggregate {r.aggregate!r}; choose one of {', '.join(AGGREGATES)}")
    if r.pooling not in POOLINGS:
        raise ValueError(f"unknown rds.pooling {r.pooling!r}; choose one of {', '.join(POOLINGS)}")


def validate(cfg: Any) -> None:
    settings.validate_common(cfg)
    settings.check_budget(cfg)
    settings.render_config(cfg)
    check_rds(cfg.rds)
    dedup.params(cfg)
    validate_target(cfg)


def validate_target(cfg: Any) -> None:
    """A missing, empty or unreadable target set is refused before anything is written."""
    path = target_path(cfg)
    try:
        inspect_input(path, cfg.target.format)
    except (OSError, ValueError) as e:
        raise ValueError(f"target set {path}: {e}") from None


def embed_key(run: PoolRun, sha256: str, pooling: str) -> dict[str, Any]:
    """What a set's embeddings depend on (not the budget, aggregate or dedup: those are re-selected)."""
    data = {k: v for k, v in skeleton.as_dict(run.cfg.data).items() if k != "path"}
    return {
        "input_sha256": sha256,
        "data": data,
        "model": content_key(model_identity(run.model_path, run.cfg.model.name)),
        "render": asdict(run.rc),
        "pooling": pooling,
    }


def embed_set(run: PoolRun, staged: Staged, base: Path, key: dict[str, Any]) -> tuple[pa.Table, np.ndarray]:
    """Embed one staged set under ``base`` (``shards/`` + ``embeddings/``), resumable by shard."""
    spec = specs.embed_spec(run.cfg, run.model_path, run.rc, "full", str(run.cfg.rds.pooling))
    key = {**key, "shards": staged.bounds}
    return embed_resumable(staged, spec, specs.hf_resources(run.cfg), base, key, run.cfg)


def stage_target(run: PoolRun) -> Staged:
    """The target set staged under ``target/records`` (every row kept, repeats too)."""
    cfg = run.cfg
    return stage_input(target_path(cfg), run.out / TARGET_DIR, cfg.target.format, settings.fields(cfg), False)


def run(cfg: Any) -> Result:
    with skeleton.pool_run(cfg, "rds", WRITES, validate, inputs=[target_path(cfg)]) as run:
        pooling = str(cfg.rds.pooling)
        with timed(run.timings, "read"):
            staged, tstaged = run.stage(), stage_target(run)
        with timed(run.timings, "embed_target"):
            ttable, T = embed_set(run, tstaged, run.out / TARGET_DIR, embed_key(run, tstaged.sha256, pooling))
        T = usable_targets(ttable, T)
        with timed(run.timings, "embed_pool"):
            ptable, P = embed_set(run, staged, run.out, embed_key(run, staged.sha256, pooling))
        with timed(run.timings, "select"):
            table, order, info = select(
                ptable, P, T, cfg.selection.budget, str(cfg.rds.aggregate), dedup.params(cfg)
            )
            writers.write_parquet(table, run.out / SCORES_FILE)
            n_sel = writers.write_selected(staged.shards, order, run.out / SELECTED_FILE, table, run.out / SELECTED_TABLE)
        m = run.write_manifest(
            staged,
            model=model_identity(run.model_path, cfg.model.name),
            target={
                "path": str(target_path(cfg).resolve()),
                "sha256": tstaged.sha256,
                "rows": tstaged.n_rows,
                "usable": int(len(T)),
            },
            selection=info,
            embeddings_dir=EMBEDDINGS_DIR,
        )
        write_report(
            run.out,
            table,
            order,
            P,
            info,
            int(cfg.seed),
            {
                "input": m["input"],
                "target": m["target"],
                "model": m["model"]["name"],
                "budget": f"{cfg.selection.budget} -> {info['budget_rows']} rows",
                "aggregate": cfg.rds.aggregate,
                "outcomes": info["outcomes"],
                "timings_s": run.timings,
            },
        )
        log.info(
            "selected %d of %d rows for %d targets -> %s",
            n_sel,
            staged.n_rows,
            len(T),
            run.out / SELECTED_FILE,
        )
        return Result(run.out, staged.n_rows, n_sel, info["outcomes"], run.timings)


def usable_targets(ttable: pa.Table, T: np.ndarray) -> np.ndarray:
    """The target rows without an error reason; none at all is an error."""
    bad = tables.errored(ttable)
    if bad.all():
        reasons = sorted({str(e).split(":")[0] for e in ttable.column(schema.ERROR).to_pylist() if e})
        raise ValueError(f"the target set has no usable rows ({', '.join(reasons)})")
    if bad.any():
        log.warning("%d of %d target rows have errors and are left out", int(bad.sum()), len(bad))
    return T[~bad]


def select(
    ptable: pa.Table, P: np.ndarray, T: np.ndarray, budget: float, aggregate: str, dp: Any
) -> tuple[pa.Table, np.ndarray, dict[str, Any]]:
    """RDS over the pool's embedding table (complete, position-sorted): (scores table, order, info)."""
    k = resolve_budget(budget, ptable.num_rows)
    errored = tables.errored(ptable)
    removed, extra = dedup.step(P, errored, dp)
    res = rds_select(P, T, ~(errored | removed), k, aggregate)
    outcome = dedup.relabel(res.outcome, removed)
    rank = np.full(len(P), -1, dtype=np.int64)
    rank[res.order] = np.arange(len(res.order))
    base = ptable.select([schema.ID, schema.POSITION, schema.ERROR, schema.RESPONSE_TOKENS])
    table = tables.with_columns(
        base,
        {
            "rds_score": res.score,
            "rds_nearest_target": res.nearest_target,
            "rds_picked_by": res.picked_by,
            "rds_rank": rank,
            "outcome": outcome,
            **extra,
        },
    )
    per_target = (
        np.bincount(res.picked_by[res.order], minlength=len(T))
        if aggregate == "round_robin"
        else np.bincount(res.nearest_target[res.order], minlength=len(T))
    )
    info = {
        "budget_rows": k,
        "selected": int(len(res.order)),
        "aggregate": aggregate,
        "targets": int(len(T)),
        "outcomes": tables.label_counts(outcome),
        "targets_with_picks": int((per_target > 0).sum()),
        "picks_per_target": {"min": int(per_target.min()), "max": int(per_target.max())},
        "lowest_selected_score": float(res.score[res.order].min()) if len(res.order) else None,
    }
    return table, res.order, info


def write_report(
    out: Path,
    table: pa.Table,
    order: np.ndarray,
    P: np.ndarray,
    info: dict[str, Any],
    seed: int,
    summary: dict[str, Any],
) -> Path:
    score = table.column("rds_score").to_numpy(zero_copy_only=False).astype(np.float64)
    report.plot_histogram(
        score, None, info["lowest_selected_score"], "best cosine to a target", out / PLOTS[0]
    )
    report.plot_counts(info["outcomes"], "rows by outcome", out / PLOTS[1])
    eligible = ~tables.errored(table)
    clusters = coverage_clusters(P, eligible, seed)
    section, plot, _ = report.baseline_section(
        out,
        "rds",
        order,
        table.column(schema.RESPONSE_TOKENS).to_numpy(),
        eligible,
        seed,
        score,
        "best cosine to a target",
        P.astype(np.float32),
        clusters,
    )
    imgs = [
        (PLOTS[0], "each pool row's best cosine to a target (line: lowest selected)"),
        (PLOTS[1], "rows by outcome"),
        plot,
    ]
    headline, examples = report.run_examples(out, table, score, "best cosine to a target")
    return report.write_report(
        out, "Winnow RDS+ selection", summary, imgs, sections=[examples, section], headline=headline
    )


def reselect(
    cfg: Any, table: pa.Table, prev: dict[str, Any], out: Path
) -> tuple[np.ndarray, dict[str, Any], pa.Table]:
    """``jobs.select`` on an RDS run: another budget, ``rds.aggregate`` or dedup; no re-embedding."""
    pc = settings.as_config(prev.get("config", {}))
    aggregate = str((cfg.get("rds") or {}).get("aggregate") or pc.rds.aggregate)
    check_rds(settings.as_config({"aggregate": aggregate, "pooling": pc.rds.pooling}))
    n_shards = len(list((out / RECORDS_DIR).glob("part-*.parquet")))
    P = shards.load_embeddings(out / EMBEDDINGS_DIR, n_shards).astype(np.float32)
    t_shards = len(list((out / TARGET_DIR / RECORDS_DIR).glob("part-*.parquet")))
    ttable = tables.validate_complete(
        shards.load_all(out / TARGET_DIR / SHARDS_DIR, t_shards), int(prev["target"]["rows"])
    )
    T = usable_targets(ttable, shards.load_embeddings(out / TARGET_DIR / EMBEDDINGS_DIR, t_shards))
    dp = dedup.params(cfg if cfg.get("dedup") is not None else pc)
    new, order, info = select(table, P, T.astype(np.float32), cfg.selection.budget, aggregate, dp)
    writers.write_parquet(new, out / SCORES_FILE)
    write_report(out, new, order, P, info, int(pc.get("seed", 0)), {"aggregate": aggregate, **info})
    return order, info, new


METHOD = Method(
    "rds",
    (),
    WRITES,
    reselect,
    RESELECT_WRITES,
    linked=(RECORDS_DIR, EMBEDDINGS_DIR, TARGET_DIR),
    rank=rank_by("rds_rank"),
)


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("rds", run)


if __name__ == "__main__":
    main()
