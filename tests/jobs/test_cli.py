"""The ``winnow`` console entry point, run as a user runs it (a subprocess): the job list, a job end to
end on the tiny model with progress per shard and no Ray chatter, and ``dry_run`` figures against the
tokens the real run scored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from scoring.batching import BatchPolicy
from scoring.estimate import TokenCounts, count_chunk
from scoring.render import PassIds, Rendered

WINNOW = str(Path(sys.executable).with_name("winnow"))


def winnow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_TMPDIR": os.environ.get("RAY_TMPDIR", "/tmp/ray-winnow")}
    return subprocess.run([WINNOW, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_help_lists_every_job_and_unknown_is_an_error(tmp_path: Path) -> None:
    from jobs.cli import JOBS

    r = winnow("--help", cwd=tmp_path)
    assert r.returncode == 0
    for name in ("ifd", "recost", "kb-build", "select", "cherry", "diverse-evol", "compare", "rds", "dedup"):
        assert f"  {name} " in r.stdout, name
    listed = r.stdout.split("jobs:\n", 1)[1].splitlines()
    assert [ln.split()[0] for ln in listed] == list(JOBS)
    bad = winnow("nope", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown job 'nope'" in bad.stderr


def test_count_chunk_by_hand() -> None:
    r = [Rendered(passes={"cond": PassIds(list(range(10)), 6), "uncond": PassIds(list(range(5)), 1)}),
         Rendered(error="malformed_json"),
         Rendered(passes={"cond": PassIds(list(range(8)), 2), "uncond": PassIds(list(range(7)), 1)})]
    c = TokenCounts()
    count_chunk(r, ("cond", "uncond"), BatchPolicy(max_batch_tokens=20, max_batch_rows=8), c)
    # lengths 10, 5, 8, 7 sorted: [10, 8] (2x10 = 20 fits), [7, 5] (2x7)
    assert (c.rows, c.valid_rows, c.tokens, c.scored) == (3, 2, {"cond": 18, "uncond": 12}, {"cond": 10, "uncond": 10})
    assert (c.padded_tokens, c.forwards) == (20 + 14, 2)


@pytest.mark.ray
def test_winnow_ifd_end_to_end_quiet_with_progress_and_dry_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    common = [f"model.name={tiny_model_dir}", "data.limit=48", "data.rows_per_shard=12", "method.template=none",
              "log_every_s=0"]
    r = winnow("ifd", *common, f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    progress = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("scored ")]
    assert [p.split(" rows")[0] for p in progress] == ["scored 12/48", "scored 24/48", "scored 36/48", "scored 48/48"]
    for chatter in ("core_worker.cc", "Progress bars disabled", "worker processes", "Starting execution"):
        assert chatter not in r.stderr and chatter not in r.stdout, chatter
    assert (tmp_path / "run" / "selected.parquet").is_file() and (tmp_path / "run" / "README.md").is_file()

    d = winnow("ifd", *common, "dry_run=true",
               f"output_dir={tmp_path / 'dry'}", cwd=tmp_path)
    assert d.returncode == 0, d.stderr[-3000:]
    assert "dry run: 48 rows, 48 valid" in d.stdout and "estimated scoring time here" in d.stdout
    f = json.loads((tmp_path / "dry" / "manifest.json").read_text())["dry_run"]
    scores = pq.read_table(tmp_path / "run" / "scores.parquet")
    col = lambda c: int(scores.column(c).to_numpy().sum())  # noqa: E731
    # the tokens the real run scored, counted by its own scorer, are what the dry run predicted
    assert f["scored_tokens_per_pass"] == {"cond": col("cond_tokens"), "uncond": col("uncond_tokens")}
    assert f["tokens_per_pass"]["cond"] > f["tokens_per_pass"]["uncond"] >= col("uncond_tokens")
    assert f["padded_tokens"] >= f["tokens"] and f["estimated_score_s_here"] > 0 and f["estimated_score_s_gpu"] > 0
    assert not (tmp_path / "dry" / "scores.parquet").exists() and not (tmp_path / "dry" / "shards").exists()
    assert not np.isnan(f["pilot"]["padded_tokens_per_s"])
