"""Stage ``embed@<teacher>``: rank candidate negatives for every training query with one teacher."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..config import Study
from ..io import write_json
from ..mining.candidates import Candidates
from ..paths import Layout
from ..runtime import log, seed_everything, setup_logging
from .context import StudyData

EMBEDDING_FILES = ("corpus.npy", "queries.npy", "corpus.npy.manifest.json", "queries.npy.manifest.json")


def _link_files(src_dir: Path, dst_dir: Path, names) -> None:
    """Hard-link (else copy) the cached embeddings into the stage's output folder."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for fname in names:
        src, dst = src_dir / fname, dst_dir / fname
        if not src.exists():
            continue
        if dst.exists():
            dst.unlink()
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


def embed_teacher(study: Study, name: str, root=None) -> dict:
    """Rank ``teachers.<name>.depth`` candidates per training query with teacher ``name``.

    Writes ``artifacts/teachers/<name>/candidates.npz`` (:class:`~nvr.mining.candidates.Candidates`),
    the embeddings with their manifests (dense teachers, cached under ``cache/embeddings/<name>``)
    and ``summary.json``.
    """
    from ..mining.teachers import rank_candidates

    setup_logging()
    seed_everything(study.seed)
    lay = Layout.at(root)
    tc = study.teacher_config(name)
    out = lay.teacher_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    data = StudyData.load(lay)
    t0 = time.time()
    cache = lay.embedding_cache(name)
    cands = rank_candidates(tc, [p.query_id for p in data.pairs], [p.query for p in data.pairs], data.doc_texts,
                            data.positives(), seed=study.seed, cache_dir=cache, name=name)
    if tc.kind == "dense":
        _link_files(cache, out, EMBEDDING_FILES)
    cands.save(lay.candidates(name))
    summary = {"teacher": name, "kind": tc.kind, "queries": len(data.pairs), "documents": len(data.doc_ids),
               "depth": tc.depth, "seconds": round(time.time() - t0, 2)}
    write_json(out / "summary.json", summary)
    log.info("embed[%s]: done in %.1fs", name, summary["seconds"])
    return summary


def load_candidates(root, teacher: str) -> Candidates:
    """The candidates teacher ``teacher`` ranked in this study."""
    return Candidates.load(Layout.at(root).candidates(teacher),
                           hint=f"run the embed stage for teacher '{teacher}' first")
