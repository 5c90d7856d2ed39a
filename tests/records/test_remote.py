"""Object storage through fsspec against a real S3 API server (moto's server mode, started on 127.0.0.1
by the test and stopped by PID): inputs fetched and re-fetched on change, a user's prefix refused, and
whole jobs with ``data.path`` and ``output_dir`` on S3: committed shards survive the loss of the local
mirror, a resume reuses them, and a shard without its completion record is rescored."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from records import remote

ROWS = [{"instruction": f"Say {i} words about the number {i}.", "input": "",
         "output": " ".join(["word"] * (3 + i % 9)) + f" {i}."} for i in range(48)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    """A moto S3 server on a free local port; its PID is stopped at the end."""
    import fsspec

    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": url}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fsspec.config.conf["s3"] = {"endpoint_url": url}
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start")
                time.sleep(0.2)
        fs = fsspec.filesystem("s3")
        fs.mkdir("winnow-test")
        yield fs
    finally:
        fsspec.config.conf.pop("s3", None)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WINNOW_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def put_jsonl(fs, url: str, rows: list[dict]) -> None:
    with fs.open(url, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def test_fetch_caches_and_refreshes(s3, cache: Path) -> None:
    put_jsonl(s3, "winnow-test/in/pool.jsonl", ROWS[:5])
    a = remote.fetch("s3://winnow-test/in/pool.jsonl")
    assert a.read_text().count("\n") == 5
    mtime = a.stat().st_mtime_ns
    assert remote.fetch("s3://winnow-test/in/pool.jsonl").stat().st_mtime_ns == mtime  # cached
    put_jsonl(s3, "winnow-test/in/pool.jsonl", ROWS[:7])
    assert remote.fetch("s3://winnow-test/in/pool.jsonl").read_text().count("\n") == 7  # changed: fetched again
    put_jsonl(s3, "winnow-test/dir/b.jsonl", ROWS[5:9])
    put_jsonl(s3, "winnow-test/dir/a.jsonl", ROWS[:5])
    d = remote.fetch("s3://winnow-test/dir")
    assert sorted(p.name for p in d.iterdir()) == ["a.jsonl", "b.jsonl"]
    with pytest.raises(FileNotFoundError):
        remote.fetch("s3://winnow-test/nothing-here.jsonl")


def test_users_prefix_is_refused_untouched(s3, cache: Path) -> None:
    from records import rundir

    put_jsonl(s3, "winnow-test/users-stuff/keep.jsonl", ROWS[:2])
    with pytest.raises(ValueError, match="not made by Winnow"):
        rundir.claim("s3://winnow-test/users-stuff", "ifd", ["scores.parquet"])
    assert s3.find("winnow-test/users-stuff") == ["winnow-test/users-stuff/keep.jsonl"]


def ifd_cfg(tiny_model_dir: Path, data: str, out: str):
    from jobs.settings import compose

    return compose("ifd", [f"model.name={tiny_model_dir}", f"data.path={data}", f"output_dir={out}",
                           "method.template=none", "selection.budget=0.25", "data.rows_per_shard=12",
                           "cluster.num_cpus=2", "backend.num_actors=1"])


@pytest.mark.ray
def test_ifd_job_on_s3_resumes_from_the_remote(s3, cache: Path, tiny_model_dir: Path, ray_local) -> None:
    from jobs import ifd

    put_jsonl(s3, "winnow-test/pool.jsonl", ROWS)
    url = "s3://winnow-test/runs/ifd"
    res = ifd.run(ifd_cfg(tiny_model_dir, "s3://winnow-test/pool.jsonl", url))
    names = {p.split("runs/ifd/", 1)[1] for p in s3.find("winnow-test/runs/ifd")}
    for want in ("scores.parquet", "selected.jsonl", "selected.parquet", "README.md", "report.html",
                 "manifest.json", ".winnow-run.json", "shards/run.json", "records/part-00000.parquet"):
        assert want in names, want
    assert {f"shards/part-{k:05d}.done" for k in range(4)} <= names and ".winnow.lock" not in names
    manifest = json.loads(s3.cat_file("winnow-test/runs/ifd/manifest.json"))
    assert manifest["input"]["url"] == "s3://winnow-test/pool.jsonl" and manifest["shards"]["scored"] == 4
    with s3.open("winnow-test/runs/ifd/scores.parquet", "rb") as f:
        first = pq.read_table(f)
    assert res.n_selected == 12 and first.num_rows == 48

    # another machine: no local mirror, and shard 2's completion record never made it up
    shutil.rmtree(cache / "runs")
    s3.rm_file("winnow-test/runs/ifd/shards/part-00002.done")
    ifd.run(ifd_cfg(tiny_model_dir, "s3://winnow-test/pool.jsonl", url))
    manifest = json.loads(s3.cat_file("winnow-test/runs/ifd/manifest.json"))
    assert manifest["shards"]["reused"] == 3 and manifest["shards"]["scored"] == 1
    with s3.open("winnow-test/runs/ifd/scores.parquet", "rb") as f:
        again = pq.read_table(f)
    np.testing.assert_allclose(again.column("ifd_loss").to_numpy(), first.column("ifd_loss").to_numpy(), rtol=1e-6)
    assert s3.exists("winnow-test/runs/ifd/shards/part-00002.done")
