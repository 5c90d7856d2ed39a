from records import schema
from scoring.batching import BatchPolicy, plan_batches
from scoring.render import Limits, PassIds, assemble, cut_left


def test_cut_left_keeps_bos_and_tail():
    assert cut_left([1, 5, 6, 7, 8], 3, keep_first=True) == [1, 7, 8]
    assert cut_left([1, 5, 6, 7, 8], 3, keep_first=False) == [6, 7, 8]
    assert cut_left([1, 5], 3, keep_first=True) == [1, 5]


def test_assemble_shares_response_and_cuts_prompt_from_left():
    r = assemble({"cond": [1, 10, 11, 12, 13], "uncond": [1]}, [20, 21, 22], Limits(max_length=6), bos_id=1)
    assert r.error is None and r.truncated and not r.response_truncated
    assert r.passes["cond"].ids == [1, 12, 13, 20, 21, 22] and r.passes["cond"].n_ctx == 3
    assert r.passes["uncond"].ids == [1, 20, 21, 22] and r.passes["uncond"].n_ctx == 1
    assert r.prompt_tokens == 3 and r.response_tokens == 3


def test_response_truncation_only_when_allowed():
    long = list(range(100, 110))
    cut = assemble({"cond": [1, 2], "uncond": [1]}, long, Limits(max_length=8), bos_id=1)
    assert cut.response_truncated and cut.passes["cond"].ids[-7:] == long[:7]
    assert cut.passes["uncond"].ids == [1] + long[:7]
    refused = assemble({"cond": [1, 2], "uncond": [1]}, long, Limits(max_length=8, truncate_response=False), 1)
    assert refused.error == schema.E_RESPONSE_TOO_LONG and not refused.passes
    capped = assemble({"cond": [1, 2], "uncond": [1]}, long, Limits(max_length=64, max_response_tokens=4), 1)
    assert capped.response_truncated and capped.passes["cond"].n_scored == 4


def test_empty_response_is_an_error():
    assert assemble({"cond": [1], "uncond": [1]}, [], Limits(), 1).error == schema.E_NO_TOKENS


def test_plan_batches_sorted_and_within_budget():
    lengths = [5, 50, 7, 49, 3, 100]
    plan = plan_batches(lengths, BatchPolicy(max_batch_tokens=100, max_batch_rows=8))
    assert sorted(i for b in plan for i in b) == list(range(6))
    for b in plan:
        assert len(b) * max(lengths[i] for i in b) <= 100 or len(b) == 1
    assert plan[0] == [5]  # longest first, alone


def test_wire_columns_round_trip_every_field():
    """What a CPU render stage ships to the scorers comes back identical (error rows included)."""
    import numpy as np

    from scoring.render import Rendered, from_columns, to_columns

    rows = [Rendered(passes={"cond": PassIds([1, 2, 3, 4], 2), "know": PassIds([1, 9, 9, 2, 3, 4], 4)},
                     prompt_tokens=2, response_tokens=2, truncated=True, knowledge_tokens=2,
                     knowledge_truncated=True),
            Rendered(response_tokens=0, error="no_response_tokens")]
    cols = to_columns(rows, ("cond", "know"))
    batch = {k: np.array(v, dtype=object) for k, v in cols.items()}  # lists arrive as object arrays
    back = from_columns(batch, ("cond", "know"))
    assert back == rows
