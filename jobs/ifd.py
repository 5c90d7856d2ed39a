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

from jobs import outputs, settings
from jobs.pipeline import init_ray, score_shards
from jobs.select import select_ifd, selection_settings, write_ifd_report
from jobs.staging import stage_input
from scoring.models import resolve_model

log = logging.getLogger(__name__)


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
    from omegaconf import OmegaConf

    settings.validate(cfg)
    rc = settings.render_config(cfg)
    sel = selection_settings(cfg, settings.VARIANTS[cfg.method.variant])
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_path = settings.resolve_data_path(cfg.data.path)
    timings: dict[str, float] = {}
    with timed(timings, "model"):
        model_path = resolve_model(cfg.model.name)
    with timed(timings, "read"):
        staged = stage_input(data_path, out, cfg.data.format, settings.fields(cfg),
                             bool(cfg.data.drop_duplicates), cfg.data.limit, cfg.data.rows_per_shard)
    with timed(timings, "ray_init"):
        init_ray(cfg.cluster)
    with timed(timings, "score"):
        spec = settings.actor_spec(cfg, model_path, rc)
        table = score_shards(staged.shards, spec, cfg, staged.n_rows)
    with timed(timings, "select"):
        table = outputs.validate_complete(table, staged.n_rows)
        table = outputs.with_columns(table, outputs.derived(table))
        table, result, info = select_ifd(table, sel)
        outputs.write_parquet(table, out / outputs.SCORES)
        n_sel = outputs.write_selected(staged.shards, result.order, out / outputs.SELECTED)
    tokens = int(sum(table.column(c).to_numpy().sum() for c in ("prompt_tokens", "response_tokens")))
    manifest = {
        "job": "ifd", "config": OmegaConf.to_container(cfg, resolve=True),
        "input": {"path": str(data_path.resolve()), "sha256": staged.sha256, "format": staged.format,
                  "rows": staged.n_rows, "read_outcomes": dict(staged.errors)},
        "model": outputs.model_identity(model_path, cfg.model.name),
        "scoring": {"variant": cfg.method.variant, "render": spec["render"], "device": spec["device"]},
        "selection": info, "records_dir": str((out / "records").resolve()),
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


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("ifd", run)


if __name__ == "__main__":
    main()
