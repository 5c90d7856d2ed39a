"""Where the Ray job loses to the bare engine on this machine (issue 20's overhead item).

    python -m bench.job_overhead [--rows 200] [--offset 2000] [--window 25 55]

Three measurements, side by side in one run, on the same Alpaca rows with SmolLM2 and the CPU defaults
(prefix reuse + packing):

1. **padding by shard size** (tokenizer only): the positions the decoder computes when each actor call
   plans only its own shard's passes, against one plan over every row (the bare engine's);
2. **bare engine, shard by shard**: wall time, CPU time and the cores it keeps busy;
3. **the job** (``jobs.ifd``): its score stage, and between two snapshots inside the steady scoring
   window (``--window``, seconds after the job starts) the cores each process used — the scoring actor
   against Ray's helper processes and the driver.

Writes ``bench/results/job_overhead.json`` (``--out``); skips (exit 0) when the Alpaca data is absent.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.corruption import ALPACA
from bench.throughput import load_rows, write_jsonl
from jobs.settings import ROOT


def padding_by_shard(rendered: list[Any], passes: tuple[str, ...], sizes: list[int]) -> dict[str, Any]:
    """Decoder positions (rows × widest row, summed over forwards) when planned per shard of each size."""
    from jobs.specs import AUTO_PACK_WIDTH
    from scoring.batching import BatchPolicy
    from scoring.layout import plan_forwards

    policy = BatchPolicy(pack_width=AUTO_PACK_WIDTH)
    out = {}
    for size in sizes:
        padded = real = forwards = 0
        for s in range(0, len(rendered), size):
            items = [r.passes[p] for r in rendered[s:s + size] if not r.error for p in passes]
            plan = plan_forwards(items, policy, True, AUTO_PACK_WIDTH)
            padded, real, forwards = padded + plan.padded_tokens, real + sum(plan.lengths), forwards + len(plan.batches)
        out[str(size)] = {"padded": padded, "real": real, "forwards": forwards, "pad_share": round(1 - real / padded, 4)}
    return out


def bare(rows: list[dict], shard: int) -> dict[str, float]:
    """The engine in this process, one plan per shard of ``shard`` rows, after a warm-up."""
    from jobs.specs import AUTO_PACK_WIDTH
    from scoring.batching import BatchPolicy
    from scoring.engine import score_rows
    from scoring.hf import HFScorer
    from scoring.models import load_model, resolve_model
    from scoring.passes import RenderConfig

    tok, model = load_model(resolve_model("smollm2-135m-instruct"))
    cfg = RenderConfig()
    fast = HFScorer(model, tok.pad_token_id, BatchPolicy(pack_width=AUTO_PACK_WIDTH), reuse_prefix=True)
    score_rows(rows[:8], cfg, tok, fast)
    c0, t0 = time.process_time(), time.time()
    for s in range(0, len(rows), shard):
        score_rows(rows[s:s + shard], cfg, tok, fast)
    wall, cpu = time.time() - t0, time.process_time() - c0
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cores": round(cpu / wall, 3)}


def bare_arms(rows: list[dict], shard: int, skip_per_shard: bool) -> dict[str, Any]:
    out = {"bare_one_plan": bare(rows, len(rows))}
    if not skip_per_shard:
        out["bare_per_shard"] = bare(rows, shard)
    return out


def bare_elsewhere(a: argparse.Namespace) -> dict[str, Any]:
    """The bare arms in a fresh process: after a job, this process holds the driver's allocator
    setting (``skeleton.release_freed_memory``: every block ≥ 256 KiB its own mapping), which made
    the bare forward 26% slower here, and whatever Ray leaves behind."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bare.json"
        cmd = [sys.executable, "-m", "bench.job_overhead", "--rows", str(a.rows), "--offset", str(a.offset),
               "--skip-job", "--out", str(out)] + (["--skip-per-shard"] if a.skip_per_shard else [])
        subprocess.run(cmd, check=True)
        got = json.loads(out.read_text())
    return {k: v for k, v in got.items() if k.startswith("bare_")}


