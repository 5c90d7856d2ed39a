"""DiverseEvol: grow a subset round by round with k-center greedy in the model's own embedding space.

    python -m jobs.diverse_evol data.path=pool.jsonl evol.init=100 evol.per_round=100 evol.rounds=10 \
        output_dir=out/

Round r: fine-tune (Ray Train) on the current subset → embed the whole pool with that model (Ray
Data actors; mean of the last hidden state over prompt + response + EOS) → k-center greedy adds
``per_round`` rows farthest from the subset. Each completed round writes ``rounds/round-XX/round.json``
(the subset, the rows added, the covering radius before and after); a rerun resumes after the last.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jobs import report, settings, skeleton, specs
from jobs.embed import embed_staged
from jobs.method import Method, rank_by
from jobs.skeleton import PoolRun, Result, timed
from jobs.train import fine_tune, train_params
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
from records.staging import Staged, subset_rows
from scoring.models import content_key, model_identity
from scoring.passes import RenderConfig
from selection.coverage import nearest_selected
from selection.kcenter import kcenter_greedy
from selection.baselines import coverage_clusters

log = logging.getLogger(__name__)

ROUND_FILE = "round.json"
ROUNDS = "rounds"
RADIUS_PLOT = "radius.png"
LENGTHS_FILE = "response_tokens.npy"
WRITES = (
    RECORDS_DIR,
    ROUNDS,
    SCORES_FILE,
    SELECTED_FILE,
    SELECTED_TABLE,
    CARD_FILE,
    MANIFEST_FILE,
    REPORT_FILE,
    RADIUS_PLOT,
    report.BASELINES_PLOT,
)


def round_dir(out: Path, r: int) -> Path:
    return out / ROUNDS / f"round-{r:02d}"


def last_round(out: Path) -> int:
    """Index of the last completed round, -1 when none."""
    done = [int(p.parent.name.split("-")[1]) for p in (out / ROUNDS).glob(f"round-*/{ROUND_FILE}")]
    return max(done) if done else -1


def kcenter_device(cfg: Any) -> str:
    """k-center runs in the driver: on its GPU when the job runs on CUDA and the driver has one."""
    import torch

    return "cuda" if settings.device(cfg) == "cuda" and torch.cuda.is_available() else "cpu"


def record_errors(staged: Staged) -> pa.ChunkedArray:
    """The staged rows' error reasons, in position order (null = valid row)."""
    return tables.shard_columns(staged.shards, [schema.ERROR]).column(schema.ERROR)


def valid_positions(staged: Staged, errors: pa.ChunkedArray | None = None) -> np.ndarray:
    """Positions of the rows without an error reason (staged positions are 0..n-1 in order)."""
    errors = record_errors(staged) if errors is None else errors
    return np.flatnonzero(errors.is_null().to_numpy(zero_copy_only=False)).astype(np.int64)


