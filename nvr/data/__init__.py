"""Retrieval data: BEIR folders, the study's training pairs and hidden labels, dataset builders.

* :mod:`nvr.data.beir` - BEIR folders (load with full validation, save, :func:`doc_text`).
* :mod:`nvr.data.pairs` - training pairs and hidden positives.
* :mod:`nvr.data.wiki` - the offline default task (Wikipedia / Wikidata) and its topic task.
* :mod:`nvr.data.study` - the study's data folder carved from a BEIR dataset.
* :mod:`nvr.data.hub` - BEIR datasets from the network.
"""

from .beir import BeirDataset, doc_text, load_beir, read_corpus, save_beir, write_qrels
from .pairs import (TrainPair, pairs_from_qrels, read_hidden_positives, read_train_pairs, write_hidden_positives,
                    write_train_pairs)
from .hub import beir_local_or_hub, load_beir_hub
from .study import prepare_beir_study
from .wiki import WIKI_LABEL, build_wiki_dataset, read_topics, topic_split, wiki_source_path

__all__ = ["BeirDataset", "doc_text", "load_beir", "read_corpus", "save_beir", "write_qrels", "TrainPair",
           "pairs_from_qrels", "read_hidden_positives", "read_train_pairs", "write_hidden_positives",
           "write_train_pairs", "beir_local_or_hub", "load_beir_hub", "prepare_beir_study", "WIKI_LABEL", "build_wiki_dataset", "read_topics",
           "topic_split", "wiki_source_path"]
