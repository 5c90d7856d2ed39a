"""DiverseEvol: grow a subset round by round with k-center greedy in the model's own embedding space.

    python -m jobs.diverse_evol data.path=pool.jsonl evol.init=100 evol.per_round=100 evol.rounds=10 output_dir=out/

Round r: fine-tune (Ray Train) on the current subset → embed the whole pool with that model (Ray
Data actors; mean of the last hidden state over prompt + response + EOS) → k-center greedy adds
``per_round`` rows farthest from the subset. Each completed round writes ``rounds/round-XX/round.json``
(the subset, the rows added, the covering radius before and after); a rerun resumes after the last.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs import outputs, report, rundir, settings, shards
from jobs.ifd import Result, timed
from jobs.embed import embed_rows
from jobs.staging import RECORDS_DIR, Staged, inspect_input, stage_input
from jobs.train import fine_tune, train_params
from scoring import schema
from scoring.models import resolve_model
from selection.coverage import nearest_selected
from selection.kcenter import kcenter_greedy

log = logging.getLogger(__name__)

ROUND_FILE = "round.json"
ROUNDS = "rounds"
RADIUS_PLOT = "radius.png"
WRITES = (RECORDS_DIR, ROUNDS, outputs.SCORES, outputs.SELECTED, outputs.MANIFEST, report.REPORT, RADIUS_PLOT)


def round_dir(out: Path, r: int) -> Path:
    return out / ROUNDS / f"round-{r:02d}"


def last_round(out: Path) -> int:
    """Index of the last completed round, -1 when none."""
    done = [int(p.parent.name.split("-")[1]) for p in (out / ROUNDS).glob(f"round-*/{ROUND_FILE}")]
    return max(done) if done else -1


def record_errors(staged: Staged) -> pa.ChunkedArray:
    """The staged rows' error reasons, in position order (null = valid row)."""
    return pa.concat_tables([pq.read_table(s, columns=[schema.ERROR]) for s in staged.shards]).column(schema.ERROR)


def valid_positions(staged: Staged, errors: pa.ChunkedArray | None = None) -> np.ndarray:
    """Positions of the rows without an error reason (staged positions are 0..n-1 in order)."""
    errors = record_errors(staged) if errors is None else errors
    return np.flatnonzero(errors.is_null().to_numpy(zero_copy_only=False)).astype(np.int64)


