"""MTEB's view of an nvr model: one adapter around :class:`nvr.text.Encoder`.

Every model nvr scores (the base student, a teacher, a fine-tuned checkpoint) is encoded by
the same :class:`~nvr.text.encoder.Encoder` that mines and trains, so prefixes, truncation,
the instruction mask and pooling are identical at every step. :class:`MtebEncoder` is that
encoder as an MTEB ``AbsEncoder``: MTEB's ``prompt_type`` picks query or passage settings.

Its ``ModelMeta`` names the model ``nvr/<slug>`` and carries a revision that identifies the
weights: a content hash of the checkpoint folder (weights, config, tokenizer), of the loaded
state dict for a hub id or an in-memory model, or the caller's ``model_id``. The encoding
settings go into ``experiment_kwargs``. So MTEB's result cache cannot hand one checkpoint's
scores (or one setting's) to another.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from ..errors import ConfigError
from ..text.encoder import Encoder, EncoderConfig

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
_META_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
    "tokenizer.model", "added_tokens.json",
)


def checkpoint_hash(folder: str | os.PathLike) -> str:
    """SHA-256 over a checkpoint folder's weights, config and tokenizer files (names + bytes)."""
    folder = Path(folder)
    files = sorted({p for suf in _WEIGHT_SUFFIXES for p in folder.glob("*" + suf)}
                   | {folder / n for n in _META_FILES if (folder / n).is_file()})
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        raise ConfigError(f"model folder {folder} holds no weights file")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\x00")
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        h.update(b"\x00")
    return h.hexdigest()


def state_dict_hash(model) -> str:
    """SHA-256 over every tensor of a loaded model (names and float32 bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode() + b"\x00")
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def model_slug(ref: str) -> str:
    """A readable MTEB model name from a reference: the last three path parts, sanitized."""
    parts = [p for p in re.split(r"[\\/]+", str(ref).replace("pkg:", "")) if p and p not in (".", "..")]
    tail = "-".join(parts[-3:]) if parts else "model"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-") or "model"


def _texts(inputs) -> list[str]:
    texts: list[str] = []
    for batch in inputs:
        texts.extend(batch["text"])
    return texts


class MtebEncoder(AbsEncoder):
    """An nvr :class:`Encoder` as an MTEB encoder.

    ``model_ref``: ``pkg:...``, a local folder or a hub id (see :func:`nvr.models.resolve_model`),
    or an :class:`EncoderConfig`, or an :class:`Encoder` already built. The keyword settings
    (pooling, prefixes, lengths, ...) fill an :class:`EncoderConfig` when a reference is given.
    ``model_id`` replaces the content-hash revision (it must be unique per checkpoint);
    ``name`` replaces the slug of the reference.
    """

    def __init__(self, model_ref: str | EncoderConfig | Encoder = "pkg:all-MiniLM-L6-v2", *,
                 model_id: str | None = None, name: str | None = None, progress: bool = False,
                 **settings: Any) -> None:
        if isinstance(model_ref, Encoder):
            if settings:
                raise ConfigError(f"settings {sorted(settings)} cannot change an Encoder already built")
            self.encoder = model_ref
        else:
            cfg = model_ref if isinstance(model_ref, EncoderConfig) else EncoderConfig(model=str(model_ref))
            try:
                cfg = replace(cfg, **settings)
            except TypeError as exc:
                raise ConfigError(f"evaluate: unknown encoder setting ({exc})") from None
            cfg.validate("evaluate")
            self.encoder = Encoder(cfg)
        cfg = self.encoder.cfg
        self.cfg = cfg
        self.model_ref = cfg.model
        self.progress = progress
        path = self.encoder._path
        if model_id is not None:
            rev = str(model_id)
        elif path is not None and Path(path).is_dir():
            rev = checkpoint_hash(path)[:24]
        else:  # hub id or in-memory model: hash the loaded weights
            rev = state_dict_hash(self.encoder.model)[:24]
        self.revision = rev
        n_params = sum(p.numel() for p in self.encoder.model.parameters())
        self.mteb_model_meta = ModelMeta(
            loader=None,
            name=name if name and "/" in name else f"nvr/{name or model_slug(cfg.model)}",
            revision=rev,
            release_date=None,
            languages=None,
            n_parameters=int(n_params),
            memory_usage_mb=None,
            max_tokens=float(max(cfg.max_query_length, cfg.max_passage_length)),
            embed_dim=self.encoder.dim,
            license=None,
            open_weights=None,
            public_training_code=None,
            public_training_data=None,
            framework=["PyTorch"],
            similarity_fn_name=ScoringFunction.COSINE,
            use_instructions=bool(cfg.query_prefix or cfg.passage_prefix),
            training_datasets=None,
            experiment_kwargs=self.settings(),
        )

    def settings(self) -> dict:
        """The encoding settings (part of the MTEB cache key through experiment_kwargs)."""
        c = self.cfg

        def short(p):
            return hashlib.sha256(p.encode()).hexdigest()[:8] if p else "none"

        out = {"pooling": c.pooling, "qp": short(c.query_prefix), "pp": short(c.passage_prefix),
               "mql": c.max_query_length, "mpl": c.max_passage_length, "norm": int(c.normalize)}
        if c.mask_prefix_in_pool:
            out["mask"] = 1
        return out

    def encode_texts(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        """Embed ``texts`` as queries or passages: float32 ``(n, d)``."""
        if not len(texts):
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        return self.encoder.encode(list(texts), kind, progress=self.progress)

    def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
        """MTEB entry point: queries get the query prefix and length; documents and
        classification inputs the passage ones."""
        kind = "query" if prompt_type == PromptType.query else "passage"
        return self.encode_texts(_texts(inputs), kind)


class TextEncoderAdapter(AbsEncoder):
    """Any object with ``encode(texts, kind="query"|"passage") -> array`` as an MTEB encoder
    (for user code that is not an nvr Encoder). ``model_id`` must identify the checkpoint."""

    def __init__(self, encoder, model_id: str, name: str = "nvr/encoder") -> None:
        self.model = encoder
        self.mteb_model_meta = ModelMeta.create_empty(overwrites=dict(
            name=name if "/" in name else f"nvr/{name}", revision=str(model_id),
            similarity_fn_name=ScoringFunction.COSINE, framework=["PyTorch"]))

    def settings(self) -> dict:
        return {}

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
        kind = "query" if prompt_type == PromptType.query else "passage"
        return np.asarray(self.model.encode(_texts(inputs), kind=kind), dtype=np.float32)


def as_mteb_model(model_ref, model_id: str | None = None, **settings) -> AbsEncoder:
    """An MTEB encoder for a reference, an :class:`EncoderConfig`, an :class:`Encoder`, an MTEB
    encoder (returned as it is) or any object with ``encode(texts, kind=...)``."""
    if isinstance(model_ref, AbsEncoder):
        return model_ref
    if isinstance(model_ref, (str, os.PathLike, EncoderConfig)):
        return MtebEncoder(model_ref if isinstance(model_ref, EncoderConfig) else str(model_ref),
                           model_id=model_id, **settings)
    if isinstance(model_ref, Encoder):
        return MtebEncoder(model_ref, model_id=model_id)
    if hasattr(model_ref, "encode"):
        if model_id is None:
            raise ConfigError("model_id is required when evaluating an encoder object")
        return TextEncoderAdapter(model_ref, model_id)
    raise ConfigError(f"cannot evaluate a {type(model_ref).__name__}: give a model reference or an encoder")
