"""(anchor, positive) pairs and candidate corpora from the files users have: a Hugging Face
dataset (a hub name, or a local ``save_to_disk`` folder), parquet, CSV / TSV or JSON lines.

Pairs become nvr's training pairs: every distinct positive text a corpus document, every
distinct anchor a query whose positives are all the texts it is paired with (duplicate anchors
merged, so every positive of a query is masked). A separate candidate corpus (any of the same
formats with a text column, or a BEIR ``corpus.jsonl``) adds documents; texts already present
are not added twice (the twin of a positive *is* the positive, as in sentence-transformers).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, DataError
from .pairs import TrainPair

TABLE_SUFFIXES = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json"}


def load_table(ref: str | Path, *, split: str = "train", flag: str = "--dataset"):
    """A ``datasets.Dataset`` from a local folder saved with ``save_to_disk``, a parquet / CSV /
    TSV / JSON-lines file, or a hub dataset name (needs a network)."""
    import datasets

    path = Path(ref)
    try:
        if path.is_dir():
            if not any((path / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
                raise DataError(f"{flag} {path}: a folder, but not one written by datasets' save_to_disk")
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DataError(f"{flag} {path}: no split {split!r} (splits: {', '.join(ds)})")
                ds = ds[split]
            return ds
        if path.suffix.lower() in TABLE_SUFFIXES:
            if not path.is_file():
                raise DataError(f"{flag} {path}: file not found")
            kind = TABLE_SUFFIXES[path.suffix.lower()]
            if kind in ("csv", "json"):   # a byte that is not UTF-8: name the file and line, not a traceback
                from ..io import iter_lines

                for _ in iter_lines(path):
                    pass
            kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
            return datasets.load_dataset(kind, data_files=str(path), split="train", **kwargs)
        if path.exists():
            raise DataError(f"{flag} {path}: unknown format (a save_to_disk folder, .parquet, .csv, .tsv, "
                            f".jsonl or .json)")
        return datasets.load_dataset(str(ref), split=split)   # a hub name
    except (DataError, ConfigError):
        raise
    except Exception as exc:  # datasets' own errors: malformed files, missing hub datasets, no network
        raise DataError(f"{flag} {ref}: cannot be read as a dataset ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def column(ds, name: str | None, index: int, what: str, flag: str, option: str | None = None) -> str:
    """The column that holds the ``what`` texts: ``name`` when given (it must exist), else the
    ``index``-th column. ``flag`` names the input in errors, ``option`` the argument that chose
    the column (``--anchor-column`` on the command line, ``anchor_column_name`` in the API)."""
    cols = list(ds.column_names)
    if name is None:
        if len(cols) <= index:
            raise ConfigError(f"{flag}: the dataset has {len(cols)} column(s); need a {what} column")
        return cols[index]
    if name not in cols:
        raise ConfigError(f"{flag}: {option or f'--{what}-column'} {name!r} is not a column of the dataset "
                          f"(columns: {', '.join(cols)})")
    return name


def pairs_from_table(ds, *, anchor_column: str | None = None, positive_column: str | None = None,
                     corpus=None, corpus_column: str | None = None, where: str = "--dataset"):
    """``(corpus {doc_id: {"title", "text"}}, [TrainPair])`` from a pairs table (and an optional
    candidate corpus table, or a BEIR corpus dict)."""
    a_col = column(ds, anchor_column, 0, "anchor", where)
    p_col = column(ds, positive_column, 1, "positive", where)
    from .beir import doc_text

    docs: dict[str, dict] = {}
    index: dict[str, str] = {}
    if isinstance(corpus, dict):       # a BEIR corpus first: its own ids (a positive with its text is that doc)
        for doc_id, doc in corpus.items():
            index.setdefault(doc_text(doc), str(doc_id))
            docs[str(doc_id)] = doc
    fresh = iter(range(10**12))

    def add(text: str) -> str:
        if text not in index:
            new = next(f"d{i}" for i in fresh if f"d{i}" not in docs)   # never an id of the BEIR corpus
            index[text] = new
            docs[new] = {"title": "", "text": text}
        return index[text]

    order: list[str] = []
    positives: dict[str, list[str]] = {}
    for i, (q, p) in enumerate(zip(ds[a_col], ds[p_col])):
        for name, v in ((a_col, q), (p_col, p)):
            if not isinstance(v, str) or not v.strip():
                raise DataError(f"{where}: row {i}: column {name!r} must be a non-empty string, got {v!r}")
        d = add(p)
        if q not in positives:
            positives[q] = []
            order.append(q)
        if d not in positives[q]:
            positives[q].append(d)
    if corpus is not None and not isinstance(corpus, dict):   # a table of candidate texts
        col = column(corpus, corpus_column, 0, "corpus", "--corpus")
        for i, t in enumerate(corpus[col]):
            if not isinstance(t, str) or not t.strip():
                raise DataError(f"--corpus: row {i}: column {col!r} must be a non-empty string, got {t!r}")
            add(t)
    pairs = [TrainPair(query_id=f"q{i}", query=q, positive_ids=list(positives[q])) for i, q in enumerate(order)]
    return docs, pairs
