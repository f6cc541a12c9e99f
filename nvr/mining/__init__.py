"""Positive-aware hard-negative mining (NV-Retriever, Moreira et al. 2024).

The array core never sees a model; teachers produce :class:`Candidates`, the core mines them:

* :mod:`nvr.mining.methods` - :class:`MiningConfig` (one method), the paper's presets, labels.
* :mod:`nvr.mining.core` - :func:`mine`: window -> score filters -> selection -> shortfall.
* :mod:`nvr.mining.hashing` - counter-based randomness (seeded, order- and chunk-independent).
* :mod:`nvr.mining.candidates` - :class:`Candidates`, what every teacher returns.
* :mod:`nvr.mining.teachers` - dense, BM25 and random teachers, exact-duplicate exclusions.
* :mod:`nvr.mining.search` - exact chunked inner-product top-k (faiss, CPU or GPUs).
* :mod:`nvr.mining.rescoring` - cross-encoder rescoring of a teacher's candidates.
* :mod:`nvr.mining.ensembles` - cross-sample and intra-sample teacher ensembles (Table 2).
* :mod:`nvr.mining.stats` - counts, score summaries and exact false-negative rates.
* :mod:`nvr.mining.records` - the mined-negatives file.

Importing this package loads numpy only (no torch, no faiss).
"""

from .candidates import Candidates
from .core import MinedArrays, compute_anchor, first_occurrence, mine, row_isin
from .hashing import hash_uniform, query_keys
from .methods import ANCHORS, PRESETS, SELECTIONS, SHORTFALLS, MiningConfig, preset
from .records import read_mined, to_rows, write_mined
from .stats import mining_stats, score_distributions

__all__ = ["Candidates", "MinedArrays", "compute_anchor", "first_occurrence", "mine", "row_isin", "hash_uniform",
           "query_keys", "ANCHORS", "PRESETS", "SELECTIONS", "SHORTFALLS", "MiningConfig", "preset", "read_mined",
           "to_rows", "write_mined", "mining_stats", "score_distributions"]
