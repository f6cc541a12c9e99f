"""Hugging Face encoders: prefixes / instructions, pooling, length-sorted batching, caches.

* :class:`Encoder` wraps any ``transformers.AutoModel`` (BERT-style encoders and
  decoder LLMs alike) with mean / cls / last-token pooling. Texts are tokenized
  once, sorted by token length inside blocks of :data:`SORT_BLOCK` texts, batched
  (so little work goes into padding) and written back in the input order.
* ``mask_prefix_in_pool``: NV-Retriever's mean pooling leaves the instruction
  (the prefix) out of the pool. The prefix is tokenized alone (no special
  tokens); for each text, the tokens after the leading special tokens that match
  it are excluded from the mean. Special tokens ([CLS], [SEP], <s>) stay in the
  pool, as in sentence-transformers. If nothing but the prefix is left after
  truncation, that text is pooled over all its tokens.
* Empty or whitespace-only texts (and non-strings) raise :class:`DataError`
  naming the index (``passage text #12 is empty``): an empty passage would be
  encoded to the embedding of the prefix alone and silently match everything.
* :func:`encode_cached` writes ``<path>`` (.npy) and ``<path>.manifest.json``;
  it reuses the cache only when the manifest matches exactly.
* :func:`encode_sharded` / :func:`encode_cached` split the texts over torchrun
  processes (see :mod:`nvr.distributed`); the output equals one process'.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import distributed as D
from .errors import ConfigError, DataError
from .io import atomic_write, read_json, write_json
from .models import resolve_model
from .runtime import log, torch_device, torch_dtype

POOLINGS = ("mean", "cls", "last")
KINDS = ("query", "passage")
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
SORT_BLOCK = 32768  # texts tokenized and length-sorted together (bounds token memory)
MANIFEST_FORMAT = 1


@dataclass
class EncoderConfig:
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
    dtype: str = "auto"
    trust_remote_code: bool = False
    mask_prefix_in_pool: bool = False  # NV-Retriever: prefix tokens left out of mean pooling

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
        return {k: d[k] for k in keep}


def pool(hidden, attention_mask, pooling: str, skip_mask=None):
    """Pool token states ``(B, L, H)`` to ``(B, H)`` float32.

    ``mean``: average over attended tokens not in ``skip_mask`` (rows left with no
    token fall back to all attended tokens); ``cls``: the first attended token;
    ``last``: the last attended token (works with left and right padding).
    """
    import torch

    mask = attention_mask.bool()
    h = hidden.float()
    if pooling == "mean":
        keep = mask
        if skip_mask is not None:
            keep = mask & ~skip_mask.bool()
            keep = torch.where(keep.any(1, keepdim=True), keep, mask)
        w = keep.to(h.dtype)
        summed = torch.bmm(w.unsqueeze(1), h).squeeze(1)
        return summed / w.sum(1, keepdim=True).clamp(min=1e-9)
    rows = torch.arange(h.shape[0], device=h.device)
    if pooling == "cls":
        idx = mask.int().argmax(1)
    elif pooling == "last":
        idx = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)
    else:
        raise ConfigError(f"encoder.pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    return h[rows, idx]


def _check_texts(texts, kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"encode: kind must be one of {list(KINDS)}, got {kind!r}")
    if isinstance(texts, str) or not hasattr(texts, "__len__"):
        raise DataError(f"encode: texts must be a list of strings, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"{kind} text #{i}: expected a string, got {type(t).__name__}")
        if not t.strip():
            raise DataError(f"{kind} text #{i} is empty")


def texts_sha256(texts) -> str:
    """Hash of the texts in order (length-prefixed, so boundaries count)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


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
        if model is None:
            from transformers import AutoModel

            device = torch_device(cfg.device)
            dtype = torch_dtype(cfg.dtype, device)
            model = self._load(AutoModel, revision=cfg.revision, use_safetensors=True,
                               trust_remote_code=cfg.trust_remote_code, dtype=dtype)
            model.to(device)
            model.eval()
        self.model = model
        self.tokenizer = tokenizer
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        mcfg = getattr(model, "config", None)
        self.dim = next((int(getattr(mcfg, a)) for a in ("hidden_size", "d_model", "n_embd", "dim")
                         if isinstance(getattr(mcfg, a, None), int)), None)
        if self.dim is None:  # exotic config: ask the model
            import torch

            with torch.inference_mode():
                self.dim = int(self._forward([[self._pad_id()]], [0])[0].shape[-1])
        max_pos = getattr(mcfg, "max_position_embeddings", None)
        for f in ("max_query_length", "max_passage_length"):
            if isinstance(max_pos, int) and getattr(cfg, f) > max_pos:
                raise ConfigError(f"encoder.{f}: {getattr(cfg, f)} exceeds the model's "
                                  f"max_position_embeddings ({max_pos})")
        self._prefix_info = {k: self._prefix_tokens(k) for k in KINDS}
        self._fingerprint = None

    def _load(self, cls, **kw):
        try:
            return cls.from_pretrained(self._path, **kw)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"encoder.model: cannot load {self.cfg.model!r} ({self._path}): {exc}") from None

    # ---- tokenization -------------------------------------------------
    def _pad_id(self) -> int:
        tok = self.tokenizer
        for v in (tok.pad_token_id, tok.eos_token_id, 0):
            if v is not None:
                return int(v)
        return 0

    def _prefix(self, kind: str) -> str:
        return self.cfg.query_prefix if kind == "query" else self.cfg.passage_prefix

    def _prefix_tokens(self, kind: str) -> tuple[int, list[int]]:
        """(number of leading special tokens, the prefix's own token ids)."""
        prefix = self._prefix(kind)
        if not (prefix and self.cfg.mask_prefix_in_pool):
            return 0, []
        tok = self.tokenizer
        with_sp = tok("a", add_special_tokens=True)["input_ids"]
        without = tok("a", add_special_tokens=False)["input_ids"]
        n_lead = next((i for i in range(len(with_sp) - len(without) + 1)
                       if with_sp[i:i + len(without)] == without), 0)
        return n_lead, list(tok(prefix, add_special_tokens=False)["input_ids"])

    def _tokenize(self, texts: list[str], kind: str) -> tuple[list[list[int]], list[int]]:
        """Token ids (truncated, special tokens added) and prefix-token counts per text."""
        prefix = self._prefix(kind)
        max_len = self.cfg.max_query_length if kind == "query" else self.cfg.max_passage_length
        ids = self.tokenizer([prefix + t for t in texts], add_special_tokens=True, truncation=True,
                             max_length=max_len, return_attention_mask=False,
                             return_token_type_ids=False)["input_ids"]
        n_lead, p_ids = self._prefix_info[kind]
        skips = [0] * len(ids)
        if p_ids:
            m = len(p_ids)
            for j, seq in enumerate(ids):
                head = seq[n_lead:n_lead + m]
                if head == p_ids:
                    skips[j] = len(head)
                else:  # the prefix merged with the text at the boundary: mask what matches
                    c = 0
                    while c < len(head) and head[c] == p_ids[c]:
                        c += 1
                    skips[j] = c
        return ids, skips

    # ---- model --------------------------------------------------------
    def _forward(self, seqs: list[list[int]], skips: list[int], n_lead: int = 0):
        import torch

        L = max(len(s) for s in seqs)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        ids = np.full((len(seqs), L), self._pad_id(), dtype=np.int64)
        att = np.zeros((len(seqs), L), dtype=np.int64)
        skip = np.zeros((len(seqs), L), dtype=bool) if any(skips) else None
        for r, s in enumerate(seqs):
            a = L - len(s) if left else 0
            ids[r, a:a + len(s)] = s
            att[r, a:a + len(s)] = 1
            if skip is not None and skips[r]:
                skip[r, a + n_lead:a + n_lead + skips[r]] = True
        dev = self.device
        att_t = torch.from_numpy(att).to(dev)
        out = self.model(input_ids=torch.from_numpy(ids).to(dev), attention_mask=att_t)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        emb = pool(hidden, att_t, self.cfg.pooling,
                   None if skip is None else torch.from_numpy(skip).to(dev))
        if self.cfg.normalize:
            emb = torch.nn.functional.normalize(emb, dim=-1)
        return emb.cpu().numpy().astype(np.float32, copy=False)

    def iter_blocks(self, texts: list[str], kind: str = "passage", progress: bool = True):
        """Yield ``(start, embeddings)`` blocks covering ``texts`` in order."""
        import torch

        _check_texts(texts, kind)
        n, bs = len(texts), self.cfg.batch_size
        bar = None
        if progress and n:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="encode queries" if kind == "query" else "encode passages", unit="text")
        n_lead = self._prefix_info[kind][0]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for b0 in range(0, n, SORT_BLOCK):
                    block = list(texts[b0:b0 + SORT_BLOCK])
                    ids, skips = self._tokenize(block, kind)
                    lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
                    order = np.argsort(-lengths, kind="stable")  # longest first: OOM shows early
                    out = np.empty((len(block), self.dim), dtype=np.float32)
                    for s0 in range(0, len(order), bs):
                        idx = order[s0:s0 + bs]
                        out[idx] = self._forward([ids[j] for j in idx], [skips[j] for j in idx], n_lead)
                        if bar is not None:
                            bar.update(len(idx))
                    yield b0, out
        finally:
            self.model.train(was_training)
            if bar is not None:
                bar.close()

    def encode(self, texts: list[str], kind: str = "passage", progress: bool = True) -> np.ndarray:
        """Embeddings ``float32 (n, dim)`` in the order of ``texts``."""
        _check_texts(texts, kind)
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
        return self._fingerprint


