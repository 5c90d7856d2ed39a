"""Masked pooling math and the HF embedder's batch invariance."""
import numpy as np
import pytest
import torch

from retrieval.encoder import finish
from scoring.batching import BatchPolicy
from scoring.embed import HFEmbedder, encode_texts, pool_hidden


def test_pool_hidden_hand_computed():
    h = torch.tensor([[[9.0, 9.0], [1.0, 2.0], [3.0, 4.0], [7.0, 7.0]]])   # pos 0 = start, pos 3 = pad
    assert torch.allclose(pool_hidden(h, torch.tensor([3])), torch.tensor([[2.0, 3.0]]))
    assert torch.allclose(pool_hidden(h, torch.tensor([3]), pooling="last"), torch.tensor([[3.0, 4.0]]))
    assert torch.equal(pool_hidden(h, torch.tensor([1])), torch.zeros(1, 2))  # nothing to pool
    with pytest.raises(ValueError, match="pooling"):
        pool_hidden(h, torch.tensor([3]), pooling="max")


def test_embeddings_do_not_depend_on_batching(tiny_model):
    tok, model = tiny_model
    texts = ["Give three tips for staying healthy.", "Paris", "What is the capital of France? " * 5]
    seqs = encode_texts(tok, texts, tok.bos_token_id, 64)
    assert all(s[0] == tok.bos_token_id for s in seqs) and max(len(s) for s in seqs) <= 64
    together = HFEmbedder(model, tok.pad_token_id, BatchPolicy(4096, 64)).embed_ids(seqs)
    alone = np.stack([HFEmbedder(model, tok.pad_token_id).embed_ids([s])[0] for s in seqs])
    assert np.allclose(together, alone, atol=1e-5)
    assert not np.allclose(together[0], together[1])


def test_finish_centres_and_normalises():
    E = np.array([[2.0, 1.0], [4.0, 1.0]], dtype=np.float32)
    out = finish(E, E.mean(axis=0))
    assert np.allclose(out, [[-1.0, 0.0], [1.0, 0.0]])
    assert np.allclose(np.linalg.norm(finish(E, None), axis=1), 1.0)


def test_weighted_mean_is_the_reference_pooling_and_ignores_padding():
    # RDS+'s reference (batch 1): weights (i + 1) / sum over every position of the sequence
    h = torch.arange(12, dtype=torch.float32).reshape(1, 6, 2)
    w = torch.arange(1, 5, dtype=torch.float32)  # a 4-token row, padded to 6
    want = (h[0, :4] * w[:, None]).sum(0) / w.sum()
    got = pool_hidden(h, torch.tensor([4]), skip=0, pooling="weighted_mean")
    assert torch.allclose(got[0], want)
    padded = torch.cat([h[:, :4], torch.full((1, 2, 2), 1e6)], dim=1)  # whatever the padding holds
    assert torch.allclose(pool_hidden(padded, torch.tensor([4]), skip=0, pooling="weighted_mean"), got)
