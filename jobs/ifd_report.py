"""The IFD job's report: from per-row arrays (``jobs.select`` on a finished run) or from what the
streamed passes kept (:mod:`jobs.merge`: a pool sample for the plots, exact counts and arms)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from jobs import merge, report
from records import schema, tables
from records.staging import records_shards
from selection.baselines import Arm, arm_figures

OUTCOME = "outcome"
PLOTS = ("ifd_hist.png", "ifd_vs_length.png", "outcomes.png", report.BASELINES_PLOT)


class ScoreCut(Protocol):
    """What the report reads of the selection settings (``jobs.ifd.IFDSelection``)."""

    score: str
    max_score: float | None


@dataclass
class ReportRows:
    """What the report needs per row (arrays, so a 10M-row run never builds a table for it)."""

    score: np.ndarray
    outcome: np.ndarray
    length: np.ndarray
    errored: np.ndarray
    error: np.ndarray  # reason per row, None where valid

    @classmethod
    def of(cls, table: pa.Table, score: str) -> ReportRows:
        return cls(
            table.column(score).to_numpy(zero_copy_only=False).astype(np.float64),
            np.asarray(table.column(OUTCOME).to_pylist(), dtype=object),
            table.column(schema.RESPONSE_TOKENS).to_numpy(),
            tables.errored(table),
            np.asarray(table.column(schema.ERROR).to_pylist(), dtype=object),
        )


def write_report(
    out: Path, table: pa.Table, sel: ScoreCut, info: dict[str, Any], seed: int, summary: dict[str, Any]
) -> Path:
    """The report of a finished selection over a whole score table."""
    return report_arrays(out, ReportRows.of(table, sel.score), sel, info, seed, summary)


def report_arrays(
    out: Path, rows: ReportRows, sel: ScoreCut, info: dict[str, Any], seed: int, summary: dict[str, Any]
) -> Path:
    score, outcome, length = rows.score, rows.outcome, rows.length
    selected = outcome == "selected"
    hist, vs_length, outcomes = (out / name for name in PLOTS[:3])
    report.plot_histogram(score, sel.max_score, info["lowest_selected_score"], sel.score, hist)
    report.plot_vs_length(score, length, selected, sel.score, vs_length)
    report.plot_counts(info["outcomes"], "rows by outcome", outcomes)
    variant = summary.get("variant", "default")
    section, plot, _ = report.baseline_section(
        out,
        "ifd" if variant == "default" else variant,
        np.flatnonzero(selected),
        length,
        ~rows.errored,
        seed,
        score,
        sel.score,
    )
    headline, examples = report.examples_html(records_shards(out), outcome, rows.error, score, sel.score)
    return report.write_report(
        out, "Winnow IFD selection", summary, _plot_list(sel) + [plot], info.get("notice"), [examples, section],
        headline,
    )


@dataclass
class ReportParts:
    """What the streamed passes kept for the report (:func:`jobs.merge.rank_pass`, ``write_pass``)."""

    ranked: merge.Ranked
    written: merge.Written
    k: int  # the budget in rows

    def order(self) -> np.ndarray:
        return self.ranked.order(self.k)

    def arms(self, method: str) -> dict[str, Arm]:
        """The method's picks and the random / longest baselines of the same size, with their rows'
        lengths and scores (views of what the passes kept; the random draw in position order, as
        ``selection.baselines.random_subset`` gives it)."""
        r, order = self.ranked, self.order()
        n = len(order)
        arms = {method: Arm(order, r.top["length"][:n], r.top["key"][:n])}
        if method != "random":
            at = np.argsort(r.random["pos"][:n], kind="stable")
            arms["random"] = Arm(r.random["pos"][at], r.random["length"][at], r.random["score"][at])
        if method != "longest":
            arms["longest"] = Arm(r.longest["pos"][:n], r.longest["key"][:n], r.longest["score"][:n])
        return arms


def report_streamed(
    out: Path, parts: ReportParts, sel: ScoreCut, info: dict[str, Any], seed: int, summary: dict[str, Any]
) -> Path:
    """:func:`report_arrays` from the streamed passes: plots of the pool sample, exact counts, exact arms."""
    r, w, order = parts.ranked, parts.written, parts.order()
    s = r.sample
    total = r.n_rows if len(s["pos"]) < r.n_rows else None
    hist, vs_length, outcomes = (out / name for name in PLOTS[:3])
    report.plot_histogram(s["score"], sel.max_score, info["lowest_selected_score"], sel.score, hist, total)
    report.plot_vs_length(s["score"], s["length"], np.isin(s["pos"], order), sel.score, vs_length, total)
    report.plot_counts(info["outcomes"], "rows by outcome", outcomes)
    variant = summary.get("variant", "default")
    arms = parts.arms("ifd" if variant == "default" else variant)
    series = {"pool" if total is None else "pool sample": (s["length"], s["score"])}
    series.update({name: (a.length, a.score) for name, a in arms.items()})
    section, plot, _ = report.baselines_view(out, arm_figures(arms), series, sel.score)
    ex = report.Examples(order[: report.EXAMPLE_ROWS], r.below(len(order))[: report.EXAMPLE_ROWS],
                         w.tally, w.reasons, w.scores, r.n_rows, r.n_valid, len(order),
                         float(np.median(r.top["key"][: len(order)])) if len(order) else None)
    headline, examples = report.render_examples(records_shards(out), ex, sel.score)
    return report.write_report(
        out, "Winnow IFD selection", summary, _plot_list(sel) + [plot], info.get("notice"), [examples, section], headline
    )


def _plot_list(sel: ScoreCut) -> list[tuple[str, str]]:
    return list(zip(PLOTS, (f"{sel.score} histogram with cut lines", f"{sel.score} vs response length",
                            "rows by outcome (selected / drop reason)")))
