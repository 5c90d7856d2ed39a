"""The driver of a whole ``jobs.ifd`` run at scale with the model out of the way: staging, merge,
completeness check, selection and every output (scores.parquet, selected.jsonl/.parquet, manifest,
card, report), run by the real job in this process. Only the scoring stage is replaced: instead of
Ray actors, each staged shard gets a synthetic score shard committed through the same
``records.shards.write_shard`` (sums and counts drawn from the row's own length; 0.1% of rows carry
an error reason), so the merge and everything after it see what a scored run leaves behind.

    python -m bench.scale_driver DATA OUT_DIR      # prints one JSON line: stage seconds, peak RSS

Run by ``bench.scale --driver`` in a fresh process per size.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import jobs  # noqa: F401  first, as in ``python -m jobs.ifd``: the package sets the driver's Arrow allocator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs import ifd
from records import schema
from records.shards import write_shard
from scoring.engine import empty_columns


def synthetic_scores(shard_dir: Path, staged, spec, res, cfg) -> tuple[int, int]:
    """Commit a score shard for every staged shard (what ``ifd.score_missing`` would leave)."""
    passes = ("cond", "uncond")
    for k, path in enumerate(staged.shards):
        t = pq.read_table(path, columns=[schema.ID, schema.POSITION, schema.OUTPUT, schema.ERROR])
        n = t.num_rows
        pos = t.column(schema.POSITION).to_numpy()
        rng = np.random.default_rng(int(pos[0]) if n else k)
        cols = empty_columns(n, passes)
        resp = np.maximum(1, (np.array([len(s) for s in t.column(schema.OUTPUT).to_pylist()]) // 4))
        cols[schema.RESPONSE_TOKENS][:] = resp
        cols[schema.PROMPT_TOKENS][:] = rng.integers(20, 120, n)
        for p, lo, hi in (("cond", 0.5, 2.0), ("uncond", 1.0, 2.5)):
            cols[schema.tokens_col(p)][:] = resp
            cols[schema.nll_sum_col(p)][:] = resp * rng.uniform(lo, hi, n)
        err = np.asarray(t.column(schema.ERROR).to_pylist(), dtype=object)
        err[rng.random(n) < 0.001] = schema.E_SCORER + ":Synthetic"
        cols[schema.ERROR] = err
        table = pa.table({schema.ID: t.column(schema.ID), schema.POSITION: pos,
                          **{c: pa.array(v, pa.string() if c == schema.ERROR else None) for c, v in cols.items()}})
        write_shard(shard_dir, k, table)
    return 0, len(staged.shards)


def main() -> None:
    from jobs.settings import compose

    data, out = sys.argv[1], sys.argv[2]
    cfg = compose("ifd", [f"data.path={data}", f"output_dir={out}", "selection.budget=0.05"])
    ifd.score_missing = synthetic_scores  # the one replaced stage
    t0 = time.time()
    result = ifd.run(cfg)
    wall = time.time() - t0
    t = result.timings
    print(json.dumps({
        "rows": result.n_rows, "selected": result.n_selected, "wall_s": round(wall, 1),
        "timings_s": t,
        "after_scoring_s": round(wall - sum(t.get(k, 0) for k in ("model", "inspect", "read", "score")), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))


if __name__ == "__main__":
    main()
