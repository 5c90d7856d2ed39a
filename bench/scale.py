"""Driver-side staging at scale: synthetic Alpaca-shaped rows as JSON lines and as one JSON array,
staged into Parquet shards in a fresh process each (wall time, rows/s, peak RSS of that process).

    python -m bench.scale [--rows 1000000] [--out bench/results/scale.json]
    python -m bench.scale --driver --rows 1000000 10000000 [--out bench/results/scale_driver.json]
    python -m bench.scale --kb --rows 1000000 [--out bench/results/scale_kb.json]

No model is involved: this is what the driver does before any actor starts (count + digest pass, parse,
id + duplicate check, shard writes). ``--driver``: the whole ``jobs.ifd`` driver per size, in a fresh
process each (``bench.scale_driver``: staging, synthetic score shards, merge, selection, outputs).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("data model answer explain list give three write short story the a of and to in for with "
         "summary poem code python function table reason because example").split()


def sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def write_inputs(n: int, d: Path, array: bool = True) -> tuple[Path, Path]:
    """The same ``n`` rows as ``rows.jsonl`` and ``rows.json`` (an array; skipped with ``array=False``),
    each row distinct."""
    rng = random.Random(0)
    jl, ja = d / "rows.jsonl", d / "rows.json"
    with open(jl, "w") as f, open(ja if array else os.devnull, "w") as g:
        g.write("[\n")
        for i in range(n):
            rec = {"instruction": f"{sentence(rng, 4, 14)} #{i}", "input": sentence(rng, 0, 8) if i % 3 else "",
                   "output": sentence(rng, 8, 60)}
            line = json.dumps(rec)
            f.write(line + "\n")
            g.write(("  " if i == 0 else ",\n  ") + line)
        g.write("\n]\n")
    return jl, ja


CHILD = """
import json, resource, sys, time
from pathlib import Path
from records.staging import stage_input
t0 = time.time()
st = stage_input(Path(sys.argv[1]), Path(sys.argv[2]), fmt=sys.argv[3])
dt = time.time() - t0
print(json.dumps({"rows": st.n_rows, "shards": len(st.shards), "seconds": round(dt, 2),
                  "rows_per_s": round(st.n_rows / dt), "peak_rss_mb": round(resource.getrusage(
                  resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def stage(path: Path, fmt: str, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(path), str(out), fmt], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1], check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def driver(sizes: list[int], out: str, module: str = "bench.scale_driver") -> None:
    """``module`` (a child that prints one JSON line) per size, each on its own freshly written JSONL input."""
    res: dict = {"sizes": {}}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            jl, _ = write_inputs(n, d, array=False)
            r = subprocess.run([sys.executable, "-m", module, str(jl), str(d / "run")],
                               capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], check=True)
            res["sizes"][str(n)] = {"input_mb": round(jl.stat().st_size / 2**20),
                                    **json.loads(r.stdout.strip().splitlines()[-1])}
            print(json.dumps(res["sizes"][str(n)]), flush=True)
    rss = [v["peak_rss_mb"] for v in res["sizes"].values()]
    res["rss_ratio_last_to_first"] = round(rss[-1] / rss[0], 2)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--driver", action="store_true", help="the whole jobs.ifd driver per size")
    ap.add_argument("--kb", action="store_true", help="the whole jobs.kb_build per size")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.driver:
        driver(a.rows, a.out or "bench/results/scale_driver.json")
        return
    if a.kb:
        driver(a.rows, a.out or "bench/results/scale_kb.json", "bench.scale_kb")
        return
    a.rows, a.out = a.rows[0], a.out or "bench/results/scale.json"
    res: dict = {"rows": a.rows}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.time()
        jl, ja = write_inputs(a.rows, d)
        res["input_mb"] = {"jsonl": round(jl.stat().st_size / 2**20), "json": round(ja.stat().st_size / 2**20)}
        res["generate_s"] = round(time.time() - t0, 1)
        res["stage_jsonl"] = stage(jl, "jsonl", d / "out_jsonl")
        print(json.dumps(res), flush=True)
        res["stage_json_array"] = stage(ja, "json", d / "out_json")
        print(json.dumps(res), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
