"""Embedding caches: reuse vectors only when every setting that made them is the same.

:func:`encode_cached` writes ``<path>`` (.npy) and ``<path>.manifest.json``; it reuses the
cache only when the manifest matches exactly (model fingerprint, every setting of the encoder's
cache key, the torch dtype, the texts' hash). :func:`encode_sharded` / :func:`encode_cached`
split the texts over torchrun processes (see :mod:`nvr.distributed`); the output equals one
process'.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np

from .. import distributed as D
from ..errors import DataError
from ..io import atomic_write, read_json, write_json
from ..runtime import log
from .encoder import Encoder, check_texts

MANIFEST_FORMAT = 1


def texts_sha256(texts) -> str:
    """Hash of the texts in order (length-prefixed, so boundaries count)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def encode_sharded(encoder: Encoder, texts: list[str], kind: str = "passage",
                   progress: bool = True) -> np.ndarray | None:
    """Encode under torchrun: each rank encodes a contiguous shard, rank 0 gets all.

    Returns the ``(n, dim)`` array on rank 0 and None on the other ranks; in a
    single process this is :meth:`Encoder.encode`.
    """
    rank, ws = D.world()
    if ws == 1:
        return encoder.encode(texts, kind, progress)
    check_texts(texts, kind)
    a, b = D.shard_range(len(texts), rank, ws)
    local = encoder.encode(list(texts[a:b]), kind, progress and rank == 0)
    return D.gather_rows(local, len(texts), dst=0)


def _manifest(encoder: Encoder, texts, kind: str) -> dict:
    from .. import __version__

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
    check_texts(texts, kind)
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
