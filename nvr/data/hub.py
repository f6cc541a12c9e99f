"""BEIR datasets from the network: the public BEIR zips or MTEB's copies on the Hugging Face hub.

Needs a network; tested offline with monkeypatched downloads. Every downloaded folder is
validated with :func:`nvr.data.beir.load_beir` before it replaces its destination.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from ..errors import ConfigError, DataError
from ..io import atomic_dir, write_jsonl
from ..runtime import log
from .beir import PathLike, load_beir, write_qrels

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"


def _download(url: str, dest: Path) -> None:
    """Stream ``url`` to ``dest`` (a temporary name; the caller renames)."""
    import urllib.request

    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:  # noqa: S310 - fixed https URL
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {url.rsplit('/', 1)[-1]}") as bar:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def _hf_load_dataset(repo: str, config: str, revision: str | None = None):
    """``datasets.load_dataset(repo, config)``: a DatasetDict (kept separate for tests)."""
    import datasets

    return datasets.load_dataset(repo, config, revision=revision)


def _safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    root = dest.resolve()
    for member in zf.namelist():
        target = (dest / member).resolve()
        if root != target and root not in target.parents:
            raise DataError(f"{zf.filename}: unsafe path in zip: {member!r}")
    zf.extractall(dest)


def _find_beir_root(base: Path, sub: str | None) -> Path:
    if sub:
        cands = [p for p in base.rglob(sub) if (p / "corpus.jsonl").is_file()]
    else:
        cands = sorted({p.parent for p in base.rglob("corpus.jsonl")}, key=lambda p: len(p.parts))
    if not cands:
        raise DataError(f"{base}: downloaded archive holds no corpus.jsonl" + (f" under '{sub}'" if sub else ""))
    if not sub and len(cands) > 1 and len(cands[0].parts) == len(cands[1].parts):
        names = sorted(p.name for p in cands)
        raise DataError(
            f"{base}: archive holds several BEIR folders ({', '.join(names[:8])}...); "
            f"name one, e.g. '<dataset>/{names[0]}'"
        )
    return cands[0]


def _records_from_split_dict(dd) -> list[dict]:
    """All rows of a DatasetDict (or Dataset) as dicts."""
    from datasets import Dataset

    if isinstance(dd, Dataset):
        return list(dd)
    rows: list[dict] = []
    for split in dd.keys():
        rows.extend(dd[split])
    return rows


def _mteb_to_beir_files(name: str, tmp: Path, revision: str | None) -> None:
    repo = name if "/" in name else f"mteb/{name}"
    corpus = _records_from_split_dict(_hf_load_dataset(repo, "corpus", revision))
    queries = _records_from_split_dict(_hf_load_dataset(repo, "queries", revision))
    try:
        qrels = _hf_load_dataset(repo, "default", revision)
    except ValueError:
        qrels = _hf_load_dataset(repo, "qrels", revision)

    def idof(row):
        return str(row["_id"] if "_id" in row else row["id"])

    write_jsonl(tmp / "corpus.jsonl", (
        {"_id": idof(r), "title": r.get("title") or "", "text": r.get("text") or ""} for r in corpus
    ))
    write_jsonl(tmp / "queries.jsonl", ({"_id": idof(r), "text": r.get("text") or ""} for r in queries))
    for split in qrels.keys():
        rows: dict[str, dict[str, int]] = {}
        for r in qrels[split]:
            rows.setdefault(str(r["query-id"]), {})[str(r["corpus-id"])] = int(r["score"])
        write_qrels(tmp / "qrels" / f"{split}.tsv", rows)


def load_beir_hub(
    name: str,
    out_dir: PathLike,
    *,
    source: str = "beir",
    revision: str | None = None,
    url: str | None = None,
    strict: bool = True,
) -> Path:
    """Download a BEIR dataset into ``out_dir`` (validated, atomic) and return ``out_dir``.

    ``source="beir"``: the zip at the public BEIR URL (``name`` like ``scifact``, or
    ``cqadupstack/android`` for one folder inside a multi-folder zip); ``url`` overrides it.
    ``source="mteb"``: MTEB's hub copy (``mteb/<name>``, configs corpus / queries / default)
    through ``datasets.load_dataset`` (``revision`` pins the hub revision).
    Needs a network; the folder is validated with :func:`load_beir` before it replaces
    ``out_dir``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"dataset.path must name a BEIR dataset, got {name!r}")
    if source not in ("beir", "mteb"):
        raise ConfigError(f"dataset source must be 'beir' or 'mteb', got {source!r}")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        if source == "beir":
            zip_name, _, sub = name.partition("/")
            url = url or BEIR_URL.format(name=zip_name)
            work = Path(tempfile.mkdtemp(prefix=".beir-dl.", dir=out_dir.parent))
            try:
                archive = work / f"{zip_name}.zip"
                log.info("downloading %s", url)
                _download(url, archive)
                try:
                    with zipfile.ZipFile(archive) as zf:
                        _safe_extract(zf, work / "x")
                except zipfile.BadZipFile:
                    raise DataError(f"{url}: not a zip archive") from None
                root = _find_beir_root(work / "x", sub or None)
                for item in root.iterdir():
                    shutil.move(str(item), tmp / item.name)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        else:
            _mteb_to_beir_files(name, tmp, revision)
        ds = load_beir(tmp, strict=strict)
        if not strict:  # rewrite without the dropped rows so the folder validates strictly
            for split, q in ds.qrels.items():
                write_qrels(tmp / "qrels" / f"{split}.tsv", q)
    log.info("BEIR %s (%s) -> %s", name, source, out_dir)
    return out_dir


def beir_local_or_hub(path_or_name: PathLike, out_dir: PathLike | None = None, *, source: str = "beir") -> Path:
    """A local BEIR folder when ``path_or_name`` is one; else ``out_dir`` if it already holds
    a downloaded copy; else download ``path_or_name`` (a dataset name) into ``out_dir``."""
    p = Path(os.path.expanduser(str(path_or_name)))
    if p.is_dir():
        if not (p / "corpus.jsonl").is_file():
            raise DataError(f"{p}: not a BEIR folder (no corpus.jsonl)")
        return p
    if str(path_or_name).startswith((".", "/", "~")):
        raise DataError(f"{p}: BEIR folder not found")
    if out_dir is None:
        raise ConfigError(f"'{path_or_name}' is not a local folder; give out_dir to download it")
    out = Path(out_dir)
    if (out / "corpus.jsonl").is_file():
        return out
    return load_beir_hub(str(path_or_name), out, source=source)
