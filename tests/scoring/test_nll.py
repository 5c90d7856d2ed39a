import math

import torch

from scoring.nll import nll_sums_from_logprobs, scored_mask, segment_sum, token_nll


def test_scored_mask_marks_positions_predicting_response_tokens():
    # seq of length 5 with 2 context tokens: tokens 2,3,4 scored -> predicted from positions 1,2,3
    m = scored_mask(torch.tensor([5, 3]), torch.tensor([2, 1]), width=6)
    assert m[0].tolist() == [False, True, True, True, False, False]
    assert m[1].tolist() == [True, True, False, False, False, False]


def test_token_nll_matches_hand_computed_softmax():
    head = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    hidden = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    targets = torch.tensor([0, 2])
    nll = token_nll(hidden, head, targets, chunk=1)
    # logits row0 = [2,0,0] -> -log(e^2/(e^2+2)); row1 uniform -> log 3
    assert math.isclose(nll[0].item(), -math.log(math.e ** 2 / (math.e ** 2 + 2)), rel_tol=1e-6)
    assert math.isclose(nll[1].item(), math.log(3), rel_tol=1e-6)


def test_token_nll_softcap_changes_logits():
    head = torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[100.0], [0.0]]))
    h, t = torch.tensor([[1.0]]), torch.tensor([1])
    capped = token_nll(h, head, t, softcap=1.0).item()
    assert math.isclose(capped, math.log(1 + math.exp(math.tanh(100.0))), rel_tol=1e-5)


def test_segment_sum_and_logprob_reduction():
    s = segment_sum(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0, 1, 1, 3]), 4)
    assert s.tolist() == [1.0, 5.0, 0.0, 4.0]
    lp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 0]])
    nll, n = nll_sums_from_logprobs(lp, mask)
    assert nll.tolist() == [5.0, 1.0] and n.tolist() == [2, 2]