def snapshot() -> dict[int, tuple[str, float]]:
    import psutil

    snap = {}
    for p in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        try:
            t = p.info["cpu_times"]
            snap[p.info["pid"]] = (" ".join(p.info["cmdline"] or [])[:70], t.user + t.system)
        except Exception:  # noqa: BLE001 - a process that ended between listing and reading
            continue
    return snap


def job(rows: list[dict], window: tuple[float, float]) -> dict[str, Any]:
    """``jobs.ifd`` on the rows, with per-process cores between two snapshots inside ``window``."""
    from jobs import ifd
    from jobs.settings import compose

    snaps: dict[str, tuple[float, dict]] = {}

    def sample() -> None:
        time.sleep(window[0])
        snaps["a"] = (time.time(), snapshot())
        time.sleep(window[1] - window[0])
        snaps["b"] = (time.time(), snapshot())

    with tempfile.TemporaryDirectory() as tmp:
        write_jsonl(rows, Path(tmp) / "rows.jsonl")
        cfg = compose("ifd", [f"output_dir={tmp}/out", f"data.path={tmp}/rows.jsonl"])
        threading.Thread(target=sample, daemon=True).start()
        result = ifd.run(cfg)
    out: dict[str, Any] = {"timings_s": result.timings}
    if "b" not in snaps:
        out["note"] = "the job ended before the window closed; widen --rows or narrow --window"
        return out
    (ta, a), (tb, b) = snaps["a"], snaps["b"]
    dt = tb - ta
    use = sorted(((round((b[p][1] - a.get(p, ("", 0.0))[1]) / dt, 3), b[p][0]) for p in b), reverse=True)
    actor = sum(c for c, name in use if "ScoringActor" in name)
    out["window_s"] = round(dt, 1)
    out["cores_all"] = round(sum(c for c, _ in use), 3)
    out["cores_scoring_actor"] = round(actor, 3)
    out["cores_other"] = round(sum(c for c, _ in use) - actor, 3)
    out["processes"] = [{"cores": c, "process": name} for c, name in use if c >= 0.005]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--offset", type=int, default=2000)
    ap.add_argument("--window", type=float, nargs=2, default=(25.0, 55.0))
    ap.add_argument("--skip-per-shard", action="store_true", help="skip the bare engine's shard-by-shard arm")
    ap.add_argument("--job-first", action="store_true",
                    help="run the job before the bare arms (alternate the order; the bare arms then run in a fresh process)")
    ap.add_argument("--skip-job", action="store_true", help="the padding and bare arms only")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "job_overhead.json"))
    a = ap.parse_args()
    if not ALPACA.exists():
        print(f"skipped: {ALPACA} not found")
        return
    import torch

    from records.staging import shard_size
    from scoring.models import load_tokenizer, resolve_model
    from scoring.passes import RenderConfig, render_rows

    torch.set_num_threads(2)
    rows = load_rows(ALPACA, a.rows, a.offset, "json")
    shard = shard_size(len(rows))
    cfg = RenderConfig()
    rendered = render_rows(rows, cfg, load_tokenizer(resolve_model("smollm2-135m-instruct")))
    res: dict[str, Any] = {"rows": len(rows), "offset": a.offset, "job_rows_per_shard": shard}
    res["padding_by_shard_rows"] = padding_by_shard(rendered, cfg.passes, sorted({32, shard, 4 * shard, len(rows)}))
    res["order"] = "job, bare" if a.job_first else "bare, job"
    if a.job_first:
        import ray

        res["job"] = job(rows, tuple(a.window))
        ray.shutdown()  # Ray's helper processes must not share the CPU with the bare arm
        res.update(bare_elsewhere(a))
    else:
        res.update(bare_arms(rows, shard, a.skip_per_shard))
        if not a.skip_job:
            print(json.dumps(res), flush=True)
            res["job"] = job(rows, tuple(a.window))
    if "job" in res:
        score = res["job"]["timings_s"]["score"]
        res["job_score_vs_bare_one_plan"] = round(score / res["bare_one_plan"]["wall_s"], 3)
        if "bare_per_shard" in res:
            res["job_score_vs_bare_per_shard"] = round(score / res["bare_per_shard"]["wall_s"], 3)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
