"""Atomic file writing and JSON-lines reading with precise error locations.

Every artifact nvr writes goes through :func:`atomic_write` (temporary file in the
same folder, fsync, rename), so an interrupted run never leaves a half-written file
under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .errors import DataError

PathLike = str | os.PathLike


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file next to ``path``; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # fixed name: a rerun reuses what a killed run left
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: PathLike):
    """Yield a temporary folder beside ``path``; on success it replaces ``path``.

    Used for multi-file artifacts (model checkpoints, BEIR folders).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # fixed name: a rerun clears what a killed run left
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: PathLike, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON atomically (keys sorted, so output is byte-stable)."""
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=indent, sort_keys=True, ensure_ascii=False)
        fh.write("\n")


def read_json(path: PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None


def write_jsonl(path: PathLike, rows: Iterable[dict]) -> int:
    """Write rows as JSON lines atomically; returns the number of rows."""
    n = 0
    with atomic_write(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=False))
            fh.write("\n")
            n += 1
    return n


def iter_jsonl(path: PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON-lines file.

    Raises :class:`DataError` naming ``file:line`` for malformed JSON or a line
    that is not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: malformed JSON: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def save_npy(path: PathLike, array: np.ndarray) -> None:
    """Save an array as .npy atomically."""
    with atomic_write(path, "wb", encoding=None) as fh:
        np.save(fh, array, allow_pickle=False)


def require_fields(obj: dict, fields: dict[str, type | tuple], where: str) -> None:
    """Check that ``obj`` has each field with the given type; ``where`` is ``file:line``."""
    for name, typ in fields.items():
        if name not in obj:
            raise DataError(f"{where}: missing field '{name}'")
        if not isinstance(obj[name], typ):
            tname = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise DataError(f"{where}: field '{name}' must be {tname}, got {type(obj[name]).__name__}")
