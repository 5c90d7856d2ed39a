"""RECOST math on hand-computed values and the selection's invariants."""
import numpy as np
import pytest

from selection.recost import RecostParams, recost_select
from selection.scores import rpe_diff, rpe_ratio


def test_rpe_hand_computed():
    # H(A|Q) = 6/3 = 2.0, H(A|K,Q) = 3/3 = 1.0  →  diff 1.0, ratio 0.5
    assert rpe_diff(np.array([6.0]), np.array([3]), np.array([3.0]), np.array([3]))[0] == pytest.approx(1.0)
    assert rpe_ratio(np.array([6.0]), np.array([3]), np.array([3.0]), np.array([3]))[0] == pytest.approx(0.5)
    # knowledge that hurts: H(A|K,Q) = 2.5 > 2.0
    assert rpe_diff(np.array([4.0]), np.array([2]), np.array([5.0]), np.array([2]))[0] == pytest.approx(-0.5)
    # no tokens / zero loss → NaN, never a silent 0
    assert np.isnan(rpe_diff(np.array([1.0]), np.array([0]), np.array([1.0]), np.array([1])))[0]
    assert np.isnan(rpe_ratio(np.array([0.0]), np.array([2]), np.array([1.0]), np.array([2])))[0]


def _pool(n=40, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.uniform(0.3, 0.99, n), rng.normal(size=n)


def test_outcomes_and_eligibility():
    emb, ifd, rpe = _pool()
    ifd[0], rpe[1], ifd[2] = 1.5, np.nan, 1.0
    errored = np.zeros(40, dtype=bool)
    errored[3] = True
    r = recost_select(ifd, rpe, errored, emb, 5)
    assert r.outcome[0] == "above_max" and r.outcome[1] == "score_nan" and r.outcome[3] == "error"
    assert r.outcome[2] != "above_max"                     # IFD == 1 kept (max_inclusive)
    assert len(r.order) == 5 and set(r.order) == set(np.flatnonzero(r.outcome == "selected"))
    assert (r.fused_rank[[0, 1, 3]] == -1).all() and (r.cluster[[0, 1, 3]] == -1).all()
    assert sorted(r.fused_rank[r.fused_rank >= 0].tolist()) == list(range(37))


@pytest.mark.parametrize("weight,score", [(1.0, "ifd"), (0.0, "rpe")])
def test_weight_extremes_follow_one_score(weight, score):
    """With one cluster, a window of 1 and no similarity limit the selection is the plain top-k."""
    emb, ifd, rpe = _pool()
    p = RecostParams(weight=weight, window=1, tau=1.01, n_clusters=1)
    r = recost_select(ifd, rpe, np.zeros(40, dtype=bool), emb, 6, p)
    want = np.argsort(-(ifd if score == "ifd" else rpe), kind="stable")[:6]
    assert r.order.tolist() == want.tolist()


def test_ratio_form_prefers_low_ratio():
    emb, ifd, _ = _pool()
    ratio = np.linspace(0.5, 1.5, 40)
    r = recost_select(ifd, ratio, np.zeros(40, dtype=bool), emb, 4,
                      RecostParams(rpe="ratio", weight=0.0, window=1, tau=1.01, n_clusters=1))
    assert r.order.tolist() == [0, 1, 2, 3]


def test_fusion_rewards_rows_good_on_both():
    emb, _, _ = _pool(n=6)
    ifd = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])   # IFD ranks 0..5
    rpe = np.array([-1.0, 0.9, 0.8, 0.1, 0.0, 1.0])   # RPE ranks 5,1,2,3,4,0
    p = RecostParams(weight=0.5, window=1, tau=1.01, n_clusters=1)
    r = recost_select(ifd, rpe, np.zeros(6, dtype=bool), emb, 2, p)
    assert r.order.tolist() == [1, 2]                 # fused 1.0 and 2.0 beat row 0's 2.5


def test_cluster_mix_is_proportional_and_duplicates_skipped():
    rng = np.random.default_rng(1)
    centres = np.eye(4, 16, dtype=np.float32) * 10
    sizes = [40, 30, 20, 10]
    emb = np.concatenate([centres[c] + rng.normal(scale=1.5, size=(s, 16)) for c, s in enumerate(sizes)]).astype(np.float32)
    emb[1] = emb[0]                                   # an exact duplicate of row 0
    ifd = np.full(100, 0.5)
    ifd[:2] = 0.9                                     # both duplicates rank first
    r = recost_select(ifd, np.zeros(100), np.zeros(100, dtype=bool), emb, 10, RecostParams(n_clusters=4))
    sel_cluster = np.array([np.argmax(centres @ emb[i]) for i in r.order])
    assert np.bincount(sel_cluster, minlength=4).tolist() == [4, 3, 2, 1]
    assert 0 in r.order and 1 not in r.order and r.outcome[1] == "near_duplicate"


def test_bad_params_rejected():
    emb, ifd, rpe = _pool()
    for p in (RecostParams(rpe="log"), RecostParams(weight=1.5), RecostParams(fusion="borda"), RecostParams(window=0)):
        with pytest.raises(ValueError):
            recost_select(ifd, rpe, np.zeros(40, dtype=bool), emb, 3, p)
