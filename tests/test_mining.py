"""nvr.mining: hand-checked filters/selections, shortfall modes, seeding, an oracle."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from nvr.errors import ConfigError, DataError
from nvr.mining import (PRESETS, MinedArrays, MiningConfig, mine, mining_stats, preset,
                        query_keys, read_mined, score_distributions, to_rows,
                        write_mined)

F = np.float32
# one query: 8 ranked candidates, doc 12 is the labeled positive (rank 3)
IDS = np.array([[10, 11, 12, 13, 14, 15, 16, 17]])
SC = np.array([[.95, .9, .85, .8, .75, .7, .6, .5]], F)
POS = np.array([[12]])
PS = np.array([[.88]], F)
QK = np.array([7], np.uint64)


def run(cfg=None, ids=IDS, sc=SC, pos=POS, ps=PS, qk=None, **kw):
    cfg = cfg or MiningConfig(**{k: v for k, v in kw.items() if k != "exclude_ids"})
    qk = QK if qk is None else qk
    return mine(ids, sc, pos, ps, cfg, query_keys=qk, exclude_ids=kw.get("exclude_ids"))


def ids_of(m, i=0):
    return [int(x) for x in m.neg_ids[i] if x >= 0]


# --------------------------------------------------------------------------- filters
def test_naive_masks_positive_and_reports_original_ranks():
    m = run(num_negatives=3)
    assert ids_of(m) == [10, 11, 13]
    assert m.neg_ranks[0].tolist() == [1, 2, 4]
    assert m.neg_scores[0].tolist() == [F(.95), F(.9), F(.8)]
    assert m.n_eligible[0] == 7 and m.n_found[0] == 3 and m.keep[0]
    assert m.anchor[0] == F(.88)
    assert m.neg_ids.dtype == np.int64 and m.neg_scores.dtype == np.float32
    assert m.neg_ranks.dtype == np.int32 and m.n_found.dtype == np.int32


def test_shift_counts_after_positive_removal():
    # clean list 10 11 13 14 15 16 17: skip 2 -> 13, 14 (ranks 4, 5)
    m = run(num_negatives=2, shift=2)
    assert ids_of(m) == [13, 14] and m.neg_ranks[0].tolist() == [4, 5]


def test_window_counted_after_shift():
    # skip 1 clean (10), window of 2 -> {11, 13}
    m = run(num_negatives=4, shift=1, window=2)
    assert ids_of(m) == [11, 13] and m.n_eligible[0] == 2 and m.n_found[0] == 2


def test_abs_ceiling_is_inclusive_in_float32():
    m = run(num_negatives=2, max_score=0.8)
    assert ids_of(m) == [13, 14]


def test_min_score_floor():
    m = run(num_negatives=8, min_score=0.7)
    assert ids_of(m) == [10, 11, 13, 14, 15]


def test_marginpos():
    # anchor .88 - .05 = .83 -> strictly below: 13 (.8) ...
    m = run(num_negatives=3, margin=0.05)
    assert ids_of(m) == [13, 14, 15]
    # margin .08 -> .80 (strict): 13 with .8 excluded
    m = run(num_negatives=3, margin=0.08)
    assert ids_of(m) == [14, 15, 16]


def test_percpos_and_strict_boundary():
    # .88 * .95 = .836
    assert ids_of(run(num_negatives=3, perc=0.95)) == [13, 14, 15]
    # anchor .8, perc .95 -> .76 ; a candidate with exactly .76 is rejected, .75 kept
    m = run(num_negatives=2, perc=0.95, sc=np.array([[.9, .76, .76, .75, .7, .6, .5, .4]], F),
            ps=np.array([[.8]], F))
    assert ids_of(m) == [13, 14]   # 11 (.76) rejected; 12 is the positive


def test_percpos_negative_anchor_excludes_near_positive():
    ids = np.array([[1, 2, 3, 4, 5]])
    sc = np.array([[-.1, -.2, -.21, -.3, -.5]], F)
    # anchor -.2, perc .9 -> -.2 - .2*.1 = -.22 : keep s < -.22
    m = run(ids=ids, sc=sc, pos=np.array([[9]]), ps=np.array([[-.2]], F), num_negatives=5, perc=0.9)
    assert ids_of(m) == [4, 5]
    # the naive anchor*perc = -.18 would have let -.2 (as close as the positive) through
    assert 2 not in ids_of(m)
    # perc > 1 moves the ceiling above the anchor: -.2 + .2*.05 = -.19
    m = run(ids=ids, sc=sc, pos=np.array([[9]]), ps=np.array([[-.2]], F), num_negatives=5, perc=1.05)
    assert ids_of(m) == [2, 3, 4, 5]


@pytest.mark.parametrize("anchor,expected,value", [
    ("min", [16, 17], .70), ("max", [13, 15, 16], .88), ("mean", [15, 16, 17], .79)])
def test_multiple_positives_all_masked_and_anchor(anchor, expected, value):
    m = run(num_negatives=3, margin=0.0, anchor=anchor, pos=np.array([[12, 14, -1]]),
            ps=np.array([[.88, .70, np.nan]], F))
    assert ids_of(m) == expected
    assert m.anchor[0] == pytest.approx(value, abs=1e-6)
    assert 12 not in ids_of(run(num_negatives=8, pos=np.array([[12, 14]]), ps=np.array([[.88, .7]], F)))
    assert 14 not in ids_of(run(num_negatives=8, pos=np.array([[12, 14]]), ps=np.array([[.88, .7]], F)))


def test_no_positive_score_rejects_all_under_positive_aware_filter():
    m = run(num_negatives=2, perc=0.95, ps=np.array([[np.nan]], F))
    assert np.isnan(m.anchor[0]) and m.n_found[0] == 0 and m.n_eligible[0] == 0
    # without a positive-aware filter the anchor is irrelevant
    assert ids_of(run(num_negatives=2, ps=np.array([[np.nan]], F))) == [10, 11]


def test_exclude_ids_and_padding():
    ids = np.array([[10, -1, 11, 12, 13, -1, -1]])
    sc = np.array([[.9, np.nan, .8, .7, .6, np.nan, np.nan]], F)
    m = run(ids=ids, sc=sc, num_negatives=4, exclude_ids=np.array([[11, -1]]))
    assert ids_of(m) == [10, 13]
    assert m.neg_ranks[0].tolist() == [1, 5, 0, 0]
    assert np.isnan(m.neg_scores[0, 2:]).all() and (m.neg_ids[0, 2:] == -1).all()
    # non-finite scores (NeMo's -inf) are never candidates
    sc2 = np.array([[.9, np.nan, -np.inf, .7, .6, np.nan, np.nan]], F)
    assert ids_of(run(ids=ids, sc=sc2, num_negatives=4)) == [10, 13]


def test_ties_resolved_by_rank():
    ids = np.array([[4, 3, 2, 1]])
    sc = np.array([[.5, .5, .5, .5]], F)
    assert ids_of(run(ids=ids, sc=sc, pos=np.array([[-1]]), ps=np.array([[np.nan]], F), num_negatives=2)) == [4, 3]
    # equal scores and equal logits under softmax: still 2 distinct eligible ids
    m = run(ids=ids, sc=sc, pos=np.array([[-1]]), ps=np.array([[np.nan]], F), num_negatives=2,
            selection="softmax")
    assert len(set(ids_of(m))) == 2


# --------------------------------------------------------------------------- shortfall
def test_shortfall_keep_drop_fill():
    base = dict(num_negatives=3, perc=0.95, window=3)       # window {10, 11, 13}: only 13 passes
    m = run(**base)
    assert ids_of(m) == [13] and m.n_found[0] == 1 and m.keep[0] and not m.filled.any()
    m = run(**base, shortfall="drop")
    assert not m.keep[0] and m.n_found[0] == 1
    m = run(**base, shortfall="fill")
    assert ids_of(m) == [13, 10, 11]
    assert m.filled[0].tolist() == [False, True, True]
    assert m.n_found[0] == 3 and m.n_eligible[0] == 1
    assert m.neg_ranks[0].tolist() == [4, 1, 2]


def test_fill_never_takes_positive_excluded_or_shifted():
    # shift 1 skips 10; window 3 over clean list after excluding 11 -> {13, 14, 15}
    cfg = MiningConfig(num_negatives=4, shift=1, window=3, max_score=0.7, shortfall="fill")
    m = run(cfg, exclude_ids=np.array([[11]]))
    assert ids_of(m) == [15, 13, 14]
    assert m.filled[0].tolist() == [False, True, True, False]
    for bad in (10, 11, 12):
        assert bad not in ids_of(m)


def test_fill_without_score_filter_has_nothing_to_fill():
    m = run(num_negatives=4, window=2, shortfall="fill")
    assert ids_of(m) == [10, 11] and not m.filled.any()


def test_drop_on_empty_candidates():
    ids = np.full((2, 3), -1)
    m = mine(ids, np.full((2, 3), np.nan, F), np.full((2, 1), -1), np.full((2, 1), np.nan, F),
             MiningConfig(shortfall="drop"), query_keys=np.arange(2, dtype=np.uint64))
    assert not m.keep.any() and (m.n_found == 0).all()


# --------------------------------------------------------------------------- selections
def _many(n_rows, row_ids, row_sc, pos=-1, ps=np.nan):
    ids = np.tile(np.asarray(row_ids)[None], (n_rows, 1))
    sc = np.tile(np.asarray(row_sc, F)[None], (n_rows, 1))
    return (ids, sc, np.full((n_rows, 1), pos), np.full((n_rows, 1), ps, F),
            query_keys(f"q{i}" for i in range(n_rows)))


def test_softmax_first_draw_matches_softmax_probabilities():
    r = 20000
    ids, sc, pos, ps, qk = _many(r, [1, 2, 3, 4], [.3, .2, .1, .0])
    m = mine(ids, sc, pos, ps, MiningConfig(num_negatives=1, selection="softmax", temperature=0.1),
             query_keys=qk)
    p = np.exp(np.array([3., 2., 1., 0.]))
    p /= p.sum()
    counts = np.array([(m.neg_ids[:, 0] == i).sum() for i in (1, 2, 3, 4)])
    chi2 = (((counts - r * p) ** 2) / (r * p)).sum()
    assert chi2 < 16.3            # df=3, p=0.001


def test_softmax_without_replacement_is_plackett_luce():
    r = 20000
    ids, sc, pos, ps, qk = _many(r, [1, 2, 3], [.2, .1, .0])
    m = mine(ids, sc, pos, ps, MiningConfig(num_negatives=2, selection="softmax", temperature=0.1),
             query_keys=qk)
    p = np.exp(np.array([2., 1., 0.]))
    p /= p.sum()
    # P(3 not sampled in 2 draws) = p1*p2/(1-p1) + p2*p1/(1-p2)
    expect = p[0] * p[1] / (1 - p[0]) + p[1] * p[0] / (1 - p[1])
    got = (~(m.neg_ids == 3).any(1)).mean()
    assert abs(got - expect) < 4 * np.sqrt(expect * (1 - expect) / r)
    assert (m.neg_ids[:, 0] != m.neg_ids[:, 1]).all()


def test_uniform_window_is_uniform_and_respects_window():
    r = 12000
    ids, sc, pos, ps, qk = _many(r, [1, 2, 3, 4, 5, 6], [.9, .8, .7, .6, .5, .4], pos=2, ps=.85)
    m = mine(ids, sc, pos, ps, MiningConfig(num_negatives=1, shift=1, window=3, selection="uniform"),
             query_keys=qk)
    # clean list 1 3 4 5 6; shift 1, window 3 -> {3, 4, 5}
    counts = np.array([(m.neg_ids[:, 0] == i).sum() for i in (3, 4, 5)])
    assert counts.sum() == r
    chi2 = (((counts - r / 3) ** 2) / (r / 3)).sum()
    assert chi2 < 13.8            # df=2, p=0.001


def test_top1_softmax_keeps_top_then_samples():
    r = 3000
    ids, sc, pos, ps, qk = _many(r, [1, 2, 3, 4, 5], [.9, .8, .7, .6, .5], pos=1, ps=.95)
    m = mine(ids, sc, pos, ps, MiningConfig(num_negatives=2, selection="top1_softmax", temperature=0.1),
             query_keys=qk)
    assert (m.neg_ids[:, 0] == 2).all()
    assert set(np.unique(m.neg_ids[:, 1])) == {3, 4, 5}


def test_sampled_selection_draws_only_eligible():
    m = run(num_negatives=3, perc=0.95, selection="softmax", temperature=0.05)
    # .88 * .95 = .836: eligible 13..17, three distinct of them sampled
    got = ids_of(m)
    assert len(set(got)) == 3 and set(got) <= {13, 14, 15, 16, 17}
    assert m.n_eligible[0] == 5


# --------------------------------------------------------------------------- reproducibility
def _random_block(q=300, k=30, seed=0):
    rng = np.random.default_rng(seed)
    sc = np.round(rng.normal(0.3, 0.3, (q, k)), 1).astype(F)       # ties + negative scores
    sc = -np.sort(-sc, axis=1)
    ids = rng.integers(0, 60, (q, k))
    ids[rng.random((q, k)) < 0.05] = -1
    pos = np.where(rng.random((q, 3)) < 0.6, rng.integers(0, 60, (q, 3)), -1)
    ps = np.where(pos >= 0, np.round(rng.normal(0.5, 0.3, (q, 3)), 1), np.nan).astype(F)
    exc = np.where(rng.random((q, 2)) < 0.3, rng.integers(0, 60, (q, 2)), -1)
    qk = query_keys(f"query-{i}" for i in range(q))
    return ids, sc, pos, ps, exc, qk


def _same(a: MinedArrays, b: MinedArrays):
    for f in dataclasses.fields(MinedArrays):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x is None:
            assert y is None
        else:
            np.testing.assert_array_equal(x, y, err_msg=f.name)


@pytest.mark.parametrize("name", ["percpos095_sampled10", "top1_sampled10", "uniform_10_210", "sampled10"])
def test_sampling_independent_of_chunking_and_row_order(name):
    ids, sc, pos, ps, exc, qk = _random_block()
    cfg = preset(name, shortfall="fill", seed=3)
    whole = mine(ids, sc, pos, ps, cfg, query_keys=qk, exclude_ids=exc)
    chunked = mine(ids, sc, pos, ps, cfg, query_keys=qk, exclude_ids=exc, chunk_rows=7)
    _same(whole, chunked)
    perm = np.random.default_rng(1).permutation(len(qk))
    permuted = mine(ids[perm], sc[perm], pos[perm], ps[perm], cfg, query_keys=qk[perm], exclude_ids=exc[perm])
    _same(whole.take(perm), permuted)
    again = mine(ids, sc, pos, ps, cfg, query_keys=qk, exclude_ids=exc)
    _same(whole, again)
    other = mine(ids, sc, pos, ps, dataclasses.replace(cfg, seed=4), query_keys=qk, exclude_ids=exc)
    assert not np.array_equal(whole.neg_ids, other.neg_ids)


def test_query_key_is_stable():
    k1, k1b, k2 = query_keys(["q1"])[0], query_keys(["q1"])[0], query_keys(["q2"])[0]
    assert k1 == k1b != k2 and k1.dtype == np.uint64
    ks = query_keys(["q1", "q2"])
    assert ks.dtype == np.uint64 and ks[0] == k1 and ks[1] == k2


# --------------------------------------------------------------------------- oracle
def _reference(ids, sc, pos, ps, exc, cfg: MiningConfig):
    """Slow per-query implementation of window + filters + top selection + shortfall."""
    out = []
    for i in range(ids.shape[0]):
        posset = {int(p) for p in pos[i] if p >= 0}
        excset = {int(e) for e in exc[i] if e >= 0}
        pv = [float(v) for v in ps[i] if not np.isnan(v)]
        if not pv:
            a = float("nan")
        elif cfg.anchor == "min":
            a = min(pv)
        elif cfg.anchor == "max":
            a = max(pv)
        else:
            a = sum(pv) / len(pv)
        clean, seen = [], set()
        for j in range(ids.shape[1]):
            d = int(ids[i, j])
            if d >= 0 and d not in seen and np.isfinite(sc[i, j]) and d not in posset | excset:
                clean.append((j, d, sc[i, j]))
            seen.add(d)
        win = clean[cfg.shift:]
        if cfg.window is not None:
            win = win[:cfg.window]

        def ok(s):
            if cfg.max_score is not None and not s <= F(cfg.max_score):
                return False
            if cfg.min_score is not None and not s >= F(cfg.min_score):
                return False
            if cfg.margin is not None and not s < F(a - cfg.margin):
                return False
            if cfg.perc is not None and not s < F(a - abs(a) * (1 - cfg.perc)):
                return False
            return True

        el = [c for c in win if ok(c[2])]
        chosen = [(j, d, False) for j, d, _ in el[:cfg.num_negatives]]
        keep = True
        if len(chosen) < cfg.num_negatives:
            if cfg.shortfall == "drop":
                keep = False
            elif cfg.shortfall == "fill":
                rest = [(j, d, True) for j, d, s in win if not ok(s)]
                chosen += rest[:cfg.num_negatives - len(chosen)]
        out.append((chosen, len(el), keep))
    return out


@pytest.mark.parametrize("cfg", [
    MiningConfig(num_negatives=4),
    MiningConfig(num_negatives=3, shift=3),
    MiningConfig(num_negatives=4, shift=2, window=6, perc=0.95, shortfall="fill"),
    MiningConfig(num_negatives=2, max_score=0.5, min_score=-0.2, shortfall="drop"),
    MiningConfig(num_negatives=5, margin=0.1, anchor="max", shortfall="fill"),
    MiningConfig(num_negatives=4, perc=0.9, anchor="mean"),
    MiningConfig(num_negatives=4, perc=1.05, window=10, shortfall="fill"),
])
def test_vectorized_matches_reference(cfg):
    ids, sc, pos, ps, exc, qk = _random_block(seed=5)
    m = mine(ids, sc, pos, ps, cfg, query_keys=qk, exclude_ids=exc, chunk_rows=64)
    ref = _reference(ids, sc, pos, ps, exc, cfg)
    for i, (chosen, n_el, keep) in enumerate(ref):
        k = len(chosen)
        assert m.neg_ids[i, :k].tolist() == [d for _, d, _ in chosen], i
        assert m.neg_ranks[i, :k].tolist() == [j + 1 for j, _, _ in chosen], i
        assert m.filled[i, :k].tolist() == [f for _, _, f in chosen], i
        assert (m.neg_ids[i, k:] == -1).all() and (m.neg_ranks[i, k:] == 0).all()
        assert m.n_found[i] == k and m.n_eligible[i] == n_el and m.keep[i] == keep, i


def test_sampled_selection_respects_eligibility_on_random_block():
    ids, sc, pos, ps, exc, qk = _random_block(seed=9)
    for sel in ("softmax", "uniform", "top1_softmax"):
        cfg = MiningConfig(num_negatives=4, shift=1, window=8, perc=0.95, selection=sel, temperature=0.5)
        m = mine(ids, sc, pos, ps, cfg, query_keys=qk, exclude_ids=exc)
        ref = _reference(ids, sc, pos, ps, exc, dataclasses.replace(cfg, selection="top", num_negatives=99))
        for i, (chosen, n_el, _) in enumerate(ref):
            got = ids_of(m, i)
            assert len(got) == len(set(got)) == min(4, n_el)
            assert set(got) <= {d for _, d, _ in chosen}
            if sel == "top1_softmax" and chosen:
                assert got[0] == chosen[0][1]


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("field,value", [
    ("num_negatives", 0), ("shift", -1), ("window", 0), ("perc", 0.0), ("perc", 2.5),
    ("anchor", "median"), ("selection", "random"), ("shortfall", "pad"), ("temperature", 0.0),
    ("max_score", float("nan")), ("num_negatives", True), ("seed", 1.5)])
def test_validation_names_the_key(field, value):
    with pytest.raises(ConfigError, match=rf"mining\.methods\.x\.{field}"):
        dataclasses.replace(MiningConfig(), **{field: value}).validate("mining.methods.x")


def test_min_above_max_rejected():
    with pytest.raises(ConfigError, match="min_score"):
        MiningConfig(min_score=0.8, max_score=0.5).validate()


def test_presets():
    assert PRESETS["percpos095"].perc == 0.95 and PRESETS["shift10"].shift == 10
    assert PRESETS["abs07"].max_score == 0.7 and PRESETS["marginpos005"].margin == 0.05
    p = PRESETS["percpos095_sampled10"]
    assert (p.perc, p.window, p.selection) == (0.95, 10, "softmax")
    assert PRESETS["uniform_10_210"].shift == 10 and PRESETS["uniform_10_210"].window == 200
    for name, cfg in PRESETS.items():
        cfg.validate(name)
    assert preset("naive", num_negatives=1).num_negatives == 1
    with pytest.raises(ConfigError, match="percpos095"):
        preset("percpos95")
    with pytest.raises(ConfigError, match="mining.naive.nnegs"):
        preset("naive", nnegs=3)
    with pytest.raises(ConfigError, match="mining.naive.shift"):
        preset("naive", shift=-2)


def test_shape_errors():
    with pytest.raises(ValueError, match="query_keys"):
        mine(IDS, SC, POS, PS, MiningConfig(), query_keys=np.arange(2, dtype=np.uint64))
    with pytest.raises(ValueError, match="cand_scores"):
        mine(IDS, SC[:, :3], POS, PS, MiningConfig(), query_keys=QK)


# --------------------------------------------------------------------------- stats and files
def _two_queries():
    ids = np.array([[10, 11, 12, 13], [20, 21, 22, 23]])
    sc = np.array([[.9, .8, .7, .6], [.5, .4, .3, .2]], F)
    pos = np.array([[11], [23]])
    ps = np.array([[.85], [.42]], F)
    m = mine(ids, sc, pos, ps, MiningConfig(num_negatives=2, perc=0.95, shortfall="drop"),
             query_keys=np.arange(2, dtype=np.uint64))
    return m, ps


def test_stats_and_false_negatives():
    m, ps = _two_queries()
    # q0: anchor .85 -> thr .8075: eligible 12 (.7), 13 (.6) -> full
    # q1: anchor .42 -> .399: only 22 (.3) -> short -> dropped
    assert ids_of(m, 0) == [12, 13]
    assert ids_of(m, 1) == [22] and not m.keep[1]
    hidden = np.array([[11, 13], [23, 22]])
    st = mining_stats(m, ps, hidden_pos_ids=hidden)
    assert st["queries"] == 2 and st["queries_full"] == 1 and st["queries_dropped"] == 1
    assert st["queries_short"] == 0 and st["negatives_emitted"] == 2 and st["filled"] == 0
    assert st["false_negatives"] == 1 and st["false_negative_rate"] == 0.5
    assert st["queries_with_false_negative"] == 1
    assert st["mean_negative_score"] == pytest.approx(0.65)
    assert st["mean_positive_score"] == pytest.approx(0.85)
    json.dumps(st)
    d = score_distributions(m, ps)
    assert d["negative"].tolist() == [F(.7), F(.6)] and d["positive"].tolist() == [F(.85)]
    assert d["gap"] == pytest.approx([.15, .25])


def test_rows_roundtrip_and_byte_stability(tmp_path):
    m, ps = _two_queries()
    doc_ids = [f"d{i}" for i in range(30)]
    rows = to_rows(m, ["q0", "q1"], ["first?", "second?"], [["d11"], ["d23"]], ps, doc_ids)
    assert len(rows) == 1
    assert rows[0] == {"query_id": "q0", "query": "first?", "positive_ids": ["d11"],
                       "positive_scores": [0.85], "negative_ids": ["d12", "d13"],
                       "negative_scores": [0.7, 0.6], "negative_ranks": [3, 4]}
    p = tmp_path / "m.jsonl"
    assert write_mined(p, rows) == 1
    b1 = p.read_bytes()
    write_mined(p, to_rows(m, ["q0", "q1"], ["first?", "second?"], [["d11"], ["d23"]], ps, doc_ids))
    assert p.read_bytes() == b1
    assert read_mined(p) == rows
    # scores survive as the same float32
    assert F(read_mined(p)[0]["negative_scores"][0]) == m.neg_scores[0, 0]


def test_rows_mark_filled(tmp_path):
    m = run(num_negatives=3, perc=0.95, window=3, shortfall="fill")
    rows = to_rows(m, ["q"], ["t"], [["d12"]], PS, [f"d{i}" for i in range(20)])
    assert rows[0]["negative_filled"] == [False, True, True]
    write_mined(tmp_path / "f.jsonl", rows)
    assert read_mined(tmp_path / "f.jsonl")[0]["negative_filled"] == [False, True, True]


@pytest.mark.parametrize("row,msg", [
    ({"query_id": "q"}, "missing field 'query'"),
    ({"query_id": "q", "query": "t", "positive_ids": ["a"], "positive_scores": [1.0],
      "negative_ids": ["b", "c"], "negative_scores": [0.5], "negative_ranks": [1, 2]}, "negative_scores"),
    ({"query_id": "q", "query": "t", "positive_ids": ["a"], "positive_scores": [1.0],
      "negative_ids": ["a"], "negative_scores": [0.5], "negative_ranks": [1]}, "also a positive"),
    ({"query_id": "q", "query": "t", "positive_ids": ["a"], "positive_scores": [1.0],
      "negative_ids": ["b"], "negative_scores": [0.5], "negative_ranks": [0]}, "negative_ranks"),
])
def test_read_mined_errors_name_file_and_line(tmp_path, row, msg):
    good = {"query_id": "q0", "query": "t", "positive_ids": ["a"], "positive_scores": [None],
            "negative_ids": ["b"], "negative_scores": [0.5], "negative_ranks": [2]}
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=rf"bad.jsonl:2: .*{msg}"):
        read_mined(p)


def test_repeated_candidate_ids_emitted_once():
    ids = np.array([[10, 11, 10, 12, 11]])
    sc = np.array([[.9, .8, .7, .6, .5]], F)
    m = run(ids=ids, sc=sc, pos=np.array([[-1]]), ps=np.array([[np.nan]], F), num_negatives=4)
    assert ids_of(m) == [10, 11, 12] and m.neg_ranks[0, :3].tolist() == [1, 2, 4]


def test_row_isin_large_path_matches_loop():
    from nvr.mining import row_isin

    rng = np.random.default_rng(3)
    a = rng.integers(-1, 40, (50, 12))
    b = rng.integers(-1, 40, (50, 30))
    loop = np.array([[x >= 0 and x in set(b[i][b[i] >= 0]) for x in a[i]] for i in range(50)])
    np.testing.assert_array_equal(row_isin(a, b), loop)
    np.testing.assert_array_equal(row_isin(a, b[:, :10]),
                                  np.array([[x >= 0 and x in set(b[i, :10][b[i, :10] >= 0]) for x in a[i]]
                                            for i in range(50)]))


def test_empty_input():
    m = mine(np.zeros((0, 5), np.int64), np.zeros((0, 5), F), np.zeros((0, 1), np.int64),
             np.zeros((0, 1), F), MiningConfig(), query_keys=np.zeros(0, np.uint64))
    assert len(m) == 0 and m.neg_ids.shape == (0, 4)


def test_window_after_filters_samples_among_survivors():
    """PercPos 95% + sampled top-10, read as the paper does: filter first, then the window of 10
    counts survivors. With the window counted before the filter, a query whose top 10 all lie
    above the threshold gets no negative (111 of 1,103 queries in the old default profile)."""
    ids = np.arange(1, 31)[None, :]
    scores = np.concatenate([np.full(10, 0.99), np.linspace(0.9, 0.5, 20)]).astype(np.float32)[None, :]
    pos_ids, pos_scores = np.array([[0]]), np.array([[1.0]], np.float32)
    keys = query_keys(["q"])
    before = mine(ids, scores, pos_ids, pos_scores, MiningConfig(perc=0.95, window=10, selection="softmax",
                                                                temperature=0.05), query_keys=keys)
    after = mine(ids, scores, pos_ids, pos_scores, preset("percpos095_sampled10"), query_keys=keys)
    assert before.n_found[0] == 0 and before.n_eligible[0] == 0
    assert after.n_found[0] == 4 and after.n_eligible[0] == 10
    got = set(after.neg_ids[0].tolist())
    assert got <= set(range(11, 21))          # the 10 highest-ranked candidates that pass PercPos
    assert (after.neg_scores[0] < 0.95).all()


def test_window_after_filters_equals_filter_then_top_window():
    rng = np.random.default_rng(3)
    ids = np.tile(np.arange(50), (20, 1))
    scores = -np.sort(-rng.random((20, 50)).astype(np.float32), axis=1)
    pos_scores = rng.uniform(0.5, 1.0, (20, 1)).astype(np.float32)
    pos_ids = np.full((20, 1), 99)
    keys = query_keys([f"q{i}" for i in range(20)])
    cfg = MiningConfig(num_negatives=10, perc=0.9, window=7, window_after_filters=True)
    got = mine(ids, scores, pos_ids, pos_scores, cfg, query_keys=keys)
    for i in range(20):
        thr = np.float32(pos_scores[i, 0] - abs(pos_scores[i, 0]) * 0.1)
        want = [int(j) for j in ids[i] if scores[i, j] < thr][:7]
        assert got.neg_ids[i][got.neg_ids[i] >= 0].tolist() == want


# --------------------------------------------------------------------------- threshold sweep (mining side)
def test_threshold_sweep_matches_a_loop_written_from_the_rules():
    """Oracle: for each query and threshold, keep candidates by the paper's rule (PercPos
    s < perc * pos, MarginPos s < pos - margin, Abs s <= max_score), take the first n, and count
    how many are hidden positives."""
    from nvr.mining.candidates import Candidates
    from nvr.mining.methods import MiningConfig
    from nvr.mining.sweep import threshold_sweep

    rng = np.random.default_rng(3)
    Q, K, n = 40, 12, 3
    cand_ids = np.stack([rng.permutation(100)[:K] + 1 for _ in range(Q)]).astype(np.int64)
    scores = -np.sort(-rng.uniform(0.2, 0.95, size=(Q, K)), axis=1).astype(np.float32)
    pos_ids = np.zeros((Q, 1), dtype=np.int64)                 # doc 0: never a candidate
    pos_scores = rng.uniform(0.6, 0.9, size=(Q, 1)).astype(np.float32)
    hidden = np.stack([np.r_[0, cand_ids[q, rng.choice(K, 2, replace=False)]] for q in range(Q)])
    cands = Candidates(np.array([f"q{i}" for i in range(Q)]), cand_ids, scores, pos_ids, pos_scores,
                       np.full((Q, 1), -1, dtype=np.int64))
    grids = {"perc": (0.8, 0.95), "margin": (0.05,), "max_score": (0.7,)}
    rows = threshold_sweep(cands, MiningConfig(num_negatives=n), hidden_pos_ids=hidden, grids=grids)
    assert [(r["filter"], r["threshold"]) for r in rows] == [(None, None), ("perc", 0.8), ("perc", 0.95),
                                                              ("margin", 0.05), ("max_score", 0.7)]
    rules = {None: lambda s, p, t: True, "perc": lambda s, p, t: s < p * t, "margin": lambda s, p, t: s < p - t,
             "max_score": lambda s, p, t: s <= t}
    for r in rows:
        keep = rules[r["filter"]]
        emitted = fn = full = 0
        for q in range(Q):
            got = [cand_ids[q, j] for j in range(K)
                   if keep(float(scores[q, j]), float(pos_scores[q, 0]), r["threshold"])][:n]
            emitted += len(got)
            fn += sum(int(d in set(hidden[q])) for d in got)
            full += len(got) == n
        assert r["negatives_per_query"] == pytest.approx(emitted / Q, abs=1e-4), r
        assert r["share_full"] == pytest.approx(full / Q, abs=1e-4), r
        assert r["false_negative_rate"] == pytest.approx(fn / emitted, abs=1e-6), r
    # without hidden labels there is no rate; a filter that is not a threshold is refused
    assert threshold_sweep(cands, MiningConfig(num_negatives=n), grids=grids)[1]["false_negative_rate"] is None
    with pytest.raises(ValueError, match="unknown filter 'shift'"):
        threshold_sweep(cands, MiningConfig(num_negatives=n), grids={"shift": (1,)})


# --------------------------------------------------------------------------- SimANS selection
def _one_query(scores, pos=0.8):
    k = len(scores)
    return (np.arange(1, k + 1, dtype=np.int64)[None], np.asarray([scores], dtype=np.float32),
            np.zeros((1, 1), dtype=np.int64), np.asarray([[pos]], dtype=np.float32))


def test_simans_samples_with_its_weights():
    """Oracle: with n = 1 the draw over many seeds follows p_i ~ exp(-((s_i - pos - b) / w)^2)."""
    scores = [0.85, 0.78, 0.70, 0.55, 0.30]
    ids, sc, pos_ids, pos_sc = _one_query(scores)
    w, b = 0.1, -0.05
    p = np.exp(-(((np.array(scores, dtype=np.float64) - 0.8 - b) / w) ** 2))
    p /= p.sum()
    counts = np.zeros(len(scores))
    trials = 6000
    for seed in range(trials):
        cfg = MiningConfig(num_negatives=1, selection="simans", simans_width=w, simans_offset=b, seed=seed)
        m = mine(ids, sc, pos_ids, pos_sc, cfg, query_keys=np.array([7], dtype=np.uint64), progress=False)
        counts[int(m.neg_ids[0, 0]) - 1] += 1
    sd = np.sqrt(p * (1 - p) / trials)
    assert np.all(np.abs(counts / trials - p) < 4 * sd + 1e-3), (counts / trials, p)


def test_simans_narrow_width_takes_the_candidates_nearest_the_peak():
    scores = [0.95, 0.81, 0.74, 0.60, 0.40]
    ids, sc, pos_ids, pos_sc = _one_query(scores)
    cfg = MiningConfig(num_negatives=2, selection="simans", simans_width=0.005, seed=3)
    m = mine(ids, sc, pos_ids, pos_sc, cfg, query_keys=np.array([1], dtype=np.uint64), progress=False)
    assert m.neg_ids[0].tolist() == [2, 3]        # 0.81 and 0.74 sit nearest the positive's 0.8
    cfg = MiningConfig(num_negatives=1, selection="simans", simans_width=0.005, simans_offset=-0.2, seed=3)
    m = mine(ids, sc, pos_ids, pos_sc, cfg, query_keys=np.array([1], dtype=np.uint64), progress=False)
    assert m.neg_ids[0].tolist() == [4]           # peak at 0.6
    from nvr.mining.methods import describe

    assert describe(cfg) == "SimANS-sampled top-k (width 0.005, offset -0.2)"
    with pytest.raises(ConfigError, match="simans_width: must be > 0"):
        MiningConfig(selection="simans", simans_width=0.0).validate()


# --------------------------------------------------------------------------- near-duplicate defences
def test_shingle_overlap_and_cosine_against_direct_formulas():
    from nvr.mining.neardup import positive_cosine, positive_overlap, shingles

    docs = ["the cat sat on the mat today", "The cat sat on the  mat today!", "a dog ran far away from home",
            "the cat sat on a mat"]
    a, b = shingles(docs[0]), shingles(docs[3])
    assert a == {"the cat sat", "cat sat on", "sat on the", "on the mat", "the mat today"}
    ov = positive_overlap(docs, np.array([[1, 2, 3, -1]]), np.array([[0]]))
    jac = len(a & b) / len(a | b)
    # doc 1 differs by "today!" vs "today" only: 4 of 6 shingles shared
    assert ov[0, :3].tolist() == pytest.approx([4 / 6, 0.0, jac]) and np.isnan(ov[0, 3])
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 8))
    cos = positive_cosine(emb, np.array([[1, 2, -1]]), np.array([[0, 4]]))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    want = [max(unit[1] @ unit[0], unit[1] @ unit[4]), max(unit[2] @ unit[0], unit[2] @ unit[4])]
    assert cos[0, :2].tolist() == pytest.approx(want, abs=1e-6) and np.isnan(cos[0, 2])


def test_near_duplicates_are_never_negatives_and_their_removal_is_counted():
    from nvr.mining.candidates import Candidates
    from nvr.mining.neardup import defence_table, positive_overlap

    docs = ["paris is the capital of france", "paris is the capital of france .", "berlin is in germany",
            "rome is the capital of italy", "madrid is in spain", "paris is the capital of france and a city"]
    # query 0: positive doc 0; candidates 1 (near-dup, a hidden positive), 5 (near-dup, not hidden), 2, 3, 4
    cands = Candidates(np.array(["q0"]), np.array([[1, 5, 2, 3, 4]]), np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], np.float32),
                       np.array([[0]]), np.array([[0.95]], np.float32), np.full((1, 1), -1))
    ov = positive_overlap(docs, cands.cand_ids, cands.pos_ids)
    cfg = MiningConfig(num_negatives=2, max_positive_overlap=0.5)
    m = mine(cands.cand_ids, cands.cand_scores, cands.pos_ids, cands.pos_scores, cfg,
             query_keys=np.array([1], dtype=np.uint64), exclude_ids=cands.exclude_ids, pos_overlap=ov, progress=False)
    assert m.neg_ids[0].tolist() == [2, 3]
    fill = dataclasses.replace(cfg, num_negatives=5, shortfall="fill")   # a fill never brings them back
    m = mine(cands.cand_ids, cands.cand_scores, cands.pos_ids, cands.pos_scores, fill,
             query_keys=np.array([1], dtype=np.uint64), exclude_ids=cands.exclude_ids, pos_overlap=ov, progress=False)
    assert sorted(int(d) for d in m.neg_ids[0] if d >= 0) == [2, 3, 4]
    with pytest.raises(ValueError, match="max_positive_overlap needs pos_overlap"):
        mine(cands.cand_ids, cands.cand_scores, cands.pos_ids, cands.pos_scores, cfg,
             query_keys=np.array([1], dtype=np.uint64), progress=False)
    rows = defence_table(cands, MiningConfig(num_negatives=2), hidden_pos_ids=np.array([[0, 1]]), sims={"pos_overlap": ov},
                         overlaps=(0.5,))
    assert rows[0]["false_negative_rate"] == 0.5            # naive picks 1 (hidden) and 5
    r = rows[1]
    assert (r["removed"], r["fn_removed"], r["tn_lost"], r["precision"], r["recall"]) == (2, 1, 1, 0.5, 1.0)
    assert r["false_negative_rate"] == 0.0


def test_judge_relabels_instead_of_discarding():
    """Candidates the judge scores >= T are never negatives and come out as extra positives; the
    training rows mask them like labeled positives; stats count the judge's precision."""
    from nvr.mining import to_rows
    from nvr.mining.formats import convert

    ids = np.array([[5, 6, 7, 8, 9], [1, 2, 3, 4, 9]])
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]], np.float32)
    judge = np.array([[0.95, 0.1, 0.9, 0.2, 0.1], [0.1, 0.1, 0.1, 0.1, 0.1]], np.float32)
    pos = np.array([[0], [0]])
    cfg = MiningConfig(num_negatives=2, relabel_above=0.9)
    m = mine(ids, scores, pos, np.array([[0.95], [0.6]], np.float32), cfg, query_keys=np.array([1, 2], np.uint64),
             judge_scores=judge, progress=False)
    assert m.neg_ids.tolist() == [[6, 8], [1, 2]]
    assert m.relabel_ids.tolist() == [[5, 7], [-1, -1]]
    st = mining_stats(m, np.array([[0.95], [0.6]]), hidden_pos_ids=np.array([[0, 5], [0, 1]]))
    assert (st["relabeled_positives"], st["relabeled_true_positives"], st["relabel_precision"]) == (2, 1, 0.5)
    assert st["false_negatives"] == 1            # doc 1 of query 2: the judge missed it
    # chunks of different relabel widths concatenate (padded)
    m2 = mine(ids, scores, pos, np.array([[0.95], [0.6]], np.float32), cfg, query_keys=np.array([1, 2], np.uint64),
              judge_scores=judge, progress=False, chunk_rows=1)
    assert m2.relabel_ids.tolist() == m.relabel_ids.tolist()
    rows = to_rows(m, ["a", "b"], ["qa", "qb"], [["0"], ["0"]], np.array([[0.95], [0.6]]), [str(i) for i in range(10)])
    assert rows[0]["relabeled_positive_ids"] == ["5", "7"] and rows[0]["relabeled_positive_scores"] == [
        pytest.approx(0.95), pytest.approx(0.9)]
    fe = convert(rows, "flagembedding", lambda d: {"title": "", "text": f"doc {d}"})
    assert fe[0]["pos"] == ["doc 0", "doc 5", "doc 7"] and fe[0]["neg"] == ["doc 6", "doc 8"]
    with pytest.raises(ValueError, match="relabel_above needs judge_scores"):
        mine(ids, scores, pos, np.array([[0.95], [0.6]], np.float32), cfg, query_keys=np.array([1, 2], np.uint64),
             progress=False)


def test_relabeled_rows_round_trip_and_are_checked(tmp_path):
    from nvr.mining import read_mined, write_mined

    row = {"query_id": "a", "query": "q", "positive_ids": ["0"], "positive_scores": [0.9], "negative_ids": ["6"],
           "negative_scores": [0.8], "negative_ranks": [2], "relabeled_positive_ids": ["5"],
           "relabeled_positive_scores": [0.95]}
    write_mined(tmp_path / "m.jsonl", [row])
    assert read_mined(tmp_path / "m.jsonl") == [row]
    write_mined(tmp_path / "bad.jsonl", [{**row, "relabeled_positive_ids": ["6"]}])
    with pytest.raises(DataError, match="bad.jsonl:1: a negative id is also a relabeled positive id"):
        read_mined(tmp_path / "bad.jsonl")