def initial_subset(valid: np.ndarray, k: int, seed: int) -> list[int]:
    """Seeded random draw of ``k`` valid positions (sorted, as the reference's random init)."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(valid, size=min(k, len(valid)), replace=False).tolist())


def subset_rows(staged: Staged, positions: list[int], path: Path) -> Path:
    """Write the records at ``positions`` (the training rows) to ``path``, filtering shard by shard."""
    want = pa.array(sorted(positions), pa.int64())
    parts = []
    for s in staged.shards:
        t = pq.read_table(s, columns=schema.RECORD_COLUMNS)
        parts.append(t.filter(pc.is_in(t.column(schema.POSITION), value_set=want)))
    outputs.write_parquet(pa.concat_tables(parts), path)
    return path


def embed_pool(staged: Staged, model_path: Path, out: Path, cfg: Any, rc_spec: dict[str, Any]) -> np.ndarray:
    """``[n_rows, hidden]`` float32 embeddings of every row (zeros for rows with an error), computed
    afresh with ``model_path`` (the shard files are scratch: removed before and after)."""
    d = out / "shards"
    shutil.rmtree(d, ignore_errors=True)
    _, E = embed_rows(staged, model_path, d, out / "embeddings", cfg, rc_spec, "full", cfg.evol.pooling)
    shutil.rmtree(d, ignore_errors=True)
    return E


def covering_radius(E: np.ndarray, valid: np.ndarray, subset: list[int]) -> float:
    return float(nearest_selected(E[valid], np.searchsorted(valid, subset)).max())


def run_round(r: int, subset: list[int], staged: Staged, valid: np.ndarray, base: Path, out: Path, cfg: Any,
              rc_spec: dict[str, Any]) -> dict[str, Any]:
    """Train on ``subset``, embed, add ``per_round`` rows; returns the round record (also written)."""
    d = round_dir(out, r)
    d.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with timed(timings, "train"):
        start = base if not cfg.evol.warm_start or r == 0 else round_dir(out, r - 1) / "model"
        tlog = fine_tune(subset_rows(staged, subset, d / "train_rows.parquet"), start, d / "model",
                         train_params(cfg, int(cfg.evol.epochs)), rc_spec, cfg)
    with timed(timings, "embed"):
        E = embed_pool(staged, d / "model", d, cfg, rc_spec)
    with timed(timings, "kcenter"):
        before = covering_radius(E, valid, subset)
        res = kcenter_greedy(E[valid], int(cfg.evol.per_round), initial=np.searchsorted(valid, subset), seed=int(cfg.seed))
        added = valid[res.order].tolist()
        after = float(res.radius[-1]) if len(res.radius) else before
        # the baseline a user wants to beat: a random subset of the same size, same embedding space
        rand = np.random.default_rng(int(cfg.seed) + 1000 + r).choice(valid, len(subset) + len(added), replace=False)
        radius_random = covering_radius(E, valid, sorted(rand.tolist()))
    rec = {"round": r, "subset": subset + added, "added": added, "radius_before": before, "radius_after": after,
           "radius_random_same_size": radius_random,
           "train_loss_first": tlog["losses"][0], "train_loss_last": tlog["losses"][-1],
           "train_examples": tlog["examples"], "timings_s": timings}
    outputs.write_json(rec, d / ROUND_FILE)
    shutil.rmtree(d / "embeddings", ignore_errors=True)
    return rec


def run(cfg: Any) -> Result:
    settings.validate_common(cfg)
    rc = settings.render_config(cfg)
    base = resolve_model(cfg.model.name)
    settings.check_chat_template(rc, base, bool(cfg.model.trust_remote_code))
    data_path = settings.data_path(cfg)
    rundir.check_inputs(Path(cfg.output_dir), WRITES, [data_path])  # before the input is even read
    src = inspect_input(data_path, cfg.data.format, cfg.data.limit, cfg.data.rows_per_shard)
    with rundir.claim(cfg.output_dir, "diverse_evol", WRITES, [data_path]) as run_dir:
        return execute(cfg, run_dir.path, data_path, src, base, rc)


def execute(cfg: Any, out: Path, data_path: Path, src: Any, base: Path, rc: Any) -> Result:
    """The rounds inside the claimed run directory ``out``."""
    from omegaconf import OmegaConf

    rc_spec = settings.actor_spec(cfg, Path("."), rc)["render"]
    parts = {"input_sha256": src.sha256, "model": outputs.model_identity(base, cfg.model.name),
             "evol": {k: v for k, v in OmegaConf.to_container(cfg.evol).items() if k != "rounds"},
             "train": OmegaConf.to_container(cfg.train), "render": rc_spec, "seed": int(cfg.seed)}
    shards.prepare(out, parts, bool(cfg.resume), ROUNDS)   # refuses to resume a different run
    staged = stage_input(data_path, out, cfg.data.format, settings.fields(cfg), bool(cfg.data.drop_duplicates),
                         cfg.data.limit, cfg.data.rows_per_shard, src)
    errors = record_errors(staged)
    valid = valid_positions(staged, errors)
    done = last_round(out)
    subset = json.loads((round_dir(out, done) / ROUND_FILE).read_text())["subset"] if done >= 0 \
        else initial_subset(valid, int(cfg.evol.init), int(cfg.seed))
    if done >= 0:
        log.info("resuming after round %d (%d rows selected)", done, len(subset))
    records = [json.loads((round_dir(out, r) / ROUND_FILE).read_text()) for r in range(done + 1)]
    for r in range(done + 1, int(cfg.evol.rounds)):
        rec = run_round(r, subset, staged, valid, base, out, cfg, rc_spec)
        records.append(rec)
        subset = rec["subset"]
        log.info("round %d: +%d rows -> %d, covering radius %.4f -> %.4f", r, len(rec["added"]), len(subset),
                 rec["radius_before"], rec["radius_after"])
        prev = round_dir(out, r - 1) / "model"
        if r > 0 and not cfg.evol.save_checkpoints and prev.exists():
            shutil.rmtree(prev)  # only the last round's model is kept unless asked
    return finish(cfg, out, staged, errors, subset, records)


def finish(cfg: Any, out: Path, staged: Staged, errors: pa.ChunkedArray, subset: list[int],
           records: list[dict[str, Any]]) -> Result:
    from omegaconf import OmegaConf

    added_in = np.full(staged.n_rows, -1, dtype=np.int64)
    first = records[0] if records else {"subset": subset, "added": []}
    added_in[first["subset"][: len(first["subset"]) - len(first["added"])]] = 0  # the random initial subset
    for rec in records:
        added_in[rec["added"]] = rec["round"] + 1
    has_error = errors.is_valid().to_numpy(zero_copy_only=False)
    outcome = np.where(added_in >= 0, "selected", np.where(has_error, "error", "not_selected"))
    table = pa.table({schema.POSITION: np.arange(staged.n_rows), schema.ERROR: errors.cast(pa.string()),
                      "added_in_round": added_in, "outcome": outcome})
    outputs.write_parquet(table, out / outputs.SCORES)
    n_sel = outputs.write_selected(staged.shards, np.array(subset), out / outputs.SELECTED)
    counts = {str(k): int(v) for k, v in zip(*np.unique(outcome, return_counts=True))}
    manifest = {"job": "diverse_evol", "config": OmegaConf.to_container(cfg, resolve=True),
                "input": {"sha256": staged.sha256, "rows": staged.n_rows, "read_outcomes": dict(staged.errors)},
                "rounds": [{k: v for k, v in r.items() if k != "subset"} for r in records],
                "selected": n_sel, "outcomes": counts, "records_dir": RECORDS_DIR,
                "final_model": str(round_dir(Path("."), records[-1]["round"]) / "model") if records else None,
                "versions": outputs.versions()}
    outputs.write_json(manifest, out / outputs.MANIFEST)
    if records:
        report.plot_rounds([r["round"] for r in records], [len(r["subset"]) for r in records],
                           [r["radius_after"] for r in records], out / RADIUS_PLOT)
        report.write_report(out, "Winnow DiverseEvol", {"selected": n_sel, "outcomes": counts,
                                                        "rounds": manifest["rounds"]},
                            [(RADIUS_PLOT, "covering radius (round's embedding space) and subset size per round")])
    return Result(out, staged.n_rows, n_sel, counts, {})


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("diverse_evol", run)


if __name__ == "__main__":
    main()
