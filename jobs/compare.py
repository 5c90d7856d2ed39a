"""Prove a selection: fine-tune the base model on each arm and on random subsets of the same size, then
compare the models on held-out targets.

    python -m jobs.compare data.path=pool.jsonl compare.runs=[out/ifd,out/recost] [compare.random_seeds=3]
    python -m jobs.compare data.path=pool.jsonl compare.selections=[mine.jsonl] compare.eval=[heldout.jsonl]

Arms: finished Winnow runs (``compare.runs``: their ``selected.jsonl``), selection files
(``compare.selections``, any input format, best row first), ``compare.random_seeds`` seeded random
subsets of the pool's valid rows, and the untrained base model (``compare.base``). Every trained arm
has exactly the same number of rows (unequal arms are refused, or cut to the smallest by their own
ranking with ``compare.equalize=true``) and the same optimiser steps, learning rate, schedule and seed.

The metric is the mean per-token NLL of the reference responses of ``compare.eval`` given their
instructions (the conditioned pass on the scoring actors), per eval file and over all of them;
``compare.json`` holds each arm's difference to the random arms' mean with a paired bootstrap
interval over eval rows. Resumable per arm: a rerun trains and scores only what is unfinished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs import registry, report, settings, skeleton
from records.staging import records_shards
from jobs.ifd import score_missing
from jobs.skeleton import timed
from jobs.specs import scorer_resources, scorer_spec, train_render
from jobs.train import TRAIN_LOG, fine_tune, train_params
from records import schema, shards, tables, writers
from records.layout import MANIFEST_FILE, RECORDS_DIR, REPORT_FILE, SCORES_FILE, SELECTED_FILE
from records.staging import Staged, stage_input, subset_rows
from scoring.models import content_key, model_identity
from selection.baselines import random_subset
from selection.budget import resolve_budget
from selection.compare import Interval, corpus_nll, paired_diffs, ranks, spread

log = logging.getLogger(__name__)

COMPARE_PARQUET = "compare.parquet"  # one row per (arm, eval row): NLL sum, tokens, error
COMPARE_JSON = "compare.json"  # per arm: mean NLL, difference to random with its interval, rank
PLOT = "compare.png"
POOL_DIR, EVAL_DIR, ARMS_DIR = "pool", "eval", "arms"
ARM_FILE = "arm.json"  # an arm's rows (pool ids, training order) and where they came from
WRITES = (POOL_DIR, EVAL_DIR, ARMS_DIR, COMPARE_PARQUET, COMPARE_JSON, MANIFEST_FILE, REPORT_FILE, PLOT)
ALL = "all"  # the metric over every eval row of every eval file


@dataclass(frozen=True)
class Arm:
    """One arm: ``positions`` are pool positions (best first where the source ranks them); the base
    arm has none and is not trained."""

    name: str
    kind: str  # run | selection | random | base
    source: str
    positions: tuple[int, ...] = ()

    @property
    def trained(self) -> bool:
        return self.kind != "base"


def validate(cfg: Any) -> None:
    """Fail at start on a malformed ``compare.*`` (before anything is read or trained)."""
    settings.validate_common(cfg)
    c = cfg.compare
    seeds = random_seeds(cfg)
    if not (list(c.runs) or list(c.selections)) and (not seeds or c.budget is None):
        raise ValueError(
            "nothing to compare: give compare.runs and/or compare.selections, or random arms "
            "(compare.random_seeds) with a compare.budget"
        )
    if not list(c.eval):
        raise ValueError("compare.eval is empty: give at least one held-out file of targets")
    if c.budget is not None:
        resolve_budget(c.budget, 1)
    if isinstance(c.parallel_arms, bool) or not isinstance(c.parallel_arms, int) or c.parallel_arms < 1:
        raise ValueError(f"compare.parallel_arms must be a positive count, got {c.parallel_arms!r}")
    if int(c.bootstrap) < 100:
        raise ValueError(f"compare.bootstrap must be at least 100 resamples, got {c.bootstrap}")
    for p in [*c.runs]:
        if not (settings.resolve_data_path(p) / SELECTED_FILE).is_file():
            raise FileNotFoundError(f"compare.runs: {p} is not a finished Winnow run (no {SELECTED_FILE})")
    for p in [*c.selections, *c.eval]:
        if not settings.resolve_data_path(p).exists():
            raise FileNotFoundError(f"file not found: {p}")


def random_seeds(cfg: Any) -> list[int]:
    """``compare.random_seeds``: a count n (seeds ``seed``..``seed+n-1``) or an explicit list."""
    s = cfg.compare.random_seeds
    if isinstance(s, int) and not isinstance(s, bool):
        if s < 0:
            raise ValueError(f"compare.random_seeds must be a count >= 0 or a list of seeds, got {s}")
        return [int(cfg.seed) + i for i in range(s)]
    return [int(x) for x in s]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "arm"


def unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out


# ---- arms ----


def pool_ids(staged: Staged) -> tuple[dict[str, int], np.ndarray]:
    """Pool id -> position, and which pool rows are valid (no staging error)."""
    t = tables.shard_columns(staged.shards, [schema.ID, schema.POSITION, schema.ERROR])
    ids = t.column(schema.ID).to_pylist()
    pos = t.column(schema.POSITION).to_numpy()
    valid = np.zeros(staged.n_rows, dtype=bool)
    valid[pos] = t.column(schema.ERROR).is_null().to_numpy(zero_copy_only=False)
    return dict(zip(ids, pos.tolist())), valid


def file_ids(path: Path, work: Path, cfg: Any) -> list[str]:
    """Content ids of a file's records in file order (staged as Winnow stages any input); a record
    that cannot be parsed, or repeats, is refused."""
    staged = stage_input(path, work, "auto", settings.fields(cfg), drop_duplicates=True)
    t = tables.shard_columns(staged.shards, [schema.ID, schema.ERROR])
    errors = [e for e in t.column(schema.ERROR).to_pylist() if e]
    if errors:
        raise ValueError(f"{path}: {len(errors)} records are not usable training rows, e.g. {errors[:3]}")
    return t.column(schema.ID).to_pylist()


def to_positions(name: str, ids: list[str], by_id: dict[str, int], valid: np.ndarray) -> list[int]:
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(
            f"arm {name}: {len(missing)} of {len(ids)} rows are not in the pool (data.path): an arm must be "
            "a subset of the pool the random arms are drawn from"
        )
    pos = [by_id[i] for i in ids]
    bad = [p for p in pos if not valid[p]]
    if bad:
        raise ValueError(f"arm {name}: {len(bad)} rows are invalid pool rows (staging errors), e.g. positions {bad[:3]}")
    return pos


def run_ranking(run: Path, by_id: dict[str, int]) -> list[int] | None:
    """A run's picks as pool positions, best first by its method's ranking (None: it has none)."""
    manifest = json.loads((run / MANIFEST_FILE).read_text())
    method = registry.method(manifest.get("job", "ifd"))
    if method.rank is None or not (run / SCORES_FILE).is_file():
        return None
    order = method.rank(pq.read_table(run / SCORES_FILE), manifest)  # positions in the run's own input
    rec = tables.shard_columns(records_shards(run), [schema.ID, schema.POSITION])
    id_at = dict(zip(rec.column(schema.POSITION).to_pylist(), rec.column(schema.ID).to_pylist()))
    return [by_id[id_at[p]] for p in order.tolist() if id_at.get(p) in by_id]


def source_arms(cfg: Any, out: Path, by_id: dict[str, int], valid: np.ndarray) -> list[tuple[Arm, bool]]:
    """The run and selection arms (full size), each with whether its order is a ranking."""
    c = cfg.compare
    runs = [settings.resolve_data_path(p) for p in c.runs]
    sels = [settings.resolve_data_path(p) for p in c.selections]
    names = unique([slug(p.resolve().name) for p in runs] + [slug(p.name.split(".")[0]) for p in sels])
    arms = []
    for name, run in zip(names, runs):
        pos = to_positions(name, file_ids(run / SELECTED_FILE, out / ARMS_DIR / name / "input", cfg), by_id, valid)
        ranked = run_ranking(run, by_id)
        if ranked is not None and sorted(ranked) == sorted(pos):
            pos = ranked
        arms.append((Arm(name, "run", str(run.resolve()), tuple(pos)), ranked is not None))
    for name, sel in zip(names[len(runs):], sels):
        pos = to_positions(name, file_ids(sel, out / ARMS_DIR / name / "input", cfg), by_id, valid)
        arms.append((Arm(name, "selection", str(sel.resolve()), tuple(pos)), True))  # file order = ranking
    for arm, _ in arms:
        if len(set(arm.positions)) != len(arm.positions):
            raise ValueError(f"arm {arm.name} lists the same pool row more than once")
    return arms


def equal_size(cfg: Any, arms: list[tuple[Arm, bool]], n_pool: int) -> int:
    """The rows every trained arm gets: the arms' common size (or ``compare.budget``); unequal arms are
    refused unless ``compare.equalize`` cuts them to the smallest by their own ranking."""
    c = cfg.compare
    sizes = {a.name: len(a.positions) for a, _ in arms}
    want = resolve_budget(c.budget, n_pool) if c.budget is not None else min(sizes.values())
    off = {n: s for n, s in sizes.items() if s != want}
    if off and not c.equalize:
        raise ValueError(
            f"arms differ in size ({', '.join(f'{n}={s}' for n, s in sizes.items())}; budget {want}): "
            "every arm must train on the same number of rows. Re-select them at one budget, or set "
            "compare.equalize=true to cut each to the smallest by its own ranking"
        )
    short = {n: s for n, s in sizes.items() if s < want}
    if short and c.budget is not None:
        raise ValueError(f"arms smaller than compare.budget={want}: {short}")
    return min(sizes.values()) if c.budget is None else want


def cut(arm: Arm, ranked: bool, k: int) -> Arm:
    if len(arm.positions) == k:
        return arm
    if not ranked:
        raise ValueError(f"compare.equalize: arm {arm.name} has no ranking of its own to cut by")
    return replace(arm, positions=arm.positions[:k])


def build_arms(cfg: Any, out: Path, staged: Staged) -> tuple[list[Arm], int]:
    """Every arm, trained ones at equal size first, then the base model."""
    by_id, valid = pool_ids(staged)
    src = source_arms(cfg, out, by_id, valid)
    k = equal_size(cfg, src, staged.n_rows) if src else resolve_budget(cfg.compare.budget, staged.n_rows)
    if k < 1:
        raise ValueError("the arms are empty: nothing to train on")
    arms = [cut(a, ranked, k) for a, ranked in src]
    for s in random_seeds(cfg):
        pos = random_subset(valid, k, s)
        if len(pos) < k:
            raise ValueError(f"the pool has {len(pos)} valid rows, fewer than the {k} an arm trains on")
        arms.append(Arm(f"random-{s}", "random", f"seed {s}", tuple(int(p) for p in pos)))
    if cfg.compare.base:
        arms.append(Arm("base", "base", str(cfg.model.name)))
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"two arms share a name: {names}")
    return arms, k


# ---- training and scoring (both resumable per arm) ----


def train_key(cfg: Any, staged: Staged, arm: Arm, identity: dict[str, Any], rc: Any) -> dict[str, Any]:
    """What an arm's model depends on: the pool, its rows, the base model and every training knob."""
    return {
        "pool_sha256": staged.sha256,
        "rows": hashlib.sha256(json.dumps(sorted(arm.positions)).encode()).hexdigest(),
        "model": content_key(identity),
        "train": skeleton.as_dict(cfg.train),
        "render": asdict(train_render(rc, int(cfg.train.max_length))),
        "seed": int(cfg.seed),
    }


