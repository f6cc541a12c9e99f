"""One place that chooses devices and seeds every random generator."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import sys

import numpy as np

log = logging.getLogger("nvr")


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a line is logged (a notebook
    engine's cell stream, a kernel's, pytest's capture), not the one of the moment it was made."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """Stage logs: timestamped lines on stderr (idempotent: one such handler, whatever other
    handlers the logger holds; pytest >= 9 attaches its capture handlers to every logger that does
    not propagate, which must not stop the stage's own handler from being added)."""
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(asctime)s nvr %(levelname)s %(message)s", "%H:%M:%S"))
        log.addHandler(h)
    log.setLevel(level)
    log.propagate = False


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
    except ImportError:
        pass


def seeded_hash(seed: int, kind: str, text: str) -> int:
    """A stable 64-bit hash of ``(seed, kind, text)`` (SHA-256; independent of PYTHONHASHSEED),
    for seeded choices that must not move when unrelated items are added or removed."""
    digest = hashlib.sha256(f"{seed}\x00{kind}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def torch_device(requested: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'mps' on Apple, else 'cpu'."""
    import torch

    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            from .errors import ConfigError

            raise ConfigError(f"device '{requested}' requested but CUDA is not available")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


#: the dtype vocabulary of every config section (``student.dtype``, ``teachers.<t>.dtype``, ...)
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")


def torch_dtype(requested: str, device: str):
    """'auto' -> bfloat16 on CUDA devices that support it, float32 elsewhere."""
    import torch

    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if requested == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if requested not in table:
        from .errors import ConfigError

        raise ConfigError(f"unknown dtype '{requested}'; choose one of {sorted(table) + ['auto']}")
    return table[requested]


def faiss_gpus() -> int:
    """Number of GPUs faiss can use (0 with faiss-cpu or without a GPU)."""
    try:
        import faiss
    except ImportError:
        return 0
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0
