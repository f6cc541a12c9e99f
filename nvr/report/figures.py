"""The report's figures. Each is saved as a PNG (for papers and slides) and returned, so the
notebook shows it in the page."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import paper
from .tables import SWEEP_FIELDS, sweep_points


def _save(fig, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def plot_sweeps(R, path):
    import matplotlib.pyplot as plt

    pts = {f: p for f, p in sweep_points(R).items() if len(p) >= 2}
    if not pts:
        return None
    fig, axes = plt.subplots(1, len(pts), figsize=(4 * len(pts), 3), squeeze=False)
    naive = R.ndcg(R.baseline)
    for ax, (field, p) in zip(axes[0], pts.items()):
        xs = [v for v, m in p if R.ndcg(m) is not None]
        ys = [R.ndcg(m) for v, m in p if R.ndcg(m) is not None]
        ax.plot(xs, ys, "o-", label="NDCG@10")
        if naive is not None:
            ax.axhline(naive, ls="--", color="k", lw=1, label=R.label(R.baseline))
        ax2 = ax.twinx()
        fn = [(R.mining.get(m) or {}).get("false_negative_rate") for v, m in p]
        if any(f is not None for f in fn):
            ax2.plot([v for v, _ in p], [f * 100 if f is not None else None for f in fn], "s:", color="tab:red")
            ax2.set_ylabel("false negatives (%)", color="tab:red")
        ax.set_xlabel(SWEEP_FIELDS[field]); ax.set_title(f"sweep: {field}")
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return _save(fig, path)


def plot_mining_sweep(R, path):
    """Per filter: what each threshold keeps of the study teacher's negatives (mining only).

    Solid: the exact false-negative rate of the kept negatives (data with hidden labels);
    dashed: the share of queries that still get all n negatives; dotted: the mean rank of a
    kept negative, on the right axis (how far down the list the filter pushes the negatives).
    The vertical line marks each filter's threshold among the study's methods.
    """
    import matplotlib.pyplot as plt

    from ..mining.sweep import sweep_frame_arrays

    rows = R.mining_sweep
    fields = [f for f in SWEEP_FIELDS if any(r["filter"] == f for r in rows)]
    if not fields:
        return None
    naive = next((r for r in rows if r["filter"] is None), None)
    trained = sweep_points(R)
    fig, axes = plt.subplots(1, len(fields), figsize=(4.2 * len(fields), 3.2), squeeze=False)
    for ax, field in zip(axes[0], fields):
        a = sweep_frame_arrays(rows, field)
        x = a["threshold"]
        if np.isfinite(a["false_negative_rate"]).any():
            ax.plot(x, a["false_negative_rate"] * 100, "o-", color="tab:red", label="false negatives (%)")
            if naive and naive["false_negative_rate"] is not None:
                ax.axhline(naive["false_negative_rate"] * 100, color="tab:red", ls=":", lw=1,
                           label="naive top-k FN (%)")
        ax.plot(x, a["share_full"] * 100, "s--", color="tab:blue", label="queries with all n (%)")
        ax.set_ylim(0, 105)
        ax.set_ylabel("%")
        ax2 = ax.twinx()
        ax2.plot(x, a["mean_negative_rank"], "^:", color="tab:gray", label="mean negative rank")
        ax2.set_ylabel("mean rank of a negative", color="tab:gray")
        for v, _m in trained.get(field, []):
            ax.axvline(v, color="k", lw=0.8, alpha=0.5)
        ax.set_xlabel(SWEEP_FIELDS[field])
        ax.set_title(f"mining sweep: {field}")
        ax.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    return _save(fig, path)


def plot_methods(R, path):
    """Left: our NDCG@10 per method (sd over seeds as error bars) with the base and teacher models.
    Right: each method's gain over naive top-k, ours beside the paper's Table 3 (absolute scores
    of different datasets and models are not comparable; the gains and their order are)."""
    import matplotlib.pyplot as plt

    methods = [m for m in R.methods if R.ndcg(m) is not None]
    labels = [R.label(m) for m in methods]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4))
    x = np.arange(len(methods))
    ours = [R.ndcg(m) for m in methods]
    err = [R.metrics[m].get("ndcg_at_10_std", 0.0) for m in methods]
    ax.bar(x, ours, 0.6, yerr=err if any(err) else None, capsize=3, color="tab:blue")
    for ref, style in (("base", "--"), ("teacher", ":")):
        v = R.ndcg(ref)
        if v is not None:
            ax.axhline(v, ls=style, color="k", lw=1, label=f"{ref} model ({v:.3f})")
    lo = min(ours + [R.ndcg(r) or 1 for r in ("base", "teacher")])
    ax.set_ylim(max(0, lo - 0.03), max(ours) + 0.02)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("NDCG@10" + (" (mean ± sd over seeds)" if any(err) else ""))
    ax.set_title("Ours: NDCG@10 by mining method")
    ax.legend(fontsize=8, loc="lower right")
    naive = R.ndcg(R.baseline)
    if naive is not None:
        diffs = [R.difference(m) for m in methods]
        d_ours = [d.diff if d is not None else v - naive for d, v in zip(diffs, ours)]
        ci = np.array([[d.diff - d.low, d.high - d.diff] if d is not None else [0, 0] for d in diffs]).T
        d_paper = [paper.TABLE3[R.paper_key(m)] - paper.TABLE3["naive"] if R.paper_key(m) in paper.TABLE3 else np.nan
                   for m in methods]
        bx.bar(x - 0.2, d_ours, 0.4, yerr=ci if ci.any() else None, capsize=3, label="ours (95% CI)", color="tab:blue")
        bx.bar(x + 0.2, d_paper, 0.4, label="paper Table 3", color="tab:orange")
        bx.axhline(0, color="k", lw=0.8)
        bx.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        bx.set_ylabel("NDCG@10 minus naive top-k")
        bx.set_title("Gain over naive top-k: ours vs the paper")
        bx.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_false_negatives(R, path):
    import matplotlib.pyplot as plt

    exact = [m for m in R.methods if (R.mining.get(m) or {}).get("false_negative_rate") is not None]
    fig, ax = plt.subplots(figsize=(8, 3))
    if exact:
        methods = exact
        vals = [R.mining[m]["false_negative_rate"] * 100 for m in methods]
        ax.set_ylabel("% of mined negatives\nthat are true positives")
        ax.set_title("Exact false-negative rate (hidden labels)")
    else:
        # no hidden labels (BEIR): the paper's Fig. 4 signal instead, negatives the teacher scores
        # above the query's own positive, the region where false negatives concentrate
        methods = [m for m in R.methods if (R.mining.get(m) or {}).get("negatives_emitted")]
        vals = [100 * R.mining[m].get("negatives_above_anchor", 0) / R.mining[m]["negatives_emitted"] for m in methods]
        ax.set_ylabel("% of mined negatives\nscored above the positive")
        ax.set_title("Negatives above the positive's score (no hidden labels: a false-negative proxy)")
    ax.bar(range(len(methods)), vals, color="tab:red")
    ax.set_xticks(range(len(methods)), [R.label(m) for m in methods], rotation=25, ha="right")
    return _save(fig, path)


def plot_score_distributions(R, path):
    import matplotlib.pyplot as plt

    methods = [m for m in R.methods if m in R.scores]
    cols = min(4, max(1, len(methods)))
    rows = max(1, int(np.ceil(len(methods) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharex=True)
    for ax, m in zip(axes.flat, methods):
        pos, neg = R.scores[m]
        ax.hist(pos, bins=40, density=True, alpha=0.6, label="positive")
        ax.hist(neg, bins=40, density=True, alpha=0.6, label="negative")
        ax.set_title(R.label(m), fontsize=9)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Teacher scores of positives vs mined negatives (paper Fig. 4)")
    fig.tight_layout()
    return _save(fig, path)


def plot_training_curves(R, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    for name, curve in R.curves.items():
        if curve:
            ax.plot([r["step"] for r in curve], [r["loss"] for r in curve], label=R.label(name), lw=1)
    ax.set_xlabel("step"); ax.set_ylabel("InfoNCE loss"); ax.legend(fontsize=7, ncol=2)
    ax.set_title("Training curves")
    return _save(fig, path)
