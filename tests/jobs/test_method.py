"""A method's own ranking of its picks (what compare.equalize cuts by)."""
import pyarrow as pa

from jobs import registry
from jobs.method import rank_by, ranked_selected


def table():
    return pa.table({"position": [0, 1, 2, 3, 4], "outcome": ["selected", "not_selected", "selected", "selected", "error"],
                     "score": [0.5, 0.9, 0.7, 0.5, 1.0]})


def test_ranked_selected_orders_only_the_picks_ties_by_position():
    assert ranked_selected(table(), "score", descending=True).tolist() == [2, 0, 3]
    assert ranked_selected(table(), "score", descending=False).tolist() == [0, 3, 2]
    assert rank_by("score")(table(), {}).tolist() == [0, 3, 2]


def test_every_selection_method_ranks_its_picks():
    """dedup keeps rows rather than ranking them; every other method has an order of its own."""
    assert {n for n, m in registry.METHODS.items() if m.rank is None} == {"dedup"}


def test_an_ifd_run_ranks_by_the_score_its_selection_used():
    t = table().append_column("ifd_ppl", pa.array([3.0, 0.0, 1.0, 2.0, 0.0]))
    m = registry.method("ifd")
    manifest = {"selection": {"selection_settings": {"score": "ifd_ppl"}}}
    assert m.rank(t, manifest).tolist() == [0, 3, 2]
