"""Inference embeddings of queries and passages with any Hugging Face model.

:class:`Encoder` wraps ``transformers.AutoModel`` (BERT-style encoders and decoder LLMs
alike) with the shared tokenizer (:mod:`nvr.text.tokenize`: prefixes, truncation,
instruction mask), length-sorted batching (:mod:`nvr.text.batching`) and pooling
(:mod:`nvr.text.pooling`). Texts come back in input order as float32 ``(n, dim)``.

Empty or whitespace-only texts (and non-strings) raise :class:`DataError` naming the index
(``passage text #12 is empty``): an empty passage would be encoded to the embedding of the
prefix alone and silently match everything.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..models import resolve_model
from ..runtime import DTYPES, log, torch_device, torch_dtype
from .backends import BACKENDS, OnnxRuntimeBackend, check_backend, cpu_has_native_bf16
from .batching import SORT_BLOCK, blocks, length_sorted_batches
from .pooling import POOLINGS, pool
from .tokenize import KINDS, TextTokenizer


@dataclass
class EncoderConfig:
    """How a model turns texts into vectors (a teacher while mining, a student when evaluated)."""

    model: str = "pkg:all-MiniLM-L6-v2"
    revision: str | None = None
    pooling: str = "mean"  # mean | cls | last (last token; left or right padding)
    query_prefix: str = ""  # e.g. "query: " (e5) or "Instruct: ...\nQuery: "
    passage_prefix: str = ""  # e.g. "passage: "
    max_query_length: int = 64  # tokens, prefix and special tokens included
    max_passage_length: int = 256
    normalize: bool = True
    batch_size: int = 64
    device: str = "auto"
    dtype: str = "auto"  # float32 is exact; bfloat16 on a CPU runs under autocast (fp32 weights)
    trust_remote_code: bool = False
    mask_prefix_in_pool: bool = False  # NV-Retriever: prefix tokens left out of mean pooling
    backend: str = "torch"  # torch | onnxruntime (CPU, float32): see nvr.text.backends

    def validate(self, where: str = "encoder") -> None:
        """Raise :class:`ConfigError` naming ``<where>.<field>`` for a bad value."""

        def bad(field, msg):
            raise ConfigError(f"{where}.{field}: {msg}, got {getattr(self, field)!r}")

        if not isinstance(self.model, str) or not self.model.strip():
            bad("model", "must be a non-empty string")
        if self.revision is not None and not isinstance(self.revision, str):
            bad("revision", "must be a string or null")
        if self.pooling not in POOLINGS:
            bad("pooling", f"must be one of {list(POOLINGS)}")
        for f in ("query_prefix", "passage_prefix"):
            if not isinstance(getattr(self, f), str):
                bad(f, "must be a string")
        for f in ("max_query_length", "max_passage_length", "batch_size"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(f, "must be a positive integer")
        for f in ("normalize", "trust_remote_code", "mask_prefix_in_pool"):
            if not isinstance(getattr(self, f), bool):
                bad(f, "must be true or false")
        if self.mask_prefix_in_pool and self.pooling != "mean":
            bad("mask_prefix_in_pool", "only applies to pooling 'mean'")
        if self.dtype not in DTYPES:
            bad("dtype", f"must be one of {list(DTYPES)}")
        if self.backend not in BACKENDS:
            bad("backend", f"must be one of {list(BACKENDS)}")
        if self.backend == "onnxruntime" and self.dtype not in ("auto", "float32", "fp32"):
            bad("dtype", "backend 'onnxruntime' runs float32 (dtype auto or float32)")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")
        ):
            bad("device", "must be auto, cpu, cuda, cuda:N or mps")

    def cache_key(self) -> dict:
        """Every setting that changes the embeddings (not batch size or device)."""
        keep = ("model", "revision", "pooling", "query_prefix", "passage_prefix",
                "max_query_length", "max_passage_length", "normalize",
                "mask_prefix_in_pool", "dtype")
        d = asdict(self)
        key = {k: d[k] for k in keep}
        if self.backend != "torch":   # torch keys stay as they were (caches made before backends existed)
            key["backend"] = self.backend
        return key

    def max_length(self, kind: str) -> int:
        return self.max_query_length if kind == "query" else self.max_passage_length


def check_texts(texts, kind: str) -> None:
    """Every text a non-empty string (the error names the index)."""
    if kind not in KINDS:
        raise ConfigError(f"encode: kind must be one of {list(KINDS)}, got {kind!r}")
    if isinstance(texts, str) or not hasattr(texts, "__len__"):
        raise DataError(f"encode: texts must be a list of strings, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"{kind} text #{i}: expected a string, got {type(t).__name__}")
        if not t.strip():
            raise DataError(f"{kind} text #{i} is empty")


class Encoder:
    """Encode queries / passages with a Hugging Face model.

    With ``model``/``tokenizer`` given, they are used as they are (device and dtype
    untouched; train mode restored after each call); otherwise both are loaded
    from ``resolve_model(cfg.model)`` with safetensors only.
    """

    def __init__(self, cfg: EncoderConfig, model=None, tokenizer=None):
        cfg.validate()
        self.cfg = cfg
        self._path = None
        if model is None or tokenizer is None:
            try:
                self._path = resolve_model(cfg.model)
            except ConfigError as exc:
                raise ConfigError(f"encoder.model: {exc}") from None
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = self._load(AutoTokenizer, revision=cfg.revision,
                                   trust_remote_code=cfg.trust_remote_code)
        self.autocast = None   # a CPU dtype for torch.autocast (bf16 on a CPU: fp32 weights, bf16 products)
        self._backend = None   # an inference backend other than the torch model (nvr.text.backends)
        if model is None:
            import torch
            from transformers import AutoModel

            device = torch_device(cfg.device)
            check_backend(cfg.backend, device)
            dtype = torch_dtype(cfg.dtype, device)
            if device == "cpu" and dtype == torch.bfloat16:
                self.autocast, dtype = torch.bfloat16, torch.float32
                if not cpu_has_native_bf16():
                    log.warning("encoder: dtype %s on a CPU without native bf16 (no AVX512-BF16 / AMX): "
                                "emulated, several times slower than float32", cfg.dtype)
            model = self._load(AutoModel, revision=cfg.revision, use_safetensors=True,
                               trust_remote_code=cfg.trust_remote_code, dtype=dtype)
            model.to(device)
            model.eval()
        else:
            check_backend(cfg.backend, str(next(model.parameters()).device))
        self.model = model
        self.tokenizer = tokenizer
        self.text = TextTokenizer(tokenizer, query_prefix=cfg.query_prefix, passage_prefix=cfg.passage_prefix,
                                  mask_prefix_in_pool=cfg.mask_prefix_in_pool)
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        mcfg = getattr(model, "config", None)
        self.dim = next((int(getattr(mcfg, a)) for a in ("hidden_size", "d_model", "n_embd", "dim")
                         if isinstance(getattr(mcfg, a, None), int)), None)
        if self.dim is None:  # exotic config: ask the model
            import torch

            with torch.inference_mode():
                self.dim = int(self._forward([[self.text.pad_id]], [0], "passage").shape[-1])
        max_pos = getattr(mcfg, "max_position_embeddings", None)
        for f in ("max_query_length", "max_passage_length"):
            if isinstance(max_pos, int) and getattr(cfg, f) > max_pos:
                raise ConfigError(f"encoder.{f}: {getattr(cfg, f)} exceeds the model's "
                                  f"max_position_embeddings ({max_pos})")
        self._fingerprint = None
        if cfg.backend == "onnxruntime":
            self._backend = OnnxRuntimeBackend(self.model, self.model_fingerprint())

    def _load(self, cls, **kw):
        try:
            return cls.from_pretrained(self._path, **kw)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"encoder.model: cannot load {self.cfg.model!r} ({self._path}): {exc}") from None

    # ---- model --------------------------------------------------------
    def _forward(self, seqs: list[list[int]], skips: list[int], kind: str):
        import torch

        batch = self.text.collate(seqs, skips, kind, self.device)
        if self._backend is not None:
            hidden = self._backend(batch["input_ids"], batch["attention_mask"])
        else:
            with torch.autocast("cpu", dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
                out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        emb = pool(hidden, batch["attention_mask"], self.cfg.pooling, batch.get("skip_mask"))
        if self.cfg.normalize:
            emb = torch.nn.functional.normalize(emb, dim=-1)
        return emb.cpu().numpy().astype(np.float32, copy=False)

    def iter_blocks(self, texts: list[str], kind: str = "passage", progress: bool = True,
                    block_size: int = SORT_BLOCK, start: int = 0):
        """Yield ``(start, embeddings)`` blocks covering ``texts[start:]`` in order."""
        import torch

        check_texts(texts, kind)
        n, bs = len(texts), self.cfg.batch_size
        bar = None
        if progress and n - start > 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, initial=start, desc="encode queries" if kind == "query" else "encode passages",
                       unit="text")
        max_len = self.cfg.max_length(kind)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for b0, b1 in blocks(n, block_size):
                    if b1 <= start:
                        continue
                    ids, skips = self.text.tokenize(texts[b0:b1], kind, max_len)
                    out = np.empty((b1 - b0, self.dim), dtype=np.float32)
                    for idx in length_sorted_batches([len(s) for s in ids], bs):
                        out[idx] = self._forward([ids[j] for j in idx], [skips[j] for j in idx], kind)
                        if bar is not None:
                            bar.update(len(idx))
                    yield b0, out
        finally:
            self.model.train(was_training)
            if bar is not None:
                bar.close()

    def encode(self, texts: list[str], kind: str = "passage", progress: bool = True) -> np.ndarray:
        """Embeddings ``float32 (n, dim)`` in the order of ``texts``."""
        check_texts(texts, kind)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for b0, block in self.iter_blocks(texts, kind, progress):
            out[b0:b0 + len(block)] = block
        return out

    # ---- identity for caches -------------------------------------------
    def model_fingerprint(self) -> str:
        """Cheap content hash of the weights (so a retrained folder invalidates caches).

        Local folder: names and sizes of every file, config.json in full, and the
        first and last MiB of each weight file. Hub id: id and revision. Model
        object: every tensor's name, shape, dtype and first/last 256 values.
        """
        if self._fingerprint is not None:
            return self._fingerprint
        h = hashlib.sha256()
        path = Path(self._path) if self._path else None
        if path is not None and path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                rel = f.relative_to(path).as_posix()
                size = f.stat().st_size
                h.update(f"{rel}\0{size}\0".encode())
                if rel == "config.json":
                    h.update(f.read_bytes())
                elif f.suffix in (".safetensors", ".bin", ".pt", ".pth", ".gguf"):
                    with open(f, "rb") as fh:
                        h.update(fh.read(1 << 20))
                        fh.seek(max(0, size - (1 << 20)))
                        h.update(fh.read(1 << 20))
        elif path is not None:
            h.update(f"hub:{self._path}@{self.cfg.revision}".encode())
        else:
            for name, t in self.model.state_dict().items():
                flat = t.detach().reshape(-1)
                h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
                sample = np.concatenate([flat[:256].float().cpu().numpy(), flat[-256:].float().cpu().numpy()])
                h.update(sample.tobytes())
        self._fingerprint = h.hexdigest()
        log.debug("model fingerprint %s", self._fingerprint[:12])
        return self._fingerprint
