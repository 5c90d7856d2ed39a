"""The SFT loop: masking, schedule, and that it actually learns."""
import copy

import pytest
import torch

from scoring.passes import RenderConfig
from scoring.render import PassIds
from training.sft import IGNORE, TrainParams, collate, lr_factor, sft_loss, train
from jobs.train import examples
from tests.scoring.test_passes import row


def test_collate_masks_context_and_padding():
    ids, attn, labels = collate([PassIds([1, 5, 6, 7], 2), PassIds([1, 9], 1)], pad_id=0)
    assert ids.tolist() == [[1, 5, 6, 7], [1, 9, 0, 0]]
    assert labels.tolist() == [[IGNORE, IGNORE, 6, 7], [IGNORE, 9, IGNORE, IGNORE]]
    assert attn.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


def test_sft_loss_counts_only_labelled_tokens():
    logits = torch.zeros(1, 3, 4)
    labels = torch.tensor([[IGNORE, 2, 3]])
    loss, n = sft_loss(logits, labels)
    assert n == 2 and torch.isclose(loss, 2 * torch.log(torch.tensor(4.0)))


def test_cosine_schedule_with_warmup():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1) and lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0) and lr_factor(55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)


def test_examples_train_response_and_eos(tiny_model):
    tok, _ = tiny_model
    ex = examples([row("Say hi", "Hello there")], RenderConfig(), tok)[0]
    assert ex.ids[-1] == tok.eos_token_id
    assert ex.ids[ex.n_ctx:-1] == tok("Hello there", add_special_tokens=False)["input_ids"]


def test_training_lowers_the_loss_and_is_deterministic(tiny_model):
    tok, base = tiny_model
    rows = [row(f"Repeat the word {w}.", f"{w} {w} {w}") for w in ("alpha", "beta", "gamma", "delta")]
    exs = examples(rows, RenderConfig(), tok)
    p = TrainParams(lr=1e-2, epochs=25, batch_size=4, micro_batch=2, seed=0)
    m1, m2 = copy.deepcopy(base), copy.deepcopy(base)
    l1 = train(m1, exs, tok.pad_token_id, p)
    l2 = train(m2, exs, tok.pad_token_id, p)
    assert len(l1) == 25 and l1 == l2
    assert l1[-1] < 0.5 * l1[0]
    assert not m1.training
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
