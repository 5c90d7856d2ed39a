"""Users' files are sacred: output_dir ownership, the lock, inputs inside the run, self-contained runs,
model identity by content, bad input that keeps the contract, and bit-identical reruns."""
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import ifd
from records import rundir
from jobs import select as reselect
from jobs.settings import ROOT
from tests.jobs.helpers import compose

SAMPLE = ROOT / "data" / "alpaca_sample.jsonl"


def cfg_for(data, model, out, *extra):
    return compose("ifd", [f"data.path={data}", f"model.name={model}", f"output_dir={out}", "model.max_length=96",
                           "backend.num_actors=1", "backend.threads_per_actor=1", *extra])


def small_input(tmp_path, n=40, name="in.jsonl", offset=0):
    p = tmp_path / name
    p.write_bytes(b"\n".join(SAMPLE.read_bytes().splitlines()[offset:offset + n]) + b"\n")
    return p


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def winnow_cli(*args, env=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "jobs.ifd", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def one_error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("winnow: error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


# ---- output_dir ownership, before anything is written (no Ray needed) ----

def test_non_empty_foreign_output_dir_is_refused_untouched(tiny_model_dir, tmp_path):
    out = tmp_path / "mine"
    (out / "records").mkdir(parents=True)
    (out / "records" / "notes.txt").write_text("my notes")
    (out / "report.html").write_text("my report")
    before = snapshot(out)
    with pytest.raises(ValueError, match="not empty and was not made by Winnow"):
        ifd.run(cfg_for(small_input(tmp_path), tiny_model_dir, out))
    assert snapshot(out) == before and not (out / rundir.MARK).exists()


def test_output_dir_that_is_a_file_or_unwritable(tiny_model_dir, tmp_path):
    f = tmp_path / "file"
    f.write_text("keep")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        ifd.run(cfg_for(small_input(tmp_path), tiny_model_dir, f))
    assert f.read_text() == "keep"
    with pytest.raises(ValueError, match="cannot create output_dir"):
        ifd.run(cfg_for(small_input(tmp_path), tiny_model_dir, f / "sub"))


def test_read_only_output_dir_is_one_error(tiny_model_dir, tmp_path):
    ro = Path("/sys/winnow-test-out")  # a real read-only file system, even for root
    try:
        ro.mkdir()
        ro.rmdir()
        pytest.skip("/sys is writable here")
    except OSError:
        pass
    with pytest.raises(ValueError, match="cannot create output_dir"):
        ifd.run(cfg_for(small_input(tmp_path), tiny_model_dir, ro))


@pytest.mark.parametrize("where", ["records/part-00000.parquet", "selected.jsonl", "shards/x.jsonl"])
def test_input_inside_what_the_job_writes_is_refused(where, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    rundir.claim(out, "ifd", []).release()  # a Winnow run directory
    data = out / where
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(small_input(tmp_path).read_bytes())
    before = data.read_bytes()
    with pytest.raises(ValueError, match="lies inside .* which this job writes"):
        ifd.run(cfg_for(data, tiny_model_dir, out))
    assert data.read_bytes() == before


def test_second_job_on_a_locked_output_dir_is_refused_naming_the_pid(tiny_model_dir, tmp_path):
    out = tmp_path / "busy"
    with rundir.claim(out, "ifd", ifd.WRITES):  # held by this (test) process
        proc = winnow_cli(f"output_dir={out}", f"data.path={small_input(tmp_path)}", f"model.name={tiny_model_dir}")
        line = one_error_line(proc)
        assert f"in use by another Winnow job (pid {os.getpid()})" in line
    with rundir.claim(out, "ifd", ifd.WRITES):  # released: claimable again
        pass


@pytest.mark.parametrize("content,needle", [
    (b"", "no records in"),
    (b"\n  \n\n", "no records in"),
    (gzip.compress(SAMPLE.read_bytes())[:2000], "damaged or truncated gzip file"),
    (b"this is not gzip at all" * 10, "damaged or truncated gzip file"),
])
def test_unreadable_or_empty_input_is_one_line_before_any_directory(content, needle, tiny_model_dir, tmp_path):
    data = tmp_path / ("in.jsonl.gz" if b"gzip" in content or content[:2] == b"\x1f\x8b" else "in.jsonl")
    data.write_bytes(content)
    out = tmp_path / "never"
    line = one_error_line(winnow_cli(f"output_dir={out}", f"data.path={data}", f"model.name={tiny_model_dir}"))
    assert needle in line and str(data) in line
    assert not out.exists()


@pytest.mark.parametrize("args,needle", [
    (["data.path=/nonexistent/train.jsonl"], "input file not found: /nonexistent/train.jsonl"),
    (["data.limit=0"], "data.limit must be a positive row count"),
    (["data.limit=-1"], "data.limit must be a positive row count"),
    (["method.template=chat"], "method.template=chat needs a tokenizer with a chat template"),
    (["selection.budget=2.5"], "fractional budget must be in (0, 1]"),
])
def test_config_and_input_errors_are_one_line(args, needle, tiny_model_dir, tmp_path):
    out = tmp_path / "never"
    line = one_error_line(winnow_cli(f"output_dir={out}", f"model.name={tiny_model_dir}",
                                     f"data.path={small_input(tmp_path)}", *args))
    assert needle in line
    assert not out.exists()


# ---- runs through Ray ----

@pytest.mark.ray
def test_resume_false_removes_only_winnows_artefacts(tiny_model_dir, ray_local, tmp_path):
    out = tmp_path / "run"
    data = small_input(tmp_path)
    ifd.run(cfg_for(data, tiny_model_dir, out))
    (out / "my_notes.txt").write_text("mine")
    (out / "nested").mkdir()
    (out / "nested" / "keep.bin").write_bytes(b"\x00\x01")
    again = ifd.run(cfg_for(data, tiny_model_dir, out, "resume=false", "selection.budget=3"))
    assert again.n_selected == 3
    assert (out / "my_notes.txt").read_text() == "mine" and (out / "nested" / "keep.bin").read_bytes() == b"\x00\x01"
    (out / "report.html").unlink()
    (out / "report.html").write_text("<p>a user's page, written over Winnow's</p>")
    mark = json.loads((out / rundir.MARK).read_text())
    mark["owned"].remove("report.html")  # as if the user's file had been there first
    (out / rundir.MARK).write_text(json.dumps(mark))
    with pytest.raises(ValueError, match="report.html was not written by Winnow"):
        ifd.run(cfg_for(data, tiny_model_dir, out))
    assert "a user's page" in (out / "report.html").read_text()


@pytest.mark.ray
def test_reselect_reads_the_runs_own_records_after_the_original_is_reused(tiny_model_dir, ray_local, tmp_path):
    a, copy = tmp_path / "a", tmp_path / "copy"
    ifd.run(cfg_for(small_input(tmp_path, 40, "first.jsonl"), tiny_model_dir, a, "selection.budget=6"))
    shutil.copytree(a, copy)
    ifd.run(cfg_for(small_input(tmp_path, 40, "other.jsonl", offset=100), tiny_model_dir, a, "resume=false"))
    reselect.run(compose("select", [f"scores={copy / 'scores.parquet'}", "selection.budget=6"]))
    first = [json.loads(x) for x in small_input(tmp_path, 40, "first.jsonl").read_text().splitlines()]
    got = [json.loads(x) for x in (copy / "selected.jsonl").read_text().splitlines()]
    assert len(got) == 6 and all(g in first for g in got)
    m = json.loads((copy / "manifest.json").read_text())
    assert m["records_dir"] == "records" and not Path(m["records_dir"]).is_absolute()
    # records that do not belong to the scores are refused, not written as the selection
    shutil.rmtree(copy / "records")
    shutil.copytree(a / "records", copy / "records")
    before = (copy / "selected.jsonl").read_bytes()
    with pytest.raises(ValueError, match="do not match its scores.parquet"):
        reselect.run(compose("select", [f"scores={copy / 'scores.parquet'}", "selection.budget=6"]))
    assert (copy / "selected.jsonl").read_bytes() == before


@pytest.mark.ray
def test_weights_replaced_in_place_are_a_different_model(tiny_model_dir, ray_local, tmp_path):
    from tests.conftest import build_tiny

    model = build_tiny(tmp_path / "model", seed=1)
    out, data = tmp_path / "run", small_input(tmp_path)
    ifd.run(cfg_for(data, model, out))
    other = build_tiny(tmp_path / "other", seed=2)  # same shapes, different weights
    weights = next(model.glob("*.safetensors"))
    assert weights.stat().st_size == next(other.glob("*.safetensors")).stat().st_size
    shutil.copyfile(next(other.glob("*.safetensors")), weights)
    with pytest.raises(ValueError, match=r"different run \(changed: .*model"):
        ifd.run(cfg_for(data, model, out))


def test_gguf_cache_is_keyed_by_content(tmp_path, monkeypatch):
    from scoring import models

    monkeypatch.setenv("WINNOW_CACHE", str(tmp_path / "cache"))
    made = []

    def fake_convert(gguf, out):  # the slow dequantisation is not what this test is about
        out.mkdir(parents=True)
        (out / "config.json").write_text(gguf.read_text())
        made.append(out)
        return out

    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    a, b = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    for p, text in ((a, "weights A"), (b, "weights B")):
        p.parent.mkdir()
        p.write_text(text)
    ra, rb = models.resolve_model(str(a)), models.resolve_model(str(b))
    assert ra != rb and (ra / "config.json").read_text() == "weights A" and (rb / "config.json").read_text() == "weights B"
    assert models.resolve_model(str(a)) == ra and len(made) == 2  # cached


@pytest.mark.ray
def test_selected_jsonl_is_valid_json_for_arrays_with_nan_and_parquet_bytes(tiny_model_dir, ray_local, tmp_path):
    rows = [json.loads(x) for x in SAMPLE.read_text().splitlines()[:20]]
    arr = tmp_path / "arr.json"
    arr.write_text("\ufeff[" + ",\n".join(json.dumps({**r, "score": float("nan")}) for r in rows) + "]")
    out = tmp_path / "a"
    ifd.run(cfg_for(arr, tiny_model_dir, out, "selection.budget=1.0", "selection.max_score=null"))
    lines = (out / "selected.jsonl").read_text().splitlines()
    assert len(lines) == 20  # budget 1.0 = every row
    parsed = [json.loads(x, parse_constant=lambda c: pytest.fail(f"{c} is not JSON")) for x in lines]
    assert all(p["score"] is None for p in parsed)
    pqf = tmp_path / "b.parquet"
    pq.write_table(pa.table({"instruction": [r["instruction"] for r in rows], "output": [r["output"] for r in rows],
                             "blob": [bytes([i, 255]) for i in range(20)]}), pqf)
    ifd.run(cfg_for(pqf, tiny_model_dir, tmp_path / "b", "selection.budget=1.0", "selection.max_score=null"))
    import base64

    got = [json.loads(x) for x in (tmp_path / "b" / "selected.jsonl").read_text().splitlines()]
    assert [base64.b64decode(g["blob"]) for g in got] == [bytes([i, 255]) for i in range(20)]


@pytest.mark.ray
def test_empty_selection_is_stated_prominently(tiny_model_dir, ray_local, tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level("WARNING"):
        r = ifd.run(cfg_for(small_input(tmp_path, 20), tiny_model_dir, out, "selection.max_score=1e-9"))
    assert r.n_selected == 0 and (out / "selected.jsonl").read_text() == ""
    assert any("NO ROWS SELECTED" in m for m in caplog.messages)
    page = (out / "report.html").read_text()
    assert page.index("NO ROWS SELECTED") < page.index("<table>")


# ---- reproducible to the bit ----

def cli_args(data, model, out):
    return [f"output_dir={out}", f"data.path={data}", f"model.name={model}", "model.max_length=64",
            "backend.num_actors=2", "backend.threads_per_actor=1", "data.rows_per_shard=16", "cluster.num_cpus=2"]


def start(args):
    env = {**os.environ, "RAY_TMPDIR": f"/tmp/rws{os.getpid()}"}
    return subprocess.Popen([sys.executable, "-m", "jobs.ifd", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


@pytest.mark.ray
def test_two_actor_runs_and_a_killed_resume_are_bit_identical(tiny_model_dir, tmp_path):
    data = small_input(tmp_path, 160)  # 10 shards of 16 rows over 2 actors
    outs = [tmp_path / n for n in ("one", "two", "killed")]
    for out in outs[:2]:
        proc = start(cli_args(data, tiny_model_dir, out))
        assert proc.wait(timeout=400) == 0, proc.stderr.read().decode()[-2000:]
    proc = start(cli_args(data, tiny_model_dir, outs[2]))
    deadline = time.time() + 300
    while len(list((outs[2] / "shards").glob("*.done"))) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((outs[2] / "shards").glob("*.done")))
    assert 3 <= done < 10, "the kill must land mid-run"
    again = start(cli_args(data, tiny_model_dir, outs[2]))
    assert again.wait(timeout=400) == 0, again.stderr.read().decode()[-2000:]
    assert json.loads((outs[2] / "manifest.json").read_text())["shards"]["reused"] == done
    blobs = [(o / "scores.parquet").read_bytes() for o in outs]
    assert blobs[0] == blobs[1] == blobs[2]
    t = pq.read_table(outs[0] / "scores.parquet")
    assert t.num_rows == 160 and np.isfinite(t.column("cond_nll_sum").to_numpy()).all()
