"""Downstream benchmark: does fine-tuning on a method's 5% beat fine-tuning on a random 5%?

    python -m bench.compare [--pool 1000 --kb 1000 --dirty 0.1 --budget 0.05 --seed 0] [--phase runs|compare|all]
                            [--arms recost superfilter diverse_evol ifd curate longest]

1. The corruption benchmark's pool (``bench.corruption.split`` / ``corrupt``): ``--pool`` Alpaca rows
   from ``../shared/data`` with ``--dirty`` of their responses corrupted (swap, numbers, facts,
   truncate), and a disjoint trusted KB of ``--kb`` clean Alpaca rows.
2. Selections at ``--budget`` with the bundled SmolLM2-135M on CPU, every one a real Winnow run:
   ``jobs.recost`` (its cond/uncond passes are the IFD passes, so the IFD arm is the Cherry-style
   top-k of that run's ``ifd_loss`` with IFD > 1 dropped, written as a selection file),
   ``jobs.ifd method=superfilter`` (Superfiltering) and a short ``jobs.diverse_evol``; ``--arms`` picks
   which, ``curate`` adds ``jobs.curate`` at its defaults without a KB (guards + longest) and
   ``longest`` the length baseline (``jobs.baseline baseline=longest``).
3. ``jobs.compare`` fine-tunes the base model on each arm and on ``--random`` seeded random subsets of
   the same size (same rows, steps, lr, schedule, seed), then scores the held-out references
   (``--eval``: the bundled AlpacaEval sample) under each model and the untrained base.

Writes ``bench/results/compare.json`` (the compare summary plus the dirty share of every arm and the
timings) and prints the table. Skips (exit 0) when ../shared/data is absent. Every stage resumes.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.corruption import corrupt, pool_args, split, start

ROOT = Path(__file__).resolve().parents[1]
EVAL_DEFAULT = ROOT / "data" / "eval" / "alpaca_eval_davinci003.jsonl"


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_pool(work: Path, args: argparse.Namespace) -> list[str | None]:
    """The pool, the KB and the dirt labels (written once; a rerun reuses them)."""
    labels = work / "labels.json"
    if labels.exists():
        return json.loads(labels.read_text())
    kb, pool = split(args.pool, args.kb, args.seed)
    kinds = corrupt(pool, args.dirty, args.seed)
    write_jsonl(kb, work / "kb.jsonl")
    write_jsonl(pool, work / "pool.jsonl")
    labels.write_text(json.dumps(kinds))
    return kinds


def timed(timings: dict[str, float], name: str, fn: Any, *a: Any) -> Any:
    t0 = time.time()
    out = fn(*a)
    timings[name] = round(time.time() - t0, 1)
    return out


def ifd_selection(recost_dir: Path, out: Path, k: int) -> Path:
    """IFD top-k (IFD > 1 and errors dropped) from the RECOST run's cond/uncond passes."""
    import pandas as pd

    from records.staging import records_shards
    from records.tables import read_positions
    from selection.topk import select_top

    scores = pd.read_parquet(recost_dir / "scores.parquet").sort_values("position")
    order = select_top(scores["ifd_loss"].to_numpy(), scores["error"].notna().to_numpy(), k, 1.0).order
    picked = scores["position"].to_numpy()[order]
    raw = dict(zip(*read_positions(records_shards(recost_dir), picked, ["raw"]).to_pydict().values()))
    out.write_text("".join(raw[p] + "\n" for p in picked))  # best first: the file's order is its ranking
    return out


ARMS = ("recost", "superfilter", "diverse_evol", "ifd", "curate", "longest")


