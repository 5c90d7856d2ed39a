"""report.html with PNG plots (IFD histogram with the cut lines, IFD vs response length, outcomes,
the method's own plots) and the random / longest baselines at the same budget."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPORT = "report.html"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_histogram(
    score: np.ndarray, cut: float | None, threshold: float | None, name: str, path: Path,
    total: int | None = None,
) -> None:
    """``score``: every row's, or a uniform sample of ``total`` rows (the title says so)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    s = score[np.isfinite(score)]
    ax.hist(s, bins=min(60, max(10, len(s) // 5)), color="#4c72b0")
    if total is not None:
        _sampled_note(ax, len(score), total)
    if cut is not None:
        ax.axvline(cut, color="red", ls="--", label=f"drop above {cut:g}")
    if threshold is not None:
        ax.axvline(threshold, color="green", ls="-", label=f"lowest selected {threshold:.3f}")
    ax.set_xlabel(name)
    ax.set_ylabel("rows")
    if cut is not None or threshold is not None:
        ax.legend(loc="best", fontsize=8)
    _save(plt, fig, path)


SCATTER_POINTS = 50_000  # a scatter of more points draws for tens of seconds and shows nothing more


def shown(mask: np.ndarray, cap: int = SCATTER_POINTS, seed: int = 0) -> np.ndarray:
    """Rows of ``mask`` to draw: all of them up to ``cap``, else a seeded uniform sample of ``cap``."""
    idx = np.flatnonzero(mask)
    if len(idx) <= cap:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, cap, replace=False))


def _sampled_note(ax: Any, shown_rows: int, total: int) -> None:
    if shown_rows < total:
        ax.set_title(f"{shown_rows:,} of {total:,} rows shown (uniform sample)", fontsize=8)


def plot_vs_length(
    score: np.ndarray, length: np.ndarray, selected: np.ndarray, name: str, path: Path,
    total: int | None = None,
) -> None:
    """``score`` / ``length``: every row's, or a uniform sample of ``total`` rows."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ok = np.isfinite(score)
    rest, sel = shown(ok & ~selected), shown(ok & selected)
    ax.scatter(length[rest], score[rest], s=6, alpha=0.5, label="not selected")
    ax.scatter(length[sel], score[sel], s=8, color="orange", label="selected")
    _sampled_note(ax, len(rest) + len(sel), int(ok.sum()) if total is None else total)
    ax.set_xscale("symlog")
    ax.set_xlabel("response tokens")
    ax.set_ylabel(name)
    ax.legend(loc="upper right" if max(len(score), total or 0) > SCATTER_POINTS else "best", fontsize=8)
    _save(plt, fig, path)


def plot_counts(counts: dict[str, int], title: str, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.35 * max(len(counts), 1)))
    keys = sorted(counts, key=lambda k: -counts[k])
    ax.barh(keys, [counts[k] for k in keys], color="#55a868")
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    _save(plt, fig, path)


def plot_scatter(
    x: np.ndarray, y: np.ndarray, selected: np.ndarray, xlabel: str, ylabel: str, path: Path
) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ok = np.isfinite(x) & np.isfinite(y)
    rest, sel = shown(ok & ~selected), shown(ok & selected)
    ax.scatter(x[rest], y[rest], s=6, alpha=0.5, label="not selected")
    ax.scatter(x[sel], y[sel], s=10, color="orange", label="selected")
    _sampled_note(ax, len(rest) + len(sel), int(ok.sum()))
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper right" if len(x) > SCATTER_POINTS else "best", fontsize=8)
    _save(plt, fig, path)


def plot_cluster_mix(pool: np.ndarray, selected: np.ndarray, path: Path, top: int = 30) -> None:
    """Share of each cluster in the pool vs in the selection (largest pool clusters first)."""
    plt = _plt()
    pool = pool[pool >= 0]
    ids, n = np.unique(pool, return_counts=True)
    keep = ids[np.argsort(-n, kind="stable")][:top]
    p_share = np.array([np.mean(pool == c) for c in keep]) if len(pool) else np.zeros(len(keep))
    s_share = np.array([np.mean(selected == c) for c in keep]) if len(selected) else np.zeros(len(keep))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(keep))
    ax.bar(x - 0.2, p_share, 0.4, label="pool")
    ax.bar(x + 0.2, s_share, 0.4, color="orange", label="selected")
    ax.set_xticks(x, [str(c) for c in keep], fontsize=7)
    ax.set_xlabel("cluster (largest first)")
    ax.set_ylabel("share of rows")
    ax.legend(loc="best", fontsize=8)
    _save(plt, fig, path)


def plot_rounds(rounds: list[int], sizes: list[int], radius: list[float], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(rounds, radius, "o-", label="covering radius")
    ax.set_xlabel("round")
    ax.set_ylabel("covering radius")
    ax2 = ax.twinx()
    ax2.plot(rounds, sizes, "s--", color="orange", label="subset size")
    ax2.set_ylabel("subset size")
    fig.legend(loc="upper right", fontsize=8)
    _save(plt, fig, path)


def _cell(v: Any) -> str:
    return json.dumps(v, default=str, indent=1) if isinstance(v, (dict, list)) else str(v)


def data_uri(path: Path) -> str:
    """A PNG as a ``data:`` URI: the page carries its images, so it stays whole when copied alone."""
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}th{text-align:left;"
    "vertical-align:top;padding-right:1em}pre{margin:0}pre.row{white-space:pre-wrap;max-width:34em;"
    "font-size:90%}figure{display:inline-block;margin:.5em}img{max-width:100%}"
    "table.arms{border-collapse:collapse}table.arms td,table.arms th{border:1px solid #ccc;padding:.2em .5em;"
    "vertical-align:top}.headline{display:flex;flex-wrap:wrap;gap:1em;margin:1em 0}.headline div{border:1px "
    "solid #ccc;border-radius:6px;padding:.5em 1em}.headline b{display:block;font-size:160%}"
)


def headline_html(figures: dict[str, Any]) -> str:
    """The numbers a reader wants first, as large tiles."""
    tiles = "".join(
        f"<div><b>{html.escape(_fmt(v))}</b>{html.escape(k)}</div>" for k, v in figures.items() if v is not None
    )
    return f"<div class='headline'>{tiles}</div>"


def write_report(
    out: Path,
    title: str,
    summary: dict[str, Any],
    images: list[tuple[str, str]],
    notice: str | None = None,
    sections: list[str] | tuple[str, ...] = (),
    headline: str = "",
) -> Path:
    """One self-contained HTML page (the PNGs written beside it are embedded too): ``notice`` first, in
    red, then the ``headline``, the ``sections`` (HTML fragments built here, text escaped), the plots, and
    the run's details last."""
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td><pre>{html.escape(_cell(v))}</pre></td></tr>"
        for k, v in summary.items()
    )
    warn = (
        (
            f"<p class='notice' style='color:#b00;font-weight:bold;border:2px solid #b00;padding:.5em'>"
            f"{html.escape(notice)}</p>"
        )
        if notice
        else ""
    )
    figs = "".join(
        f'<figure><img src="{data_uri(out / f)}" alt="{html.escape(c)}" data-file="{html.escape(f)}">'
        f"<figcaption>{html.escape(c)} <small>({html.escape(f)})</small></figcaption></figure>"
        for f, c in images
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{warn}{headline}"
        f"{''.join(sections)}<h2>Plots</h2>{figs}<h2>Run details</h2><table>{rows}</table></body></html>"
    )
    path = out / REPORT
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


