"""Cherry's full pipeline on local Ray with the tiny model: stages, picks, and the model that rescored."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import cherry, ifd
from tests.jobs.helpers import compose

pytestmark = pytest.mark.ray

ARGS = ["cherry.clusters=4", "cherry.per_cluster=3", "train.lr=1e-3", "train.batch_size=4",
        "model.max_length=128", "data.limit=60", "backend.batch_size=30", "selection.budget=6",
        "selection.max_score=null", "train.threads_per_worker=1"]


@pytest.fixture(scope="module")
def run_result(tiny_model_dir, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("cherry")
    return cherry.run(compose("cherry", [f"model.name={tiny_model_dir}", f"output_dir={out}", *ARGS])), out


def test_stages_are_kept(run_result):
    result, out = run_result
    st = out / "stages"
    picks = json.loads((st / "picks.json").read_text())
    assert picks["n_clusters"] == 4 and 4 <= len(picks["positions"]) <= 12
    assert (st / "pre_experienced" / "config.json").exists() and (st / "pre_experienced" / "train_log.json").exists()
    log = json.loads((st / "pre_experienced" / "train_log.json").read_text())
    assert log["examples"] == len(picks["positions"]) and log["params"]["epochs"] == 1
    assert result.n_selected == 6 and len((out / "selected.jsonl").read_bytes().splitlines()) == 6


def test_picks_follow_the_band_rule(run_result):
    """The picks are exactly Cherry's band rule applied to the stage's own clusters and perplexities
    (the rule itself is checked on a hand-made example in tests/selection/test_sampling.py)."""
    from selection.kmeans import cherry_cluster_picks

    _, out = run_result
    st = out / "stages"
    clusters, ppl = np.load(st / "clusters.npy"), np.load(st / "instruction_ppl.npy")
    valid = np.flatnonzero(clusters >= 0)
    assert len(valid) == 60 and np.isfinite(ppl[valid]).all()
    want = valid[cherry_cluster_picks(ppl[valid], clusters[valid], 3, 25, 75)]
    picks = json.loads((st / "picks.json").read_text())
    assert picks["positions"] == want.tolist()
    for c in range(4):  # inside each cluster's 25-75 band (clusters of >= 3 rows)
        members = valid[clusters[valid] == c]
        chosen = [p for p in picks["positions"] if clusters[p] == c]
        if len(members) >= 3:
            lo, hi = np.percentile(ppl[members], [25, 75])
            assert len(chosen) <= 3 and all(lo <= ppl[p] <= hi for p in chosen)


def test_the_pre_experienced_model_rescored(run_result, tiny_model_dir, tmp_path):
    _, out = run_result
    m = json.loads((out / "manifest.json").read_text())
    pre = out / "stages" / "pre_experienced"
    assert m["job"] == "cherry" and m["model"]["path"] == str(pre)
    assert m["pre_experienced_model"] == "stages/pre_experienced"  # relative: the run stays valid when moved
    base = ifd.run(compose("ifd", [f"model.name={tiny_model_dir}", f"output_dir={tmp_path}", "model.max_length=128",
                                   "data.limit=60", "selection.max_score=null"]))
    a = pq.read_table(out / "scores.parquet").column("cond_nll_sum").to_numpy()
    b = pq.read_table(tmp_path / "scores.parquet").column("cond_nll_sum").to_numpy()
    ok = np.isfinite(a) & np.isfinite(b)
    assert base.n_rows == 60 and not np.allclose(a[ok], b[ok])   # different weights scored the pool


def test_semantic_dedup_over_the_instruction_embeddings(run_result, tiny_model_dir, tmp_path):
    import shutil

    from jobs import select as reselect

    _, out = run_result
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)  # a copied run stays valid: stages and score shards are reused
    cherry.run(compose("cherry", [f"model.name={tiny_model_dir}", f"output_dir={copy}", *ARGS,
                                  "dedup=semantic", "dedup.threshold=0.5"]))
    t = pq.read_table(copy / "scores.parquet").to_pandas()
    copies = t[t.outcome == "semantic_duplicate"]
    assert len(copies) > 0 and (copies.duplicate_of >= 0).all() and (copies.duplicate_similarity >= 0.5).all()
    assert (t.loc[t.outcome == "selected", "duplicate_of"] == -1).all() and (t.outcome == "selected").sum() == 6
    kept = set(t.loc[t.duplicate_of >= 0, "duplicate_of"])
    assert kept.isdisjoint(copies.position)  # every copy points at a kept row
    reselect.run(compose("select", [f"scores={copy / 'scores.parquet'}", "selection.budget=10",
                                    "selection.max_score=null"]))
    again = pq.read_table(copy / "scores.parquet").to_pandas()
    assert (again.loc[again.outcome == "selected", "duplicate_of"] == -1).all()
    assert set(again.loc[again.outcome == "semantic_duplicate", "position"]) == set(copies.position)


def test_dedup_with_a_given_pre_experienced_model_is_refused():
    with pytest.raises(ValueError, match="run jobs.dedup first"):
        cherry.validate(compose("cherry", ["dedup=semantic", "cherry.pre_experienced=/my/model"]))
