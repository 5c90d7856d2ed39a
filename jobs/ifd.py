"""IFD / Superfiltering: score every row (conditioned + unconditioned passes), keep the best.

    python -m jobs.ifd data.path=train.jsonl selection.budget=0.05 output_dir=out/
    python -m jobs.ifd method=superfilter ...        # template-free, perplexity ratio
    python -m jobs.ifd method=cherry ...             # Cherry LLM reference semantics
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from jobs import outputs, report, rundir, settings, shards
from jobs.pipeline import run_stage, shard_item
from jobs.select import IFD_PLOTS, select_ifd, selection_settings, write_ifd_report
from jobs.staging import RECORDS_DIR, InputInfo, Staged, inspect_input, stage_input
from scoring.models import resolve_model

log = logging.getLogger(__name__)

# top-level names this job writes under output_dir (jobs.rundir: owned by the run, nothing else touched)
WRITES = (RECORDS_DIR, shards.SHARDS_DIR, outputs.SCORES, outputs.SELECTED, outputs.MANIFEST, report.REPORT,
          *IFD_PLOTS)


@dataclass
class Result:
    """What a run produced (also returned to tests)."""

    output_dir: Path
    n_rows: int
    n_selected: int
    counts: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.time()
    yield
    timings[name] = round(time.time() - t0, 3)
    log.info("stage %s: %.1f s", name, timings[name])


def run(cfg: Any) -> Result:
    """Run the whole IFD job for a composed config (callable from tests without Hydra)."""
    settings.validate(cfg)
    rc = settings.render_config(cfg)
    sel = selection_settings(cfg, settings.VARIANTS[cfg.method.variant])
    timings: dict[str, float] = {}
    with timed(timings, "model"):
        model_path = resolve_model(cfg.model.name)
    settings.check_chat_template(rc, model_path, bool(cfg.model.trust_remote_code))
    data_path = settings.data_path(cfg)
    rundir.check_inputs(Path(cfg.output_dir), WRITES, [data_path])  # before the input is even read
    with timed(timings, "inspect"):  # a missing, damaged or empty input fails before any directory exists
        src = inspect_input(data_path, cfg.data.format, cfg.data.limit, cfg.data.rows_per_shard)
    with rundir.claim(cfg.output_dir, "ifd", WRITES, [data_path]) as run_dir:
        return execute(cfg, run_dir.path, data_path, src, model_path, rc, sel, timings)


def execute(cfg: Any, out: Path, data_path: Path, src: InputInfo, model_path: Path, rc: Any, sel: Any,
            timings: dict[str, float]) -> Result:
    """The job's stages inside the claimed run directory ``out``."""
    from omegaconf import OmegaConf

    spec = settings.actor_spec(cfg, model_path, rc)
    identity = outputs.model_identity(model_path, cfg.model.name)
    with timed(timings, "read"):
        # refuse a mismatching resume before anything in output_dir is overwritten
        shard_dir = shards.prepare(out, run_parts(cfg, src, identity, spec), bool(cfg.resume))
        staged = stage_input(data_path, out, cfg.data.format, settings.fields(cfg),  # deterministic
                             bool(cfg.data.drop_duplicates), cfg.data.limit, cfg.data.rows_per_shard, src)
    with timed(timings, "score"):
        reused, scored = score_missing(shard_dir, staged, spec, cfg)
    with timed(timings, "select"):
        table = outputs.validate_complete(shards.load_all(shard_dir, len(staged.shards)), staged.n_rows)
        table = outputs.with_columns(table, outputs.derived(table))
        table, result, info = select_ifd(table, sel)
        outputs.write_parquet(table, out / outputs.SCORES)
        n_sel = outputs.write_selected(staged.shards, result.order, out / outputs.SELECTED, table)
    tokens = int(sum(table.column(c).to_numpy().sum() for c in ("prompt_tokens", "response_tokens")))
    manifest = {
        "job": "ifd", "config": OmegaConf.to_container(cfg, resolve=True),
        "input": {"path": str(data_path.resolve()), "sha256": staged.sha256, "format": staged.format,
                  "rows": staged.n_rows, "read_outcomes": dict(staged.errors)},
        "model": identity,
        "shards": {"total": len(staged.shards), "reused": reused, "scored": scored,
                   "rows_per_shard": staged.rows_per_shard},
        "scoring": {"variant": cfg.method.variant, "backend": spec["backend"], "render": spec["render"],
                    "device": spec["device"]},
        "selection": info, "records_dir": RECORDS_DIR,
        "timings_s": timings, "approx_tokens_scored": tokens,
        "rows_per_s": round(staged.n_rows / max(timings["score"], 1e-9), 3),
        "versions": outputs.versions(),
    }
    outputs.write_json(manifest, out / outputs.MANIFEST)
    write_ifd_report(out, table, sel, info, {
        "input": manifest["input"], "model": manifest["model"]["name"], "variant": cfg.method.variant,
        "template": rc.template, "budget": f"{sel.budget} -> {info['budget_rows']} rows",
        "outcomes": info["outcomes"], "timings_s": timings})
    log.info("selected %d of %d rows -> %s", n_sel, staged.n_rows, out / outputs.SELECTED)
    return Result(out, staged.n_rows, n_sel, info["outcomes"], timings)


def score_missing(shard_dir: Path, staged: Staged, spec: dict[str, Any], cfg: Any) -> tuple[int, int]:
    """Score every shard without a completion record; returns (shards reused, shards scored)."""
    from jobs.actor import ScoringActor

    return run_stage(shard_dir, staged.bounds, [shard_item(s) for s in staged.shards], ScoringActor,
                     spec, cfg, "scored")


def run_parts(cfg: Any, info: InputInfo, identity: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """What the scores depend on. The input's path, batch sizes, actor counts and the selection are
    deliberately absent: scores do not depend on them, so they may change between a run and its resume."""
    from omegaconf import OmegaConf

    data = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k != "path"}
    return {"input_sha256": info.sha256, "data": data, "format": info.format,
            "rows": info.n_rows, "rows_per_shard": info.rows_per_shard, "model": identity,
            "render": spec["render"], "dtype": spec["dtype"], "device": spec["device"],
            "head_only": spec["head_only"], "backend": spec["backend"]}


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("ifd", run)


if __name__ == "__main__":
    main()
