"""jobs.compare with the tiny model: equal rows and steps, refused or equalised unequal arms,
deterministic random arms, outputs, and a resume after a killed compare."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import compare, ifd
from jobs.settings import ROOT
from records.staging import stage_input
from tests.jobs.helpers import compose

POOL = ROOT / "data" / "alpaca_sample.jsonl"
TRAIN = ["train.lr=1e-3", "train.batch_size=4", "train.epochs=1", "train.threads_per_worker=1",
         "train.max_length=128", "model.max_length=128", "backend.batch_size=20", "data.limit=60",
         "compare.random_seeds=2", "compare.bootstrap=200"]


def pool_lines():
    return POOL.read_text().splitlines()[:60]


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare_inputs")
    lines = pool_lines()
    ev = (ROOT / "data" / "eval" / "alpaca_eval_davinci003.jsonl").read_text().splitlines()
    return {
        "mine": write(d / "mine.jsonl", lines[40:48][::-1]),  # 8 rows, best first (as given)
        "short": write(d / "short.jsonl", lines[10:16]),  # 6 rows
        "eval": write(d / "heldout.jsonl", ev[:10]),
        "dir": d,
    }


@pytest.fixture(scope="module")
def ifd_run(files, tiny_model_dir, ray_local):
    out = files["dir"] / "ifd_run"
    ifd.run(compose("ifd", [f"data.path={POOL}", "data.limit=60", f"model.name={tiny_model_dir}",
                            f"output_dir={out}", "selection.budget=8", "selection.max_score=null",
                            "model.max_length=128"]))
    return out


def args(files, tiny_model_dir, out, *extra):
    return [f"data.path={POOL}", f"model.name={tiny_model_dir}", f"output_dir={out}",
            f"compare.eval=[{files['eval']}]", *TRAIN, *extra]


@pytest.fixture(scope="module")
def done(files, ifd_run, tiny_model_dir, ray_local):
    out = files["dir"] / "cmp"
    cfg = compose("compare", args(files, tiny_model_dir, out, f"compare.runs=[{ifd_run}]",
                                  f"compare.selections=[{files['mine']}]"))
    return compare.run(cfg), out


def staged_pool(tmp_path):
    return stage_input(POOL, tmp_path / "pool", limit=60)


# ---- arms (no training) ----


def test_unequal_arms_are_refused_before_any_training(files, ifd_run, tiny_model_dir, tmp_path):
    cfg = compose("compare", args(files, tiny_model_dir, tmp_path / "x", f"compare.runs=[{ifd_run}]",
                                  f"compare.selections=[{files['short']}]"))
    with pytest.raises(ValueError, match=r"arms differ in size \(ifd_run=8, short=6"):
        compare.build_arms(cfg, tmp_path, staged_pool(tmp_path))


def test_equalize_cuts_each_arm_by_its_own_ranking(files, ifd_run, tiny_model_dir, tmp_path):
    cfg = compose("compare", args(files, tiny_model_dir, tmp_path / "x", f"compare.runs=[{ifd_run}]",
                                  f"compare.selections=[{files['mine']},{files['short']}]", "compare.equalize=true"))
    arms, k = compare.build_arms(cfg, tmp_path, staged_pool(tmp_path))
    by = {a.name: a for a in arms}
    assert k == 6 and all(len(a.positions) == 6 for a in arms if a.trained)
    scores = pq.read_table(ifd_run / "scores.parquet").to_pandas()
    top6 = scores[scores.outcome == "selected"].sort_values("ifd_loss", ascending=False).position[:6].tolist()
    assert list(by["ifd_run"].positions) == top6  # the IFD run's six highest scores
    assert list(by["mine"].positions) == [47, 46, 45, 44, 43, 42]  # a file's own order is its ranking
    assert list(by["short"].positions) == list(range(10, 16))


def test_random_arms_are_deterministic_valid_and_distinct(files, tiny_model_dir, tmp_path):
    cfg = compose("compare", args(files, tiny_model_dir, tmp_path / "x", f"compare.selections=[{files['mine']}]",
                                  "compare.random_seeds=3"))
    st = staged_pool(tmp_path)
    a1, _ = compare.build_arms(cfg, tmp_path, st)
    a2, _ = compare.build_arms(cfg, tmp_path, st)
    rand = [a for a in a1 if a.kind == "random"]
    assert [a.name for a in rand] == ["random-0", "random-1", "random-2"]
    assert [a.positions for a in rand] == [a.positions for a in a2 if a.kind == "random"]
    assert len({a.positions for a in rand}) == 3 and all(len(a.positions) == 8 for a in rand)
    assert [a.name for a in a1][-1] == "base" and not a1[-1].trained


def test_rows_outside_the_pool_are_refused(files, tiny_model_dir, tmp_path):
    alien = write(tmp_path / "alien.jsonl", [json.dumps({"instruction": "x", "input": "", "output": "y"})])
    cfg = compose("compare", args(files, tiny_model_dir, tmp_path / "x", f"compare.selections=[{alien}]"))
    with pytest.raises(ValueError, match="not in the pool"):
        compare.build_arms(cfg, tmp_path, staged_pool(tmp_path))


def test_nothing_to_compare_is_one_clear_error(files, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="nothing to compare"):
        compare.validate(compose("compare", args(files, tiny_model_dir, tmp_path)))
    with pytest.raises(FileNotFoundError, match="not a finished Winnow run"):
        compare.validate(compose("compare", args(files, tiny_model_dir, tmp_path, f"compare.runs=[{tmp_path}]")))


# ---- the whole job ----


@pytest.mark.ray
def test_every_trained_arm_has_the_same_rows_and_steps(done):
    summary, out = done
    logs = {p.parents[2].name: json.loads(p.read_text()) for p in out.glob("arms/*/train/model/train_log.json")}
    assert sorted(logs) == ["ifd_run", "mine", "random-0", "random-1"]
    assert {lg["examples"] for lg in logs.values()} == {8}
    assert {len(lg["losses"]) for lg in logs.values()} == {2}  # 8 rows / batch 4, 1 epoch
    assert len({json.dumps(lg["params"], sort_keys=True) for lg in logs.values()}) == 1
    assert summary["budget_rows"] == 8 and summary["train"]["steps"] == 2
    mine = pq.read_table(out / "arms" / "mine" / "train" / "rows.parquet").to_pandas()
    assert sorted(mine.position) == list(range(40, 48))


@pytest.mark.ray
def test_outputs_hold_every_arm_and_eval_row(done):
    summary, out = done
    t = pq.read_table(out / "compare.parquet").to_pandas()
    assert len(t) == 5 * 10 and set(t.arm) == {"ifd_run", "mine", "random-0", "random-1", "base"}
    bad = t[t.error.notna()]
    # a reference too long for the tiny model's 128-token window errors under every arm alike
    assert set(bad.error) <= {"prompt_fills_window", "response_too_long"} and len(bad) % 5 == 0
    n_bad = len(bad) // 5
    j = json.loads((out / "compare.json").read_text())
    assert j == json.loads(json.dumps(summary))
    assert j["eval_rows"] == {"all": 10 - n_bad, "heldout": 10 - n_bad} and sum(j["eval_excluded"].values()) == n_bad
    for name, a in j["arms"].items():
        sub = t[(t.arm == name) & t.error.isna()]
        assert a["all"]["mean_nll"] == pytest.approx(sub.nll_sum.sum() / sub.tokens.sum())
        assert a["all"]["ci_low"] <= a["all"]["diff_vs_random"] <= a["all"]["ci_high"]
    r0, r1 = (j["arms"][r]["all"]["mean_nll"] for r in ("random-0", "random-1"))
    assert j["arms"]["base"]["all"]["diff_vs_random"] == pytest.approx(j["arms"]["base"]["all"]["mean_nll"] - (r0 + r1) / 2)
    assert j["arms"]["random-0"]["all"]["diff_vs_random"] == pytest.approx(r0 - r1)  # against the other one
    assert j["random"]["all"]["range"] == pytest.approx(abs(r0 - r1))
    assert sorted(a["all"]["rank"] for a in j["arms"].values()) == [1, 2, 3, 4, 5]
    # training moved the tiny model: every trained arm differs from the base model
    assert all(abs(a["all"]["mean_nll"] - j["base_mean_nll"]["all"]) > 1e-3 for n, a in j["arms"].items() if n != "base")
    page = (out / "report.html").read_text()
    assert "compare.png" in page and (out / "compare.png").stat().st_size > 0 and "Noise floor" in page


def cli(files, tiny_model_dir, ifd_run, out):
    """Two of the fixture's arms (same rows, seed, config): the IFD run and random-0, trained side by side."""
    return [sys.executable, "-m", "jobs.compare", *args(files, tiny_model_dir, out, f"compare.runs=[{ifd_run}]"),
            "compare.random_seeds=1", "compare.base=false", "compare.parallel_arms=2", "cluster.num_cpus=2"]


