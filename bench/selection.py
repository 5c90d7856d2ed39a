"""Selection-stage benchmarks on synthetic embeddings (no model needed).

    python -m bench.selection [--n 100000 --d 768 --k 5000] [--nxn-n 20000] [--fl-n 200000]

1. k-center 100k×768 → 5k on clustered data (a 500-component Gaussian mixture, like real embeddings)
   and on isotropic Gaussian data (the worst case: no pruning possible, every pick scans the pool).
2. The DiverseEvol-style full N×N distance matrix (Gram trick + unclamped sqrt, greedy over the
   (unlabelled × labelled) sub-matrix) at the largest N that fits comfortably, vs Winnow's k-center at
   the same N and k: time, peak memory, ratio, and whether they pick the same rows.
3. Facility location (lazy greedy on a faiss kNN graph) on 200k points.
Peak memory is the peak process RSS above the baseline just before the call, sampled every 5 ms.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil
import torch

from selection.facility import facility_location
from selection.kcenter import kcenter_greedy


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, peak RSS above baseline in MB)."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.time()
    out = fn()
    dt = time.time() - t0
    done.set()
    t.join()
    return out, dt, (max(peak[0], proc.memory_info().rss) - base) / 2**20


def mixture(n: int, d: int, comps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(comps, d)).astype(np.float32) * 4
    X = centres[rng.integers(0, comps, n)]
    X += rng.normal(size=(n, d)).astype(np.float32)
    return X


def diverseevol_kcenter(X: np.ndarray, k: int, initial: list[int]) -> list[int]:
    """The reference approach (OFA-Sys/DiverseEvol kcenter_sampling.py), on CPU torch."""
    E = torch.from_numpy(X)
    sq = (E * E).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2 * E @ E.T).sqrt()  # N×N, no clamp (NaN on round-off)
    labelled = torch.zeros(len(X), dtype=torch.bool)
    labelled[initial] = True
    picks = []
    for _ in range(k):
        sub = dist[~labelled, :][:, labelled]          # materialises (N-|L|)×N, then ×|L|
        mins = sub.min(dim=1).values
        cand = torch.nonzero(~labelled).squeeze(1)
        j = int(cand[torch.argmax(mins)])
        picks.append(j)
        labelled[j] = True
    return picks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--k", type=int, default=5000)
    ap.add_argument("--nxn-n", type=int, default=20_000)
    ap.add_argument("--nxn-k", type=int, default=200)
    ap.add_argument("--fl-n", type=int, default=200_000)
    ap.add_argument("--fl-d", type=int, default=128)
    ap.add_argument("--fl-k", type=int, default=4000)
    ap.add_argument("--skip-isotropic", action="store_true")
    ap.add_argument("--kcenter-only", action="store_true", help="only the clustered k-center run (e.g. 1M×768 → 10k)")
    ap.add_argument("--out", default="bench/results/selection.json")
    a = ap.parse_args()
    res: dict[str, Any] = {"torch_threads": torch.get_num_threads()}

    X = mixture(a.n, a.d, 500, 0)
    input_mb = X.nbytes / 2**20
    r, dt, mb = measure(lambda: kcenter_greedy(X, a.k, seed=0))
    res["kcenter_clustered"] = {"n": a.n, "d": a.d, "k": a.k, "seconds": round(dt, 2), "peak_extra_mb": round(mb),
                                "input_mb": round(input_mb), "memory_vs_input": round((input_mb + mb) / input_mb, 2),
                                "final_radius": round(float(r.radius[-1]), 3),
                                "distances_computed_vs_unpruned": round(r.evaluated / (a.n * a.k), 4)}
    print(json.dumps(res), flush=True)
    if a.kcenter_only:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2))
        return
    if not a.skip_isotropic:
        X = np.random.default_rng(1).normal(size=(a.n, a.d)).astype(np.float32)
        r, dt, mb = measure(lambda: kcenter_greedy(X, a.k, seed=0))
        res["kcenter_isotropic"] = {"n": a.n, "d": a.d, "k": a.k, "seconds": round(dt, 2), "peak_extra_mb": round(mb),
                                    "memory_vs_input": round((input_mb + mb) / input_mb, 2),
                                    "distances_computed_vs_unpruned": round(r.evaluated / (a.n * a.k), 4)}
        print(json.dumps(res), flush=True)
    del X

    Xs = mixture(a.nxn_n, a.d, 200, 2)
    init = list(range(100))
    ref, dt_ref, mb_ref = measure(lambda: diverseevol_kcenter(Xs, a.nxn_k, init))
    ours, dt_ours, mb_ours = measure(lambda: kcenter_greedy(Xs, a.nxn_k, initial=init))
    res["nxn_comparison"] = {"n": a.nxn_n, "d": a.d, "k": a.nxn_k, "initial": len(init),
                             "diverseevol_seconds": round(dt_ref, 2), "diverseevol_peak_extra_mb": round(mb_ref),
                             "winnow_seconds": round(dt_ours, 2), "winnow_peak_extra_mb": round(mb_ours),
                             "time_ratio": round(dt_ref / dt_ours, 1), "memory_ratio": round(mb_ref / max(mb_ours, 1), 1),
                             "same_picks": ref == ours.order.tolist()}
    print(json.dumps(res), flush=True)
    del Xs

    Xf = mixture(a.fl_n, a.fl_d, 1000, 3)
    fl, dt, mb = measure(lambda: facility_location(Xf, a.fl_k, knn=16))
    res["facility_location"] = {"n": a.fl_n, "d": a.fl_d, "k": a.fl_k, "knn": 16, "index": "IVF (N > 50k)",
                                "seconds": round(dt, 2), "peak_extra_mb": round(mb),
                                "objective_gain_first_last": [round(float(fl.gains[0]), 2), round(float(fl.gains[-1]), 3)]}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