# ---- example rows: what was kept, what just missed, what each drop reason looks like ----


def run_examples(out: Path, table: Any, score: np.ndarray | None, score_name: str, descending: bool = True
                 ) -> tuple[str, str]:
    """:func:`examples_html` for a finished run's scores table (``outcome`` and ``error`` columns)."""
    from records.staging import records_shards

    outcome = np.asarray(table.column("outcome").to_pylist(), dtype=object)
    return examples_html(records_shards(out), outcome, table.column("error").to_pylist(), score, score_name, descending)


def _texts(shards: list[str], positions: np.ndarray) -> dict[int, dict[str, Any]]:
    from records import schema
    from records.tables import read_positions

    cols = [schema.INSTRUCTION, schema.INPUT, schema.OUTPUT, schema.ERROR, schema.RAW]
    t = read_positions(shards, positions, cols)
    return {r[schema.POSITION]: r for r in t.to_pylist()}


def _rows_table(rows: list[int], texts: dict[int, dict[str, Any]], score: np.ndarray | None,
                score_name: str, reason: np.ndarray | None = None) -> str:
    head = "<th>row</th>" + (f"<th>{html.escape(score_name)}</th>" if score is not None else "")
    head += "<th>reason</th>" if reason is not None else ""
    head += "<th>instruction (+ input)</th><th>response</th>"
    body = []
    for p in rows:
        r = texts.get(int(p), {})
        prompt = (r.get("instruction") or "") + (("\n\n" + r["input"]) if r.get("input") else "")
        if not r.get("instruction") and not r.get("output"):
            prompt = r.get("raw") or ""  # unparseable rows: show what the input held
        cells = f"<td>#{int(p)}</td>"
        cells += f"<td>{html.escape(_fmt(float(score[p])))}</td>" if score is not None else ""
        cells += f"<td>{html.escape(str(reason[p]))}</td>" if reason is not None else ""
        cells += f"<td>{fold(prompt)}</td><td>{fold(r.get('output') or '')}</td>"
        body.append(f"<tr>{cells}</tr>")
    return f"<table class='arms'><tr>{head}</tr>{''.join(body)}</table>"


