"""A mining method: a candidate window, score filters, a selection (NV-Retriever, Table 3).

:class:`MiningConfig` is one method; :data:`PRESETS` names the paper's methods and a few
others; :func:`describe` gives every method its label from its settings (so a label can never
disagree with what the method does), and :func:`paper_method` tells which of the paper's
methods a setting reproduces. See :mod:`nvr.mining.core` for the exact semantics.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

ANCHORS = ("min", "max", "mean")

SELECTIONS = ("top", "softmax", "uniform", "top1_softmax", "simans")

SHORTFALLS = ("keep", "drop", "fill")


@dataclass(frozen=True)
class MiningConfig:
    """One mining method. See :mod:`nvr.mining.core` for the exact semantics.

    num_negatives: n hard negatives per query. shift: skip the first N clean candidates ("top-k
    shifted by N"). window: consider the next k clean candidates (None: all retrieved).
    max_score: TopK-Abs ceiling. min_score: floor. margin: TopK-MarginPos, keep
    ``s < anchor - margin``. perc: TopK-PercPos, keep ``s < anchor * perc`` (sign-safe).
    anchor: which positive score anchors the margins (min / max / mean). selection: top /
    softmax / uniform / top1_softmax; temperature: the softmax's. shortfall: keep / drop /
    fill when fewer than n pass. seed: the sampling seed. window_after_filters: the window
    counts candidates that passed the score filters (the paper's "PercPos 95% + sampled
    top-10": filter, then sample among the top 10 survivors) instead of clean candidates
    (sentence-transformers' ``range_max``, the default). simans_width / simans_offset: the
    ``simans`` selection (SimANS, Zhou et al. 2022, ambiguous-zone sampling): sample n without
    replacement with probability ``exp(-((s - anchor - offset) / width)^2)``, peaked where a
    candidate scores close to its positive (offset 0: at the positive's score; a negative
    offset moves the peak below it), the width setting how fast hard and easy ones fade.
    max_positive_cosine / max_positive_overlap: near-duplicate defences
    (:mod:`nvr.mining.neardup`): a candidate whose embedding cosine / word-shingle Jaccard with a
    labeled positive is at or above the value is never a negative. relabel_above: a relevance
    judge (RLHN / Gecko style; any scorer: a cross-encoder, an LLM, a stronger teacher) that
    relabels instead of discarding: a candidate whose judge score is at or above the value is
    never a negative and is emitted as an extra positive (``relabeled_ids``).
    """

    num_negatives: int = 4
    shift: int = 0
    window: int | None = None
    max_score: float | None = None
    min_score: float | None = None
    margin: float | None = None
    perc: float | None = None
    anchor: str = "min"
    selection: str = "top"
    temperature: float = 1.0
    shortfall: str = "keep"
    seed: int = 0
    window_after_filters: bool = False
    simans_width: float = 0.1
    simans_offset: float = 0.0
    max_positive_cosine: float | None = None
    max_positive_overlap: float | None = None
    relabel_above: float | None = None

    def validate(self, where: str = "mining") -> None:
        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

        if not is_int(self.num_negatives) or self.num_negatives < 1:
            raise ConfigError(f"{where}.num_negatives: must be an integer >= 1, got {self.num_negatives!r}")
        if not is_int(self.shift) or self.shift < 0:
            raise ConfigError(f"{where}.shift: must be an integer >= 0, got {self.shift!r}")
        if self.window is not None and (not is_int(self.window) or self.window < 1):
            raise ConfigError(f"{where}.window: must be null or an integer >= 1, got {self.window!r}")
        for name in ("max_score", "min_score", "margin", "perc"):
            v = getattr(self, name)
            if v is not None and (not is_num(v) or not math.isfinite(v)):
                raise ConfigError(f"{where}.{name}: must be null or a finite number, got {v!r}")
        if self.min_score is not None and self.max_score is not None and self.min_score > self.max_score:
            raise ConfigError(f"{where}.min_score: {self.min_score} is above max_score {self.max_score}")
        if self.perc is not None and not (0.0 < self.perc <= 2.0):
            raise ConfigError(f"{where}.perc: must be in (0, 2], got {self.perc!r} (0.95 = PercPos 95%)")
        if self.anchor not in ANCHORS:
            raise ConfigError(f"{where}.anchor: '{self.anchor}' is not one of {', '.join(ANCHORS)}")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"{where}.selection: '{self.selection}' is not one of {', '.join(SELECTIONS)}")
        if not is_num(self.temperature) or not math.isfinite(self.temperature) or self.temperature <= 0:
            raise ConfigError(f"{where}.temperature: must be a finite number > 0, got {self.temperature!r}")
        if self.shortfall not in SHORTFALLS:
            raise ConfigError(f"{where}.shortfall: '{self.shortfall}' is not one of {', '.join(SHORTFALLS)}")
        if not is_int(self.seed):
            raise ConfigError(f"{where}.seed: must be an integer, got {self.seed!r}")
        if not isinstance(self.window_after_filters, bool):
            raise ConfigError(f"{where}.window_after_filters: must be true or false, got {self.window_after_filters!r}")
        if self.window_after_filters and self.window is None:
            raise ConfigError(f"{where}.window_after_filters: needs a window")
        for name in ("simans_width", "simans_offset"):
            v = getattr(self, name)
            if not is_num(v) or not math.isfinite(v):
                raise ConfigError(f"{where}.{name}: must be a finite number, got {v!r}")
        if self.simans_width <= 0:
            raise ConfigError(f"{where}.simans_width: must be > 0, got {self.simans_width!r}")
        if self.relabel_above is not None and (not is_num(self.relabel_above) or not math.isfinite(self.relabel_above)):
            raise ConfigError(f"{where}.relabel_above: must be null or a finite number, got {self.relabel_above!r}")
        for name, lo in (("max_positive_cosine", -1.0), ("max_positive_overlap", 0.0)):
            v = getattr(self, name)
            if v is not None and (not is_num(v) or not math.isfinite(v) or not lo <= v <= 1.0):
                raise ConfigError(f"{where}.{name}: must be null or a number in [{lo:g}, 1], got {v!r}")

    @property
    def has_score_filter(self) -> bool:
        return any(v is not None for v in (self.max_score, self.min_score, self.margin, self.perc))


PRESETS: dict[str, MiningConfig] = {
    "naive": MiningConfig(),
    "shift10": MiningConfig(shift=10),
    "abs07": MiningConfig(max_score=0.7),
    "marginpos005": MiningConfig(margin=0.05),
    "percpos095": MiningConfig(perc=0.95),
    "percpos098": MiningConfig(perc=0.98),
    "percpos105": MiningConfig(perc=1.05),
    # the paper's "PercPos 95% + sampled top-10": PercPos first, then sample among the top 10 that
    # passed (window_after_filters), so it draws from as many candidates as PercPos alone does
    "percpos095_sampled10": MiningConfig(perc=0.95, window=10, selection="softmax", temperature=0.05,
                                         window_after_filters=True),
    "top1_sampled10": MiningConfig(window=10, selection="top1_softmax", temperature=0.05),
    "sampled10": MiningConfig(window=10, selection="softmax", temperature=0.05),
    "uniform_10_210": MiningConfig(shift=10, window=200, selection="uniform"),
}


def preset(name: str, **overrides: Any) -> MiningConfig:
    """A copy of ``PRESETS[name]`` with fields overridden (validated)."""
    if name not in PRESETS:
        raise ConfigError(f"mining.preset: unknown preset '{name}'; valid: {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(MiningConfig)}
    for k in overrides:
        if k not in fields:
            raise ConfigError(f"mining.{name}.{k}: unknown key; valid keys: {', '.join(sorted(fields))}")
    cfg = dataclasses.replace(PRESETS[name], **overrides)
    cfg.validate(f"mining.{name}")
    return cfg


#: The methods of the paper's Tables 3-5 (the settings that define each; the number of
#: negatives, the shortfall policy and the seed are not part of a method's identity).
PAPER_METHODS: tuple[str, ...] = ("naive", "shift10", "abs07", "marginpos005", "percpos095",
                                  "percpos095_sampled10", "top1_sampled10")

_IDENTITY_SKIP = ("num_negatives", "shortfall", "seed")


def _identity(cfg: MiningConfig) -> tuple:
    return tuple((f.name, getattr(cfg, f.name)) for f in dataclasses.fields(MiningConfig)
                 if f.name not in _IDENTITY_SKIP
                 and not (f.name == "temperature" and cfg.selection in ("top", "uniform", "simans"))
                 and not (f.name.startswith("simans_") and cfg.selection != "simans"))


def paper_method(cfg: MiningConfig) -> str | None:
    """The paper's name (a key of :data:`PAPER_METHODS`) of the method ``cfg`` reproduces, else None."""
    ident = _identity(cfg)
    return next((name for name in PAPER_METHODS if _identity(PRESETS[name]) == ident), None)


def _num(v: float) -> str:
    return f"{v:g}"


def describe(cfg: MiningConfig) -> str:
    """A label built from the settings (never from a method's name), in the paper's words:
    ``Naive top-k``, ``Top-k shifted by 10``, ``TopK-Abs 0.7``, ``TopK-MarginPos 0.05``,
    ``TopK-PercPos 95%``, ``TopK-PercPos 95% + sampled top-10``, ``Top-1 + sampled top-10``."""
    parts = []
    if cfg.perc is not None:
        parts.append(f"TopK-PercPos {cfg.perc * 100:g}%")
    if cfg.margin is not None:
        parts.append(f"TopK-MarginPos {_num(cfg.margin)}")
    if cfg.max_score is not None:
        parts.append(f"TopK-Abs {_num(cfg.max_score)}")
    if cfg.min_score is not None:
        parts.append(f"score >= {_num(cfg.min_score)}")
    if cfg.max_positive_cosine is not None:
        parts.append(f"near-duplicates (cosine >= {_num(cfg.max_positive_cosine)}) excluded")
    if cfg.max_positive_overlap is not None:
        parts.append(f"near-duplicates (overlap >= {_num(cfg.max_positive_overlap)}) excluded")
    if cfg.relabel_above is not None:
        parts.append(f"judge >= {_num(cfg.relabel_above)} relabeled positive")
    if cfg.anchor != "min" and (cfg.perc is not None or cfg.margin is not None):
        parts.append(f"{cfg.anchor} positive as anchor")
    span = f"top-{cfg.window}" if cfg.window is not None else "top-k"
    if cfg.window is not None and cfg.has_score_filter and not cfg.window_after_filters:
        span += " (window before filters)"
    if cfg.shift:
        span = (f"ranks {cfg.shift + 1}-{cfg.shift + cfg.window}" if cfg.window is not None
                else f"shifted by {cfg.shift}")
    if cfg.selection == "top":
        if not parts:
            return "Naive top-k" if span == "top-k" else f"Top-k {span}" if cfg.shift else f"Naive {span}"
        if span != "top-k":
            parts.append(span)
    elif cfg.selection == "softmax":
        parts.append(f"sampled {span} (T={_num(cfg.temperature)})" if cfg.temperature != 0.05 else f"sampled {span}")
    elif cfg.selection == "uniform":
        parts.append(f"uniform from {span}")
    elif cfg.selection == "simans":
        off = f", offset {_num(cfg.simans_offset)}" if cfg.simans_offset else ""
        parts.append(f"SimANS-sampled {span} (width {_num(cfg.simans_width)}{off})")
    else:  # top1_softmax
        sampled = f"sampled {span}" + (f" (T={_num(cfg.temperature)})" if cfg.temperature != 0.05 else "")
        parts = ["Top-1"] + parts + [sampled]
    text = " + ".join(parts)
    return text[0].upper() + text[1:]