def encode_sharded(encoder: Encoder, texts: list[str], kind: str = "passage",
                   progress: bool = True) -> np.ndarray | None:
    """Encode under torchrun: each rank encodes a contiguous shard, rank 0 gets all.

    Returns the ``(n, dim)`` array on rank 0 and None on the other ranks; in a
    single process this is :meth:`Encoder.encode`.
    """
    rank, ws = D.world()
    if ws == 1:
        return encoder.encode(texts, kind, progress)
    _check_texts(texts, kind)
    a, b = D.shard_range(len(texts), rank, ws)
    local = encoder.encode(list(texts[a:b]), kind, progress and rank == 0)
    return D.gather_rows(local, len(texts), dst=0)


def _manifest(encoder: Encoder, texts, kind: str) -> dict:
    from . import __version__

    return {
        "format": MANIFEST_FORMAT,
        "key": encoder.cfg.cache_key(),
        "torch_dtype": str(encoder.dtype).replace("torch.", ""),
        "model_fingerprint": encoder.model_fingerprint(),
        "kind": kind,
        "n": len(texts),
        "dim": encoder.dim,
        "texts_sha256": texts_sha256(texts),
        "nvr_version": __version__,
    }


def _miss_reason(path: Path, man_path: Path, expected: dict) -> str | None:
    if not path.is_file() or not man_path.is_file():
        return "no cache"
    try:
        found = read_json(man_path)
    except DataError as exc:
        return f"unreadable manifest ({exc})"
    if not isinstance(found, dict):
        return "malformed manifest"
    diff = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
    if diff:
        return "manifest differs in " + ", ".join(diff)
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        return f"unreadable array ({exc})"
    if arr.dtype != np.float32 or arr.shape != (expected["n"], expected["dim"]):
        return f"array is {arr.dtype} {arr.shape}, expected float32 {(expected['n'], expected['dim'])}"
    return None


