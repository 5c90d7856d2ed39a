"""jobs.dedup end to end (local Ray, tiny model): planted near-copies are dropped and nothing else; its
output is a valid input; dedup=semantic inside jobs.rds; bad thresholds are one error line."""
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from jobs import dedup, rds
from jobs.settings import ROOT
from tests.jobs.helpers import compose

pytestmark = pytest.mark.ray
SAMPLE = ROOT / "data" / "alpaca_sample.jsonl"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """80 real rows, then near-copies of rows 3, 17, 42 (last character changed) and 8 (a doubled space)."""
    rows = [json.loads(x) for x in SAMPLE.read_text().splitlines()[:80]]
    pool, copies = list(rows), {}
    for src in (3, 17, 42):
        r = dict(rows[src], output=rows[src]["output"].rstrip(".") + "!")
        copies[len(pool)] = src
        pool.append(r)
    copies[len(pool)] = 8
    pool.append(dict(rows[8], instruction=rows[8]["instruction"].replace(" ", "  ", 1)))
    path = tmp_path_factory.mktemp("in") / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pool))
    return path, copies


def overrides(data, model, out, *extra):
    return [f"data.path={data}", f"model.name={model}", f"output_dir={out}", "model.max_length=512",
            "backend.num_actors=1", *extra]


@pytest.fixture(scope="module")
def dedup_run(planted, tiny_model_dir, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("dedup")
    return dedup.run(compose("dedup", overrides(planted[0], tiny_model_dir, out))), out


def test_planted_near_copies_and_nothing_else(dedup_run, planted):
    result, out = dedup_run
    _, copies = planted
    t = pq.read_table(out / "scores.parquet").to_pandas()
    dropped = t[t.outcome == "semantic_duplicate"]
    assert dict(zip(dropped.position, dropped.duplicate_of)) == copies
    assert (dropped.duplicate_similarity >= 0.95).all() and (t.outcome != "error").all()
    assert result.n_selected == 80 == (t.outcome == "kept").sum()


def test_deduped_output_is_a_valid_input(dedup_run, planted, tiny_model_dir, tmp_path):
    _, out = dedup_run
    lines = (out / "deduped.jsonl").read_text().splitlines()
    src = planted[0].read_text().splitlines()
    assert lines == src[:80]  # the kept rows verbatim, in input order
    res = dedup.run(compose("dedup", overrides(out / "deduped.jsonl", tiny_model_dir, tmp_path)))
    assert res.counts == {"kept": 80}
    html = (out / "report.html").read_text()
    assert "Near-copies nearest the threshold" in html and html.count("<tr><td>") == 4


def test_rerun_with_another_threshold_reuses_the_embeddings(dedup_run, planted, tiny_model_dir):
    _, out = dedup_run
    before = pq.read_table(out / "scores.parquet").to_pandas()
    sims = before.duplicate_similarity.dropna().sort_values()
    cut = float((sims.iloc[0] + sims.iloc[1]) / 2)  # between the two least similar planted copies
    res = dedup.run(compose("dedup", overrides(planted[0], tiny_model_dir, out, f"dedup.threshold={cut}")))
    assert res.timings["embed"] < 1.0  # every embedding shard reused
    after = pq.read_table(out / "scores.parquet").to_pandas()
    assert set(after.loc[after.outcome == "semantic_duplicate", "position"]) == set(sims.index[1:])
    m = json.loads((out / "manifest.json").read_text())
    assert m["dedup"]["params"]["threshold"] == cut


def test_rds_with_semantic_dedup_drops_the_copies_first(planted, tiny_model_dir, ray_local, tmp_path):
    path, copies = planted
    target = tmp_path / "t.jsonl"
    lines = path.read_text().splitlines()
    target.write_text("\n".join(lines[p] for p in copies) + "\n")  # the copies themselves are the targets
    res = rds.run(compose("rds", overrides(path, tiny_model_dir, tmp_path / "out", f"target.path={target}",
                                           "dedup=semantic", "selection.budget=4")))
    t = pq.read_table(tmp_path / "out" / "scores.parquet").to_pandas()
    assert set(t.loc[t.outcome == "semantic_duplicate", "position"]) == set(copies)
    assert set(t.loc[t.outcome == "selected", "position"]) == set(copies.values())  # their kept originals
    assert res.n_selected == 4


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_threshold_outside_0_1_is_one_error_line(value):
    proc = subprocess.run([sys.executable, "-m", "jobs.dedup", f"dedup.threshold={value}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("winnow: error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "dedup.threshold must be in (0, 1]" in lines[0], proc.stderr