def run_methods(work: Path, args: argparse.Namespace, timings: dict[str, float]) -> dict[str, str]:
    """The selection of every arm in ``args.arms``: arm name -> run directory or selection file."""
    from jobs import baseline, curate, diverse_evol, ifd, kb_build, recost
    from jobs.settings import compose

    pool, model = work / "pool.jsonl", f"model.name={args.model}"
    budget = f"selection.budget={args.budget}"
    k = int(round(args.budget * args.pool))
    wanted, arms = set(args.arms), {}
    if wanted & {"recost", "ifd"}:
        if not (work / "kb" / "manifest.json").exists():
            timed(timings, "kb_build", kb_build.run, compose("kb_build", [
                f"kb.path={work / 'kb.jsonl'}", f"kb.output={work / 'kb'}", model]))
        timed(timings, "recost", recost.run, compose("recost", [
            f"data.path={pool}", f"kb.index={work / 'kb'}", model, f"output_dir={work / 'recost'}", budget]))
        arms["recost"] = str(work / "recost")
    if "superfilter" in wanted:
        timed(timings, "superfilter", ifd.run, compose("ifd", [
            f"data.path={pool}", "method=superfilter", model, f"output_dir={work / 'superfilter'}", budget]))
        arms["superfilter"] = str(work / "superfilter")
    if "diverse_evol" in wanted:
        init = k // 2
        timed(timings, "diverse_evol", diverse_evol.run, compose("diverse_evol", [
            f"data.path={pool}", model, f"output_dir={work / 'diverse_evol'}", f"evol.init={init}",
            f"evol.per_round={k - init}", "evol.rounds=1", "evol.epochs=1"]))
        arms["diverse_evol"] = str(work / "diverse_evol")
    if "curate" in wanted:  # the recommended pipeline at its defaults, without a KB (ranking: longest)
        timed(timings, "curate", curate.run, compose("curate", [
            f"data.path={pool}", model, f"output_dir={work / 'curate'}", budget]))
        arms["curate"] = str(work / "curate")
    if "longest" in wanted:  # the length baseline (jobs.baseline): what a length-rewarding metric gives for free
        timed(timings, "longest", baseline.run, compose("baseline", [
            f"data.path={pool}", model, "baseline=longest", f"output_dir={work / 'longest'}", budget]))
        arms["longest"] = str(work / "longest")
    if "ifd" in wanted:
        arms["ifd"] = str(ifd_selection(work / "recost", work / "ifd_selected.jsonl", k))
    return {a: arms[a] for a in ARMS if a in arms}


def dirty_shares(work: Path, arms: dict[str, Any], kinds: list[str | None]) -> dict[str, float]:
    """Share of each arm's training rows that carry planted dirt (by the row's text)."""
    pool = [json.loads(line) for line in (work / "pool.jsonl").read_text().splitlines()]
    dirty = {(r["instruction"], r["input"], r["output"]) for r, k in zip(pool, kinds) if k is not None}
    out = {}
    for name, rows in arms.items():
        keys = [(r.get("instruction", ""), r.get("input", "") or "", r.get("output", "")) for r in rows]
        out[name] = round(float(np.mean([key in dirty for key in keys])), 4) if keys else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pool_args(ap, 1000, 1000, "bench_compare")
    ap.add_argument("--budget", type=float, default=0.05)
    ap.add_argument("--random", type=int, default=3, help="random arms (compare.random_seeds)")
    ap.add_argument("--eval", default=str(EVAL_DEFAULT), help="held-out targets (compare.eval)")
    ap.add_argument("--phase", default="all", choices=("runs", "compare", "all"))
    ap.add_argument("--arms", nargs="+", default=["recost", "superfilter", "diverse_evol", "ifd"],
                    choices=ARMS, help="method arms (random arms and the base model always run)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "compare.json"))
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for jobs.compare (e.g. train.lr=1e-4)")
    args = ap.parse_args()
    work = start(args)
    if work is None:
        return
    kinds = make_pool(work, args)
    timings: dict[str, float] = {}
    arms = run_methods(work, args, timings)
    (work / "arms.json").write_text(json.dumps(arms, indent=2))
    first = work / "run_timings.json"  # the methods' first (scoring) runs; a later phase only reuses them
    if not first.exists():
        first.write_text(json.dumps(timings, indent=2))
    if args.phase == "runs":
        print(json.dumps({"arms": arms, "timings_s": timings}, indent=2))
        return
    from jobs import compare
    from jobs.settings import compose

    runs = [path for arm, path in arms.items() if arm != "ifd"]
    files = [arms["ifd"]] if "ifd" in arms else []
    cfg = compose("compare", [f"data.path={work / 'pool.jsonl'}", f"model.name={args.model}",
                              f"output_dir={work / 'compare'}", f"compare.runs=[{','.join(runs)}]",
                              f"compare.selections=[{','.join(files)}]", f"compare.eval=[{args.eval}]",
                              f"compare.random_seeds={args.random}", "compare.equalize=true", *args.overrides])
    summary = timed(timings, "compare", compare.run, cfg)
    trained = compare.arm_rows(work / "compare")
    result = {"setup": {**vars(args), "overrides": args.overrides},
              "timings_s": {"methods_first_run": json.loads(first.read_text()), "this_run": timings},
              "dirty_share": {**dirty_shares(work, trained, kinds), "pool": float(np.mean([k is not None for k in kinds]))},
              "compare": summary}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
