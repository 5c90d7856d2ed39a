"""Resume after a killed driver, survive a killed actor, deterministic and batch-invariant scores."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest

from jobs import ifd
from jobs.actor import RenderActor, ScoringActor
from jobs.settings import ROOT
from records import schema
from tests.jobs.helpers import compose

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def many_rows(tmp_path_factory):
    """2,400 distinct Alpaca-style rows (the bundled sample, each with a numbered variant)."""
    base = [json.loads(x) for x in (ROOT / "data" / "alpaca_sample.jsonl").read_text().splitlines()]
    path = tmp_path_factory.mktemp("many") / "many.jsonl"
    with open(path, "w") as f:
        for i in range(8):
            for r in base:
                f.write(json.dumps({**r, "instruction": f"{r['instruction']} (v{i})"}) + "\n")
    return path


def cli(args, out):
    return [sys.executable, "-m", "jobs.ifd", f"output_dir={out}", "model.max_length=64",
            "backend.num_actors=1", "backend.threads_per_actor=1", "backend.batch_size=20",
            "data.rows_per_shard=100", "cluster.num_cpus=2", *args]


def done_files(out):
    return sorted((out / "shards").glob("part-*.done")) if (out / "shards").exists() else []


def start(cmd):
    env = {**os.environ, "RAY_TMPDIR": f"/tmp/rwt{os.getpid()}"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def test_resume_after_sigkill_recomputes_only_missing_shards(many_rows, tiny_model_dir, tmp_path):
    args = [f"data.path={many_rows}", f"model.name={tiny_model_dir}"]
    out = tmp_path / "killed"
    proc = start(cli(args, out))
    deadline = time.time() + 240
    while len(done_files(out)) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    first = {p.name: p.stat().st_mtime_ns for p in done_files(out)}
    assert 3 <= len(first) < 24, "the kill must land mid-run"
    assert proc.returncode != 0 and not (out / "scores.parquet").exists()
    again = start(cli(args, out))
    assert again.wait(timeout=300) == 0, again.stderr.read().decode()[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["shards"] == {"total": 24, "reused": len(first), "scored": 24 - len(first), "rows_per_shard": 100}
    assert all(p.stat().st_mtime_ns == first[p.name] for p in done_files(out) if p.name in first)
    clean = tmp_path / "clean"
    assert start(cli(args, clean)).wait(timeout=300) == 0
    a = pq.read_table(out / "scores.parquet").to_pandas()
    b = pq.read_table(clean / "scores.parquet").to_pandas()
    assert len(a) == 2400 and a.equals(b)
    assert (out / "selected.jsonl").read_bytes() == (clean / "selected.jsonl").read_bytes()


def test_killed_actor_is_restarted_and_no_row_is_lost(many_rows, tiny_model_dir, tmp_path):
    out = tmp_path / "actor"
    proc = start(cli([f"data.path={many_rows}", f"model.name={tiny_model_dir}"], out))
    killed, deadline = 0, time.time() + 240
    while not killed and proc.poll() is None and time.time() < deadline:
        if done_files(out):
            for p in psutil.process_iter(["cmdline"]):
                if "ScoringActor" in " ".join(p.info["cmdline"] or []):
                    p.kill()
                    killed += 1
        time.sleep(0.02)
    assert killed, "no scoring actor was found to kill"
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    t = pq.read_table(out / "scores.parquet")
    assert t.column("position").to_pylist() == list(range(2400))
    assert all(e is None for e in t.column("error").to_pylist())


def run_inproc(path, model, out, *extra):
    cfg = compose("ifd", [f"data.path={path}", f"model.name={model}", f"output_dir={out}",
                          "model.max_length=96", "data.limit=300", *extra])
    return ifd.run(cfg)


def test_scores_independent_of_batching_actors_and_partitions(many_rows, tiny_model_dir, ray_local, tmp_path):
    run_inproc(many_rows, tiny_model_dir, tmp_path / "a", "backend.batch_size=8", "backend.num_actors=1",
               "backend.threads_per_actor=1", "data.rows_per_shard=16")
    # b also tokenises in a separate CPU render stage (what backend.render_actors=auto does on GPUs)
    run_inproc(many_rows, tiny_model_dir, tmp_path / "b", "backend.batch_size=64", "backend.num_actors=2",
               "backend.threads_per_actor=1", "data.rows_per_shard=50", "backend.max_batch_tokens=512",
               "backend.render_actors=1")
    run_inproc(many_rows, tiny_model_dir, tmp_path / "c", "backend.batch_size=8", "backend.num_actors=1",
               "backend.threads_per_actor=1", "data.rows_per_shard=16")
    a, b = (pq.read_table(tmp_path / d / "scores.parquet").to_pandas() for d in "ab")
    for col in ("cond_nll_sum", "uncond_nll_sum"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-5, atol=1e-5)
    assert (a.cond_tokens == b.cond_tokens).all() and (a.id == b.id).all()
    sel = [(tmp_path / d / "selected.jsonl").read_bytes() for d in "ac"]
    assert sel[0] == sel[1] and len(sel[0].splitlines()) == 15
    assert pq.read_table(tmp_path / "a" / "scores.parquet").equals(pq.read_table(tmp_path / "c" / "scores.parquet"))


def test_changed_config_against_existing_output_is_refused(many_rows, tiny_model_dir, ray_local, tmp_path):
    out = tmp_path / "x"
    run_inproc(many_rows, tiny_model_dir, out, "data.limit=40")
    with pytest.raises(ValueError, match=r"different run \(changed: .*render"):
        run_inproc(many_rows, tiny_model_dir, out, "data.limit=40", "method.variant=superfilter")
    assert (out / "scores.parquet").exists()  # the earlier results are untouched
    again = run_inproc(many_rows, tiny_model_dir, out, "data.limit=40", "selection.budget=3")
    assert again.n_selected == 3  # selection changes are not a different run
    fresh = run_inproc(many_rows, tiny_model_dir, out, "data.limit=40", "method.variant=superfilter", "resume=false")
    assert fresh.n_rows == 40


class ExplodingOnLong:
    """A real backend that fails, like a model crashing, on any sequence longer than ``limit``."""

    def __init__(self, inner, limit):
        self.inner, self.limit = inner, limit

    def score(self, items):
        if any(len(it.ids) > self.limit for it in items):
            raise RuntimeError("simulated kernel failure")
        return self.inner.score(items)


def test_row_that_crashes_the_model_gets_an_error_reason(tiny_model_dir):
    from jobs import settings, specs

    cfg = compose("ifd", [f"model.name={tiny_model_dir}"])
    actor_spec = specs.scorer_spec(cfg, tiny_model_dir, settings.render_config(cfg))
    actor = ScoringActor(actor_spec)
    actor.backend = ExplodingOnLong(actor.backend, limit=60)
    outputs = ["short answer", "a very long answer " * 30, "fine too"]
    batch = {schema.ID: np.array(["a", "b", "c"], dtype=object), schema.POSITION: np.arange(3),
             schema.INSTRUCTION: np.array(["q"] * 3, dtype=object), schema.INPUT: np.array([""] * 3, dtype=object),
             schema.OUTPUT: np.array(outputs, dtype=object), schema.HISTORY: np.array([""] * 3, dtype=object),
             schema.ERROR: np.array([None] * 3, dtype=object)}
    out = actor(batch)
    assert out[schema.ERROR].tolist() == [None, "scorer_failed:RuntimeError", None]
    assert np.isfinite(out["cond_nll_sum"][[0, 2]]).all() and np.isnan(out["cond_nll_sum"][1])
    # the same through the CPU render stage's wire columns (as Ray Data hands them over: numpy arrays)
    wire = {k: np.array(v, dtype=object) if isinstance(v, list) else v
            for k, v in RenderActor(actor_spec).__call__(batch).items()}
    again = actor(wire)
    assert again[schema.ERROR].tolist() == out[schema.ERROR].tolist()
    np.testing.assert_array_equal(again["cond_nll_sum"], out["cond_nll_sum"])
    np.testing.assert_array_equal(again[schema.PROMPT_TOKENS], out[schema.PROMPT_TOKENS])


POISON_MODULE = '''
import os
import signal

from transformers import LlamaForCausalLM, LlamaModel


class PoisonModel(LlamaModel):
    """A Llama decoder that kills its own process when it sees the marked token (a segfault's stand-in)."""

    def forward(self, input_ids=None, **kwargs):
        if input_ids is not None and bool((input_ids == self.config.poison_token_id).any()):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(input_ids=input_ids, **kwargs)


class PoisonLlama(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model = PoisonModel(config)
'''


@pytest.fixture(scope="module")
def poison_model_dir(tmp_path_factory):
    """The tiny Llama as remote code whose forward SIGKILLs its process on the BEL byte's token."""
    from tests.conftest import build_tiny
    from transformers import AutoTokenizer

    d = build_tiny(tmp_path_factory.mktemp("poison") / "poison_llama")
    tok = AutoTokenizer.from_pretrained(d)
    (token,) = tok("\x07", add_special_tokens=False)["input_ids"]
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(poison_token_id=token, auto_map={"AutoModelForCausalLM": "poison.PoisonLlama"})
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "poison.py").write_text(POISON_MODULE)
    return d


def poisoned_run(job: str, row: int, model_dir: Path, tmp_path: Path, max_length: int) -> Any:
    """The first 12 sample rows with the poison byte in row ``row``'s response, and ``job``'s config
    over them on one single-thread actor with one retry."""
    rows = [json.loads(x) for x in (ROOT / "data" / "alpaca_sample.jsonl").read_text().splitlines()[:12]]
    rows[row]["output"] += " \x07"
    path = tmp_path / "poisoned.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return compose(job, [f"data.path={path}", f"model.name={model_dir}", "model.trust_remote_code=true",
                         f"output_dir={tmp_path / 'out'}", "method.template=none", f"model.max_length={max_length}",
                         "data.rows_per_shard=4", "backend.num_actors=1", "backend.threads_per_actor=1",
                         "backend.max_task_retries=1"])


def test_poison_row_that_kills_the_actor_process_gets_actor_died(poison_model_dir, ray_local, tmp_path):
    result = ifd.run(poisoned_run("ifd", 5, poison_model_dir, tmp_path, 96))
    t = pq.read_table(tmp_path / "out" / "scores.parquet").sort_by("position")
    assert t.column("position").to_pylist() == list(range(12))
    assert t.column("error").to_pylist() == [None] * 5 + [schema.E_ACTOR_DIED] + [None] * 6
    assert np.isfinite(t.column("cond_nll_sum").to_numpy()[np.arange(12) != 5]).all()
    assert result.counts["error"] == 1
    assert schema.E_ACTOR_DIED in (tmp_path / "out" / "report.html").read_text()  # a drop reason shown
    assert not (tmp_path / "out" / "shards" / ".inflight").exists()  # the journal is cleared


def test_poison_row_in_the_embedding_pass_gets_actor_died(poison_model_dir, ray_local, tmp_path):
    """The row-embedding actors (dedup, rds, curate) keep the same crash journal as the scoring ones."""
    from jobs import dedup

    dedup.run(poisoned_run("dedup", 7, poison_model_dir, tmp_path, 512))
    t = pq.read_table(tmp_path / "out" / "scores.parquet").sort_by("position")
    assert t.column("position").to_pylist() == list(range(12))
    errors = t.column("error").to_pylist()
    assert errors == [None] * 7 + [schema.E_ACTOR_DIED] + [None] * 4
    assert t.column("outcome").to_pylist()[7] == "error"
    assert not (tmp_path / "out" / "shards" / ".inflight").exists()
