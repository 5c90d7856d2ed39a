"""The cluster path end to end: ``ray start --head`` (its own ports and temp dir), ``ray job submit
--working-dir .`` of the default IFD job with ``cluster=auto``, outputs checked, then exactly the
processes of that head stopped (never ``ray stop``, which would kill every Ray on the machine)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.settings import ROOT
from scoring.models import cache_root

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.ray]

RAY = str(Path(sys.executable).with_name("ray"))
EXCLUDES = [".git", ".venv", ".venv-vllm", ".gpu", "out", "outputs", "multirun", "bench/results", "*.egg-info"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_head(temp: str) -> None:
    """Terminate every process of the head started with ``--temp-dir temp`` (and their children)."""
    import psutil

    procs = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if temp in " ".join(p.info["cmdline"] or []):
                procs[p.pid] = p
                procs.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.Error:
            continue
    for p in procs.values():
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=30)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    shutil.rmtree(temp, ignore_errors=True)


@contextmanager
def started_head():
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    dash = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env.update(RAY_AUTH_MODE="disabled", RAY_TMPDIR=temp, WINNOW_CACHE=str(cache_root()))
    cmd = [RAY, "start", "--head", f"--port={free_port()}", "--include-dashboard=true",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
           f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
           f"--runtime-env-agent-port={free_port()}", f"--ray-client-server-port={free_port()}",
           f"--metrics-export-port={free_port()}", "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats"]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        yield f"http://127.0.0.1:{dash}", env
    finally:
        stop_head(temp)


def test_ray_job_submit_runs_the_default_job(smollm2_dir, ray_local, tmp_path):
    out = tmp_path / "out"
    # the README's command; data.limit keeps the test short (the bundled sample has 300 rows)
    entry = [sys.executable, "-m", "jobs.ifd", "cluster=auto", "data.limit=60", f"output_dir={out}"]
    with started_head() as (address, env):
        runtime_env = {"excludes": EXCLUDES, "env_vars": {"WINNOW_CACHE": env["WINNOW_CACHE"]}}
        r = subprocess.run([RAY, "job", "submit", "--address", address, "--working-dir", str(ROOT),
                            "--runtime-env-json", json.dumps(runtime_env), "--", *entry],
                           env=env, capture_output=True, text=True, timeout=900)
    # stopping our head left the other Ray instance on this machine (this session's) running
    assert ray_local.cluster_resources().get("CPU", 0) > 0
    log = r.stdout[-4000:] + r.stderr[-2000:]
    assert r.returncode == 0 and "succeeded" in r.stdout, log
    scores = pq.read_table(out / "scores.parquet")
    assert scores.num_rows == 60 and scores.column("error").null_count == 60, log
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["cluster"]["address"] == "auto" and manifest["job"] == "ifd"
    selected = (out / "selected.jsonl").read_text().splitlines()
    assert len(selected) == manifest["selection"]["selected"] > 0
