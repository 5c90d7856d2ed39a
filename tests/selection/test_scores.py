import math

import numpy as np
import pytest

from selection.budget import resolve_budget
from selection.scores import ifd_loss, ifd_ppl, mean_loss, perplexity
from selection.topk import select_top


def test_ifd_forms_on_hand_values():
    # cond mean 1.0 (2 nats / 2 tok), uncond mean 2.0 (6 nats / 3 tok)
    assert ifd_loss([2.0], [2], [6.0], [3])[0] == pytest.approx(0.5)
    assert ifd_ppl([2.0], [2], [6.0], [3])[0] == pytest.approx(math.exp(1.0 - 2.0))
    assert perplexity([3.0], [3])[0] == pytest.approx(math.e)


def test_undefined_scores_are_nan():
    assert np.isnan(mean_loss([1.0], [0])[0])
    assert np.isnan(ifd_loss([1.0], [1], [0.0], [2])[0])  # zero unconditioned loss
    assert np.isnan(ifd_ppl([np.nan], [1], [1.0], [1])[0])


def test_ifd_forms_rank_differently():
    # same side of 1, different order: loss ratio prefers a, ppl ratio prefers b
    cs, ct, us, ut = np.array([9.0, 0.5]), np.array([1, 1]), np.array([10.0, 1.0]), np.array([1, 1])
    assert np.argmax(ifd_loss(cs, ct, us, ut)) == 0 and np.argmax(ifd_ppl(cs, ct, us, ut)) == 1


def test_budget_is_fraction_of_input_or_count():
    assert resolve_budget(0.05, 300) == 15
    assert resolve_budget(0.001, 300) == 1
    assert resolve_budget(40, 300) == 40 and resolve_budget(400, 300) == 300
    assert resolve_budget(1.0, 10) == 10 and resolve_budget(1, 10) == 1  # a float is a fraction
    for bad in (0, -1, 1.5, 2.0, float("nan"), True):
        with pytest.raises(ValueError):
            resolve_budget(bad, 10)


def test_select_top_drops_and_orders():
    score = np.array([0.2, 1.0, 1.3, np.nan, 0.9, 0.9, 0.1])
    err = np.array([0, 0, 0, 0, 0, 0, 1], dtype=bool)
    s = select_top(score, err, k=3, max_score=1.0)
    assert s.order.tolist() == [1, 4, 5]  # == 1 kept (Cherry), ties by index
    assert s.outcome.tolist() == ["below_budget", "selected", "above_max", "score_nan", "selected", "selected", "error"]
    assert s.counts() == {"selected": 3, "above_max": 1, "score_nan": 1, "below_budget": 1, "error": 1}
    strict = select_top(score, err, k=3, max_score=1.0, max_inclusive=False)
    assert strict.order.tolist() == [4, 5, 0]  # Superfiltering keeps < 1 only
    low = select_top(score, err, k=10, max_score=None, min_score=0.5)
    assert sorted(low.order.tolist()) == [1, 2, 4, 5]