def train_arm(cfg: Any, staged: Staged, arm: Arm, base: Path, out: Path, key: dict[str, Any], rc: Any) -> dict:
    """Fine-tune the base model on the arm's rows (reused when already trained with this key)."""
    d = shards.prepare(out / ARMS_DIR / arm.name, key, bool(cfg.resume), "train")
    rows = d / "rows.parquet"
    if not (d / "model" / TRAIN_LOG).exists():
        subset_rows(staged, list(arm.positions), rows)
    return fine_tune(rows, base, d / "model", train_params(cfg), rc, cfg)


def train_all(cfg: Any, staged: Staged, arms: list[Arm], base: Path, out: Path, keys: dict[str, dict],
              rc: Any) -> dict[str, dict]:
    """Every trained arm's training log; ``compare.parallel_arms`` arms train at once (side by side, each
    on its own ``train.num_workers`` workers: one GPU each on a multi-GPU node), in arm order."""
    from concurrent.futures import ThreadPoolExecutor

    from jobs.pipeline import init_ray

    init_ray(cfg.cluster, bool(cfg.get("verbose", False)))  # once, on this thread, before any trainer starts
    width = max(1, int(cfg.compare.parallel_arms))
    with ThreadPoolExecutor(max_workers=width) as pool:
        futures = {a.name: pool.submit(train_arm, cfg, staged, a, base, out, keys[a.name], rc) for a in arms}
        return {name: f.result() for name, f in futures.items()}


