"""Embedding caches: reuse vectors only when every setting that made them is the same.

:func:`encode_cached` writes ``<path>`` (.npy) and ``<path>.manifest.json``; it reuses the
cache only when the manifest matches exactly (model fingerprint, every setting of the encoder's
cache key, the torch dtype, the texts' hash). :func:`encode_sharded` / :func:`encode_cached`
split the texts over torchrun processes (see :mod:`nvr.distributed`); the output equals one
process' to float32 rounding (each shard batches its own texts).

A shared store (``$NVR_EMBEDDING_STORE``, default ``<nvr cache>/embeddings``; ``off`` disables it)
keeps every finished array under the hash of its manifest, so a corpus a teacher has embedded
once is reused by every profile, experiment and fresh checkout on the machine: a miss in the
project's cache first looks there (and links the array in) before encoding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
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


def shared_store() -> Path | None:
    """The machine-wide embedding store (``$NVR_EMBEDDING_STORE``; ``off`` -> None)."""
    env = os.environ.get("NVR_EMBEDDING_STORE")
    if env is not None and env.strip().lower() in ("", "off", "0", "none"):
        return None
    if env:
        return Path(env)
    from ..models import cache_root

    return cache_root() / "embeddings"


def _store_paths(store: Path, expected: dict) -> tuple[Path, Path]:
    digest = hashlib.sha256(json.dumps(expected, sort_keys=True).encode("utf-8")).hexdigest()
    return store / digest[:2] / f"{digest}.npy", store / digest[:2] / f"{digest}.npy.manifest.json"


def _link_atomic(src: Path, dst: Path) -> None:
    """Hard-link (else copy) ``src`` to ``dst`` through a temporary name: ``dst`` is whole or absent."""
    from ..io import sweep_stale, temp_path

    dst.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(dst)
    tmp = temp_path(dst)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _from_store(path: Path, man_path: Path, expected: dict) -> bool:
    """Link a matching array of the shared store into ``path``; False when there is none."""
    store = shared_store()
    if store is None:
        return False
    s_arr, s_man = _store_paths(store, expected)
    if _miss_reason(s_arr, s_man, expected) is not None:
        return False
    man_path.unlink(missing_ok=True)
    _link_atomic(s_arr, path)
    write_json(man_path, expected)
    return True


def _to_store(path: Path, expected: dict) -> None:
    """Publish a finished array to the shared store (best effort: a store that cannot be
    written costs a later re-encode, never this run)."""
    store = shared_store()
    if store is None:
        return
    s_arr, s_man = _store_paths(store, expected)
    try:
        _link_atomic(path, s_arr)
        write_json(s_man, expected)
    except OSError as exc:
        log.warning("encode: could not add %s to the shared store %s (%s)", path.name, store, exc)


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


#: rows encoded (and made durable) between two resume points of a long encode
RESUME_BLOCK = 32768


def _encode_resumable(encoder: Encoder, texts: list[str], kind: str, path: Path, expected: dict,
                      progress: bool) -> None:
    """Encode into ``.<name>.partial`` block by block, recording after each finished block how
    many rows are durable (``.<name>.partial.json``, with the manifest); a run killed part-way
    resumes from its last finished block when the manifest matches, then renames the array into
    place. A second process encoding the same file at the same time (the partial is locked)
    encodes on its own under a unique temporary name instead."""
    import fcntl

    n, dim = len(texts), encoder.dim
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    progress_file = path.with_name(f".{path.name}.partial.json")
    lock = open(path.with_name(f".{path.name}.lock"), "a")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:   # another process is encoding this file: do not share its partial
            with atomic_write(path, "wb", encoding=None) as fh:
                _write_npy(fh, n, dim, (b for _, b in encoder.iter_blocks(texts, kind, progress,
                                                                          block_size=RESUME_BLOCK)))
            return
        done = 0
        if partial.is_file() and progress_file.is_file():
            try:
                state = read_json(progress_file)
                arr = np.load(partial, mmap_mode="r")
                if state.get("manifest") == expected and arr.shape == (n, dim) and state.get("block") == RESUME_BLOCK:
                    done = int(state["rows_done"])
            except (DataError, ValueError, OSError, KeyError, TypeError):
                done = 0
        if done:
            log.info("encode: resuming %s at row %d of %d (a killed run's finished blocks)", path.name, done, n)
        else:
            progress_file.unlink(missing_ok=True)
            np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, dim)).flush()
        out = np.load(partial, mmap_mode="r+")
        for b0, block in encoder.iter_blocks(texts, kind, progress, block_size=RESUME_BLOCK, start=done):
            out[b0:b0 + len(block)] = block
            out.flush()   # the block's rows are on disk before the progress file says so
            write_json(progress_file, {"manifest": expected, "rows_done": b0 + len(block), "block": RESUME_BLOCK})
        del out
        with open(partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, path)
        progress_file.unlink(missing_ok=True)
    finally:
        lock.close()


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
    if rank == 0:
        _from_store(path, man_path, expected)
    D.barrier()  # rank 0 has linked the store's array in, if it had one (a filesystem all ranks share)
    if _miss_reason(path, man_path, expected) is None:
        log.info("encode: reusing %s from the shared store %s (%d %ss)", path, shared_store(), len(texts), kind)
        return np.load(path, mmap_mode="r")
    log.info("encode: %d %ss -> %s (%s)", len(texts), kind, path, reason)
    t0 = time.perf_counter()
    if rank == 0:
        man_path.unlink(missing_ok=True)  # never leave an old manifest beside a new array
    n, dim = len(texts), encoder.dim
    if ws == 1:
        _encode_resumable(encoder, texts, kind, path, expected, progress)
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
        _to_store(path, expected)
        log.info("encode: wrote %s in %.1fs", path, time.perf_counter() - t0)
    D.barrier()
    return np.load(path, mmap_mode="r")
