"""faiss index + search: right neighbours on a hand-made KB, self-exclusion, widening, IVF."""
import numpy as np

from retrieval.index import build_index, resolve_index_type, search

# five KB vectors on distinct axes (one slightly tilted), ids a..e
KB = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0.9, 0.1, 0, 0]], dtype=np.float32)
IDS = ["a", "b", "c", "d", "e"]


def test_hand_made_neighbours_in_cosine_order():
    idx, sim = search(build_index(KB, "flat"), np.array([[2.0, 0.1, 0, 0], [0, 0, 0, 5.0]]), 2, IDS)
    assert [IDS[j] for j in idx[0]] == ["a", "e"]
    assert IDS[idx[1][0]] == "d" and np.isclose(sim[1][0], 1.0)
    assert sim[0][0] > sim[0][1]
    expect = (KB[4] / np.linalg.norm(KB[4])) @ (np.array([2.0, 0.1, 0, 0]) / np.linalg.norm([2.0, 0.1, 0, 0]))
    assert np.isclose(sim[0][1], expect, atol=1e-6)


def test_self_is_never_retrieved():
    idx, _ = search(build_index(KB, "flat"), KB, 2, IDS, exclude=IDS)
    for q, row in enumerate(idx):
        assert IDS[q] not in [IDS[j] for j in row if j >= 0]
    assert IDS[idx[0][0]] == "e" and IDS[idx[4][0]] == "a"  # the next-best neighbour instead


def test_near_copies_excluded_by_similarity():
    idx, sim = search(build_index(KB, "flat"), KB[:1], 1, IDS, exclude_sim=0.999)
    assert IDS[idx[0][0]] == "e" and sim[0][0] < 0.999


def test_search_widens_when_many_hits_are_excluded():
    X = np.tile(np.array([[1.0, 0, 0, 0]], dtype=np.float32), (30, 1))
    X[-1] = [0.5, 0.5, 0, 0]
    ids = [f"r{i}" for i in range(30)]
    # 29 exact copies all excluded by similarity: the one distinct row must still be found
    idx, _ = search(build_index(X, "flat"), X[:1], 1, ids, exclude_sim=0.99, extra=2)
    assert ids[idx[0][0]] == "r29"


def test_fewer_hits_than_k_are_padded():
    idx, sim = search(build_index(KB[:2], "flat"), KB[:1], 3, IDS[:2], exclude=["a"])
    assert idx[0].tolist() == [1, -1, -1] and np.isnan(sim[0][1:]).all()


def test_ivf_agrees_with_flat_when_probing_all_lists():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 16)).astype(np.float32)
    Q = rng.normal(size=(50, 16)).astype(np.float32)
    ids = [str(i) for i in range(len(X))]
    flat, _ = search(build_index(X, "flat"), Q, 5, ids)
    ivf_index = build_index(X, "ivf", nlist=16)
    ivf, _ = search(ivf_index, Q, 5, ids, nprobe=16)
    assert ivf_index.nlist == 16 and (flat == ivf).all()
    assert resolve_index_type("auto", 10) == "flat" and resolve_index_type("auto", 10**6) == "ivf"
