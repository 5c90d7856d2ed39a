"""Does one actor call per shard cost throughput? The whole IFD job on the same rows with small shards
(the default partitioning: many calls, small length-sorted pools) and with one big shard (one call,
one big pool), alternated so machine noise hits both alike.

    python -m bench.call_size --rows 96 --small 32 --repeats 2
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=96)
    ap.add_argument("--small", type=int, default=32, help="rows per shard of the many-calls arm")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="bench/results/call_size.json")
    a = ap.parse_args()
    import numpy as np
    import pyarrow.parquet as pq

    from jobs import ifd
    from jobs.settings import compose

    arms = {"per_shard_small": a.small, "one_call": a.rows}
    res: dict = {"rows": a.rows, "arms": {k: [] for k in arms}}
    scores = {}
    for rep in range(a.repeats):
        for name, rps in arms.items():
            with tempfile.TemporaryDirectory() as tmp:
                cfg = compose("ifd", [f"output_dir={tmp}/o", f"data.limit={a.rows}", f"data.rows_per_shard={rps}"])
                t0 = time.time()
                r = ifd.run(cfg)
                res["arms"][name].append({"score_s": r.timings["score"], "job_s": round(time.time() - t0, 2)})
                scores[name] = pq.read_table(Path(tmp) / "o" / "scores.parquet").column("cond_nll_sum").to_numpy()
            print(name, rep, res["arms"][name][-1], flush=True)
    a_, b_ = scores["per_shard_small"], scores["one_call"]
    res["max_rel_diff_cond_nll_sum"] = float(np.nanmax(np.abs(a_ - b_) / np.abs(b_)))
    for name in arms:
        res[f"{name}_median_score_s"] = float(np.median([x["score_s"] for x in res["arms"][name]]))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
