"""``jobs.kb_build`` at scale with the encoder out of the way: the real job (input scan, streamed KB
row staging into ``rows.parquet`` and embedding shards, the three streamed index passes, the
artifact) in this process, with only the actor pass replaced: each staged shard gets synthetic raw
embeddings (a 2,000-component Gaussian mixture in ``--dim`` dimensions, float32, written where the
actors write them).

    python -m bench.scale_kb KB.jsonl OUT_DIR [DIM]   # prints one JSON line: stage seconds, peak RSS

Run by ``bench.scale --kb`` in a fresh process. Peak RSS is reported with the index's own size
(what faiss holds: vectors + inverted lists + centroids) so the driver's overhead beyond it shows.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from jobs import kb_build
from records.writers import save_npy

DIM = 576  # SmolLM2-135M's hidden size: what the bundled encoder gives


def synthetic_embeddings(kb, stage: Path, enc, cfg) -> None:
    dim = int(cfg.get("bench_dim", DIM))
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2000, dim)).astype(np.float32) * 3
    (stage / kb_build.EMB_DIR).mkdir()
    for k, (start, n) in enumerate(kb.bounds):
        r = np.random.default_rng(start)
        E = centres[r.integers(0, len(centres), n)] + r.normal(size=(n, dim)).astype(np.float32) + 5.0
        save_npy(E.astype(np.float32), stage / kb_build.EMB_DIR / f"part-{k:05d}.npy")


def main() -> None:
    from omegaconf import open_dict

    from jobs.settings import compose

    src, out = sys.argv[1], sys.argv[2]
    cfg = compose("kb_build", [f"kb.path={src}", f"kb.output={out}"])
    with open_dict(cfg):
        cfg.bench_dim = int(sys.argv[3]) if len(sys.argv) > 3 else DIM
    kb_build.embed_kb_rows = synthetic_embeddings  # the one replaced stage
    t0 = time.time()
    m = kb_build.run(cfg)
    wall = time.time() - t0
    index_mb = Path(out, "index.faiss").stat().st_size / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "rows": m["rows"], "dim": m["dim"], "index": m["index"], "wall_s": round(wall, 1),
        "timings_s": m["timings_s"], "peak_rss_mb": round(peak), "index_mb": round(index_mb),
        "peak_rss_beyond_index_mb": round(peak - index_mb),
    }))


if __name__ == "__main__":
    main()
