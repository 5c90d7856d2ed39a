"""Shared-prefix grouping, packing plans and the block layout: pure planning, hand-checked."""
import numpy as np
import torch

from scoring.batching import BatchPolicy, pack_rows, plan_packed
from scoring.layout import block_mask, build_layout
from scoring.nll import scored_mask
from scoring.prefix import common_prefix_len, prefix_groups
from scoring.render import PassIds

PRE_A = list(range(100, 120))           # a 20-token preamble
PRE_B = list(range(100, 110)) + [7] * 12  # shares 10 tokens with PRE_A, then its own


def test_common_prefix_len():
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([1, 2], [1, 2, 3]) == 2
    assert common_prefix_len([], [1]) == 0


def test_groups_split_by_preamble_and_stop_before_the_scored_span():
    items = [PassIds(PRE_A + [1, 2, 50, 51], 22), PassIds(PRE_A + [3, 50], 21),
             PassIds(PRE_B + [4, 50], 23), PassIds(PRE_B + [5, 6, 50], 24),
             PassIds([1, 50, 51], 1),                 # an unconditioned pass: nothing to share
             PassIds(PRE_A[:12] + [50], 12)]          # shorter than the minimum prefix
    groups = {g.prefix: g.members for g in prefix_groups(items, min_len=16)}
    assert groups[tuple(PRE_A)] == [0, 1]            # n_ctx - 1 = 20 caps it at the preamble
    assert groups[tuple(PRE_B + [4])[:22]] == [2, 3] or groups[tuple(PRE_B)] == [2, 3]
    assert groups[()] == [4, 5]
    for prefix, members in groups.items():
        for i in members:
            assert items[i].ids[: len(prefix)] == list(prefix) and len(prefix) <= items[i].n_ctx - 1


def test_a_lone_item_keeps_its_prefix_to_itself_and_order_is_deterministic():
    items = [PassIds(PRE_A + [1, 50], 21), PassIds(PRE_B + [2, 50], 23)]
    assert [g.prefix for g in prefix_groups(items, 16)] == [()]
    many = [PassIds(PRE_A + [k, 50], 21) for k in (5, 3, 9, 3)]
    assert prefix_groups(many, 16) == prefix_groups(list(many), 16)
    assert sorted(prefix_groups(many, 16)[0].members) == [0, 1, 2, 3]


def test_pack_rows_places_every_item_once_within_the_width():
    lengths = [90, 30, 60, 10, 300, 70, 40, 5]
    rows = pack_rows(lengths, 128)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    for r in rows:
        assert sum(lengths[i] for i in r) <= 128 or len(r) == 1
    assert rows == pack_rows(list(lengths), 128)
    batches = plan_packed(lengths, BatchPolicy(max_batch_tokens=256), 128)
    assert sorted(i for b in batches for r in b for i in r) == list(range(len(lengths)))


def test_layout_matches_the_padded_conventions():
    items = [PassIds([1, 5, 6, 7, 8], 3), PassIds([1, 9, 10], 1), PassIds([1, 5, 6, 11], 3)]
    lay = build_layout(items, [[0, 1], [2]], pad_id=0)
    assert lay.ids.tolist() == [[1, 5, 6, 7, 8, 1, 9, 10], [1, 5, 6, 11, 0, 0, 0, 0]]
    assert lay.positions.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 3, 0, 1, 2, 3]]
    assert lay.owner.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1], [2, 2, 2, 2, -1, -1, -1, -1]]
    for i, it in enumerate(items):  # the same positions scored_mask marks for each pass alone
        alone = scored_mask(torch.tensor([len(it.ids)]), torch.tensor([it.n_ctx]), len(it.ids))[0].numpy()
        assert lay.scored[lay.owner == i].tolist() == alone.tolist()
    mask = block_mask(lay, "cpu")[0, 0].numpy()
    assert not mask[5, :5].any() and mask[7, 5:8].all() and mask[4, :5].all() and not mask[3, 4]


def test_layout_with_two_prefixes_sees_only_its_own():
    items = [PassIds([1, 2, 3, 40, 41], 4), PassIds([1, 2, 9, 42, 43], 4), PassIds([1, 44, 45], 1)]
    lay = build_layout(items, [[0, 1, 2]], pad_id=0, prefix_lens=[3, 2], item_prefix=[0, 1, -1])
    # item 0 skips its 3 prefix tokens, item 1 its 2, item 2 has none
    assert lay.ids.tolist() == [[40, 41, 9, 42, 43, 1, 44, 45]]
    assert lay.positions.tolist() == [[3, 4, 2, 3, 4, 0, 1, 2]]
    mask = block_mask(lay, "cpu")[0, 0].numpy()   # 5 cache columns, then 8 row columns
    assert mask[0, :3].all() and not mask[0, 3:5].any()
    assert mask[2, 3:5].all() and not mask[2, :3].any()
    assert not mask[5, :5].any() and mask[5, 5 + 5]
    assert lay.scored.tolist() == [[True, False, False, True, False, True, True, False]]
    fmask = block_mask(lay, "cpu", torch.float32)[0, 0].numpy()
    assert (fmask == 0).sum() == mask.sum() and np.isfinite(fmask).all()
