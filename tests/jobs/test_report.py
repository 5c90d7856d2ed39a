"""The report a person reads: headline first, example rows with their scores (escaped, folded), every plot
embedded; opened in headless Chromium (Debian's package, installed by ``make test``): it renders, every
image loads, the console is clean, and a screenshot is kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jobs import ifd, report
from jobs.settings import compose
from records import schema
from records.staging import stage_input
from selection.scores import ifd_columns

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL = "<script>console.error('injected')</script><img src=x onerror=alert(1)>"


def pool(path: Path, n: int = 60) -> Path:
    rows = [{"instruction": f"Task {i}: explain item {i}.", "input": "", "output": ("word " * (5 + 7 * i)).strip()}
            for i in range(n)]
    rows[3]["output"] = EVIL  # text from the data is shown, never run
    rows[4]["output"] = "long " * 400  # folded
    rows[5] = {"instruction": "no output here"}  # a drop reason: missing field
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write("{not json\n")  # and another: malformed_json
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished IFD run's outputs built from real staging and the real selection/report code (scores
    drawn at random: the report, not the model, is under test)."""
    out = tmp_path_factory.mktemp("run")
    src = pool(out.parent / "pool.jsonl")
    staged = stage_input(src, out, rows_per_shard=16)
    n = staged.n_rows
    rng = np.random.default_rng(0)
    err = pa.concat_tables([pa.parquet.read_table(s, columns=[schema.ID, schema.POSITION, schema.ERROR])
                            for s in staged.shards])
    bad = np.array([e is not None for e in err.column(schema.ERROR).to_pylist()])
    resp = rng.integers(5, 300, n)
    cols = {
        schema.ID: err.column(schema.ID), schema.POSITION: err.column(schema.POSITION),
        schema.ERROR: err.column(schema.ERROR),
        "cond_nll_sum": np.where(bad, np.nan, rng.uniform(0.5, 2.0, n) * resp),
        "cond_tokens": np.where(bad, 0, resp), "uncond_nll_sum": np.where(bad, np.nan, rng.uniform(1, 2.5, n) * resp),
        "uncond_tokens": np.where(bad, 0, resp), schema.PROMPT_TOKENS: rng.integers(10, 40, n),
        schema.RESPONSE_TOKENS: resp,
    }
    table = pa.table(cols)
    from records import tables

    table = tables.with_columns(table, ifd_columns(*tables.sums_and_counts(table, "cond", "uncond")))
    cfg = compose("ifd", ["selection.budget=0.1"])
    sel = ifd.selection_settings(cfg)
    table, result, info = ifd.select_ifd(table, sel)
    ifd.write_report(out, table, sel, info, 0, {"input": str(src), "budget": "0.1"})
    return out


def test_report_content(run_dir: Path) -> None:
    page = (run_dir / report.REPORT).read_text()
    assert page.index("class='headline'") < page.index("Top selected rows") < page.index("Run details")
    assert "Just below the cut" in page and "Why rows were not selected" in page
    for reason in ("missing_field:output", "malformed_json", "above_max"):
        assert f"<h3>{reason}</h3>" in page, reason
    assert EVIL not in page and "&lt;script&gt;" in page  # escaped
    assert "<details><summary>" in page  # the long response is folded
    assert page.count("src=\"data:image/png;base64,") == 4  # self-contained: no file links
    assert "src=\"ifd_hist.png\"" not in page


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_report_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    moved = tmp_path / "copied-report.html"  # the page alone, away from the run: it must stay whole
    shutil.copy(run_dir / report.REPORT, moved)
    console, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: console.append((m.type, m.text)))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(moved.as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        title = page.title()
        headline = page.inner_text(".headline")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert title == "Winnow IFD selection"
    assert "selected" in headline and "rows in" in headline
    assert len(images) == 4 and all(done and width > 0 for done, width in images), images
    assert not errors and not [c for c in console if c[0] in ("error", "warning")], (errors, console)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot kept at {shot}")
