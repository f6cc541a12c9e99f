"""Scoring with MTEB 2.x: local BEIR retrieval (offline), hub tasks, topic classification.

* :mod:`nvr.evaluation.adapter` - :class:`MtebEncoder`, the nvr encoder as an MTEB model,
  with a revision that identifies the checkpoint.
* :mod:`nvr.evaluation.tasks` - a local BEIR folder as an MTEB retrieval task, hub tasks by
  name (the paper's 15 BEIR datasets), in-memory classification.
* :mod:`nvr.evaluation.scoring` - :func:`evaluate_retrieval` (NDCG@10, Recall@100, MRR@10),
  :func:`evaluate_hub_tasks`, :func:`evaluate_classification`.
"""

from .adapter import MtebEncoder, TextEncoderAdapter, as_mteb_model, checkpoint_hash, state_dict_hash
from .scoring import evaluate_classification, evaluate_hub_tasks, evaluate_retrieval
from .tasks import BEIR_15, BEIR_15_TASKS, LocalBEIRRetrieval, beir_fingerprint, make_local_task, resolve_hub_tasks

__all__ = [
    "MtebEncoder", "TextEncoderAdapter", "as_mteb_model", "checkpoint_hash", "state_dict_hash",
    "evaluate_classification", "evaluate_hub_tasks", "evaluate_retrieval",
    "BEIR_15", "BEIR_15_TASKS", "LocalBEIRRetrieval", "beir_fingerprint", "make_local_task", "resolve_hub_tasks",
]
