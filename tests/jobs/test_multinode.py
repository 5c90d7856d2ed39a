"""Two real Ray nodes on this machine: scoring actors run on both and give the one-node scores; the
worker node's raylet SIGKILLed mid-run: the job completes with every row scored exactly once, scores
unchanged. Each cluster lives in a subprocess (``tests/jobs/cluster_run.py``) with its own temp dir."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.settings import ROOT

pytestmark = [pytest.mark.cluster, pytest.mark.ray, pytest.mark.slow]


def cluster_run(out: Path, *args: str) -> dict:
    temp = tempfile.mkdtemp(prefix="rn", dir="/tmp")  # Ray's socket paths must stay short
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=temp, RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "tests.jobs.cluster_run", f"--out={out}", *args], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])


def scores(out: Path):
    t = pq.read_table(out / "scores.parquet").to_pandas().sort_values("position")
    return t


@pytest.fixture(scope="module")
def one_node(tmp_path_factory, smollm2_dir):
    out = tmp_path_factory.mktemp("one") / "run"
    info = cluster_run(out, "--nodes=1", *OVERRIDES)
    return out, info


OVERRIDES = ["data.limit=48", "data.rows_per_shard=4", "backend.num_actors=2", "backend.threads_per_actor=1"]


def assert_same_scores(a: Path, b: Path) -> None:
    x, y = scores(a), scores(b)
    assert list(x["position"]) == list(y["position"]) == list(range(len(x)))
    assert list(x["id"]) == list(y["id"])
    for c in ("cond_nll_sum", "uncond_nll_sum"):
        np.testing.assert_allclose(y[c].to_numpy(), x[c].to_numpy(), rtol=1e-5)


def test_two_nodes_score_on_both_and_match_one_node(one_node, tmp_path):
    ref, ref_info = one_node
    out = tmp_path / "run"
    info = cluster_run(out, "--nodes=2", *OVERRIDES)
    assert info["rows"] == 48
    assert set(info["nodes"]) == {info["head"], info["worker"]}, info  # actors on both nodes
    assert sum(info["nodes"].values()) == 48
    assert list(ref_info["nodes"]) == [ref_info["head"]]
    assert_same_scores(ref, out)


def test_lost_worker_node_mid_run_completes_with_every_row_once(one_node, tmp_path):
    ref, _ = one_node
    out = tmp_path / "run"
    info = cluster_run(out, "--nodes=2", "--kill-worker", *OVERRIDES)
    assert info["killed_raylet_pid"] and info["rows"] == 48
    t = scores(out)
    assert len(t) == 48 and t["position"].is_unique and t["id"].is_unique
    assert t["error"].isna().all()
    assert info["head"] in info["nodes"]  # the rest was scored on the surviving node
    assert_same_scores(ref, out)
