"""jobs.curate end to end through local Ray with the tiny random model: planted repeats, near-copies,
placeholder answers and broken lines each removed by their own step and reported; the budget met;
deterministic; with a KB the ranking is RECOST's."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs import curate, kb_build
from jobs.settings import ROOT
from selection.semdedup import DROP_DUPLICATE
from tests.jobs.helpers import compose

pytestmark = pytest.mark.ray

SAMPLE = [json.loads(line) for line in (ROOT / "data" / "alpaca_sample.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 sample rows; then an exact repeat of row 0, a near-copy of row 1 (one word added), three
    placeholder answers (3–5 tokens with the tiny tokenizer, EOS included; the guard's threshold is
    set to 6 here) and a broken line."""
    rows = [dict(r) for r in SAMPLE[:60]]
    near = dict(SAMPLE[1], output=SAMPLE[1]["output"] + " Indeed.")
    placeholders = [dict(SAMPLE[i], output=o) for i, o in ((2, "N/A"), (3, "TODO"), (4, "..."))]
    p = tmp_path_factory.mktemp("curate") / "pool.jsonl"
    lines = [json.dumps(r) for r in rows + [SAMPLE[0], near] + placeholders] + ["{broken"]
    p.write_text("\n".join(lines) + "\n")
    return p


def cfg_for(pool: Path, model: Path, out: Path, *extra: str):
    return compose("curate", [f"data.path={pool}", f"model.name={model}", f"output_dir={out}",
                              "selection.budget=10", "model.max_length=384", "backend.batch_size=16",
                              "dedup.threshold=0.99", "curate.guard.min_response_tokens=6", *extra])