BUDGET_OUTCOMES = ("below_budget", "not_selected")  # outcome labels of rows left out by the budget alone


def ranked(rows: np.ndarray, score: np.ndarray | None, descending: bool) -> np.ndarray:
    """``rows`` best first by ``score`` (ties and no score: input order); non-finite scores last."""
    if score is None or not len(rows):
        return rows
    s = np.asarray(score, dtype=np.float64)[rows]
    key = np.where(np.isfinite(s), -s if descending else s, np.inf)
    return rows[np.lexsort((rows, key))]


EXAMPLE_ROWS = 8  # rows shown as the top selected, and as just below the cut


@dataclass
class Examples:
    """The rows the report shows: the top selected, the best left out by the budget, and per drop
    reason (row count, first rows); ``reason`` / ``score`` map a shown row's position to its values
    (a per-row array, or a dict of just the shown rows when the run was streamed)."""

    top: np.ndarray
    below: np.ndarray
    tally: dict[str, tuple[int, list[int]]]
    reason: Any
    score: Any | None
    n_rows: int
    n_valid: int
    n_selected: int
    median_selected: float | None


def examples_html(
    shards: list[str],
    outcome: np.ndarray,
    error: np.ndarray,
    score: np.ndarray | None = None,
    score_name: str = "score",
    descending: bool = True,
    n: int = EXAMPLE_ROWS,
    per_reason: int = 3,
) -> tuple[str, str]:
    """(headline tiles, example tables) of a run's per-row outcomes (:func:`pick_examples`)."""
    return render_examples(shards, pick_examples(outcome, error, score, descending, n, per_reason), score_name)


def pick_examples(outcome: np.ndarray, error: np.ndarray, score: np.ndarray | None = None,
                  descending: bool = True, n: int = EXAMPLE_ROWS, per_reason: int = 3) -> Examples:
    """The top selected rows, the rows just below the cut (the best ranked rows not selected), and up
    to ``per_reason`` rows for every drop reason."""
    outcome = np.asarray(outcome, dtype=object)
    error = np.asarray(error, dtype=object)
    valid = np.equal(error, None)
    reason = np.where(valid, outcome, error)
    selected = np.flatnonzero(outcome == "selected")
    top = ranked(selected, score, descending)[:n]
    # just below the cut: the best-ranked rows the budget left out (rows a filter dropped are shown under
    # their reason); a method without a budget label: every valid row not selected
    budget = np.isin(outcome, BUDGET_OUTCOMES)
    pool = budget if budget.any() else (outcome != "selected") & valid
    below = ranked(np.flatnonzero(pool), score, descending)[:n]
    if score is not None:  # "just below the cut" = rows the score would have taken next
        ok = np.isfinite(np.asarray(score, dtype=np.float64)[below])
        below = below[ok]
    median = (float(np.nanmedian(np.asarray(score, float)[selected]))
              if score is not None and len(selected) else None)
    return Examples(top, below, _first_rows(reason, per_reason), reason, score, len(outcome), int(valid.sum()),
                    len(selected), median)


