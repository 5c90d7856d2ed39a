"""jobs.rds end to end (local Ray, tiny model): planted on-target rows first, round-robin covers every
target, re-selection by max without re-embedding; bad target sets are one error line."""
import gzip
import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import rds
from jobs import select as reselect
from jobs.settings import ROOT
from tests.jobs.helpers import compose

pytestmark = pytest.mark.ray
SAMPLE = ROOT / "data" / "alpaca_sample.jsonl"
PLANTED = [70, 12, 55, 31, 90]  # pool rows whose exact text is the target set, in target order


def cfg_for(target, model, out, *extra):
    return compose("rds", [f"data.path={SAMPLE}", "data.limit=100", f"target.path={target}", f"model.name={model}",
                           f"output_dir={out}", "model.max_length=512", "backend.num_actors=2",
                           "selection.budget=15", *extra])


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    lines = SAMPLE.read_text().splitlines()
    p = tmp_path_factory.mktemp("t") / "targets.jsonl"
    p.write_text("\n".join(lines[i] for i in PLANTED) + "\n")
    return p


@pytest.fixture(scope="module")
def rds_run(targets, tiny_model_dir, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("rds")
    return rds.run(cfg_for(targets, tiny_model_dir, out)), out


def test_planted_rows_first_and_every_target_covered(rds_run):
    result, out = rds_run
    t = pq.read_table(out / "scores.parquet").to_pandas()
    sel = t[t.outcome == "selected"].sort_values("rds_rank")
    assert len(sel) == 15 == result.n_selected
    assert sel.position.tolist()[:5] == PLANTED  # turn i: target i takes its own copy (cosine 1)
    assert np.allclose(sel.rds_score.iloc[:5], 1.0, atol=1e-5)
    assert sel.rds_picked_by.tolist() == [0, 1, 2, 3, 4] * 3
    assert (t.loc[t.outcome != "selected", "rds_rank"] == -1).all()
    m = json.loads((out / "manifest.json").read_text())
    assert m["target"]["rows"] == 5 and m["selection"]["picks_per_target"] == {"min": 3, "max": 3}
    html = (out / "report.html").read_text()
    assert "Baselines at the same budget" in html and "<th>rds</th>" in html and "k-center radius" in html


def test_reselect_by_max_into_another_dir(rds_run, tmp_path):
    _, out = rds_run
    dest = tmp_path / "max"
    reselect.run(compose("select", [f"scores={out / 'scores.parquet'}", f"output_dir={dest}", "rds.aggregate=max",
                                    "selection.budget=8"]))
    t = pq.read_table(dest / "scores.parquet").to_pandas()
    sel = t[t.outcome == "selected"]
    assert len(sel) == 8 and set(PLANTED) <= set(sel.position)
    assert sel.rds_score.min() >= t.loc[t.outcome == "below_budget", "rds_score"].max()
    assert (dest / "selected.jsonl").read_text().count("\n") == 8
    assert (dest / "target" / "embeddings").is_dir()  # the new dir is a complete run


def test_rerun_reuses_both_embeddings(rds_run, targets, tiny_model_dir):
    _, out = rds_run
    res = rds.run(cfg_for(targets, tiny_model_dir, out))
    assert res.timings["embed_pool"] < 1.0 and res.timings["embed_target"] < 1.0


@pytest.mark.parametrize("kind", ["missing", "empty", "csv", "gzip"])
def test_bad_target_sets_are_refused_before_anything(kind, tmp_path):
    p = {"missing": tmp_path / "nope.jsonl", "empty": tmp_path / "e.jsonl", "csv": tmp_path / "t.csv",
         "gzip": tmp_path / "t.jsonl.gz"}[kind]
    if kind == "empty":
        p.write_text("\n\n")
    elif kind == "csv":
        p.write_text("instruction,output\na,b\n")
    elif kind == "gzip":
        p.write_bytes(gzip.compress(b'{"instruction": "a", "output": "b"}\n' * 50)[:40])
    with pytest.raises((ValueError, OSError), match="target set"):
        rds.validate(compose("rds", [f"target.path={p}"]))


def test_target_without_usable_rows_is_refused(tiny_model_dir, ray_local, tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"instruction": "no output"}\n[1, 2]\n')
    with pytest.raises(ValueError, match="no usable rows"):
        rds.run(cfg_for(p, tiny_model_dir, tmp_path / "out"))


def test_missing_target_is_one_error_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jobs.rds", f"target.path={tmp_path / 'nope.jsonl'}",
                           f"output_dir={tmp_path / 'o'}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("winnow: error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "target set" in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "o").exists()