def _write_npy(fh, n: int, dim: int, blocks) -> None:
    """Stream float32 row blocks (in order) into an open .npy file."""
    np.lib.format.write_array_header_1_0(
        fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
             "fortran_order": False, "shape": (n, dim)})
    rows = 0
    for block in blocks:
        for r0 in range(0, len(block), 16384):  # bounded copies, also from memory maps
            piece = np.ascontiguousarray(block[r0:r0 + 16384], dtype=np.float32)
            fh.write(piece.tobytes())
            rows += len(piece)
    if rows != n:
        raise RuntimeError(f"wrote {rows} rows, expected {n}")


def encode_cached(encoder: Encoder, texts: list[str], kind: str, path, progress: bool = True) -> np.ndarray:
    """Encode ``texts`` into ``path`` (.npy) unless a matching cache is there.

    ``<path>.manifest.json`` holds the encoder's cache key, the effective torch
    dtype, a model fingerprint, kind, n, dim, the sha256 of the texts in order
    and the nvr version; any difference re-encodes (the reason is logged).
    Returns the array memory-mapped read-only. Embeddings are streamed to disk
    block by block, so memory stays bounded for any corpus size.

    Under torchrun every rank must call this with the same arguments; each
    encodes its shard into ``.<name>.part<rank>.npy`` beside ``path`` (a
    filesystem all ranks share), rank 0 joins them, and every rank returns the map.
    """
    _check_texts(texts, kind)
    path = Path(path)
    man_path = path.with_name(path.name + ".manifest.json")
    expected = _manifest(encoder, texts, kind)
    reason = _miss_reason(path, man_path, expected)
    rank, ws = D.world()
    D.barrier()  # every rank has checked before rank 0 touches the files
    if reason is None:
        log.info("encode: reusing %s (%d %ss, dim %d)", path, len(texts), kind, encoder.dim)
        return np.load(path, mmap_mode="r")
    log.info("encode: %d %ss -> %s (%s)", len(texts), kind, path, reason)
    t0 = time.perf_counter()
    if rank == 0:
        man_path.unlink(missing_ok=True)  # never leave an old manifest beside a new array
    n, dim = len(texts), encoder.dim
    if ws == 1:
        with atomic_write(path, "wb", encoding=None) as fh:
            _write_npy(fh, n, dim, (b for _, b in encoder.iter_blocks(texts, kind, progress)))
    else:
        a, b = D.shard_range(n, rank, ws)
        part = path.with_name(f".{path.name}.part{rank}.npy")
        blocks = (x for _, x in encoder.iter_blocks(list(texts[a:b]), kind, progress and rank == 0))
        with atomic_write(part, "wb", encoding=None) as fh:
            _write_npy(fh, b - a, dim, blocks)
        D.barrier()
        if rank == 0:
            parts = [path.with_name(f".{path.name}.part{r}.npy") for r in range(ws)]
            with atomic_write(path, "wb", encoding=None) as fh:
                _write_npy(fh, n, dim, (np.load(p, mmap_mode="r") for p in parts))
            for p in parts:
                os.unlink(p)
    if rank == 0:
        write_json(man_path, expected)
        log.info("encode: wrote %s in %.1fs", path, time.perf_counter() - t0)
    D.barrier()
    return np.load(path, mmap_mode="r")
