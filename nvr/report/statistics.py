"""Uncertainty of the study's comparisons: paired bootstrap over test queries and training seeds.

Every model is scored per test query (``metrics/per_query/<name>.json``: NDCG@10 of each query
for each training seed). A method's score is its mean over seeds and queries. A comparison of
two methods is paired by query: both are scored on the same queries, so query difficulty
cancels. The bootstrap resamples the test queries (with replacement, the same draw for both
methods) and, independently for each method, its training seeds (with replacement), and
recomputes the difference of means; the 95% interval is the 2.5 and 97.5 percentiles. So the
interval holds both the test-set noise and the seed noise (with one seed, only the former).
A difference is *resolved* when its interval excludes 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Difference:
    """``a - b`` in mean NDCG@10 with its bootstrap interval."""

    diff: float
    low: float
    high: float
    n_queries: int
    seeds_a: int
    seeds_b: int
    level: float = 0.95

    @property
    def resolved(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {**asdict(self), "resolved": self.resolved}

    def text(self, digits: int = 4) -> str:
        return f"{self.diff:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def _matrix(per_seed: dict, queries: list[str]) -> np.ndarray:
    """(seeds, queries) float64 from ``{seed: {query: value}}``."""
    return np.array([[float(per_seed[s][q]) for q in queries] for s in sorted(per_seed)], dtype=np.float64)


def common_queries(*models: dict) -> list[str]:
    """Queries scored for every seed of every model (sorted)."""
    sets = [set(v) for m in models for v in m.values()]
    return sorted(set.intersection(*sets)) if sets else []


def _draws(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(size, n) multinomial counts: how often each of n items is drawn in each resample."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)


def paired_difference(a: dict, b: dict, *, n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> Difference:
    """Mean NDCG@10 of ``a`` minus ``b`` (``{seed: {query: ndcg}}`` each) with a bootstrap interval
    over the shared test queries and each model's training seeds (see the module docstring)."""
    qs = common_queries(a, b)
    if not qs:
        raise ValueError("paired_difference: the two models share no scored query")
    A, B = _matrix(a, qs), _matrix(b, qs)
    rng = np.random.default_rng(seed)
    qw = _draws(rng, len(qs), n_boot)                      # same query draw for both
    wa, wb = _draws(rng, A.shape[0], n_boot), _draws(rng, B.shape[0], n_boot)
    norm = len(qs)
    ma = np.einsum("bs,sq,bq->b", wa, A, qw) / (A.shape[0] * norm)
    mb = np.einsum("bs,sq,bq->b", wb, B, qw) / (B.shape[0] * norm)
    d = ma - mb
    lo, hi = np.quantile(d, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Difference(float(A.mean() - B.mean()), float(lo), float(hi), len(qs), A.shape[0], B.shape[0], level)


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``x`` (b, m) with ``y`` (m,) (average ranks for ties)."""
    from scipy.stats import rankdata

    rx = rankdata(x, axis=1)
    ry = rankdata(y)
    rx = rx - rx.mean(1, keepdims=True)
    ry = ry - ry.mean()
    den = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx @ ry) / den


def spearman_with_interval(models: dict[str, dict], reference: dict[str, float], *, n_boot: int = 5000,
                           seed: int = 0, level: float = 0.95) -> dict:
    """Spearman correlation between our method means and ``reference`` (the paper's numbers),
    with a bootstrap interval: queries resampled once per draw for every method, each method's
    seeds resampled on their own. ``models``: ``{method: {seed: {query: ndcg}}}``."""
    names = [m for m in models if m in reference]
    if len(names) < 3:
        return {"rho": None, "low": None, "high": None, "methods": names}
    qs = common_queries(*(models[m] for m in names))
    mats = [_matrix(models[m], qs) for m in names]
    rng = np.random.default_rng(seed)
    qw = _draws(rng, len(qs), n_boot)
    means = np.stack([np.einsum("bs,sq,bq->b", _draws(rng, M.shape[0], n_boot), M, qw) / (M.shape[0] * len(qs))
                      for M in mats], axis=1)
    ref = np.array([reference[m] for m in names])
    point = _spearman(np.array([[M.mean() for M in mats]]), ref)[0]
    rhos = _spearman(means, ref)
    rhos = rhos[np.isfinite(rhos)]
    lo, hi = np.quantile(rhos, [(1 - level) / 2, 1 - (1 - level) / 2]) if rhos.size else (np.nan, np.nan)
    return {"rho": float(point), "low": float(lo), "high": float(hi), "methods": names, "n_queries": len(qs)}
