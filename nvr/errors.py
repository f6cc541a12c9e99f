"""Exception types. Every message names the file and line, or the params key, at fault."""


class NvrError(Exception):
    """Base class for errors nvr raises on bad input or configuration."""


class DataError(NvrError, ValueError):
    """Malformed or inconsistent data file (message names file and line)."""


class ConfigError(NvrError, ValueError):
    """Unknown key or invalid value in params.yaml (message names the key)."""


def utf8_position(exc: UnicodeDecodeError) -> tuple[int, int]:
    """``(line, column)`` (1-based) of the first byte that is not UTF-8 in ``exc.object``."""
    raw = exc.object
    line = raw.count(b"\n", 0, exc.start) + 1
    return line, exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1


def read_utf8(path, error: type[Exception]) -> str:
    """The text of the file ``path``; ``error`` (ConfigError, DataError) names ``file:line`` when
    it is missing or not UTF-8."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = utf8_position(exc)
        raise error(f"{path}:{line}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at column {col})") from None
