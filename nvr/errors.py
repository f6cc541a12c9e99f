"""Exception types. Every message names the file and line, or the params key, at fault."""


class NvrError(Exception):
    """Base class for errors nvr raises on bad input or configuration."""


class DataError(NvrError, ValueError):
    """Malformed or inconsistent data file (message names file and line)."""


class ConfigError(NvrError, ValueError):
    """Unknown key or invalid value in params.yaml (message names the key)."""
