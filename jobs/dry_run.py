"""``dry_run=true``: stage and tokenise only, then say what scoring would cost.

Rows, valid rows, tokens per pass, padded tokens (the backend's own length-sorted batch plan, chunk by
chunk as the actors will run it), and the estimated scoring time on this hardware (from a pilot of a few
seconds of real forwards on the driver) and on a GPU at the measured MFU. Printed and written to
``manifest.json``; no scores, no selection.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import pyarrow.parquet as pq

from jobs.skeleton import PoolRun, Result
from jobs.specs import Resources, ScorerSpec
from records import schema
from records.layout import SCORES_FILE
from records.staging import Staged
from scoring import estimate

log = logging.getLogger(__name__)

PILOT_ROWS = 8  # rows per pilot call


def refuse_finished(run: PoolRun) -> None:
    """A dry run writes ``manifest.json``: never over a finished run's."""
    if (run.out / SCORES_FILE).exists():
        raise ValueError(
            f"{run.out} holds a finished run; a dry run would replace its manifest.json: choose another output_dir"
        )


def reuses_prefix(spec: ScorerSpec) -> bool:
    """Whether the scorer caches shared prefixes (the HF backend's own plan; vLLM schedules its own)."""
    return spec.reuse_prefix and spec.backend == "hf"


def render_staged(staged: Staged, spec: ScorerSpec, tok: Any) -> tuple[estimate.TokenCounts, list[Any]]:
    """Tokenise every staged row as the scoring actors will; (counts, the first shard's rendered rows)."""
    from jobs.actor import render_isolated

    counts, first = estimate.TokenCounts(), []
    for k, shard in enumerate(staged.shards):
        rows = pq.read_table(shard, columns=schema.RECORD_COLUMNS).to_pylist()
        rendered = render_isolated(rows, spec.render, tok)
        size = int(spec.chunk_rows or len(rendered) or 1)
        for s in range(0, len(rendered), size):
            chunk = rendered[s : s + size]
            estimate.count_chunk(chunk, spec.render.passes, spec.policy, counts, reuses_prefix(spec))
        if k == 0:
            first = rendered
    return counts, first


def pilot(spec: ScorerSpec, rendered: list[Any], threads: int, seconds: float) -> dict[str, Any]:
    """Real forwards on the driver for about ``seconds`` (after one warm-up call): padded tokens/s."""
    import torch

    from jobs.actor import build_backend
    from scoring.engine import score_rendered

    if threads:
        torch.set_num_threads(int(threads))
    t_load = time.perf_counter()
    _, backend = build_backend(spec)
    load_s = time.perf_counter() - t_load
    valid = [r for r in rendered if not r.error]
    chunks = [valid[s : s + PILOT_ROWS] for s in range(0, len(valid), PILOT_ROWS)]
    if not chunks:
        return {"rows": 0}
    score_rendered(chunks[0], spec.render.passes, backend)  # warm-up: first-call allocations
    counted, t0, n = estimate.TokenCounts(), time.perf_counter(), 0
    for chunk in chunks[1:] or chunks:
        score_rendered(chunk, spec.render.passes, backend)
        estimate.count_chunk(chunk, spec.render.passes, spec.policy, counted, reuses_prefix(spec))
        n += len(chunk)
        if time.perf_counter() - t0 >= seconds:
            break
    took = time.perf_counter() - t0
    model = getattr(backend, "model", None)
    shape = {}
    if model is not None:
        c = model.config
        shape = {
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "hidden": int(c.hidden_size),
            "vocab": int(c.vocab_size),
        }
    return {
        "rows": n,
        "model_load_s": round(load_s, 3),
        "seconds": round(took, 3),
        "padded_tokens": counted.padded_tokens,
        "padded_tokens_per_s": counted.padded_tokens / max(took, 1e-9),
        "threads": int(threads or torch.get_num_threads()),
        **shape,
    }


