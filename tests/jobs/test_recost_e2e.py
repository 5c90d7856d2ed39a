"""kb_build + recost end to end through local Ray with the tiny random model."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import kb_build, recost
from jobs.settings import ROOT
from retrieval import artifact
from tests.records.corpus import write_corpus
from tests.jobs.helpers import compose

pytestmark = pytest.mark.ray

SAMPLE = (ROOT / "data" / "alpaca_sample.jsonl").read_text().splitlines()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """KB: sample rows 0..59 + one paragraph + one broken line. Pool: the bad-input corpus, then
    sample rows 40..99 (rows 40..59 are also in the KB)."""
    d = tmp_path_factory.mktemp("rc")
    kb = d / "kb.jsonl"
    kb.write_text("\n".join(SAMPLE[:60] + [json.dumps({"text": "Paris is the capital of France."}), "{broken"]) + "\n")
    expected = write_corpus(d / "bad.jsonl")
    pool = d / "pool.jsonl"
    pool.write_bytes((d / "bad.jsonl").read_bytes() + ("\n".join(SAMPLE[40:100]) + "\n").encode())
    return d, kb, pool, expected + [None] * 60


@pytest.fixture(scope="module")
def kb_dir(files, tiny_model_dir, ray_local):
    d, kb, _, _ = files
    kb_build.run(compose("kb_build", [f"kb.path={kb}", f"kb.output={d / 'kb'}", f"model.name={tiny_model_dir}"]))
    return d / "kb"


def recost_cfg(files, kb_dir, tiny_model_dir, out, *extra):
    _, _, pool, _ = files
    return compose("recost", [f"data.path={pool}", f"kb.index={kb_dir}", f"model.name={tiny_model_dir}",
                              f"output_dir={out}", "selection.budget=6", "model.max_length=384",
                              "backend.batch_size=16", *extra])


@pytest.fixture(scope="module")
def run_result(files, kb_dir, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return recost.run(recost_cfg(files, kb_dir, tiny_model_dir, out)), out


def test_kb_artifact(kb_dir):
    m = artifact.read_manifest(kb_dir)
    assert m["rows"] == 61 and m["kinds"] == {"example": 60, "paragraph": 1}
    assert m["rejected"] == {"malformed_json": 1}
    kb = artifact.KBArtifact.load(kb_dir)
    emb = np.load(kb_dir / artifact.EMBEDDINGS)
    assert emb.dtype == np.float16 and emb.shape == (61, 64) and kb.center is not None
    assert np.allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=1e-2)


def test_every_row_scored_or_explained(run_result, files):
    result, out = run_result
    expected = files[3]
    t = pq.read_table(out / "scores.parquet").to_pandas()
    assert t.position.tolist() == list(range(len(expected))) and t.id.is_unique
    assert [e if isinstance(e, str) else None for e in t.error] == expected
    ok = t.error.isna()
    assert (t.loc[ok, "know_tokens"] == t.loc[ok, "cond_tokens"]).all()          # same response tokens
    assert (t.loc[ok, "cond_tokens"] == t.loc[ok, "uncond_tokens"]).all()
    assert np.allclose(t.loc[ok, "rpe_diff"], t.loc[ok, "cond_loss"] - t.loc[ok, "know_loss"])
    assert (t.loc[ok, "kb_ids"].apply(len) == 2).all() and (t.loc[~ok, "kb_ids"].apply(len) == 0).all()
    assert (t.loc[ok & ~t.truncated, "knowledge_tokens"] > 0).all()
    # a prompt that fills the window leaves no room: the knowledge went first, the response stayed
    assert (t.loc[ok & t.truncated, "knowledge_tokens"] == 0).all() and t.loc[ok & t.truncated, "knowledge_truncated"].all()
    assert result.n_selected == 6 and (t.outcome == "selected").sum() == 6
    for col in ("fused_rank", "cluster", "ifd_loss", "rpe_ratio", "kb_sims"):
        assert col in t.columns


def test_pool_rows_never_retrieve_themselves(run_result):
    _, out = run_result
    t = pq.read_table(out / "scores.parquet").to_pandas()
    in_kb = t[t.position >= len(t) - 60].head(20)  # sample rows 40..59 sit in the KB
    assert len(in_kb) == 20 and all(len(hits) == 2 for hits in in_kb.kb_ids)
    assert all(rid not in hits for rid, hits in zip(in_kb.id, in_kb.kb_ids))


def test_without_exclusion_a_kb_row_retrieves_itself_first(files, kb_dir, tiny_model_dir, tmp_path):
    """The right neighbour on a hand-made KB: an exact copy must be the top hit (cosine 1)."""
    recost.run(recost_cfg(files, kb_dir, tiny_model_dir, tmp_path, "kb.exclude_self=false", "data.limit=25"))
    t = pq.read_table(tmp_path / "scores.parquet").to_pandas()
    kb_rows = set(pq.read_table(kb_dir / "rows.parquet").column("kb_id").to_pylist())
    both = t[t.id.isin(kb_rows)]
    assert len(both) >= 1
    assert all(hits[0] == rid for rid, hits in zip(both.id, both.kb_ids))
    assert all(s[0] > 0.999 for s in both.kb_sims)


def test_outputs_and_report(run_result, files):
    _, out = run_result
    lines = [ln for ln in files[2].read_bytes().splitlines() if ln.strip()]
    t = pq.read_table(out / "scores.parquet").to_pandas()
    sel = (out / "selected.jsonl").read_bytes().splitlines()
    assert sel == [lines[p] for p in t.position[t.outcome == "selected"]]
    m = json.loads((out / "manifest.json").read_text())
    assert m["job"] == "recost" and m["kb"]["rows"] == 61 and m["selection"]["selected"] == 6
    assert sum(m["selection"]["outcomes"].values()) == len(t)
    for f in ("report.html", "rpe_vs_ifd.png", "cluster_mix.png", "outcomes.png", "baselines.png"):
        assert (out / f).stat().st_size > 0
    assert len(list((out / "embeddings").glob("part-*.npy"))) == m["shards"]["total"]
    html = (out / "report.html").read_text()  # the baselines beside the method, with coverage figures
    for arm in ("recost", "random", "longest"):
        assert f"<th>{arm}</th>" in html
    assert "k-center radius" in html and "cluster entropy" in html


def test_rerun_reuses_both_stages(run_result, files, kb_dir, tiny_model_dir):
    _, out = run_result
    before = pq.read_table(out / "scores.parquet").to_pandas()
    recost.run(recost_cfg(files, kb_dir, tiny_model_dir, out))
    m = json.loads((out / "manifest.json").read_text())
    assert m["shards"]["retrieval_reused"] == m["shards"]["total"] == m["shards"]["scoring_reused"]
    after = pq.read_table(out / "scores.parquet").to_pandas()
    assert after.outcome.tolist() == before.outcome.tolist()


def test_changed_retrieval_is_refused(run_result, files, kb_dir, tiny_model_dir):
    _, out = run_result
    with pytest.raises(ValueError, match="retrieval"):
        recost.run(recost_cfg(files, kb_dir, tiny_model_dir, out, "kb.k=3"))


def test_encoder_mismatch_is_refused(files, kb_dir, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="encoder"):
        recost.run(recost_cfg(files, kb_dir, tiny_model_dir, tmp_path, "encoder.pooling=last"))


def test_missing_kb_is_a_clear_error(files, tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="kb_build"):
        recost.run(recost_cfg(files, tmp_path / "nokb", tiny_model_dir, tmp_path / "o"))


def test_reselect_without_rescoring(run_result, tmp_path):
    from jobs import select as reselect

    _, out = run_result
    cfg = compose("select", [f"scores={out / 'scores.parquet'}", "selection=recost", "selection.budget=10",
                             "selection.weight=1.0", f"output_dir={tmp_path}"])
    summary = reselect.run(cfg)
    t = pq.read_table(tmp_path / "scores.parquet").to_pandas()
    assert summary["selected"] == summary["written"] == 10 == (t.outcome == "selected").sum()
    assert len((tmp_path / "selected.jsonl").read_bytes().splitlines()) == 10
    with pytest.raises(ValueError, match="selection=recost"):
        reselect.run(compose("select", [f"scores={out / 'scores.parquet'}", f"output_dir={tmp_path}"]))
