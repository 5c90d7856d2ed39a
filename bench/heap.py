"""What the driver's allocator setting costs a driver-side torch loop (k-center greedy).

    python -m bench.heap [--n 200000 --dim 576 --k 300 --reps 2]

``jobs.skeleton.release_freed_memory`` gives every driver block of 256 KiB or more its own mapping,
so memory freed between shards goes back to the OS (flat driver memory at 10M rows). A torch loop
then maps and faults in fresh pages for every temporary. Three arms, each in a fresh process,
alternated: glibc's default; the driver's setting; the driver's setting with the loop inside
``skeleton.compute_heap`` (what ``jobs.diverse_evol`` does). Writes ``bench/results/heap.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from jobs.settings import ROOT

ARMS = ("default", "driver", "driver+compute_heap")


def one(arm: str, n: int, dim: int, k: int) -> float:
    import numpy as np
    import torch

    from jobs.skeleton import compute_heap, release_freed_memory
    from selection.kcenter import kcenter_greedy

    torch.set_num_threads(2)
    if arm != "default":
        release_freed_memory()
    X = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    t0 = time.time()
    with compute_heap() if arm == "driver+compute_heap" else nullcontext():
        kcenter_greedy(X, k, seed=0)
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=576)
    ap.add_argument("--k", type=int, default=300)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # one arm, in this process
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "heap.json"))
    a = ap.parse_args()
    if a.arm:
        print(json.dumps({"s": one(a.arm, a.n, a.dim, a.k)}))
        return
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for _ in range(a.reps):
        for arm in ARMS:
            cmd = [sys.executable, "-m", "bench.heap", "--arm", arm, "--n", str(a.n), "--dim", str(a.dim), "--k", str(a.k)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            times[arm].append(round(json.loads(out)["s"], 2))
    res = {"n": a.n, "dim": a.dim, "k": a.k, "kcenter_s": times,
           "driver_vs_default": round(min(times["driver"]) / min(times["default"]), 3),
           "compute_heap_vs_default": round(min(times["driver+compute_heap"]) / min(times["default"]), 3)}
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