def render_examples(shards: list[str], ex: Examples, score_name: str = "score") -> tuple[str, str]:
    """(headline tiles, example tables) of :class:`Examples`, reading only the shown rows' texts."""
    tally, score, reason = ex.tally, ex.score, ex.reason
    kinds = sorted((r for r in tally if r != "selected"), key=lambda r: -tally[r][0])
    by_reason = {k: np.asarray(tally[k][1], dtype=np.int64) for k in kinds}
    want = np.unique(np.concatenate([ex.top, ex.below, *by_reason.values()]).astype(np.int64))
    texts = _texts(shards, want)
    headline = headline_html({
        "rows in": ex.n_rows,
        "valid rows": ex.n_valid,
        "selected": ex.n_selected,
        "selected share": f"{100 * ex.n_selected / max(ex.n_rows, 1):.2f}%",
        **({f"median {score_name} (selected)": ex.median_selected} if ex.median_selected is not None else {}),
    })
    parts = [
        f"<h2>Top selected rows</h2><p>The {len(ex.top)} best-ranked of the {ex.n_selected} selected rows"
        + (f" by {html.escape(score_name)}" if score is not None else "") + ".</p>",
        _rows_table(ex.top.tolist(), texts, score, score_name),
    ]
    if len(ex.below):
        parts += [
            "<h2>Just below the cut</h2><p>The best-ranked rows the budget left out (rows a filter dropped "
            "are listed under their reason below).</p>",
            _rows_table(ex.below.tolist(), texts, score, score_name, reason),
        ]
    counts = "".join(f"<li>{html.escape(k)}: {tally[k][0]} rows</li>" for k in kinds)
    parts.append(f"<h2>Why rows were not selected</h2><ul>{counts or '<li>every row was selected</li>'}</ul>")
    for k, rows in by_reason.items():
        parts += [f"<h3>{html.escape(k)}</h3>", _rows_table(rows.tolist(), texts, score, score_name, reason)]
    return headline, "".join(parts)


def _first_rows(reason: np.ndarray, keep: int) -> dict[str, tuple[int, list[int]]]:
    """Per distinct reason (as str): (rows with it, its first ``keep`` row indices), in one pass that
    stops once every reason has its examples."""
    from records.tables import label_counts

    values = reason.tolist()
    counts = label_counts(values)
    first: dict[str, list[int]] = {r: [] for r in counts}
    unfilled = len(counts)
    for i, value in enumerate(values):
        rows = first[str(value)]
        if len(rows) < min(keep, counts[str(value)]):
            rows.append(i)
            unfilled -= len(rows) == min(keep, counts[str(value)])
            if unfilled == 0:
                break
    return {r: (counts[r], first[r]) for r in counts}


# ---- the baselines beside every selection (selection.baselines) ----

BASELINES_PLOT = "baselines.png"
ARM_COLOURS = {"random": "#8c8c8c", "longest": "#55a868"}


Series = dict[str, tuple[np.ndarray, "np.ndarray | None"]]  # name -> (response lengths, scores)


def plot_baselines(series: Series, score_name: str, path: Path) -> None:
    """Response-length (and score) distributions of the pool (the first series: every row, or a
    uniform sample) and of every arm, as step histograms over the pool's and arms' common range."""
    plt = _plt()
    pool = next(iter(series))
    panels = 2 if series[pool][1] is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.4), squeeze=False)
    for col, label in enumerate(("response tokens", score_name)[:panels]):
        ax = axes[0][col]
        values = {name: np.asarray(v[col], dtype=np.float64) for name, v in series.items()}
        values = {name: v[np.isfinite(v)] for name, v in values.items()}
        if not len(values[pool]):
            continue
        present = [v for v in values.values() if len(v)]
        bins = np.linspace(min(v.min() for v in present), max(v.max() for v in present), 31)
        for name, v in values.items():
            if len(v):
                ax.hist(
                    v,
                    bins=bins,
                    density=True,
                    histtype="step",
                    lw=1.0 if name == pool else 1.6,
                    color=ARM_COLOURS.get(name, "#dd8452" if name != pool else "#4c72b0"),
                    ls="--" if name == pool else "-",
                    label=f"{name} ({len(v)})",
                )
        ax.set_xlabel(label)
        ax.set_ylabel("density")
        ax.legend(loc="best", fontsize=7)
    _save(plt, fig, path)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def baselines_html(stats: dict[str, dict[str, Any]], score_name: str | None) -> str:
    """The "same budget" table: one row per arm."""
    cols = [
        ("rows", lambda r: r["rows"]),
        ("mean response tokens", lambda r: r["response_tokens"]["mean"]),
        ("median response tokens", lambda r: r["response_tokens"]["median"]),
    ]
    if score_name:
        cols += [
            (f"mean {score_name}", lambda r: r.get("score", {}).get("mean")),
            (f"median {score_name}", lambda r: r.get("score", {}).get("median")),
        ]
    cols += [
        ("overlap with longest", lambda r: r.get("overlap_with_longest")),
        ("k-center radius", lambda r: r.get("kcenter_radius")),
        ("mean distance to nearest pick", lambda r: r.get("mean_nearest")),
        ("cluster entropy (normalised)", lambda r: r.get("cluster_entropy")),
        ("clusters covered", lambda r: r.get("clusters_covered")),
    ]
    any_row = next(iter(stats.values()), {})
    cols = (
        [(h, f) for h, f in cols if any(f(r) is not None for r in stats.values()) or h == "rows"]
        if any_row
        else cols
    )
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in cols)
    body = "".join(
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(f"<td>{html.escape(_fmt(f(r)))}</td>" for _, f in cols)
        + "</tr>"
        for name, r in stats.items()
    )
    return (
        "<h2>Baselines at the same budget</h2><p>Every arm has the same number of rows, drawn from the rows "
        "without an error: <b>random</b> is a seeded uniform draw, <b>longest</b> the rows with the most "
        "response tokens. k-center radius: the largest distance from a pool row to its nearest pick "
        "(lower covers the pool better).</p>"
        f"<table class='arms'><tr><th>arm</th>{head}</tr>{body}</table>"
    )


