"""InfoNCE: hand-computed values, masking, in-batch vs per-row negatives."""

import math

import pytest
import torch

from nvr.training.losses import info_nce

# 2 queries, 2-d embeddings, one hard negative each
Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
P = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
N = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])
TAU = 0.5


def lse(*xs):
    return math.log(sum(math.exp(x) for x in xs))


def test_hand_computed_without_in_batch():
    # row 1: [q1.p1, q1.n1] / tau = [1.6, 0.0]; row 2: [q2.p2, q2.n2] / tau = [1.6, 0.0]
    want = lse(1.6, 0.0) - 1.6
    got = info_nce(Q, P, N, temperature=TAU, in_batch=False)
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_hand_computed_with_in_batch():
    # columns: p1, p2, n1, n2.  row 1: [.8, .6, 0, 1]/tau, target p1; row 2: [.6, .8, 1, 0]/tau, target p2
    r1 = lse(1.6, 1.2, 0.0, 2.0) - 1.6
    r2 = lse(1.2, 1.6, 2.0, 0.0) - 1.6
    got = info_nce(Q, P, N, temperature=TAU, in_batch=True, reduction="none")
    assert got.tolist() == pytest.approx([r1, r2], abs=1e-6)
    assert info_nce(Q, P, N, temperature=TAU, in_batch=True).item() == pytest.approx((r1 + r2) / 2, abs=1e-6)


def test_mask_removes_negative_from_every_row():
    mask = torch.tensor([[True], [False]])          # row 2's negative is padding
    got = info_nce(Q, P, N, temperature=TAU, in_batch=True, negs_mask=mask, reduction="none")
    assert got.tolist() == pytest.approx([lse(1.6, 1.2, 0.0) - 1.6, lse(1.2, 1.6, 2.0) - 1.6], abs=1e-6)
    got = info_nce(Q, P, N, temperature=TAU, in_batch=False, negs_mask=mask, reduction="none")
    assert got.tolist() == pytest.approx([lse(1.6, 0.0) - 1.6, 0.0], abs=1e-6)


def test_no_negatives_is_pure_in_batch():
    got = info_nce(Q, P, None, temperature=TAU, in_batch=True, reduction="none")
    assert got.tolist() == pytest.approx([lse(1.6, 1.2) - 1.6, lse(1.2, 1.6) - 1.6], abs=1e-6)
    assert info_nce(Q, P, None, temperature=TAU, in_batch=False).item() == pytest.approx(0.0)


def test_rows_independent_without_in_batch():
    g = torch.Generator().manual_seed(0)
    q, p, n = (torch.nn.functional.normalize(torch.randn(*s, generator=g), dim=-1) for s in [(4, 8), (4, 8), (4, 3, 8)])
    base = info_nce(q, p, n, temperature=0.05, in_batch=False, reduction="none")
    q2, p2, n2 = q.clone(), p.clone(), n.clone()
    q2[2], p2[2], n2[2] = -q2[2], p2[1], n2[0]        # change every embedding of row 2
    other = info_nce(q2, p2, n2, temperature=0.05, in_batch=False, reduction="none")
    assert torch.equal(base[[0, 1, 3]], other[[0, 1, 3]])
    assert not torch.equal(base[2], other[2])
    # with in-batch negatives row 0 does see row 2's passages
    b_ib = info_nce(q, p, n, temperature=0.05, in_batch=True, reduction="none")
    o_ib = info_nce(q2, p2, n2, temperature=0.05, in_batch=True, reduction="none")
    assert not torch.allclose(b_ib[0], o_ib[0])


def test_bad_inputs():
    with pytest.raises(ValueError):
        info_nce(Q, P, N, temperature=0.0, in_batch=True)
    with pytest.raises(ValueError):
        info_nce(Q, P[:1], N, temperature=1.0, in_batch=True)


def test_exclude_drops_known_false_negatives_but_never_the_target():
    # columns p1, p2, n1, n2; row 1 may not see p2 (same passage as its positive, e.g. SciFact)
    exclude = torch.tensor([[True, True, False, False], [False, False, False, False]])
    got = info_nce(Q, P, N, temperature=TAU, in_batch=True, exclude=exclude, reduction="none")
    assert got[0].item() == pytest.approx(lse(1.6, 0.0, 2.0) - 1.6, abs=1e-6)   # p1 (target) kept
    assert got[1].item() == pytest.approx(lse(1.2, 1.6, 2.0, 0.0) - 1.6, abs=1e-6)


def test_row_mask_leaves_a_repeated_row_out_of_the_mean():
    rows = info_nce(Q, P, N, temperature=TAU, in_batch=True, reduction="none")
    got = info_nce(Q, P, N, temperature=TAU, in_batch=True, row_mask=torch.tensor([True, False]))
    assert got.item() == pytest.approx(rows[0].item(), abs=1e-6)
