"""End-to-end runs of the model-in-the-loop jobs with the real SmolLM2-135M on CPU.

    python -m bench.model_in_loop [--rows 300]

1. ``jobs.cherry`` on the bundled rows: instruction embedding + perplexity, k-means, band picks,
   1-epoch fine-tune on Ray Train, IFD rescoring with the pre-experienced model; time per stage.
2. ``jobs.diverse_evol``: 3 rounds (init 30, +30 per round, 1 epoch each, trained from the base model);
   time per stage per round, and the covering radius of the k-center subset vs a random subset of the
   same size in the same round's embedding space.

Writes ``bench/results/model_in_loop.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--work", default=str(ROOT / "out" / "bench_model_in_loop"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "model_in_loop.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from jobs import cherry, diverse_evol
    from jobs.settings import compose

    work = Path(args.work)
    common = [f"data.limit={args.rows}", "resume=false"]
    t0 = time.time()
    c = cherry.run(compose("cherry", [*common, f"output_dir={work / 'cherry'}", "cherry.clusters=10",
                                      "cherry.per_cluster=3", "selection.budget=0.05"]))
    t_cherry = time.time() - t0
    cm = json.loads((work / "cherry" / "manifest.json").read_text())
    t0 = time.time()
    diverse_evol.run(compose("diverse_evol", [*common, f"output_dir={work / 'de'}", "evol.init=30",
                                              "evol.per_round=30", "evol.rounds=3", "evol.epochs=1"]))
    t_de = time.time() - t0
    dm = json.loads((work / "de" / "manifest.json").read_text())
    result = {
        "rows": args.rows,
        "cherry": {"wall_s": round(t_cherry, 1), "stage_timings_s": c.timings, "picks": cm["stages"]["picks"],
                   "train_loss_first_last": [cm["stages"]["train_loss_first"], cm["stages"]["train_loss_last"]],
                   "selected": c.n_selected},
        "diverse_evol": {"wall_s": round(t_de, 1), "rounds": [
            {k: r[k] for k in ("round", "radius_before", "radius_after", "radius_random_same_size",
                               "train_examples", "train_loss_first", "train_loss_last", "timings_s")}
            for r in dm["rounds"]]},
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