def model_dir(out: Path, arm: Arm, base: Path) -> Path:
    return out / ARMS_DIR / arm.name / "train" / "model" if arm.trained else base


def score_arm(cfg: Any, arm: Arm, model: Path, evals: dict[str, Staged], out: Path, key: dict, rc: Any) -> pa.Table:
    """The conditioned pass of every eval row under the arm's model: (arm, eval, position, id, sums)."""
    mcfg = settings.with_model(cfg, model)
    spec, res = scorer_spec(mcfg, model, rc), scorer_resources(mcfg)
    parts = []
    for name, st in evals.items():
        eval_key = {"eval_sha256": st.sha256, "arm_model": key, **spec.identity()}
        d = shards.prepare(out / ARMS_DIR / arm.name, eval_key, bool(cfg.resume), f"eval-{name}")
        score_missing(d, st, spec, res, mcfg)
        t = tables.validate_complete(shards.load_all(d, len(st.shards)), st.n_rows)
        n = t.num_rows
        parts.append(
            pa.table(
                {
                    "arm": [arm.name] * n,
                    "eval": [name] * n,
                    "eval_position": t.column(schema.POSITION),
                    schema.ID: t.column(schema.ID),
                    "nll_sum": t.column(schema.nll_sum_col("cond")),
                    "tokens": t.column(schema.tokens_col("cond")),
                    schema.ERROR: t.column(schema.ERROR),
                }
            )
        )
    return pa.concat_tables(parts)