@pytest.fixture(scope="module")
def run_dir(pool, tiny_model_dir, ray_local, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    curate.run(cfg_for(pool, tiny_model_dir, out))
    return out


def test_each_step_removes_its_planted_rows(run_dir: Path) -> None:
    t = pq.read_table(run_dir / "scores.parquet").to_pandas()
    assert t.position.tolist() == list(range(66))
    assert t.error[60].startswith("duplicate:0") and t.outcome[60] == "error"    # exact repeat
    assert t.outcome[61] == DROP_DUPLICATE and t.duplicate_of[61] == 1        # near-copy of row 1
    assert t.outcome[62:65].tolist() == ["guard_short"] * 3                      # placeholders
    assert t.error[65] == "malformed_json"
    assert (t.outcome == "selected").sum() == 10
    kept = t[t.outcome == "selected"]
    assert kept.rank_score.notna().all() and (kept.ifd_loss < 1.0).all()         # the IFD guard held
    assert (kept.rank_score == kept.response_tokens).all()                        # no KB: the longest


def test_outputs_manifest_and_report(run_dir: Path) -> None:
    m = json.loads((run_dir / "manifest.json").read_text())
    c = m["curate"]
    assert m["job"] == "curate" and c["method"] == "longest" and c["selected"] == 10
    removed = sum(s["removed"] for s in c["steps"] if s["removed"] is not None)
    assert removed + c["steps"][-1]["kept"] == 66                               # every row accounted for
    assert len((run_dir / "selected.jsonl").read_text().splitlines()) == 10
    html = (run_dir / "report.html").read_text()
    assert "What each step removed" in html and "guard_short" in html and "random" in html


def test_deterministic(pool, tiny_model_dir, run_dir, tmp_path) -> None:
    curate.run(cfg_for(pool, tiny_model_dir, tmp_path / "again"))
    assert (tmp_path / "again" / "selected.jsonl").read_bytes() == (run_dir / "selected.jsonl").read_bytes()


def test_with_a_kb_the_ranking_is_recost(pool, tiny_model_dir, ray_local, tmp_path) -> None:
    kb = tmp_path / "kb.jsonl"
    kb.write_text("\n".join(json.dumps(r) for r in SAMPLE[60:100]) + "\n")
    kb_build.run(compose("kb_build", [f"kb.path={kb}", f"kb.output={tmp_path / 'kb'}", f"model.name={tiny_model_dir}"]))
    out = tmp_path / "out"
    res = curate.run(cfg_for(pool, tiny_model_dir, out, f"kb.index={tmp_path / 'kb'}", "curate.diversity=true"))
    m = json.loads((out / "manifest.json").read_text())
    t = pq.read_table(out / "scores.parquet").to_pandas()
    assert m["curate"]["method"] == "recost" and res.n_selected == 10
    assert "rpe_diff" in t.columns and t.outcome[62:65].tolist() == ["guard_short"] * 3
    ranked = t[t.rank_score.notna()]
    assert (ranked.rpe_diff >= 0).all()                                           # the knowledge guard held
    assert (t.cluster[t.outcome == "selected"] >= 0).all()                        # diversity on: clustered


def test_rds_ranks_the_rows_nearest_the_targets_first(pool, tiny_model_dir, run_dir, tmp_path) -> None:
    """Targets that are exact copies of three rows the guards kept: those rows score cosine 1 and lead."""
    t = pq.read_table(run_dir / "scores.parquet").to_pandas()
    kept = t.position[t.outcome.isin(["selected", "below_budget"])].tolist()
    planted = [kept[3], kept[len(kept) // 2], kept[-1]]
    target = tmp_path / "targets.jsonl"
    target.write_text("\n".join(json.dumps(SAMPLE[p]) for p in planted) + "\n")
    out = tmp_path / "rds"
    curate.run(cfg_for(pool, tiny_model_dir, out, "curate.method=rds", f"target.path={target}"))
    got = pq.read_table(out / "scores.parquet").to_pandas()
    m = json.loads((out / "manifest.json").read_text())
    assert m["curate"]["method"] == "rds" and m["target"]["usable"] == 3
    assert got.rds_score[planted].tolist() == pytest.approx([1.0] * 3, abs=1e-3)
    assert (got.rank_score == got.rds_score).where(got.rank_score.notna(), True).all()
    top3 = got[got.outcome == "selected"].sort_values("rank_score", ascending=False).position.tolist()[:3]
    assert sorted(top3) == sorted(planted)
    assert (out / "target" / "embeddings").is_dir()


def test_guards_without_the_ifd_passes_cost_one_scoring_pass(pool, tiny_model_dir, run_dir, tmp_path) -> None:
    """With the IFD and generic guards off, the longest ranking runs the conditioned pass alone: the
    same rows are guarded short, untruncated rows keep their conditioned losses, and no uncond column
    exists."""
    out = tmp_path / "cond_only"
    off = ("curate.guard.max_ifd=null", "curate.guard.generic_tail=null")
    cfg = cfg_for(pool, tiny_model_dir, out, *off)
    assert curate.passes_of(cfg) == ("cond",)
    assert curate.passes_of(cfg_for(pool, tiny_model_dir, out)) == ("cond", "uncond")
    assert curate.passes_of(cfg_for(pool, tiny_model_dir, out, "curate.method=ifd", *off)) == ("cond", "uncond")
    curate.run(cfg)
    got = pq.read_table(out / "scores.parquet").to_pandas()
    ref = pq.read_table(run_dir / "scores.parquet").to_pandas()
    assert "uncond_nll_sum" not in got.columns and "ifd_loss" not in got.columns
    whole = ~(ref.truncated | ref.response_truncated)  # a cut row's budget depends on its shortest pass
    assert whole.sum() > 30
    assert got.cond_loss[whole].tolist() == pytest.approx(ref.cond_loss[whole].tolist(), rel=1e-5, nan_ok=True)
    assert got.outcome[62:65].tolist() == ["guard_short"] * 3
    assert (got.outcome == "selected").sum() == 10 and "guard_ifd" not in set(got.outcome)
    m = json.loads((out / "manifest.json").read_text())
    assert m["curate"]["guards"]["max_ifd"] is None


def test_bad_method_is_one_clear_error(pool, tiny_model_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match="curate.method=rds needs target.path"):
        curate.validate(cfg_for(pool, tiny_model_dir, tmp_path / "x", "curate.method=rds"))
    with pytest.raises(ValueError, match="curate.method=rds: target set"):
        curate.validate(cfg_for(pool, tiny_model_dir, tmp_path / "x", "curate.method=rds",
                                f"target.path={tmp_path / 'missing.jsonl'}"))
    with pytest.raises(ValueError, match="unknown curate.method"):
        curate.validate(cfg_for(pool, tiny_model_dir, tmp_path / "x", "curate.method=best"))
    with pytest.raises(ValueError, match="needs kb.index"):
        curate.validate(cfg_for(pool, tiny_model_dir, tmp_path / "x", "curate.method=recost"))
    curate.validate(cfg_for(pool, tiny_model_dir, tmp_path / "x", "curate.method=ifd", "curate.diversity=true"))
    with pytest.raises(ValueError, match="needs kb.index"):
        curate.validate(cfg_for(pool, tiny_model_dir, tmp_path / "x", "curate.method=recost"))
