"""Evaluation with MTEB 2.x: local BEIR retrieval (offline), hub tasks, topic classification.

How the pieces map onto MTEB (checked against mteb 2.26):

* :class:`LocalBEIRRetrieval` is an ``AbsTaskRetrieval`` whose ``load_data`` reads a BEIR
  folder with :func:`nvr.data.load_beir` and fills
  ``self.dataset = {"default": {split: {corpus, queries, relevant_docs, top_ranked}}}``
  (``corpus``/``queries`` are ``datasets.Dataset`` with ``id``/``title``/``text`` and
  ``id``/``text`` columns, ``relevant_docs`` is ``{qid: {doc_id: score}}``, ``top_ranked``
  is ``None`` for full-corpus retrieval). MTEB joins title and text as ``"title text"``
  (:func:`nvr.data.doc_text` does the same), ranks with the model's similarity, scores with
  ``pytrec_eval`` and reports ``ndcg_at_10`` as the main score.
* :class:`HFEncoderModel` is an ``AbsEncoder`` wrapping a Hugging Face folder (or a
  ``pkg:`` reference, a hub id, or an in-memory model) with mean / cls / last pooling,
  query / passage prefixes chosen by MTEB's ``prompt_type`` and separate max lengths.
  Its ``ModelMeta`` uses ``ScoringFunction.COSINE`` and a revision that is a content hash
  of the checkpoint (weights, config, tokenizer) unless the caller gives ``model_id``; the
  encoding settings go into ``experiment_kwargs``. So MTEB's result cache can never hand one
  checkpoint's scores to another. By default the evaluators run with ``cache=None`` and
  write nothing; with ``cache_dir`` the local task's name also carries a hash of the data.

Nothing here imports ``nvr.encode``: this module only needs ``transformers``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .data import load_beir
from .errors import ConfigError, DataError
from .runtime import log

import mteb
from mteb.abstasks.classification import AbsTaskClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from .encode import POOLINGS, pool  # one pooling for training, encoding and evaluation

# The 15 BEIR datasets of the NV-Retriever paper (Table 5), in the paper's order,
# mapped to MTEB task names.
BEIR_15: dict[str, str] = {
    "ArguAna": "ArguAna",
    "ClimateFEVER": "ClimateFEVER",
    "CQADupstack": "CQADupstackRetrieval",
    "DBPedia": "DBPedia",
    "FEVER": "FEVER",
    "FiQA": "FiQA2018",
    "HotpotQA": "HotpotQA",
    "MSMARCO": "MSMARCO",
    "NFCorpus": "NFCorpus",
    "NQ": "NQ",
    "Quora": "QuoraRetrieval",
    "SCIDOCS": "SCIDOCS",
    "SciFact": "SciFact",
    "Touche": "Touche2020",
    "TREC-COVID": "TRECCOVID",
}
BEIR_15_TASKS: list[str] = list(BEIR_15.values())

_WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack")
_META_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
    "tokenizer.model", "added_tokens.json",
)


# --------------------------------------------------------------------------------------
# Model wrapper


def checkpoint_hash(folder: str | os.PathLike) -> str:
    """SHA-256 over a checkpoint folder's weights, config and tokenizer files (names + bytes)."""
    folder = Path(folder)
    files = sorted({p for pat in _WEIGHT_FILES for p in folder.glob(pat)} |
                   {folder / n for n in _META_FILES if (folder / n).is_file()})
    if not any(p.suffix in {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack"} for p in files):
        raise ConfigError(f"model folder {folder} holds no weights file")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\x00")
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        h.update(b"\x00")
    return h.hexdigest()


def _state_dict_hash(model) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode() + b"\x00")
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _slug(ref: str) -> str:
    parts = [p for p in re.split(r"[\\/]+", ref.replace("pkg:", "")) if p and p not in (".", "..")]
    tail = "-".join(parts[-3:]) if parts else "model"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-") or "model"


class HFEncoderModel(AbsEncoder):
    """An MTEB encoder around a Hugging Face transformer.

    ``model_ref``: ``pkg:...``, a local folder or a hub id (see :func:`nvr.models.resolve_model`).
    Pass ``model``/``tokenizer`` to wrap objects already in memory (``model_ref`` then only names it).
    ``model_id`` replaces the content-hash revision (it must be unique per checkpoint).
    """

    def __init__(
        self,
        model_ref: str = "pkg:all-MiniLM-L6-v2",
        *,
        pooling: str = "mean",
        query_prefix: str = "",
        passage_prefix: str = "",
        max_query_length: int = 64,
        max_passage_length: int = 256,
        batch_size: int = 64,
        normalize: bool = True,
        device: str = "auto",
        dtype: str = "auto",
        revision: str | None = None,
        trust_remote_code: bool = False,
        model_id: str | None = None,
        model=None,
        tokenizer=None,
        progress: bool = False,
    ) -> None:
        import transformers
        from transformers import AutoModel, AutoTokenizer

        from .models import resolve_model
        from .runtime import torch_device, torch_dtype

        if pooling not in POOLINGS:
            raise ConfigError(f"evaluate.pooling must be one of {POOLINGS}, got {pooling!r}")
        for key, v in (("max_query_length", max_query_length), ("max_passage_length", max_passage_length),
                       ("batch_size", batch_size)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"evaluate.{key} must be a positive integer, got {v!r}")
        self.pooling = pooling
        self.query_prefix = query_prefix or ""
        self.passage_prefix = passage_prefix or ""
        self.max_query_length = max_query_length
        self.max_passage_length = max_passage_length
        self.batch_size = batch_size
        self.normalize = normalize
        self.progress = progress
        self.device = torch_device(device)
        self.model_ref = model_ref

        path = None
        if model is None:
            path = resolve_model(model_ref)
            dt = torch_dtype(dtype, self.device)
            # transformers >= 4.56 names it `dtype` (older: `torch_dtype`)
            major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
            dkw = {"dtype": dt} if (major, minor) >= (4, 56) else {"torch_dtype": dt}
            model = AutoModel.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code, **dkw)
        if tokenizer is None:
            tok_src = path if path is not None else getattr(model, "name_or_path", None)
            if not tok_src:
                raise ConfigError("pass tokenizer= along with an in-memory model")
            tokenizer = AutoTokenizer.from_pretrained(tok_src, revision=revision, trust_remote_code=trust_remote_code)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        if pooling == "last" and getattr(tokenizer, "pad_token", None) is None:
            tokenizer.pad_token = tokenizer.eos_token

        if model_id is not None:
            rev = str(model_id)
        elif path is not None and Path(path).is_dir():
            rev = checkpoint_hash(path)[:24]
        else:  # hub id or in-memory model: hash the loaded weights
            rev = _state_dict_hash(self.model)[:24]
        self.revision = rev
        n_params = sum(p.numel() for p in self.model.parameters())
        hidden = getattr(self.model.config, "hidden_size", None)
        self.mteb_model_meta = ModelMeta(
            loader=None,
            name=f"nvr/{_slug(str(model_ref))}",
            revision=rev,
            release_date=None,
            languages=None,
            n_parameters=int(n_params),
            memory_usage_mb=None,
            max_tokens=float(max(max_query_length, max_passage_length)),
            embed_dim=hidden,
            license=None,
            open_weights=None,
            public_training_code=None,
            public_training_data=None,
            framework=["PyTorch"],
            similarity_fn_name=ScoringFunction.COSINE,
            use_instructions=bool(self.query_prefix or self.passage_prefix),
            training_datasets=None,
            experiment_kwargs=self.settings(),
        )

    def settings(self) -> dict:
        """The encoding settings (part of the MTEB cache key through experiment_kwargs)."""
        return {
            "pooling": self.pooling,
            "qp": hashlib.sha256(self.query_prefix.encode()).hexdigest()[:8] if self.query_prefix else "none",
            "pp": hashlib.sha256(self.passage_prefix.encode()).hexdigest()[:8] if self.passage_prefix else "none",
            "mql": self.max_query_length,
            "mpl": self.max_passage_length,
            "norm": int(self.normalize),
        }

    def encode_texts(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        """Embed ``texts`` as queries or passages: float32 ``(n, d)``, L2-normalized if asked."""
        import torch
        from tqdm.auto import tqdm

        if kind not in ("query", "passage"):
            raise ConfigError(f"kind must be 'query' or 'passage', got {kind!r}")
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        max_len = self.max_query_length if kind == "query" else self.max_passage_length
        texts = [prefix + t for t in texts]
        if not texts:
            hidden = getattr(self.model.config, "hidden_size", 0)
            return np.zeros((0, hidden), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths batch together
        out: list[np.ndarray | None] = [None] * len(texts)
        starts = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for s in tqdm(starts, desc=f"encode {kind}s", disable=not self.progress, leave=False):
                idx = order[s:s + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=max_len, return_tensors="pt").to(self.device)
                hidden = self.model(**enc).last_hidden_state
                emb = pool(hidden, enc["attention_mask"], self.pooling).float()
                if self.normalize:
                    emb = torch.nn.functional.normalize(emb, p=2, dim=-1)
                emb = emb.cpu().numpy()
                for j, i in enumerate(idx):
                    out[i] = emb[j]
        return np.stack(out).astype(np.float32, copy=False)

    def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
        """MTEB entry point: collect the dataloader's texts, embed them (queries get the query
        prefix and length; documents and classification inputs the passage ones)."""
        texts: list[str] = []
        for batch in inputs:
            texts.extend(batch["text"])
        kind = "query" if prompt_type == PromptType.query else "passage"
        return self.encode_texts(texts, kind)


class TextEncoderAdapter(AbsEncoder):
    """Wrap any object with ``encode(texts, kind="query"|"passage") -> array`` (e.g.
    ``nvr.encode.Encoder``) as an MTEB encoder. ``model_id`` must identify the checkpoint."""

    def __init__(self, encoder, model_id: str, name: str = "nvr/encoder") -> None:
        self.model = encoder
        self.mteb_model_meta = ModelMeta.create_empty(overwrites=dict(
            name=name if "/" in name else f"nvr/{name}", revision=str(model_id),
            similarity_fn_name=ScoringFunction.COSINE, framework=["PyTorch"]))

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
        texts: list[str] = []
        for batch in inputs:
            texts.extend(batch["text"])
        kind = "query" if prompt_type == PromptType.query else "passage"
        return np.asarray(self.model.encode(texts, kind=kind), dtype=np.float32)


def _as_mteb_model(model_ref, model_id, **enc_kwargs) -> AbsEncoder:
    if isinstance(model_ref, AbsEncoder):
        return model_ref
    if isinstance(model_ref, (str, os.PathLike)):
        return HFEncoderModel(str(model_ref), model_id=model_id, **enc_kwargs)
    if hasattr(model_ref, "encode"):
        if model_id is None:
            raise ConfigError("model_id is required when evaluating an encoder object")
        return TextEncoderAdapter(model_ref, model_id)
    raise ConfigError(f"cannot evaluate a {type(model_ref).__name__}: give a model reference or an encoder")


# --------------------------------------------------------------------------------------
# Local BEIR retrieval task


def beir_fingerprint(beir_dir: str | os.PathLike, split: str) -> str:
    """SHA-256 of the files a local task reads (corpus, queries, the split's qrels)."""
    beir_dir = Path(beir_dir)
    h = hashlib.sha256()
    for rel in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        p = beir_dir / rel
        if not p.is_file():
            raise DataError(f"{p}: file not found")
        h.update(rel.encode() + b"\x00")
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _local_task_metadata(beir_dir: Path, split: str, name: str | None, fingerprint: str | None,
                         eval_langs: list[str] | None) -> TaskMetadata:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name or beir_dir.name) or "beir"
    return TaskMetadata(
        name=f"NvrLocal-{base}-{split}" + (f"-{fingerprint[:12]}" if fingerprint else ""),
        description=f"Local BEIR folder {beir_dir} (split {split}), evaluated by nvr.",
        reference=None,
        dataset={"path": str(beir_dir), "revision": fingerprint or "local-unhashed"},
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=[split],
        eval_langs=eval_langs or ["eng-Latn"],
        main_score="ndcg_at_10",
        sample_creation="found",
        bibtex_citation="",
    )


class LocalBEIRRetrieval(AbsTaskRetrieval):
    """An MTEB retrieval task over one split of a local BEIR folder.

    Build it with :func:`make_local_task`: MTEB expects ``metadata`` on the task *class*
    (``unload_data`` drops instance metadata), so the factory makes one subclass per task.
    """

    metadata: TaskMetadata  # set on the subclass by make_local_task

    def __init__(self, beir_dir: str | os.PathLike, split: str = "test", *, strict: bool = True,
                 seed: int = 42) -> None:
        if "metadata" not in type(self).__dict__:
            raise TypeError("create local tasks with nvr.evaluate.make_local_task(beir_dir, split)")
        self.beir_dir = Path(beir_dir)
        self.split = split
        self.strict = strict
        self.n_docs = self.n_queries = None
        super().__init__(seed=seed)

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        from datasets import Dataset

        if self.data_loaded:
            return
        ds = load_beir(self.beir_dir, splits=[self.split], strict=self.strict)
        qrels = ds.qrels[self.split]
        corpus = Dataset.from_dict({
            "id": list(ds.corpus),
            "title": [d.get("title", "") for d in ds.corpus.values()],
            "text": [d.get("text", "") for d in ds.corpus.values()],
        })
        qids = [q for q in ds.queries if q in qrels]
        queries = Dataset.from_dict({"id": qids, "text": [ds.queries[q] for q in qids]})
        self.dataset = {"default": {self.split: {
            "corpus": corpus, "queries": queries,
            "relevant_docs": {q: dict(d) for q, d in qrels.items()}, "top_ranked": None,
        }}}
        self.n_docs, self.n_queries = len(corpus), len(qids)
        self.data_loaded = True


def make_local_task(beir_dir: str | os.PathLike, split: str = "test", name: str | None = None, *,
                    with_fingerprint: bool = False, eval_langs: list[str] | None = None,
                    strict: bool = True, seed: int = 42) -> LocalBEIRRetrieval:
    """An MTEB retrieval task reading ``beir_dir`` (validated by :func:`nvr.data.load_beir`).

    The task is named ``NvrLocal-<name or folder>-<split>``; ``with_fingerprint`` appends a
    hash of the files read (needed when results are cached, so edited data never reuses
    old scores)."""
    beir_dir = Path(beir_dir)
    if not (beir_dir / "corpus.jsonl").is_file():
        raise DataError(f"{beir_dir / 'corpus.jsonl'}: file not found")
    if not (beir_dir / "qrels" / f"{split}.tsv").is_file():
        raise DataError(f"{beir_dir / 'qrels' / f'{split}.tsv'}: file not found")
    fp = beir_fingerprint(beir_dir, split) if with_fingerprint else None
    md = _local_task_metadata(beir_dir, split, name, fp, eval_langs)
    cls = type("LocalBEIRRetrieval_" + re.sub(r"\W", "_", md.name), (LocalBEIRRetrieval,), {"metadata": md})
    return cls(beir_dir, split, strict=strict, seed=seed)


def _run_mteb(model: AbsEncoder, tasks, *, batch_size: int, cache_dir):
    cache = None
    if cache_dir is not None:
        if isinstance(model, HFEncoderModel) or getattr(model.mteb_model_meta, "revision", None) not in (
            None, "no_revision_available"):
            cache = mteb.ResultCache(cache_path=Path(cache_dir))
        else:
            log.warning("model has no unique revision: running without MTEB's result cache")
    return mteb.evaluate(
        model, tasks, cache=cache,
        encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
        show_progress_bar=False, overwrite_strategy="only-missing",
    )


def _split_scores(task_result, split: str) -> dict:
    rows = task_result.scores.get(split)
    if not rows:
        raise DataError(f"MTEB returned no scores for split '{split}' of {task_result.task_name}")
    return dict(rows[0])


def evaluate_retrieval(
    model_ref,
    beir_dir: str | os.PathLike,
    split: str = "test",
    *,
    pooling: str = "mean",
    query_prefix: str = "",
    passage_prefix: str = "",
    max_query_length: int = 64,
    max_passage_length: int = 256,
    batch_size: int = 64,
    model_id: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    task_name: str | None = None,
) -> dict:
    """NDCG@10 (main), Recall@100, MRR@10, MAP@10 of a model on a local BEIR split, via MTEB.

    ``model_ref``: a model reference (``pkg:``/folder/hub id), an :class:`HFEncoderModel`, or an
    object with ``encode(texts, kind=...)`` (then ``model_id`` is required). Writes nothing
    unless ``cache_dir`` is given (MTEB's result cache, keyed by content hashes of model and data).
    """
    model = _as_mteb_model(model_ref, model_id, pooling=pooling, query_prefix=query_prefix,
                           passage_prefix=passage_prefix, max_query_length=max_query_length,
                           max_passage_length=max_passage_length, batch_size=batch_size, device=device)
    task = make_local_task(beir_dir, split, task_name, with_fingerprint=cache_dir is not None)
    import time

    t0 = time.perf_counter()
    res = _run_mteb(model, [task], batch_size=batch_size, cache_dir=cache_dir)
    scores = _split_scores(res.task_results[0], split)
    meta = model.mteb_model_meta
    out = {
        "ndcg_at_10": float(scores["ndcg_at_10"]),
        "recall_at_100": float(scores["recall_at_100"]),
        "mrr_at_10": float(scores["mrr_at_10"]),
        "map_at_10": float(scores["map_at_10"]),
        "main_score": float(scores["main_score"]),
        "split": split,
        "task": task.metadata.name,
        "beir_dir": str(beir_dir),
        "model": {"name": meta.name, "revision": meta.revision, "ref": str(getattr(model, "model_ref", model_id))},
        "settings": model.settings() if isinstance(model, HFEncoderModel) else {},
        "mteb_version": mteb.__version__,
        "seconds": round(time.perf_counter() - t0, 2),
        "mteb_scores": scores,
    }
    if getattr(task, "n_queries", None) is not None:
        out["n_queries"], out["n_docs"] = task.n_queries, task.n_docs
    log.info("eval %s on %s (split %s): NDCG@10 %.4f, R@100 %.4f, MRR@10 %.4f",
             meta.name, beir_dir, split, out["ndcg_at_10"], out["recall_at_100"], out["mrr_at_10"])
    return out


# --------------------------------------------------------------------------------------
# Hub tasks (need a network)


def resolve_hub_tasks(task_names: Sequence[str]) -> list:
    """MTEB task objects for paper names (``FiQA``) or MTEB names (``FiQA2018``), in the given
    order. Metadata only: nothing is downloaded until a task is evaluated."""
    names = [BEIR_15.get(n, n) for n in task_names]
    try:
        found = {t.metadata.name: t for t in mteb.get_tasks(tasks=names)}
    except KeyError as exc:
        raise ConfigError(f"unknown MTEB task in {list(task_names)}: {exc}; BEIR names: {sorted(BEIR_15)}") from None
    missing = [n for n in names if n not in found]
    if missing:
        raise ConfigError(f"unknown MTEB task(s) {missing}; BEIR names: {sorted(BEIR_15)}")
    return [found[n] for n in names]


def evaluate_hub_tasks(
    model_ref,
    task_names: Sequence[str] = ("NQ", "HotpotQA", "FiQA2018"),
    *,
    pooling: str = "mean",
    query_prefix: str = "",
    passage_prefix: str = "",
    max_query_length: int = 64,
    max_passage_length: int = 512,
    batch_size: int = 64,
    model_id: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
) -> dict:
    """Score a model on MTEB hub tasks (downloads the data; needs a network).

    Returns ``{"order": [...], "ndcg_at_10": {task: score}, "average": mean, "mteb_scores": {...}}``
    with tasks in the order given (use ``BEIR_15_TASKS`` for the paper's table)."""
    tasks = resolve_hub_tasks(task_names)
    model = _as_mteb_model(model_ref, model_id, pooling=pooling, query_prefix=query_prefix,
                           passage_prefix=passage_prefix, max_query_length=max_query_length,
                           max_passage_length=max_passage_length, batch_size=batch_size, device=device)
    res = _run_mteb(model, tasks, batch_size=batch_size, cache_dir=cache_dir)
    by_name = {r.task_name: r for r in res.task_results}
    table, raw = {}, {}
    for t in tasks:
        r = by_name.get(t.metadata.name)
        if r is None:
            continue
        split = t.metadata.eval_splits[0]
        sc = _split_scores(r, split)
        table[t.metadata.name] = float(sc["main_score"])
        raw[t.metadata.name] = sc
    order = [t.metadata.name for t in tasks]
    return {
        "order": order,
        "ndcg_at_10": table,
        "average": float(np.mean(list(table.values()))) if table else None,
        "model": {"name": model.mteb_model_meta.name, "revision": model.mteb_model_meta.revision},
        "mteb_scores": raw,
    }


# --------------------------------------------------------------------------------------
# Classification (stage-2 topic task)


class _LocalClassification(AbsTaskClassification):
    metadata = TaskMetadata(
        name="NvrLocalClassification", description="In-memory classification task evaluated by nvr.",
        reference=None, dataset={"path": "in-memory", "revision": "none"},
        type="Classification", category="t2c", modalities=["text"], eval_splits=["test"],
        eval_langs=["eng-Latn"], main_score="accuracy", sample_creation="found", bibtex_citation="",
    )

    def __init__(self, data, *, samples_per_label: int, n_experiments: int, seed: int) -> None:
        self.samples_per_label = samples_per_label
        self.n_experiments = n_experiments
        self._data = data
        super().__init__(seed=seed)

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        self.dataset = self._data
        self.data_loaded = True


def evaluate_classification(
    model_ref,
    texts_train: Sequence[str],
    labels_train: Sequence,
    texts_test: Sequence[str],
    labels_test: Sequence,
    *,
    pooling: str = "mean",
    prefix: str = "",
    max_length: int = 256,
    batch_size: int = 64,
    samples_per_label: int | None = None,
    n_experiments: int = 1,
    seed: int = 42,
    model_id: str | None = None,
    device: str = "auto",
) -> dict:
    """MTEB's own classification protocol on embeddings: ``AbsTaskClassification`` with its
    ``LogisticRegression(max_iter=100)`` fitted on (undersampled) training embeddings,
    averaged over ``n_experiments``. ``samples_per_label=None`` trains on every example
    (MTEB's default for many tasks is 8 per label, 10 experiments). Returns accuracy, macro F1,
    weighted F1 and MTEB's raw scores. Writes nothing."""
    from datasets import Dataset, DatasetDict

    if len(texts_train) != len(labels_train) or len(texts_test) != len(labels_test):
        raise DataError("texts and labels differ in length")
    if not texts_train or not texts_test:
        raise DataError("classification needs training and test examples")
    classes = sorted({str(x) for x in labels_train})
    unknown = {str(x) for x in labels_test} - set(classes)
    if unknown:
        raise DataError(f"test labels never seen in training: {sorted(unknown)[:5]}")
    if len(classes) < 2:
        raise DataError("classification needs at least two labels in training")
    index = {c: i for i, c in enumerate(classes)}
    y_train = [index[str(x)] for x in labels_train]
    y_test = [index[str(x)] for x in labels_test]
    if samples_per_label is None:
        samples_per_label = max(np.bincount(y_train))
    data = DatasetDict({
        "train": Dataset.from_dict({"text": list(texts_train), "label": y_train}),
        "test": Dataset.from_dict({"text": list(texts_test), "label": y_test}),
    })
    model = _as_mteb_model(model_ref, model_id, pooling=pooling, passage_prefix=prefix,
                           max_passage_length=max_length, batch_size=batch_size, device=device)
    task = _LocalClassification(data, samples_per_label=int(samples_per_label),
                                n_experiments=n_experiments, seed=seed)
    import warnings

    from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning

    with warnings.catch_warnings():  # MTEB's macro precision on small test sets; LR at max_iter=100
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = mteb.evaluate(model, [task], cache=None, show_progress_bar=False, overwrite_strategy="always",
                            encode_kwargs={"batch_size": batch_size, "show_progress_bar": False})
    sc = _split_scores(res.task_results[0], "test")
    return {
        "accuracy": float(sc["accuracy"]),
        "f1": float(sc["f1"]),
        "f1_weighted": float(sc["f1_weighted"]),
        "n_train": len(y_train),
        "n_test": len(y_test),
        "n_labels": len(classes),
        "labels": classes,
        "model": {"name": model.mteb_model_meta.name, "revision": model.mteb_model_meta.revision},
        "mteb_scores": {k: v for k, v in sc.items() if k != "scores_per_experiment"},
    }
