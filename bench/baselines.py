"""The baselines and the new methods on the corruption benchmark, and dedup / RDS throughput.

    python -m bench.corruption            # first: builds the pool, its dirty labels, the KB and the RECOST run
    python -m bench.baselines [--targets 200]

On the corruption benchmark's pool (``out/bench_corruption``: 400 Alpaca rows, 10% with a dirty
response, scored once by ``jobs.recost`` with SmolLM2), at each budget: the share of selected rows
that are dirty for random (mean over 20 seeds), longest (most response tokens), RDS+ (targets: a clean
held-out Alpaca slice, disjoint from KB and pool; round_robin and max), IFD top-k and RECOST (default).
Then ``jobs.dedup`` on the same pool. Throughput = rows / the job's embedding stage (Ray Data actors,
SmolLM2 fp32 on this CPU), with the job's whole wall time beside it.

Writes ``bench/results/baselines.json``. Skips (exit 0) when the data or the corruption run is absent.
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ALPACA = ROOT.parent / "shared" / "data" / "alpaca_data.json.gz"


def held_out_targets(work: Path, n: int, seed: int) -> Path:
    """``n`` clean Alpaca rows that share no instruction + input with the KB or the pool."""
    with gzip.open(ALPACA, "rt") as f:
        data = json.load(f)
    random.Random(seed + 7).shuffle(data)
    used = {(r["instruction"], r["input"]) for name in ("kb.jsonl", "pool.jsonl")
            for r in map(json.loads, (work / name).read_text().splitlines())}
    rows = [r for r in data if (r["instruction"], r["input"]) not in used and r["output"].strip()][:n]
    path = work / "targets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def dirty_share(order: np.ndarray, dirty: np.ndarray) -> float | None:
    return float(dirty[order].mean()) if len(order) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(ROOT / "out" / "bench_corruption"))
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--budgets", default="0.05,0.1,0.2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "baselines.json"))
    args = ap.parse_args()
    work = Path(args.work)
    if not ALPACA.exists() or not (work / "out" / "scores.parquet").exists():
        print(f"skipped: needs {ALPACA} and a finished `python -m bench.corruption` in {work}")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import pandas as pd

    from jobs import dedup, rds
    from jobs.settings import compose
    from selection.baselines import longest_subset, random_subset
    from selection.budget import resolve_budget
    from selection.rds import rds_select
    from selection.topk import select_top

    kinds = json.loads((work / "labels.json").read_text())
    dirty = np.array([k is not None for k in kinds])
    scores = pd.read_parquet(work / "out" / "scores.parquet")
    err = scores["error"].notna().to_numpy()
    targets = held_out_targets(work, args.targets, args.seed)
    common = [f"data.path={work / 'pool.jsonl'}", f"model.name={args.model}", "resume=false"]

    t0 = time.time()
    r = rds.run(compose("rds", [*common, f"target.path={targets}", f"output_dir={work / 'rds'}",
                                "selection.budget=0.1"]))
    rds_wall = time.time() - t0
    from records.shards import load_embeddings

    n_sh = len(list((work / "rds" / "records").glob("part-*.parquet")))
    P = load_embeddings(work / "rds" / "embeddings", n_sh).astype(np.float32)
    t_sh = len(list((work / "rds" / "target" / "records").glob("part-*.parquet")))
    T = load_embeddings(work / "rds" / "target" / "embeddings", t_sh).astype(np.float32)
    rds_err = pd.read_parquet(work / "rds" / "scores.parquet")["error"].notna().to_numpy()

    t0 = time.time()
    d = dedup.run(compose("dedup", [*common, f"output_dir={work / 'dedup'}"]))
    dedup_wall = time.time() - t0

    lengths = scores["response_tokens"].to_numpy()
    ifd = scores["ifd_loss"].to_numpy()
    budgets = {}
    for b in (float(x) for x in args.budgets.split(",")):
        k = resolve_budget(b, len(kinds))
        rand = [dirty_share(random_subset(~err, k, s), dirty) for s in range(20)]
        recost_sel = scores["outcome"].to_numpy() == "selected" if b == 0.1 else None
        row = {"k": k, "pool_dirty": float(dirty.mean()),
               "random_mean_20_seeds": float(np.mean(rand)), "random_min_max": [min(rand), max(rand)],
               "longest": dirty_share(longest_subset(lengths, ~err, k), dirty),
               "rds_round_robin": dirty_share(rds_select(P, T, ~rds_err, k).order, dirty),
               "rds_max": dirty_share(rds_select(P, T, ~rds_err, k, "max").order, dirty),
               "ifd_topk": dirty_share(select_top(ifd, err, k, 1.0).order, dirty)}
        if recost_sel is not None:
            row["recost_default_run"] = dirty_share(np.flatnonzero(recost_sel), dirty)
        budgets[str(b)] = row
    n = len(kinds)
    result = {
        "setup": {"pool": n, "dirty": int(dirty.sum()), "targets": args.targets, "model": args.model},
        "budgets": budgets,
        "throughput": {
            "rds": {"pool_rows": n, "target_rows": args.targets, "embed_pool_s": r.timings["embed_pool"],
                    "embed_target_s": r.timings["embed_target"], "select_s": r.timings["select"],
                    "pool_rows_per_s": round(n / r.timings["embed_pool"], 2),
                    "rows_per_s_both_sets": round((n + args.targets) / (r.timings["embed_pool"]
                                                                       + r.timings["embed_target"]), 2),
                    "wall_s": round(rds_wall, 1)},
            "dedup": {"rows": n, "embed_s": d.timings["embed"], "dedup_s": d.timings["dedup"],
                      "rows_per_s": round(n / d.timings["embed"], 2), "wall_s": round(dedup_wall, 1),
                      "near_copies": d.counts.get("semantic_duplicate", 0)},
        },
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
