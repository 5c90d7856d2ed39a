"""jobs.baseline end to end (local Ray, tiny model): random is reproducible per seed, longest picks the
longest; reports carry the baseline rows; jobs.select re-draws without retokenising."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import baseline
from jobs import select as reselect
from jobs.settings import ROOT
from tests.jobs.helpers import compose

pytestmark = pytest.mark.ray
SAMPLE = ROOT / "data" / "alpaca_sample.jsonl"


def cfg_for(out, model, *extra):
    return compose("baseline", [f"data.path={SAMPLE}", f"model.name={model}", f"output_dir={out}", "data.limit=80",
                                "selection.budget=10", "backend.num_actors=1", "model.max_length=512", *extra])


@pytest.fixture(scope="module")
def longest_run(tiny_model_dir, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("longest")
    return baseline.run(cfg_for(out, tiny_model_dir, "baseline=longest")), out


def test_longest_picks_the_longest(longest_run, tiny_model_dir):
    from scoring.models import load_tokenizer

    result, out = longest_run
    t = pq.read_table(out / "scores.parquet").to_pandas()
    ok = t.error.isna()
    chosen = t[t.outcome == "selected"]
    assert len(chosen) == 10 == result.n_selected
    assert chosen.response_tokens.min() >= t.loc[ok & (t.outcome != "selected"), "response_tokens"].max()
    assert sorted(chosen.baseline_rank) == list(range(10))
    # the counts are the tokenizer's own: check the longest row by hand
    rows = [json.loads(x) for x in SAMPLE.read_text().splitlines()[:80]]
    tok = load_tokenizer(tiny_model_dir)
    top = int(chosen.sort_values("baseline_rank").position.iloc[0])
    assert chosen.sort_values("baseline_rank").response_tokens.iloc[0] == len(
        tok(rows[top]["output"], add_special_tokens=False)["input_ids"])
    lines = (out / "selected.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [rows[p] for p in sorted(chosen.position)]


def test_report_shows_the_other_baseline(longest_run):
    _, out = longest_run
    html = (out / "report.html").read_text()
    assert "Baselines at the same budget" in html and "<th>random</th>" in html and "<th>longest</th>" in html
    assert (out / "baselines.png").stat().st_size > 1000


def test_random_is_reproducible_per_seed(longest_run, tmp_path):
    _, out = longest_run
    picks = {}
    for seed in (0, 0, 1):
        dest = tmp_path / f"s{seed}-{len(picks)}"
        reselect.run(compose("select", [f"scores={out / 'scores.parquet'}", f"output_dir={dest}", "baseline=random",
                                        f"seed={seed}", "selection.budget=10"]))
        t = pq.read_table(dest / "scores.parquet").to_pandas()
        picks[len(picks)] = t.loc[t.outcome == "selected", "position"].tolist()
        assert len(picks[len(picks) - 1]) == 10 and t.loc[t.outcome == "selected", "error"].isna().all()
        assert (dest / "selected.jsonl").read_text().count("\n") == 10
    assert picks[0] == picks[1] != picks[2]
    m = json.loads((dest / "manifest.json").read_text())
    assert m["selection"]["baseline"] == "random" and m["selection"]["seed"] == 1


def test_random_job_equals_its_pure_draw(tiny_model_dir, ray_local, tmp_path):
    from selection.baselines import random_subset

    baseline.run(cfg_for(tmp_path, tiny_model_dir, "baseline=random", "seed=3"))
    t = pq.read_table(tmp_path / "scores.parquet").to_pandas()
    want = random_subset(t.error.isna().to_numpy(), 10, 3)
    assert t.loc[t.outcome == "selected", "position"].tolist() == want.tolist()


def test_unknown_baseline_is_refused():
    with pytest.raises(ValueError, match="random, longest"):
        baseline.validate(compose("baseline", ["baseline=shortest"]))
