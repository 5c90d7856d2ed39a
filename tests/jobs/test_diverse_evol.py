"""DiverseEvol end to end on local Ray with the tiny model: determinism, resume after a kill, outputs."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import diverse_evol
from jobs.settings import ROOT
from tests.jobs.helpers import compose

pytestmark = pytest.mark.ray

ARGS = ["evol.init=8", "evol.per_round=6", "evol.rounds=3", "evol.epochs=1", "train.lr=1e-3",
        "train.batch_size=4", "model.max_length=128", "data.limit=60", "backend.batch_size=30",
        "train.threads_per_worker=1", "backend.threads_per_actor=1"]


def de_cfg(tiny, out, *extra):
    return compose("diverse_evol", [f"model.name={tiny}", f"output_dir={out}", *ARGS, *extra])


@pytest.fixture(scope="module")
def first_run(tiny_model_dir, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("de1")
    return diverse_evol.run(de_cfg(tiny_model_dir, out)), out


def test_rounds_grow_the_subset_and_cover_better(first_run):
    result, out = first_run
    m = json.loads((out / "manifest.json").read_text())
    assert [len(r["added"]) for r in m["rounds"]] == [6, 6, 6] and result.n_selected == 8 + 18
    for r in m["rounds"]:
        assert r["radius_after"] <= r["radius_before"] + 1e-6     # adding centres never grows the radius
        assert r["train_examples"] == 8 + 6 * r["round"]
    t = pq.read_table(out / "scores.parquet").to_pandas()
    assert (t.added_in_round == 0).sum() == 8 and ((t.added_in_round >= 1).sum() == 18)
    lines = (out / "selected.jsonl").read_bytes().splitlines()
    assert len(lines) == 26 and (out / "radius.png").exists()
    assert (out / "rounds" / "round-02" / "model" / "config.json").exists()      # last model kept
    assert not (out / "rounds" / "round-00" / "model").exists()                  # earlier ones dropped
    assert not (out / "rounds" / "round-00" / "embeddings").exists()             # only the last round's vectors
    html = (out / "report.html").read_text()                                     # beside random and longest,
    assert "<th>diverse_evol</th>" in html and "<th>random</th>" in html         # in the last round's space
    assert "k-center radius" in html and (out / "baselines.png").exists()


def test_same_seed_same_subset(first_run, tiny_model_dir, tmp_path):
    _, out = first_run
    diverse_evol.run(de_cfg(tiny_model_dir, tmp_path))
    assert (tmp_path / "selected.jsonl").read_bytes() == (out / "selected.jsonl").read_bytes()


def test_resume_after_kill_in_round_2_gives_the_same_subset(first_run, tiny_model_dir, tmp_path):
    _, ref = first_run
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "jobs.diverse_evol", f"model.name={tiny_model_dir}", f"output_dir={out}",
           *ARGS, "cluster.num_cpus=2"]
    env = {**os.environ, "RAY_TMPDIR": f"/tmp/rwd{os.getpid()}"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    marker = out / "rounds" / "round-01" / "round.json"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)   # during round 2 (index 2): rounds 0 and 1 are complete
    proc.wait()
    assert marker.exists() and not (out / "rounds" / "round-02" / "round.json").exists()
    assert not (out / "selected.jsonl").exists()
    diverse_evol.run(de_cfg(tiny_model_dir, out))
    assert (out / "selected.jsonl").read_bytes() == (ref / "selected.jsonl").read_bytes()
    rounds = json.loads((out / "manifest.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]


def test_kcenter_beats_random_on_the_round_embeddings(first_run, tiny_model_dir, tmp_path):
    """The subset k-center built covers the pool better than random subsets of the same size."""
    _, out = first_run
    from records.staging import stage_input
    staged = stage_input(ROOT / "data" / "alpaca_sample.jsonl", tmp_path, limit=60)
    cfg = de_cfg(tiny_model_dir, out)
    from jobs.settings import render_config

    rc = render_config(cfg)  # the rendering the run used (its run.json records it as "render")
    assert json.loads((out / "rounds" / "run.json").read_text())["parts"]["render"]["template"] == rc.template
    E = diverse_evol.embed_pool(staged, out / "rounds" / "round-02" / "model", tmp_path, cfg, rc)
    valid = diverse_evol.valid_positions(staged)
    last = json.loads((out / "rounds" / "round-02" / "round.json").read_text())
    subset = last["subset"][: -len(last["added"])]   # the subset round 2 grew from
    grown = last["subset"]
    r_kc = diverse_evol.covering_radius(E, valid, grown)
    rng = np.random.default_rng(0)
    r_rand = [diverse_evol.covering_radius(E, valid, sorted(subset + rng.choice(
        np.setdiff1d(valid, subset), 6, replace=False).tolist())) for _ in range(20)]
    assert r_kc < min(r_rand)
