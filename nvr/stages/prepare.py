"""Stage ``prepare``: build ``data/`` (BEIR folder, training pairs, hidden labels, topics)."""

from __future__ import annotations

import time
from pathlib import Path

from ..config import Study
from ..paths import Layout
from ..runtime import log, setup_logging


def prepare_data(study: Study, root=None) -> dict:
    """Build ``data/`` from the study's dataset: the wiki task (offline default), a local BEIR
    folder or a BEIR dataset from the hub. Returns the builder's summary."""
    from ..data import build_wiki_dataset, prepare_beir_study
    from ..data.hub import load_beir_hub

    setup_logging()
    lay = Layout.at(root)
    cfg = study.dataset
    t0 = time.time()
    if cfg.source == "wiki":
        summary = build_wiki_dataset(lay.data, max_docs=cfg.max_docs, n_test=cfg.n_test, n_dev=cfg.n_dev,
                                     seed=study.seed, fn_rich=cfg.fn_rich,
                                     train_single_fraction=cfg.train_single_fraction)
    else:
        if cfg.source == "beir_local":
            cfg.check_paths("dataset", lay.root)
            src = Path(cfg.path).expanduser()
            if not src.is_absolute():
                src = lay.root / src
        else:
            src = load_beir_hub(cfg.path, lay.hub_cache(cfg.path))
        summary = prepare_beir_study(src, lay.data, train_split=cfg.train_split, test_split=cfg.test_split,
                                     max_train_queries=cfg.max_train_queries, max_test_queries=cfg.max_test_queries,
                                     max_docs=cfg.max_docs, seed=study.seed)
    summary["seconds"] = round(time.time() - t0, 2)
    log.info("prepare: %s", {k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
    return summary
