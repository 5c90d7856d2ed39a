"""Re-select from an existing scores.parquet without rescoring, and the IFD selection stage itself.

    python -m jobs.select scores=out/scores.parquet selection.budget=0.1 [selection.score=ifd_ppl]
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs import outputs, report, rundir
from jobs.shards import EMBEDDINGS_DIR
from jobs.staging import RECORDS_DIR
from scoring import schema
from selection.budget import resolve_budget
from selection.topk import Selection, select_top

log = logging.getLogger(__name__)

OUTCOME = "outcome"
SCORES = ("ifd_loss", "ifd_ppl")
IFD_PLOTS = ("ifd_hist.png", "ifd_vs_length.png", "outcomes.png")
EMPTY_SELECTION = ("NO ROWS SELECTED: {n_scored} rows were scored but none passed the filters "
                   "(selection.max_score={max_score}, min_score={min_score}); selected.jsonl is empty")


@dataclass
class IFDSelection:
    """The resolved selection settings (variant presets already applied)."""

    budget: float
    score: str
    max_score: float | None
    max_inclusive: bool
    min_score: float | None
    warn_above_fraction: float = 0.3

    def check(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"unknown selection.score {self.score!r}; choose one of {', '.join(SCORES)}")


def select_ifd(table: pa.Table, sel: IFDSelection) -> tuple[pa.Table, Selection, dict[str, Any]]:
    """Apply the IFD selection to a complete, position-sorted score table."""
    sel.check()
    n = table.num_rows
    k = resolve_budget(sel.budget, n)
    score = table.column(sel.score).to_numpy(zero_copy_only=False).astype(np.float64)
    errored = outputs.errored(table)
    result = select_top(score, errored, k, sel.max_score, sel.min_score, sel.max_inclusive)
    scored = np.isfinite(score) & ~errored
    above = float(np.mean(score[scored] > sel.max_score)) if sel.max_score is not None and scored.any() else 0.0
    if above > sel.warn_above_fraction:
        log.warning("%.0f%% of scored rows have %s > %g: the template may not suit this model "
                    "(Cherry#22); consider method.variant=superfilter or a chat template",
                    100 * above, sel.score, sel.max_score)
    info = {"budget_rows": k, "selected": int(len(result.order)), "outcomes": result.counts(),
            "fraction_above_max": above,
            "lowest_selected_score": float(score[result.order].min()) if len(result.order) else None}
    if len(result.order) == 0 and k > 0:
        info["notice"] = EMPTY_SELECTION.format(n_scored=int(scored.sum()), max_score=sel.max_score,
                                                min_score=sel.min_score)
        log.warning("=" * 20 + " %s " + "=" * 20, info["notice"])
    elif len(result.order) < k:
        log.warning("only %d rows passed the filters for a budget of %d", len(result.order), k)
    return outputs.with_columns(table, {OUTCOME: result.outcome.astype(str)}), result, info


def write_ifd_report(out: Path, table: pa.Table, sel: IFDSelection, info: dict[str, Any],
                     summary: dict[str, Any]) -> Path:
    score = table.column(sel.score).to_numpy(zero_copy_only=False).astype(np.float64)
    outcome = np.array(table.column(OUTCOME).to_pylist())
    length = table.column(schema.RESPONSE_TOKENS).to_numpy()
    hist, vs_length, outcomes = (out / name for name in IFD_PLOTS)
    report.plot_histogram(score, sel.max_score, info["lowest_selected_score"], sel.score, hist)
    report.plot_vs_length(score, length, outcome == "selected", sel.score, vs_length)
    report.plot_counts(info["outcomes"], "rows by outcome", outcomes)
    imgs = list(zip(IFD_PLOTS, (f"{sel.score} histogram with cut lines", f"{sel.score} vs response length",
                                "rows by outcome (selected / drop reason)")))
    return report.write_report(out, "Winnow IFD selection", summary, imgs, info.get("notice"))


def records_shards(run_dir: Path) -> list[str]:
    """Record shards of a run: always the run's own ``records/`` (a run directory is self-contained,
    so it stays valid when moved or copied)."""
    rec = run_dir / RECORDS_DIR
    shards = sorted(str(p) for p in rec.glob("part-*.parquet"))
    if not shards:
        raise FileNotFoundError(f"no input record shards in {rec}: selected.jsonl needs the scoring run's records/")
    return shards


def selection_settings(cfg: Any, variant_defaults: dict[str, Any]) -> IFDSelection:
    s = cfg.selection
    pick = lambda key: variant_defaults[key] if s.get(key) is None else s.get(key)  # noqa: E731
    return IFDSelection(budget=s.budget, score=pick("score"), max_score=s.max_score,
                        max_inclusive=bool(pick("max_inclusive")), min_score=s.min_score,
                        warn_above_fraction=float(s.warn_above_fraction))


RESELECT_WRITES = (outputs.SCORES, outputs.SELECTED, outputs.MANIFEST, report.REPORT, *IFD_PLOTS,
                   "rpe_vs_ifd.png", "rpe_hist.png", "cluster_mix.png")


def run(cfg: Any) -> dict[str, Any]:
    """Re-run the selection stage on ``cfg.scores``; writes selected.jsonl, report and manifest.
    Into another ``output_dir``, the run's records (and embeddings) are linked there too, so the new
    directory is a complete run of its own."""
    scores = Path(cfg.scores).expanduser()
    if not scores.is_file():
        raise FileNotFoundError(f"scores file not found: {scores}")
    run_dir = scores.parent
    prev = json.loads((run_dir / outputs.MANIFEST).read_text()) if (run_dir / outputs.MANIFEST).exists() else {}
    table = pq.read_table(scores)
    shards = records_shards(run_dir)
    outputs.check_records(shards, table)
    out = Path(cfg.output_dir).expanduser() if cfg.output_dir else run_dir
    in_place = out.resolve() == run_dir.resolve()
    linked = () if in_place else (RECORDS_DIR, *((EMBEDDINGS_DIR,) if prev.get("job") == "recost" else ()))
    with rundir.claim(out, "select", (*RESELECT_WRITES, *linked), [] if in_place else [scores, run_dir]):
        for name in linked:
            outputs.link_tree(run_dir / name, out / name)
        if prev.get("job") == "recost":
            return _reselect_recost(cfg, scores, table, prev, out)
        if "rpe" in cfg.selection:
            raise ValueError("selection=recost needs the scores.parquet of a jobs.recost run")
        return _reselect_ifd(cfg, scores, table, prev, out)


def _reselect_ifd(cfg: Any, scores: Path, table: pa.Table, prev: dict[str, Any], out: Path) -> dict[str, Any]:
    from jobs.settings import VARIANTS

    variant = prev.get("config", {}).get("method", {}).get("variant", "default")
    sel = selection_settings(cfg, VARIANTS[variant])
    t0 = time.time()
    table, result, info = select_ifd(table, sel)
    n = outputs.write_selected(records_shards(out), result.order, out / outputs.SELECTED, table)
    outputs.write_parquet(table, out / outputs.SCORES)
    summary = {"source_scores": str(scores.resolve()), "variant": variant, "selection": sel.__dict__, **info,
               "rows": table.num_rows, "written": n, "seconds": round(time.time() - t0, 3)}
    manifest = {**prev, "records_dir": RECORDS_DIR, "reselection": summary}
    if "selection" in manifest:
        manifest["selection"] = info
    outputs.write_json(manifest, out / outputs.MANIFEST)
    write_ifd_report(out, table, sel, info, summary)
    log.info("selected %d of %d rows -> %s", n, table.num_rows, out / outputs.SELECTED)
    return summary


def _reselect_recost(cfg: Any, scores: Path, table: pa.Table, prev: dict[str, Any], out: Path) -> dict[str, Any]:
    from jobs import recost

    t0 = time.time()
    order, info, table = recost.reselect(cfg, table, prev, out)
    n = outputs.write_selected(records_shards(out), order, out / outputs.SELECTED, table)
    summary = {"source_scores": str(scores.resolve()), **info, "written": n, "seconds": round(time.time() - t0, 3)}
    outputs.write_json({**prev, "records_dir": RECORDS_DIR, "embeddings_dir": EMBEDDINGS_DIR, "selection": info,
                        "reselection": summary}, out / outputs.MANIFEST)
    log.info("selected %d rows -> %s", n, out / outputs.SELECTED)
    return summary


def main() -> None:
    from jobs.cli import hydra_entry

    hydra_entry("select", run)


if __name__ == "__main__":
    main()