def baseline_section(
    out: Path,
    method: str,
    selected: np.ndarray,
    lengths: np.ndarray,
    eligible: np.ndarray,
    seed: int,
    score: np.ndarray | None = None,
    score_name: str | None = None,
    emb: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
) -> tuple[str, tuple[str, str], dict[str, Any]]:
    """The method's picks beside a random and a longest subset of the same size (no model pass):
    (HTML table, the distributions plot written to ``out``, the per-arm figures for the manifest)."""
    from selection.baselines import compare_arms

    arms = baseline_arms(method, selected, lengths, eligible, seed)
    lengths = np.asarray(lengths)
    stats = compare_arms(arms, lengths, eligible, score, emb, clusters)
    series: Series = {"pool": (lengths, score)}
    series.update({name: (lengths[pos], None if score is None else score[pos]) for name, pos in arms.items()})
    return baselines_view(out, stats, series, score_name)


def baseline_arms(method: str, selected: np.ndarray, lengths: np.ndarray, eligible: np.ndarray, seed: int
                  ) -> dict[str, np.ndarray]:
    """The method's picks, then a random and a longest subset of the same size from ``eligible``."""
    from selection.baselines import longest_subset, random_subset

    selected = np.asarray(selected, dtype=np.int64)
    k = len(selected)
    arms = {method: selected}
    for name, pick in (
        ("random", lambda: random_subset(eligible, k, seed)),
        ("longest", lambda: longest_subset(lengths, eligible, k)),
    ):
        if name != method:
            arms[name] = pick()
    return arms


def baselines_view(out: Path, stats: dict[str, dict[str, Any]], series: Series, score_name: str | None
                   ) -> tuple[str, tuple[str, str], dict[str, Any]]:
    """The arms' table (``stats``: :func:`selection.baselines.arm_figures` and more) and the
    distributions plot of ``series`` (the pool first)."""
    has_score = next(iter(series.values()))[1] is not None
    plot_baselines(series, score_name or "score", out / BASELINES_PLOT)
    caption = (
        "response length"
        + (f" and {score_name}" if has_score else "")
        + " distributions: pool, selection and the baselines"
    )
    return baselines_html(stats, score_name if has_score else None), (BASELINES_PLOT, caption), stats


def fold(text: str, limit: int = 400) -> str:
    """Escaped text, cut to ``limit`` characters with the rest folded into a <details> block."""
    text = text or ""
    if len(text) <= limit:
        return f"<pre class='row'>{html.escape(text)}</pre>"
    return (
        f"<pre class='row'>{html.escape(text[:limit])}…</pre><details><summary>{len(text) - limit} more "
        f"characters</summary><pre class='row'>{html.escape(text[limit:])}</pre></details>"
    )


