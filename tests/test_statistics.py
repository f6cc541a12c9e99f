"""Paired bootstrap and the Spearman interval, against closed forms and simulations."""

import numpy as np
import pytest

from nvr.report.statistics import paired_difference, spearman_with_interval


def _model(values_by_seed):
    return {s: {f"q{i}": float(v) for i, v in enumerate(vals)} for s, vals in values_by_seed.items()}


def test_difference_is_the_mean_gap_and_its_interval_matches_the_paired_t_interval():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.9, 400)
    gain = rng.normal(0.03, 0.1, 400)
    a, b = _model({1: base + gain}), _model({1: base})
    d = paired_difference(a, b, n_boot=20000, seed=1)
    assert d.diff == pytest.approx(gain.mean(), abs=1e-12)
    se = gain.std(ddof=1) / np.sqrt(len(gain))           # one seed: the query bootstrap ~ the paired t interval
    assert d.low == pytest.approx(gain.mean() - 1.96 * se, abs=0.15 * se * 1.96)
    assert d.high == pytest.approx(gain.mean() + 1.96 * se, abs=0.15 * se * 1.96)
    assert d.resolved and d.n_queries == 400


def test_identical_models_are_not_resolved_and_pairing_removes_query_difficulty():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.0, 1.0, 300)
    same = paired_difference(_model({1: base}), _model({1: base}), n_boot=2000)
    assert same.diff == 0 and same.low == 0 and same.high == 0 and not same.resolved
    shifted = paired_difference(_model({1: base + 0.01}), _model({1: base}), n_boot=2000)
    assert shifted.low == pytest.approx(0.01) and shifted.high == pytest.approx(0.01) and shifted.resolved


def test_seed_noise_widens_the_interval():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.9, 200)
    quiet = {s: base + 0.02 for s in range(3)}
    noisy = {s: base + 0.02 + off for s, off in zip(range(3), (-0.05, 0.0, 0.05))}
    w_quiet = paired_difference(_model(quiet), _model({0: base}), n_boot=4000)
    w_noisy = paired_difference(_model(noisy), _model({0: base}), n_boot=4000)
    assert (w_noisy.high - w_noisy.low) > 5 * (w_quiet.high - w_quiet.low + 1e-12)
    assert not w_noisy.resolved and w_quiet.resolved


def test_only_shared_queries_are_compared():
    a = {1: {"q1": 1.0, "q2": 0.0}}
    b = {1: {"q2": 0.5, "q3": 0.2}}
    assert paired_difference(a, b, n_boot=100).n_queries == 1
    with pytest.raises(ValueError):
        paired_difference({1: {"x": 1.0}}, {1: {"y": 1.0}})


def test_spearman_interval():
    rng = np.random.default_rng(4)
    base = rng.uniform(0.2, 0.9, 300)
    models = {m: _model({1: base + g + rng.normal(0, 0.001, 300)}) for m, g in
              zip("abcde", (0.0, 0.01, 0.02, 0.03, 0.04))}
    ref = dict(zip("abcde", (1, 2, 3, 4, 5)))
    r = spearman_with_interval(models, ref, n_boot=1000)
    assert r["rho"] == pytest.approx(1.0) and r["low"] > 0.8
    flat = {m: _model({1: base + rng.normal(0, 0.2, 300)}) for m in "abcde"}
    r2 = spearman_with_interval(flat, ref, n_boot=1000)
    assert r2["low"] < 0 < r2["high"]
    assert spearman_with_interval({"a": models["a"]}, ref)["rho"] is None
