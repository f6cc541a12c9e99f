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