def pairs_html(pairs: list[dict[str, Any]], threshold: float) -> str:
    """Dropped near-copies beside the kept rows they copy."""
    if not pairs:
        return f"<h2>Near-copies</h2><p>No row was within cosine {threshold:g} of a kept row.</p>"
    body = "".join(
        f"<tr><td>{p['similarity']:.4f}</td><td>#{p['dropped']}{fold(p['dropped_text'])}</td>"
        f"<td>#{p['kept']}{fold(p['kept_text'])}</td></tr>"
        for p in pairs
    )
    return (
        f"<h2>Near-copies nearest the threshold ({threshold:g})</h2><table class='arms'><tr><th>cosine</th>"
        f"<th>dropped row</th><th>kept row it copies</th></tr>{body}</table>"
    )


def plot_intervals(
    names: list[str],
    diffs: list[float],
    lo: list[float],
    hi: list[float],
    verdicts: list[str],
    random: dict[str, Any] | None,
    path: Path,
) -> None:
    """Each arm's difference to the random arms' mean NLL with its interval, coloured by its verdict
    (green better, red worse, grey within noise); the random arms' own range (the noise floor) shaded."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.4))
    y = np.arange(len(names))[::-1]
    d, lo_, hi_ = (np.asarray(v, dtype=np.float64) for v in (diffs, lo, hi))
    if random and random.get("range") is not None:
        half = random["range"] / 2
        ax.axvspan(random["min"] - random["mean"], random["max"] - random["mean"], color="#ddd",
                   label=f"random arms' range (±{half:.3g})")
    colours = [{"better": "#2a7", "worse": "#c33"}.get(v, "#555") for v in verdicts]
    for yi, di, l, h, c in zip(y, d, lo_, hi_, colours):
        ax.errorbar([di], [yi], xerr=[[di - l], [h - di]], fmt="o", color=c, capsize=3)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, names)
    ax.set_xlabel("mean NLL − random arms' mean (nats/token; left = better)")
    ax.legend(loc="best", fontsize=7)
    _save(plt, fig, path)


def compare_html(summary: dict[str, Any], scope: str) -> str:
    """The arms table of a compare run: mean NLL per eval scope, difference to random, verdict, rank."""
    scopes = list(summary["eval_rows"])
    head = "".join(f"<th>mean NLL ({html.escape(s)}, {summary['eval_rows'][s]} rows)</th>" for s in scopes)
    level = int(round(100 * summary["confidence"]))
    rows = []
    for name, a in summary["arms"].items():
        r = a[scope]
        ci = (
            f"{_fmt(r['diff_vs_random'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
            if "diff_vs_random" in r else "–"
        )
        rows.append(
            f"<tr><th>{html.escape(name)}</th><td>{html.escape(a['kind'])}</td><td>{a['rows']}</td>"
            + "".join(f"<td>{_fmt(a[s]['mean_nll'])}</td>" for s in scopes)
            + f"<td>{html.escape(ci)}</td><td>{html.escape(r.get('verdict', '–'))}</td><td>{r['rank']}</td></tr>"
        )
    rnd = summary["random"].get(scope)
    floor = (
        f"<p>Noise floor: the random arms' mean NLL spans {_fmt(rnd['min'])}–{_fmt(rnd['max'])} "
        f"(std {_fmt(rnd['std'])}). The interval covers eval-row noise only; the random arms' spread is "
        "the training-seed noise. <b>better</b> means the interval lies left of 0 <i>and</i> the arm is "
        "below every random arm; a random arm is measured against the other random arms.</p>"
        if rnd else "<p>No random arms: nothing to measure a difference against.</p>"
    )
    base = summary.get("base_mean_nll")
    shift = (
        f"<p>Untrained base model: {_fmt(base[scope])} — the shift a trained arm shows against it is how "
        "much fine-tuning moved the model at all.</p>" if base else ""
    )
    return (
        f"<h2>Arms</h2><p>Metric: {html.escape(summary['metric'])}. Difference to the random arms' mean over "
        f"{html.escape(scope)} eval rows with a paired bootstrap {level}% interval "
        f"({summary['bootstrap']} resamples of eval rows).</p>{floor}{shift}"
        f"<table class='arms'><tr><th>arm</th><th>kind</th><th>rows</th>{head}<th>vs random [{level}% CI]</th>"
        f"<th>verdict</th><th>rank</th></tr>{''.join(rows)}</table>"
    )
