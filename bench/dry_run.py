"""How good is ``dry_run``'s estimate? The dry run and the real job side by side on the same input.

    python -m bench.dry_run [--rows 300] [--out /tmp/winnow-bench-dry]

Runs ``winnow ifd dry_run=true`` and then ``winnow ifd`` (bundled SmolLM2, bundled 300 Alpaca rows unless
``--data``), both as subprocesses the way a user runs them, and records: the dry run's own wall time, its
estimate, the real run's score stage and whole wall time, when the first progress line came (share of
rows), and how many Ray chatter lines reached the terminal. Writes ``bench/results/dry_run.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WINNOW = str(Path(sys.executable).with_name("winnow"))
CHATTER = ("core_worker.cc", "Progress bars disabled", "worker processes", "Starting execution")


def winnow(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.time()
    r = subprocess.run([WINNOW, "ifd", *args], capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        sys.exit(f"winnow ifd {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return time.time() - t0, r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/alpaca_sample.jsonl")
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--out", default="/tmp/winnow-bench-dry")
    a = ap.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)  # the benchmark's own scratch directory
    common = [f"data.path={a.data}", f"data.limit={a.rows}"]
    dry_s, d = winnow([*common, "dry_run=true", f"output_dir={out / 'dry'}"])
    f = json.loads((out / "dry" / "manifest.json").read_text())["dry_run"]
    real_s, r = winnow([*common, f"output_dir={out / 'run'}"])
    m = json.loads((out / "run" / "manifest.json").read_text())
    text = r.stdout + r.stderr
    first = next(ln for ln in text.splitlines() if ln.startswith("scored "))
    res = {
        "rows": a.rows,
        "data": a.data,
        "dry_run_wall_s": round(dry_s, 1),
        "estimated_score_s_here": f["estimated_score_s_here"],
        "estimated_score_s_gpu": f["estimated_score_s_gpu"],
        "padding_share": f["padding_share"],
        "pilot": f["pilot"],
        "real_score_stage_s": m["timings_s"]["score"],
        "real_wall_s": round(real_s, 1),
        "estimate_over_actual": round(f["estimated_score_s_here"] / m["timings_s"]["score"], 3),
        "first_progress_line": first,
        "first_progress_share": float(re.search(r"\(([\d.]+)%", first).group(1)) / 100,
        "progress_lines": sum(1 for ln in text.splitlines() if ln.startswith("scored ")),
        "chatter_lines": sum(1 for ln in text.splitlines() if any(c in ln for c in CHATTER)),
    }
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "dry_run.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
