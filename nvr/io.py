"""Atomic file writing and line-exact reading.

Every artifact nvr writes goes through :func:`atomic_write` or :func:`atomic_dir`: the bytes go
to a temporary name beside the target (``.<name>.<pid>-<random>.tmp``, unique per writer, so
two runs writing into one folder never collide), are flushed to disk, and are renamed over the
target only when complete. An interrupted run never leaves a half-written file under the final
name; the temporary files a killed run left behind are removed by the next writer of the same
target (only those whose process is gone). :func:`publish` renames several finished files as one
step (an output and its statistics): a journal makes a kill between the renames roll forward
on the next call, so readers through nvr never see a new output beside an old run's stats.

Reading: :func:`iter_lines` decodes UTF-8 line by line and :func:`iter_jsonl` parses JSON lines;
every problem (a byte that is not UTF-8, malformed JSON, a line that is not an object) raises
:class:`~nvr.errors.DataError` naming ``file:line``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .errors import DataError, read_utf8

PathLike = str | os.PathLike

_JOURNAL_SUFFIX = ".publish.json"


# --------------------------------------------------------------------------- temporary names
def temp_path(path: PathLike) -> Path:
    """A fresh temporary name beside ``path``: ``.<name>.<pid>-<random>.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(path: PathLike) -> int:
    """Remove temporary files / folders of ``path`` left by writers that no longer run."""
    path = Path(path)
    n = 0
    if not path.parent.is_dir():
        return 0
    prefix = f".{path.name}."
    for p in path.parent.iterdir():
        name = p.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid_part = name[len(prefix):-len(".tmp")].split("-", 1)[0]
        if not pid_part.isdigit() or _alive(int(pid_part)):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            n += 1
    return n


# --------------------------------------------------------------------------- atomic writers
@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file next to ``path``; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    with staged_file(path, mode, encoding) as (fh, tmp):
        yield fh
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def staged_file(path: PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Like :func:`atomic_write` but leave the finished temporary file for :func:`publish`.

    Yields ``(fh, tmp_path)``; on an exception the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    tmp = temp_path(path)
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with open(tmp, mode, **kwargs) as fh:
            yield fh, tmp
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _journal(first: Path) -> Path:
    return first.with_name(f".{first.name}{_JOURNAL_SUFFIX}")


def publish(pairs: list[tuple[Path, Path]]) -> None:
    """Rename finished temporary files over their targets as one step: ``[(tmp, final), ...]``.

    A journal beside the first target lists the renames before any is made; a kill part-way
    leaves the journal, and :func:`recover` (called by every :func:`publish` and by readers of
    published outputs) completes the renames. The journal is removed last.
    """
    if not pairs:
        return
    first = Path(pairs[0][1])
    recover(first)
    journal = _journal(first)
    with atomic_write(journal) as fh:
        json.dump([[str(t), str(f)] for t, f in pairs], fh)
    _apply_journal(journal)


def _apply_journal(journal: Path) -> None:
    for tmp, final in json.loads(journal.read_text(encoding="utf-8")):
        if os.path.exists(tmp):
            os.replace(tmp, final)
    journal.unlink()


def recover(first_target: PathLike) -> bool:
    """Complete an interrupted :func:`publish` whose first target is ``first_target``."""
    journal = _journal(Path(first_target))
    if not journal.is_file():
        return False
    try:
        _apply_journal(journal)
    except (OSError, ValueError) as exc:
        raise DataError(f"{journal}: cannot complete an interrupted publish ({exc}); remove it and rerun") from None
    return True


def recover_dir(folder: PathLike) -> int:
    """Complete every interrupted :func:`publish` whose first target lies in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for journal in sorted(folder.glob(f".*{_JOURNAL_SUFFIX}")):
        target = journal.with_name(journal.name[1:-len(_JOURNAL_SUFFIX)])
        n += recover(target)
    return n


@contextlib.contextmanager
def atomic_dir(path: PathLike):
    """Yield a temporary folder beside ``path``; on success it replaces ``path``.

    Used for multi-file artifacts (model checkpoints, BEIR folders). The old folder is moved
    aside (``.<name>.<pid>-<random>.tmp``) before the new one takes its place, then removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    tmp = temp_path(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = temp_path(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- JSON
def write_json(path: PathLike, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON atomically (keys sorted, so output is byte-stable)."""
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=indent, sort_keys=True, ensure_ascii=False)
        fh.write("\n")


def read_json(path: PathLike) -> Any:
    path = Path(path)
    text = read_utf8(path, DataError)
    try:
        return json.loads(text)
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


def iter_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each line of a UTF-8 text file (line ends kept).

    A byte sequence that is not UTF-8 raises :class:`DataError` naming ``file:line`` and the
    column; a folder or a missing file names the path.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a file")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                                f"{exc.start + 1})") from None


def iter_jsonl(path: PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON-lines file.

    Raises :class:`DataError` naming ``file:line`` for a byte that is not UTF-8, malformed
    JSON or a line that is not a JSON object.
    """
    for lineno, line in iter_lines(path):
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


# --------------------------------------------------------------------------- staged outputs for publish
def stage_jsonl(path: PathLike, rows: Iterable[dict]) -> tuple[Path, int]:
    """Write rows as JSON lines (the bytes :func:`write_jsonl` writes) to a temporary name beside
    ``path``, left for :func:`publish`; returns ``(tmp_path, row_count)``."""
    n = 0
    with staged_file(path) as (fh, tmp):
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=False))
            fh.write("\n")
            n += 1
    return tmp, n


def stage_json(path: PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON (the bytes :func:`write_json` writes) to a temporary name beside
    ``path``, left for :func:`publish`; returns the temporary path."""
    with staged_file(path) as (fh, tmp):
        json.dump(obj, fh, indent=indent, sort_keys=True, ensure_ascii=False)
        fh.write("\n")
    return tmp


def discard(paths: Iterable[PathLike]) -> None:
    """Remove staged temporary files that will not be published (missing ones are ignored)."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
