"""Throughput of IFD scoring on the bundled sample: naive batch-1 loop vs bare batched engine vs the
full Ray job. All three score the same token ids (clean rendering) with the same model.

    python -m bench.throughput [--rows 300] [--offset 0] [--data PATH] [--threads 2] [--skip-naive] [--skip-job]

* naive: the reference-code style — one row at a time, two separate forward passes, full-vocabulary
  logits, a Python loop over every position with log_softmax + NLL + .item() (Cherry data_analysis.py).
* bare: scoring.engine.score_rows with the HF backend in this process (length-sorted padded batches,
  LM head on response positions only), no Ray, no file I/O.
* bare_fast: the same plus shared-prefix reuse and packed rows (the job's CPU defaults:
  ``backend.reuse_prefix=true backend.pack_width=256``).
* job: jobs.ifd.run on the same rows (read → Parquet shards → Ray Data actors → merge → outputs).

``--data`` takes a JSONL file or a JSON array (``.gz`` too; e.g. ../shared/data/alpaca_data.json.gz) and
``--offset`` skips that many rows first; the job gets the same rows as a JSONL file.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from records.readers import Fields, iter_raw, normalise
from jobs.settings import ROOT
from records import schema
from jobs.specs import AUTO_PACK_WIDTH
from scoring.batching import BatchPolicy
from scoring.engine import score_rows
from scoring.hf import HFScorer
from scoring.models import load_model, resolve_model
from scoring.passes import RenderConfig, render_rows


def load_rows(path: Path, n: int, offset: int = 0, fmt: str = "jsonl") -> list[dict]:
    rows = []
    for r in iter_raw(path, fmt):
        if r.position < offset:
            continue
        if r.position >= offset + n:
            break
        r = normalise(r, Fields())
        pos = r.position - offset
        rows.append({schema.ID: str(pos), schema.POSITION: pos, schema.ERROR: r.error, **r.fields})
    return rows


def write_jsonl(rows: list[dict], path: Path) -> None:
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in (schema.INSTRUCTION, schema.INPUT, schema.OUTPUT)}) + "\n")


def timed_bare(rows: list[dict], cfg: RenderConfig, tok, backend: HFScorer) -> float:
    score_rows(rows[:8], cfg, tok, backend)  # warm-up
    backend.tokens_forwarded = backend.forward_calls = 0
    t0 = time.time()
    score_rows(rows, cfg, tok, backend)
    return round(time.time() - t0, 2)


@torch.inference_mode()
def naive(model, rendered) -> float:
    t0 = time.time()
    for r in rendered:
        for p in r.passes.values():
            ids = torch.tensor([p.ids])
            logits = model(ids).logits[0]
            losses = [F.nll_loss(F.log_softmax(logits[i - 1], -1).unsqueeze(0), ids[0, i:i + 1]).item()
                      for i in range(1, len(p.ids))]
            _ = sum(losses[p.n_ctx - 1:])
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--data", default=str(ROOT / "data" / "alpaca_sample.jsonl"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--skip-job", action="store_true")
    ap.add_argument("--naive-s", type=float, default=None, help="reuse a measured naive time")
    ap.add_argument("--out", default="bench/results/throughput.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = Path(a.data)
    fmt = "jsonl" if ".jsonl" in data.name else "json"
    rows = load_rows(data, a.rows, a.offset, fmt)
    model_dir = resolve_model("smollm2-135m-instruct")
    tok, model = load_model(model_dir)
    cfg = RenderConfig()
    rendered = render_rows(rows, cfg, tok)
    tokens = sum(len(p.ids) for r in rendered for p in r.passes.values())
    res: dict = {"rows": len(rows), "data": data.name, "offset": a.offset, "tokens_both_passes": tokens,
                 "threads": a.threads, "model": "SmolLM2-135M-Instruct fp32", "cpu_count": os.cpu_count()}
    res["bare_s"] = timed_bare(rows, cfg, tok, HFScorer(model, tok.pad_token_id, BatchPolicy()))
    res["bare_tok_s"] = round(tokens / res["bare_s"], 1)
    fast = HFScorer(model, tok.pad_token_id, BatchPolicy(pack_width=AUTO_PACK_WIDTH), reuse_prefix=True)
    res["bare_fast_s"] = timed_bare(rows, cfg, tok, fast)
    res["bare_fast_tok_s"] = round(tokens / res["bare_fast_s"], 1)
    res["bare_fast_tokens_forwarded"] = fast.tokens_forwarded
    res["speedup_fast_vs_bare"] = round(res["bare_s"] / res["bare_fast_s"], 2)
    print(json.dumps(res), flush=True)
    if a.naive_s:
        res["naive_s"] = a.naive_s
    elif not a.skip_naive:
        res["naive_s"] = round(naive(model, rendered), 2)
    if "naive_s" in res:
        res["naive_tok_s"] = round(tokens / res["naive_s"], 1)
        res["speedup_bare_vs_naive"] = round(res["naive_s"] / res["bare_s"], 2)
        res["speedup_bare_fast_vs_naive"] = round(res["naive_s"] / res["bare_fast_s"], 2)
        print(json.dumps(res), flush=True)
    if not a.skip_job:
        del model
        from jobs import ifd
        from jobs.settings import compose

        with tempfile.TemporaryDirectory() as tmp:
            write_jsonl(rows, Path(tmp) / "rows.jsonl")
            cfg_job = compose("ifd", [f"output_dir={tmp}/out", f"data.path={tmp}/rows.jsonl"])
            t0 = time.time()
            result = ifd.run(cfg_job)
            res["job_wall_s"] = round(time.time() - t0, 2)
            res["job_timings_s"] = result.timings
        res["job_score_stage_tok_s"] = round(tokens / result.timings["score"], 1)
        res["job_overhead_vs_bare"] = round(result.timings["score"] / res["bare_s"], 3)
        res["job_overhead_vs_bare_fast"] = round(result.timings["score"] / res["bare_fast_s"], 3)
        if "naive_s" in res:
            res["speedup_job_vs_naive"] = round(res["naive_s"] / result.timings["score"], 2)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
