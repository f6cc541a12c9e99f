"""Carve the study's data folder out of a BEIR dataset (train and test splits, corpus cap)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, DataError
from ..io import atomic_dir, write_json
from ..runtime import log, seeded_hash
from .beir import BeirDataset, PathLike, _write_beir_files, load_beir
from .pairs import pairs_from_qrels, write_train_pairs


def prepare_beir_study(
    src: PathLike,
    out_dir: PathLike,
    *,
    train_split: str = "train",
    test_split: str = "test",
    max_train_queries: int | None = None,
    max_test_queries: int | None = None,
    max_docs: int | None = None,
    seed: int = 13,
) -> dict:
    """Turn a BEIR folder into the study's data folder (atomic, replaces ``out_dir``).

    Queries with at least one positive (score > 0) in ``train_split`` / ``test_split`` are
    kept (capped by ``max_*_queries``, chosen by seeded hash); a training query whose text
    (case- and whitespace-insensitive) is also a kept test query is dropped; the corpus keeps every
    document judged for a kept query, then fills up to ``max_docs`` with other documents in
    seeded-hash order (source order is preserved). Writes ``corpus.jsonl``,
    ``queries.jsonl``, ``qrels/train.tsv`` and ``qrels/test.tsv`` (whatever the source
    split names), ``train_pairs.jsonl`` (every positive of each train query) and
    ``dataset.json``. No ``hidden_positives.jsonl``: a BEIR dataset has no labels beyond its
    qrels, so false negatives cannot be counted exactly (reported as unknown, not zero).
    """
    src = Path(src)
    for name, v in (("max_train_queries", max_train_queries), ("max_test_queries", max_test_queries),
                    ("max_docs", max_docs)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ConfigError(f"dataset.{name} must be a positive integer or null, got {v!r}")
    if train_split == test_split:
        raise ConfigError(f"dataset.train_split and dataset.test_split are both '{train_split}'")
    ds = load_beir(src, splits=[train_split, test_split])

    def pick(split: str, cap: int | None) -> dict[str, dict[str, int]]:
        q = {qid: docs for qid, docs in ds.qrels[split].items() if any(s > 0 for s in docs.values())}
        if cap is not None and len(q) > cap:
            keep = set(sorted(q, key=lambda x: (seeded_hash(seed, f"query-{split}", x), x))[:cap])
            q = {qid: docs for qid, docs in q.items() if qid in keep}
        return q

    test = pick(test_split, max_test_queries)
    # a training query whose text is also a test query (SciFact: test claims 870 and 1292 copy
    # train claims 871 and 1291) would leak the test answer into training: drop it
    def norm(t: str) -> str:
        return " ".join(t.split()).casefold()

    test_texts = {norm(ds.queries[q]) for q in test}
    train_all = {q: d for q, d in ds.qrels[train_split].items() if any(v > 0 for v in d.values())}
    leaked = sorted(q for q in train_all if norm(ds.queries[q]) in test_texts)
    if leaked:
        log.info("prepare: %d training queries repeat a test query's text and are left out of training: %s",
                 len(leaked), ", ".join(leaked[:10]))
    ds.qrels[train_split] = {q: d for q, d in ds.qrels[train_split].items() if q not in set(leaked)}
    train = pick(train_split, max_train_queries)
    if not train or not test:
        raise DataError(f"{src}: no queries with a positive in split '{train_split if not train else test_split}'")
    needed = {d for q in (train, test) for docs in q.values() for d in docs}
    if max_docs is not None and len(needed) > max_docs:
        raise ConfigError(
            f"dataset.max_docs ({max_docs}) is smaller than the {len(needed)} documents judged for the kept "
            "queries; raise it or lower max_train_queries / max_test_queries"
        )
    keep = set(needed)
    if max_docs is None:
        keep = set(ds.corpus)
    else:
        for d in sorted((d for d in ds.corpus if d not in needed), key=lambda d: (seeded_hash(seed, "doc", d), d)):
            if len(keep) >= max_docs:
                break
            keep.add(d)
    corpus = {d: doc for d, doc in ds.corpus.items() if d in keep}
    queries = {q: t for q, t in ds.queries.items() if q in train or q in test}
    study = BeirDataset(corpus=corpus, queries=queries, qrels={"train": train, "test": test})
    pairs = pairs_from_qrels(study, "train")
    summary = {
        "name": src.name,
        "label": f"BEIR {src.name} (train: {train_split}, test: {test_split})",
        "license": "see the license of the source BEIR dataset",
        "source": {"path": str(src), "train_split": train_split, "test_split": test_split},
        "params": {"max_train_queries": max_train_queries, "max_test_queries": max_test_queries,
                   "max_docs": max_docs, "seed": seed},
        "counts": {
            "source_docs": len(ds.corpus), "docs": len(corpus), "queries": len(queries),
            "train_queries": len(train), "test_queries": len(test),
            "train_qrels": sum(map(len, train.values())), "test_qrels": sum(map(len, test.values())),
            "train_pairs": len(pairs),
            "multi_positive_train_queries": sum(1 for p in pairs if len(p.positive_ids) > 1),
            "train_queries_dropped_as_test_duplicates": len(leaked),
        },
        "notes": "No hidden positives: false negatives of mining cannot be counted exactly on BEIR data.",
    }
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        _write_beir_files(study, tmp)
        write_train_pairs(tmp / "train_pairs.jsonl", pairs)
        write_json(tmp / "dataset.json", summary)
    log.info("BEIR study data -> %s: %d docs, %d train / %d test queries", out_dir, len(corpus), len(train), len(test))
    return summary