@pytest.mark.ray
def test_a_killed_compare_resumes_only_unfinished_arms(done, files, ifd_run, tiny_model_dir, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "RAY_TMPDIR": f"/tmp/rct{os.getpid()}"}
    cmd = cli(files, tiny_model_dir, ifd_run, out)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    first_eval = out / "arms" / "ifd_run" / "eval-heldout"
    deadline = time.time() + 300
    while not list(first_eval.glob("part-*.done")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "compare.json").exists(), "the kill must land mid-run"
    kept = {p: p.stat().st_mtime_ns for p in [*out.glob("arms/ifd_run/train/model/*"), *first_eval.glob("part-*")]}
    assert kept
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(p.stat().st_mtime_ns == m for p, m in kept.items())  # the finished arm was not redone
    # side-by-side training gives the models that one-at-a-time training gave
    a = pq.read_table(out / "compare.parquet").to_pandas()
    b = pq.read_table(done[1] / "compare.parquet").to_pandas()
    b = b[b.arm.isin(["ifd_run", "random-0"])].reset_index(drop=True)
    assert list(a.arm) == list(b.arm) and (a.tokens == b.tokens).all()
    assert np.allclose(a.nll_sum, b.nll_sum, rtol=1e-5, equal_nan=True)  # the resumed arms equal an uninterrupted run's
