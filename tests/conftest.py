"""Shared fixtures: one smoke-profile `dvc repro` per test session (it takes minutes)."""

from typing import NamedTuple
from pathlib import Path
import os
import subprocess

import pytest

from _project import make_project, run, snapshot


# Tests (and the `dvc repro` runs they start) encode from scratch: the machine-wide embedding
# store is off unless a test turns it on for a folder of its own (tests/test_encode.py).
os.environ["NVR_EMBEDDING_STORE"] = "off"


class SmokeRun(NamedTuple):
    proj: Path                           # the finished project (tests may change it afterwards)
    result: subprocess.CompletedProcess  # the `dvc repro` that built it
    snapshot: dict                       # digests of its outputs, taken before any test touched it


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    """A clean `dvc repro` of profiles/smoke.yaml in a fresh copy of the project (own cache/)."""
    proj = make_project(tmp_path_factory.mktemp("smoke"))
    res = run(["dvc", "repro"], proj, timeout=1200)
    return SmokeRun(proj, res, snapshot(proj))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other jobs for the cores)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def scifact_dir() -> Path | None:
    """The official BEIR SciFact files beside the checkout (``../shared/data/beir/scifact``), if present."""
    for p in (Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact",
              Path("/work/shared/data/beir/scifact")):
        if (p / "corpus.jsonl").is_file():
            return p
    return None