def stage_evals(cfg: Any, out: Path) -> dict[str, Staged]:
    """Each eval file staged under ``eval/<name>/`` (any input format Winnow reads)."""
    paths = [settings.resolve_data_path(p) for p in cfg.compare.eval]
    names = unique([slug(p.name.split(".")[0]) for p in paths])
    return {
        n: stage_input(p, out / EVAL_DIR / n, "auto", settings.fields(cfg), drop_duplicates=False)
        for n, p in zip(names, paths)
    }


# ---- summary ----


def matrices(table: pa.Table, arms: list[Arm], rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(arms, eval rows) NLL sums and tokens, rows in (eval, position) order; a row that errored under
    any arm is left out of every arm (the comparison stays paired)."""
    df = table.to_pandas()
    df = df.sort_values(["arm", "eval", "eval_position"])
    S = np.stack([df.loc[df.arm == a.name, "nll_sum"].to_numpy(np.float64) for a in arms])
    T = np.stack([df.loc[df.arm == a.name, "tokens"].to_numpy(np.float64) for a in arms])
    E = np.stack([df.loc[df.arm == a.name, "error"].notna().to_numpy() for a in arms])
    ok = ~E.any(axis=0) & (T > 0).all(axis=0)
    if rows is not None:
        ok &= rows
    return S[:, ok], T[:, ok]


def excluded(table: pa.Table) -> dict[str, int]:
    """Eval rows left out of every arm, by the first reason one arm gave (e.g. prompt_fills_window)."""
    df = table.to_pandas()
    bad = df[df[schema.ERROR].notna()].drop_duplicates(["eval", "eval_position"])
    return tables.label_counts(bad[schema.ERROR].str.split(":").str[0].to_numpy(dtype=object))


def summarise(table: pa.Table, arms: list[Arm], evals: dict[str, Staged], cfg: Any) -> dict[str, Any]:
    """compare.json: per arm and per eval scope, mean NLL, difference to random with its interval."""
    c = cfg.compare
    rand = [i for i, a in enumerate(arms) if a.kind == "random"]
    df = table.to_pandas().sort_values(["arm", "eval", "eval_position"])
    first = df[df.arm == arms[0].name]
    scopes = {ALL: np.ones(len(first), dtype=bool)} | {n: (first["eval"] == n).to_numpy() for n in evals}
    per_scope = {}
    for scope, mask in scopes.items():
        S, T = matrices(table, arms, mask)
        m = corpus_nll(S, T)
        diffs: list[Interval | None] = (
            paired_diffs(S, T, rand, int(c.bootstrap), float(c.confidence), int(cfg.seed)) if rand else [None] * len(arms)
        )
        per_scope[scope] = {"rows": int(S.shape[1]), "mean_nll": m, "diffs": diffs, "rank": ranks(m),
                            "random": spread(m[rand]) if rand else None}
    out_arms = {}
    for i, a in enumerate(arms):
        entry: dict[str, Any] = {"kind": a.kind, "source": a.source, "rows": len(a.positions)}
        for scope, r in per_scope.items():
            d = r["diffs"][i]
            entry[scope] = {
                "mean_nll": float(r["mean_nll"][i]),
                "rank": int(r["rank"][i]),
                **(
                    {"diff_vs_random": d.diff, "ci_low": d.lo, "ci_high": d.hi,
                     "vs_random_arms": {-1: "below all", 0: "among them", 1: "above all"}[d.side],
                     "verdict": d.verdict}
                    if d else {}
                ),
            }
        out_arms[a.name] = entry
    base = next((i for i, a in enumerate(arms) if a.kind == "base"), None)
    return {
        "metric": "mean per-token NLL of the reference responses given their instructions (nats; lower is better)",
        "confidence": float(c.confidence),
        "bootstrap": int(c.bootstrap),
        "eval_rows": {s: r["rows"] for s, r in per_scope.items()},
        "eval_excluded": excluded(table),
        "random": {s: r["random"] for s, r in per_scope.items()},
        "base_mean_nll": {s: float(r["mean_nll"][base]) for s, r in per_scope.items()} if base is not None else None,
        "arms": out_arms,
    }


def write_report(out: Path, summary: dict[str, Any], header: dict[str, Any]) -> Path:
    arms = summary["arms"]
    names = [n for n, a in arms.items() if "diff_vs_random" in a[ALL]]
    if names:
        report.plot_intervals(
            names,
            [arms[n][ALL]["diff_vs_random"] for n in names],
            [arms[n][ALL]["ci_low"] for n in names],
            [arms[n][ALL]["ci_high"] for n in names],
            [arms[n][ALL]["verdict"] for n in names],
            summary["random"][ALL],
            out / PLOT,
        )
    section = report.compare_html(summary, ALL)
    imgs = [(PLOT, "difference to the random arms' mean NLL, with paired bootstrap intervals")] if names else []
    return report.write_report(out, "Winnow compare: does the selection beat random?", header, imgs, None, [section])


def run(cfg: Any) -> dict[str, Any]:
    """The whole comparison; returns the ``compare.json`` summary."""
    c = cfg.compare
    others = [settings.resolve_data_path(p) for p in [*c.runs, *c.selections, *c.eval]]
    with skeleton.pool_run(cfg, "compare", WRITES, validate, ("cond",), others) as run:
        out, t, rc, base = run.out, run.timings, run.rc, run.model_path
        identity = model_identity(base, cfg.model.name)
        with timed(t, "stage"):
            staged = run.stage(out / POOL_DIR)
            arms, k = build_arms(cfg, out, staged)
            evals = stage_evals(cfg, out)
        log.info("compare: %d arms of %d rows (%s) on %d eval rows", len(arms), k,
                 ", ".join(a.name for a in arms), sum(s.n_rows for s in evals.values()))
        keys = {a.name: train_key(cfg, staged, a, identity, rc) for a in arms}
        for arm in arms:
            (out / ARMS_DIR / arm.name).mkdir(parents=True, exist_ok=True)
            writers.write_json(asdict(arm), out / ARMS_DIR / arm.name / ARM_FILE)
        with timed(t, "train"):
            logs = train_all(cfg, staged, [a for a in arms if a.trained], base, out, keys, rc)
        parts = []
        for arm in arms:
            with timed(t, f"eval:{arm.name}"):
                parts.append(score_arm(cfg, arm, model_dir(out, arm, base), evals, out, keys[arm.name], rc))
        steps = {n: len(lg["losses"]) for n, lg in logs.items()}
        if len(set(steps.values())) > 1:
            raise RuntimeError(f"arms trained for different numbers of steps: {steps}")
        table = pa.concat_tables(parts)
        writers.write_parquet(table, out / COMPARE_PARQUET)
        summary = summarise(table, arms, evals, cfg)
        summary.update(
            budget_rows=k,
            train={"steps": next(iter(steps.values()), 0), **asdict(train_params(cfg))},
            train_loss={n: [lg["losses"][0], lg["losses"][-1]] for n, lg in logs.items() if lg["losses"]},
            timings_s=t,
        )
        writers.write_json(summary, out / COMPARE_JSON)
        run.write_manifest(
            staged,
            records_dir=f"{POOL_DIR}/{RECORDS_DIR}",
            model=identity,
            arms=[asdict(a) | {"positions": len(a.positions)} for a in arms],
            eval={n: {"sha256": s.sha256, "rows": s.n_rows} for n, s in evals.items()},
        )
        write_report(out, summary, {"pool": str(run.data_path), "model": identity["name"], "rows per arm": k,
                                    "optimiser steps per arm": summary["train"]["steps"],
                                    "eval rows": summary["eval_rows"]})
    return summary


def arm_rows(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Each trained arm's training rows (instruction/input/output), read back from the run."""
    res = {}
    for f in sorted((out / ARMS_DIR).glob(f"*/{ARM_FILE}")):
        rows = f.parent / "train" / "rows.parquet"
        if rows.exists():
            res[f.parent.name] = pq.read_table(rows, columns=[schema.INSTRUCTION, schema.INPUT, schema.OUTPUT]).to_pylist()
    return res


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("compare", run)


if __name__ == "__main__":
    main()