def figures(counts: estimate.TokenCounts, measured: dict[str, Any], actors: int) -> dict[str, Any]:
    """The dry run's record: counts, the pilot, and both time estimates."""
    out: dict[str, Any] = {
        "rows": counts.rows,
        "valid_rows": counts.valid_rows,
        "tokens_per_pass": counts.tokens,
        "scored_tokens_per_pass": counts.scored,
        "tokens": counts.total_tokens,
        "padded_tokens": counts.padded_tokens,
        "padding_share": round(1 - counts.total_tokens / max(counts.padded_tokens, 1), 4),
        "forwards": counts.forwards,
        "pilot": measured,
        "actors": actors,
    }
    if measured.get("padded_tokens_per_s"):
        compute = estimate.seconds(counts.padded_tokens, measured["padded_tokens_per_s"], actors)
        out["estimated_score_s_here"] = round(measured["model_load_s"] + compute, 1)  # each actor loads once
    if measured.get("parameters"):
        flops = estimate.forward_flops(
            measured["parameters"], measured["hidden"], measured["vocab"], counts.padded_tokens, counts.scored_tokens
        )
        out["forward_flops"] = flops
        out["gpu"] = {
            "peak_flops": estimate.GPU_PEAK_FLOPS,
            "mfu": estimate.GPU_MEASURED_MFU,
            "basis": "H100 SXM bf16 dense peak x the bare engine's measured MFU (BENCHMARKS.md)",
        }
        out["estimated_score_s_gpu"] = flops / (estimate.GPU_PEAK_FLOPS * estimate.GPU_MEASURED_MFU)
    return out


def summary_lines(f: dict[str, Any]) -> list[str]:
    lines = [
        f"dry run: {f['rows']} rows, {f['valid_rows']} valid",
        *(
            f"  pass {name}: {n} tokens ({f['scored_tokens_per_pass'][name]} scored)"
            for name, n in f["tokens_per_pass"].items()
        ),
        f"  padded tokens: {f['padded_tokens']} in {f['forwards']} forwards "
        f"({100 * f['padding_share']:.1f}% padding)",
    ]
    p = f["pilot"]
    if "estimated_score_s_here" in f:
        lines.append(
            f"  estimated scoring time here: {f['estimated_score_s_here']:.0f} s with {f['actors']} actor(s) "
            f"(model load {p['model_load_s']:.1f} s; pilot: {p['rows']} rows in {p['seconds']:.1f} s, {p['padded_tokens_per_s']:.0f} padded tokens/s, "
            f"{p['threads']} threads)"
        )
    if "estimated_score_s_gpu" in f:
        lines.append(
            f"  estimated scoring time on one H100 at {100 * estimate.GPU_MEASURED_MFU:.1f}% MFU: "
            f"{f['estimated_score_s_gpu']:.3g} s of forwards ({f['forward_flops']:.3g} FLOPs; model load and "
            "start-up not included)"
        )
    return lines


def local_actors(cfg: Any, res: Resources) -> int:
    """The pool a local run would start, without starting Ray."""
    from jobs.pipeline import local_cpus

    return int(res.pool({"CPU": local_cpus(cfg.cluster)})[0])


def finish(run: PoolRun, staged: Staged, spec: ScorerSpec, res: Resources) -> Result:
    """Tokenise, pilot, print, write the manifest; the run stops here."""
    from scoring.models import load_tokenizer

    tok = load_tokenizer(spec.model.path, spec.model.trust_remote_code)
    t0 = time.perf_counter()
    counts, first = render_staged(staged, spec, tok)
    run.timings["tokenise"] = round(time.perf_counter() - t0, 3)
    pilot_s = float(run.cfg.get("dry_run_pilot_s", 3.0))
    measured = pilot(spec, first, res.threads, pilot_s) if spec.backend == "hf" else {"skipped": spec.backend}
    f = figures(counts, measured, local_actors(run.cfg, res))
    for line in summary_lines(f):
        print(line)
    run.write_manifest(staged, dry_run=f, scoring={"backend": spec.backend, "render": asdict(spec.render)})
    return Result(run.out, staged.n_rows, 0, {"dry_run": 1}, run.timings)