def initial_subset(valid: np.ndarray, k: int, seed: int) -> list[int]:
    """Seeded random draw of ``k`` valid positions (sorted, as the reference's random init)."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(valid, size=min(k, len(valid)), replace=False).tolist())


def embed_pool(staged: Staged, model_path: Path, out: Path, cfg: Any, rc: RenderConfig) -> np.ndarray:
    """``[n_rows, hidden]`` float32 embeddings of every row (zeros for rows with an error), computed
    afresh with ``model_path`` (the shard files are scratch: removed before and after; the vectors stay
    in ``out/embeddings`` and the rows' response token counts in ``out/response_tokens.npy``)."""
    d = out / SHARDS_DIR
    shutil.rmtree(d, ignore_errors=True)
    spec = specs.embed_spec(cfg, model_path, rc, "full", cfg.evol.pooling)
    t, E = embed_staged(staged, spec, specs.hf_resources(cfg), d, out / EMBEDDINGS_DIR, cfg)
    writers.save_npy(t.column(schema.RESPONSE_TOKENS).to_numpy(), out / LENGTHS_FILE)
    shutil.rmtree(d, ignore_errors=True)
    return E


def covering_radius(E: np.ndarray, valid: np.ndarray, subset: list[int]) -> float:
    return float(nearest_selected(E[valid], np.searchsorted(valid, subset)).max())


def run_round(
    r: int,
    subset: list[int],
    staged: Staged,
    valid: np.ndarray,
    base: Path,
    out: Path,
    cfg: Any,
    rc: RenderConfig,
) -> dict[str, Any]:
    """Train on ``subset``, embed, add ``per_round`` rows; returns the round record (also written)."""
    d = round_dir(out, r)
    d.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with timed(timings, "train"):
        start = base if not cfg.evol.warm_start or r == 0 else round_dir(out, r - 1) / "model"
        tlog = fine_tune(
            subset_rows(staged, subset, d / "train_rows.parquet"),
            start,
            d / "model",
            train_params(cfg, int(cfg.evol.epochs)),
            rc,
            cfg,
        )
    with timed(timings, "embed"):
        E = embed_pool(staged, d / "model", d, cfg, rc)
    with timed(timings, "kcenter"), skeleton.compute_heap():
        before = covering_radius(E, valid, subset)
        res = kcenter_greedy(
            E[valid], int(cfg.evol.per_round), initial=np.searchsorted(valid, subset), seed=int(cfg.seed),
            device=kcenter_device(cfg),
        )
        added = valid[res.order].tolist()
        after = float(res.radius[-1]) if len(res.radius) else before
        # the baseline a user wants to beat: a random subset of the same size, same embedding space
        rng = np.random.default_rng(int(cfg.seed) + 1000 + r)
        rand = rng.choice(valid, len(subset) + len(added), replace=False)
        radius_random = covering_radius(E, valid, sorted(rand.tolist()))
    rec = {
        "round": r,
        "subset": subset + added,
        "added": added,
        "radius_before": before,
        "radius_after": after,
        "radius_random_same_size": radius_random,
        "train_loss_first": tlog["losses"][0],
        "train_loss_last": tlog["losses"][-1],
        "train_examples": tlog["examples"],
        "timings_s": timings,
    }
    writers.write_json(rec, d / ROUND_FILE)
    return rec


def validate(cfg: Any) -> None:
    settings.validate_common(cfg)
    settings.render_config(cfg)
    train_params(cfg)


def rounds_key(run: PoolRun) -> dict[str, Any]:
    """What the rounds depend on (``evol.rounds`` may grow between a run and its resume)."""
    cfg = run.cfg
    evol = {k: v for k, v in skeleton.as_dict(cfg.evol).items() if k != "rounds"}
    return {
        "input_sha256": run.src.sha256,
        "model": content_key(model_identity(run.model_path, cfg.model.name)),
        "evol": evol,
        "train": skeleton.as_dict(cfg.train),
        "render": asdict(run.rc),
        "seed": int(cfg.seed),
    }


def run(cfg: Any) -> Result:
    """Rounds of train → embed → k-center until ``evol.rounds``; resumes after the last complete round."""
    with skeleton.pool_run(cfg, "diverse_evol", WRITES, validate) as run:
        out, base = run.out, run.model_path
        shards.prepare(out, rounds_key(run), bool(cfg.resume), ROUNDS)  # refuses to resume a different run
        staged = run.stage()
        errors = record_errors(staged)
        valid = valid_positions(staged, errors)
        done = last_round(out)
        subset = (
            json.loads((round_dir(out, done) / ROUND_FILE).read_text())["subset"]
            if done >= 0
            else initial_subset(valid, int(cfg.evol.init), int(cfg.seed))
        )
        if done >= 0:
            log.info("resuming after round %d (%d rows selected)", done, len(subset))
        records = [json.loads((round_dir(out, r) / ROUND_FILE).read_text()) for r in range(done + 1)]
        for r in range(done + 1, int(cfg.evol.rounds)):
            rec = run_round(r, subset, staged, valid, base, out, cfg, run.rc)
            records.append(rec)
            subset = rec["subset"]
            log.info(
                "round %d: +%d rows -> %d, covering radius %.4f -> %.4f",
                r,
                len(rec["added"]),
                len(subset),
                rec["radius_before"],
                rec["radius_after"],
            )
            prev = round_dir(out, r - 1) / "model"
            if r > 0 and not cfg.evol.save_checkpoints and prev.exists():
                shutil.rmtree(prev)  # only the last round's model is kept unless asked
            shutil.rmtree(round_dir(out, r - 1) / EMBEDDINGS_DIR, ignore_errors=True)  # the last round's stay
        return finish(run, staged, errors, subset, records)


def finish(
    run: PoolRun, staged: Staged, errors: pa.ChunkedArray, subset: list[int], records: list[dict[str, Any]]
) -> Result:
    """scores.parquet (``added_in_round`` per row), selected.jsonl, manifest and report."""
    out = run.out
    added_in = np.full(staged.n_rows, -1, dtype=np.int64)
    first = records[0] if records else {"subset": subset, "added": []}
    added_in[first["subset"][: len(first["subset"]) - len(first["added"])]] = 0  # the random initial subset
    for rec in records:
        added_in[rec["added"]] = rec["round"] + 1
    has_error = errors.is_valid().to_numpy(zero_copy_only=False)
    outcome = np.where(added_in >= 0, "selected", np.where(has_error, "error", "not_selected"))
    table = pa.table(
        {
            schema.POSITION: np.arange(staged.n_rows),
            schema.ERROR: errors.cast(pa.string()),
            "added_in_round": added_in,
            "outcome": outcome,
        }
    )
    writers.write_parquet(table, out / SCORES_FILE)
    n_sel = writers.write_selected(staged.shards, np.array(subset), out / SELECTED_FILE, table_path=out / SELECTED_TABLE)
    counts = tables.label_counts(outcome)
    manifest = run.write_manifest(
        staged,
        rounds=[{k: v for k, v in r.items() if k != "subset"} for r in records],
        selected=n_sel,
        outcomes=counts,
        final_model=str(round_dir(Path("."), records[-1]["round"]) / "model") if records else None,
    )
    if records:
        report.plot_rounds(
            [r["round"] for r in records],
            [len(r["subset"]) for r in records],
            [r["radius_after"] for r in records],
            out / RADIUS_PLOT,
        )
        sections, imgs = baselines(out, staged, records[-1]["round"], subset, ~has_error, int(run.cfg.seed))
        added = np.where(added_in >= 0, added_in, np.nan).astype(np.float64)
        headline, examples = report.run_examples(out, table, added, "round added (0 = initial)", descending=False)
        report.write_report(
            out,
            "Winnow DiverseEvol",
            {"selected": n_sel, "outcomes": counts, "rounds": manifest["rounds"]},
            [(RADIUS_PLOT, "covering radius (round's embedding space) and subset size per round"), *imgs],
            sections=[examples, *sections],
            headline=headline,
        )
    return Result(out, staged.n_rows, n_sel, counts, run.timings)


def baselines(
    out: Path, staged: Staged, last: int, subset: list[int], eligible: np.ndarray, seed: int
) -> tuple[list[str], list[tuple[str, str]]]:
    """The subset beside random and longest ones of its size, in the last round's embedding space
    (k-means clusters over it for the spread); nothing for a run whose last round predates it."""
    d = round_dir(out, last)
    if not (d / LENGTHS_FILE).exists() or not (d / EMBEDDINGS_DIR).exists():
        return [], []
    E = shards.load_embeddings(d / EMBEDDINGS_DIR, len(staged.shards)).astype(np.float32)
    clusters = coverage_clusters(E, eligible, seed)
    section, plot, _ = report.baseline_section(
        out,
        "diverse_evol",
        np.asarray(subset),
        np.load(d / LENGTHS_FILE),
        eligible,
        seed,
        emb=E,
        clusters=clusters,
    )
    return [section], [plot]


METHOD = Method("diverse_evol", (), WRITES, rank=rank_by("added_in_round"))  # earlier rounds first


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("diverse_evol", run)


if __name__ == "__main__":
    main()
