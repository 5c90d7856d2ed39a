"""The curated pipeline's pure steps: each guard drops exactly its planted rows with its own reason,
the first guard wins, errors and missing scores keep their labels; the budget is spread over clusters
when diversity is on; everything is deterministic."""
from __future__ import annotations

import numpy as np
import pytest

from selection.curate import DiversityParams, GuardParams, curate_select, guard_reasons


def pool(n: int = 100) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    cond = rng.uniform(1.0, 2.0, n)
    uncond = cond + rng.uniform(0.1, 1.0, n)
    return {"length": rng.integers(10, 200, n), "cond": cond, "uncond": uncond, "ifd": cond / uncond,
            "rpe": rng.uniform(0.01, 0.5, n), "err": np.zeros(n, dtype=bool)}


def test_each_guard_drops_its_planted_rows() -> None:
    p = pool()
    p["length"][[1, 2]] = [1, 2]                    # placeholders
    p["ifd"][[3, 4]] = [1.0, 1.3]                   # instruction does not help (1.0 included)
    p["cond"][[5]] = 50.0                           # an answer to another question
    p["uncond"][[6]] = 0.01                         # boilerplate
    p["rpe"][[7]] = -0.4                            # knowledge contradicts the answer
    p["err"][8] = True
    p["cond"][9] = np.nan
    g = GuardParams(min_response_tokens=3, max_ifd=1.0, cond_tail=0.01, generic_tail=0.01, min_rpe=0.0)
    r = guard_reasons(p["length"], p["cond"], p["uncond"], p["ifd"], p["err"], g, p["rpe"])
    assert r[[1, 2]].tolist() == ["guard_short"] * 2
    assert r[[3, 4]].tolist() == ["guard_ifd"] * 2
    assert r[5] == "guard_cond_tail" and r[6] == "guard_generic" and r[7] == "guard_knowledge"
    assert r[8] == "error" and r[9] == "score_nan"
    assert set(r[10:].tolist()) == {""}


def test_first_guard_wins_and_off_means_off() -> None:
    p = pool()
    p["length"][0], p["ifd"][0] = 1, 2.0            # both short and IFD > 1: reported as short
    r = guard_reasons(p["length"], p["cond"], p["uncond"], p["ifd"], p["err"],
                      GuardParams(min_response_tokens=3, max_ifd=1.0), p["rpe"])
    assert r[0] == "guard_short"
    off = guard_reasons(p["length"], p["cond"], p["uncond"], p["ifd"], p["err"], GuardParams(), p["rpe"])
    assert set(off.tolist()) == {""}
    no_kb = guard_reasons(p["length"], p["cond"], p["uncond"], p["ifd"], p["err"], GuardParams(min_rpe=0.0), None)
    assert set(no_kb.tolist()) == {""}              # the knowledge guard needs a KB's scores
    with pytest.raises(ValueError, match="cond_tail"):
        GuardParams(cond_tail=1.5).check()


def test_guards_that_read_only_the_conditioned_pass_run_without_the_unconditioned_one() -> None:
    p = pool()
    p["length"][1] = 1
    p["cond"][5] = 50.0
    p["uncond"][9] = np.nan                         # ignored: that pass is not given
    g = GuardParams(min_response_tokens=3, cond_tail=0.01)
    assert not g.needs_uncond
    r = guard_reasons(p["length"], p["cond"], None, None, p["err"], g)
    both = guard_reasons(p["length"], p["cond"], p["uncond"], p["ifd"], p["err"], g)
    assert r[1] == "guard_short" and r[5] == "guard_cond_tail" and r[9] == ""
    assert np.array_equal(np.delete(r, 9), np.delete(both, 9)) and both[9] == "score_nan"
    for needs in (GuardParams(max_ifd=1.0), GuardParams(generic_tail=0.1)):
        assert needs.needs_uncond
        with pytest.raises(ValueError, match="unconditioned pass"):
            guard_reasons(p["length"], p["cond"], None, None, p["err"], needs)


def clustered(n_per: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    centres = np.eye(8, dtype=np.float32)[:3] * 10
    emb = np.concatenate([c + rng.normal(size=(n_per, 8)).astype(np.float32) for c in centres])
    score = np.concatenate([rng.uniform(2, 3, n_per), rng.uniform(0, 1, n_per), rng.uniform(0, 1, n_per)])
    return emb, score


def test_diversity_spreads_the_budget_over_clusters() -> None:
    emb, score = clustered()
    reasons = np.array([""] * len(score), dtype=object)
    top = curate_select(score, True, reasons, emb, 30, DiversityParams(enabled=False))
    assert (top.order < 60).all()                   # the best cluster takes everything
    div = curate_select(score, True, reasons, emb, 30, DiversityParams(enabled=True, clusters=3, tau=1.0))
    per = np.bincount(div.order // 60, minlength=3)
    assert per.tolist() == [10, 10, 10]             # proportional: equal clusters, equal shares
    assert (div.outcome == "selected").sum() == 30 and (div.outcome == "below_budget").sum() == 150
    again = curate_select(score, True, reasons, emb, 30, DiversityParams(enabled=True, clusters=3, tau=1.0))
    assert again.order.tolist() == div.order.tolist()


def test_guarded_rows_are_never_selected_and_keep_their_reason() -> None:
    emb, score = clustered()
    reasons = np.array([""] * len(score), dtype=object)
    reasons[:20] = "guard_short"
    res = curate_select(score, True, reasons, emb, 30, DiversityParams(enabled=False))
    assert not np.isin(res.order, np.arange(20)).any()
    assert (res.outcome[:20] == "guard_short").all()
    low = curate_select(-score, False, reasons, emb, 5, DiversityParams(enabled=False))
    assert low.order.tolist() == res.order[:5].tolist()  # lower-is-better ranks the same way
