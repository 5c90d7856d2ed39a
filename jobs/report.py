"""report.html with PNG plots: IFD histogram with the cut lines, IFD vs response length, outcomes."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

REPORT = "report.html"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_histogram(
    score: np.ndarray, cut: float | None, threshold: float | None, name: str, path: Path
) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    s = score[np.isfinite(score)]
    ax.hist(s, bins=min(60, max(10, len(s) // 5)), color="#4c72b0")
    if cut is not None:
        ax.axvline(cut, color="red", ls="--", label=f"drop above {cut:g}")
    if threshold is not None:
        ax.axvline(threshold, color="green", ls="-", label=f"lowest selected {threshold:.3f}")
    ax.set_xlabel(name)
    ax.set_ylabel("rows")
    if cut is not None or threshold is not None:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_vs_length(
    score: np.ndarray, length: np.ndarray, selected: np.ndarray, name: str, path: Path
) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ok = np.isfinite(score)
    ax.scatter(length[ok & ~selected], score[ok & ~selected], s=6, alpha=0.5, label="not selected")
    ax.scatter(length[ok & selected], score[ok & selected], s=8, color="orange", label="selected")
    ax.set_xscale("symlog")
    ax.set_xlabel("response tokens")
    ax.set_ylabel(name)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_counts(counts: dict[str, int], title: str, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.35 * max(len(counts), 1)))
    keys = sorted(counts, key=lambda k: -counts[k])
    ax.barh(keys, [counts[k] for k in keys], color="#55a868")
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_scatter(
    x: np.ndarray, y: np.ndarray, selected: np.ndarray, xlabel: str, ylabel: str, path: Path
) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ok = np.isfinite(x) & np.isfinite(y)
    ax.scatter(x[ok & ~selected], y[ok & ~selected], s=6, alpha=0.5, label="not selected")
    ax.scatter(x[ok & selected], y[ok & selected], s=10, color="orange", label="selected")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


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
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


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
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _cell(v: Any) -> str:
    return json.dumps(v, default=str, indent=1) if isinstance(v, (dict, list)) else str(v)


def write_report(
    out: Path, title: str, summary: dict[str, Any], images: list[tuple[str, str]], notice: str | None = None
) -> Path:
    """A self-contained HTML page linking the PNGs next to it; ``notice`` is shown first, in red."""
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
        f'<figure><img src="{html.escape(f)}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for f, c in images
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}th{text-align:left;"
        "vertical-align:top;padding-right:1em}pre{margin:0}figure{display:inline-block;margin:.5em}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{warn}<table>{rows}</table>{figs}</body></html>"
    )
    path = out / REPORT
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
