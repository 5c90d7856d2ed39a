"""End-to-end ``run(cfg)`` through local Ray with the tiny random model."""
import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from jobs import ifd
from jobs import select as reselect
from jobs.settings import ROOT
from tests.records.corpus import write_corpus
from tests.jobs.helpers import compose

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def mixed_input(tmp_path_factory):
    """The bad-input corpus followed by 60 real Alpaca rows from the bundled sample."""
    d = tmp_path_factory.mktemp("in")
    expected = write_corpus(d / "bad.jsonl")
    sample = (ROOT / "data" / "alpaca_sample.jsonl").read_bytes().splitlines()[:60]
    path = d / "mixed.jsonl"
    path.write_bytes((d / "bad.jsonl").read_bytes() + b"\n".join(sample) + b"\n")
    return path, expected + [None] * 60


@pytest.fixture(scope="module")
def run_result(mixed_input, tiny_model_dir, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    cfg = compose("ifd", [f"data.path={mixed_input[0]}", f"model.name={tiny_model_dir}",
                          f"output_dir={out}", "selection.budget=0.1", "model.max_length=128",
                          "backend.batch_size=16", "backend.num_actors=2", "backend.threads_per_actor=1",
                          "selection.max_score=null"])
    return ifd.run(cfg), out


def test_every_row_scored_or_explained(run_result, mixed_input):
    result, out = run_result
    _, expected = mixed_input
    table = pq.read_table(out / "scores.parquet")
    t = table.to_pandas()
    assert t.position.tolist() == list(range(len(expected)))  # 0 rows lost, sorted by position
    assert t.id.is_unique
    assert table.column("error").to_pylist() == expected
    ok = t.error.isna()
    assert (t.loc[ok, "cond_tokens"] > 0).all() and t.loc[ok, "ifd_loss"].notna().all()
    assert (t.loc[ok, "cond_tokens"] == t.loc[ok, "uncond_tokens"]).all()
    assert t.truncated.sum() >= 1 and t.response_truncated.sum() >= 1  # the over-length rows, flagged
    assert t.loc[~ok, "cond_nll_sum"].isna().all()
    assert result.n_rows == len(expected)


def test_selected_records_verbatim_in_input_order(run_result, mixed_input):
    result, out = run_result
    path, expected = mixed_input
    lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    t = pq.read_table(out / "scores.parquet").to_pandas()
    chosen = t.loc[t.outcome == "selected", "position"].tolist()
    assert len(chosen) == int(0.1 * len(expected)) == result.n_selected
    got = (out / "selected.jsonl").read_bytes().splitlines()
    assert got == [lines[p] for p in sorted(chosen)]
    sel_scores = t.loc[t.outcome == "selected", "ifd_loss"]
    rest = t.loc[t.outcome == "below_budget", "ifd_loss"]
    assert sel_scores.min() >= rest.max()


def test_manifest_and_report(run_result, mixed_input):
    _, out = run_result
    m = json.loads((out / "manifest.json").read_text())
    assert m["input"]["rows"] == len(mixed_input[1]) and len(m["input"]["sha256"]) == 64
    assert m["input"]["read_outcomes"]["malformed_json"] == mixed_input[1].count("malformed_json")
    assert sum(m["selection"]["outcomes"].values()) == len(mixed_input[1])
    assert m["model"]["architectures"] == ["LlamaForCausalLM"]
    assert {"read", "score", "select"} <= set(m["timings_s"])
    html = (out / "report.html").read_text()
    for png in ("ifd_hist.png", "ifd_vs_length.png", "outcomes.png", "baselines.png"):
        assert png in html and (out / png).stat().st_size > 1000
    assert "Baselines at the same budget" in html and "overlap with longest" in html
    for arm in ("ifd", "random", "longest"):
        assert f"<th>{arm}</th>" in html


def test_reselect_without_rescoring(run_result, tmp_path):
    _, out = run_result
    before = pq.read_table(out / "scores.parquet").drop(["outcome"])
    cfg = compose("select", [f"scores={out / 'scores.parquet'}", "selection.budget=5",
                             f"output_dir={tmp_path}", "selection.score=ifd_ppl"])
    summary = reselect.run(cfg)
    assert summary["written"] == 5 and len((tmp_path / "selected.jsonl").read_text().splitlines()) == 5
    after = pq.read_table(tmp_path / "scores.parquet")
    pd.testing.assert_frame_equal(after.drop(["outcome"]).to_pandas(), before.to_pandas())
    # chained re-selection from the new directory still finds the records
    again = reselect.run(compose("select", [f"scores={tmp_path / 'scores.parquet'}", "selection.budget=3"]))
    assert again["written"] == 3


@pytest.mark.parametrize("args,needle", [
    (["data.path=/nonexistent/train.jsonl"], "input file not found"),
    (["model.name=no-such-model"], "unknown model"),
    (["method.variant=bogus"], "method.variant"),
])
def test_cli_user_errors_are_one_line(args, needle, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jobs.ifd", f"output_dir={tmp_path}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("winnow: error:")]
    assert len(err) == 1 and needle in err[0] and "Traceback" not in proc.stderr


@pytest.mark.ray
def test_hydra_multirun_sweep_writes_one_output_dir_per_point(tiny_model_dir, tmp_path):
    """``-m`` sweeps run each point as a job in one process (Ray started once, reused)."""
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.ifd", "-m", f"model.name={tiny_model_dir}", "data.limit=12",
         "selection.budget=2,5", "method.template=alpaca,none",
         f"output_dir={tmp_path}/b${{selection.budget}}_${{method.template}}",
         f"hydra.sweep.dir={tmp_path}/multirun", "selection.max_score=null"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for budget in (2, 5):
        for template in ("alpaca", "none"):
            out = tmp_path / f"b{budget}_{template}"
            manifest = json.loads((out / "manifest.json").read_text())
            assert manifest["config"]["method"]["template"] == template
            assert len((out / "selected.jsonl").read_text().splitlines()) == budget
