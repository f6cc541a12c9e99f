"""The ``nvr`` command.

``nvr mine`` mines hard negatives for your own data with any teacher and method;
``nvr presets`` lists the paper's methods; ``nvr check`` validates a params file
(and, with ``--dry-run``, builds the models of a GPU profile without downloading).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from pathlib import Path


class _UsageError(Exception):
    """A bad command line (unknown flag, a value of the wrong type); main() prints it and returns 2."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line raises instead of printing the usage and exiting."""

    def error(self, message):
        raise _UsageError(self.prog, message)


MINING_FIELDS = ["num_negatives", "shift", "window", "max_score", "min_score", "margin", "perc", "anchor",
                 "selection", "temperature", "shortfall", "seed", "simans_width", "simans_offset",
                 "max_positive_cosine", "max_positive_overlap", "relabel_above"]


def _mine_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "mine", help="mine hard negatives for a BEIR folder or training pairs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Mine hard negatives with a teacher and a method of the NV-Retriever paper.

Input is a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv: every qrels
positive of a query is masked), training pairs (JSON lines with query_id, query,
positive_ids) plus a corpus.jsonl, or a table of (anchor, positive) pairs (--dataset: a hub
dataset, a save_to_disk folder, parquet, CSV, JSON lines). Output (--format nvr, the default)
is JSON lines, one per query kept:
query_id, query, positive_ids, positive_scores, negative_ids, negative_scores,
negative_ranks (1-based rank in the teacher's candidate list). A stats JSON beside it
gives counts, score summaries and, with --hidden, the exact false-negative rate.

Methods are presets (see `nvr presets`) refined by the options below, e.g.
  nvr mine --beir data/scifact --split train --method percpos095 --out mined.jsonl
  nvr mine --beir data/scifact --method naive --shift 10 --window 200 --selection uniform ...

Inputs:
  nvr mine --beir data/scifact --split train --out mined.jsonl            # BEIR folder
  nvr mine --pairs pairs.jsonl --corpus corpus.jsonl --out mined.jsonl    # own pairs + corpus
  nvr mine --dataset pairs.parquet --out mined.jsonl                      # (anchor, positive) table
  nvr mine --dataset pairs.csv --anchor-column question --positive-column answer --corpus passages.jsonl
           --corpus-column text --out mined.jsonl                        # + a candidate corpus
  nvr mine --dataset my_saved_dataset/ --format n-tuple --out train.parquet  # save_to_disk folder
  nvr mine --dataset sentence-transformers/natural-questions --out nq.jsonl  # hub (needs a network)

Output formats (--format; the stats JSON is written beside every one):
  --format nvr            mined.jsonl   ids, scores, ranks (default; what nvr trains on)
  --format flagembedding  train.jsonl   {"query", "pos": [...], "neg": [...]} (+ --output-scores:
                                        pos_scores / neg_scores for FlagEmbedding's distillation)
  --format tevatron       train.jsonl   {"query_id", "query", "positive_passages": [{"docid",
                                        "title", "text"}], "negative_passages": [...]}
  --format triplet        out.parquet   anchor, positive, negative (one row per negative)
  --format n-tuple        out.parquet   anchor, positive, negative_1..negative_n (full rows only)
  --format labeled-pair   out.parquet   anchor, positive (a document), label 1/0
  --format labeled-list   out.parquet   anchor, positive = [pos, neg..], labels [1, 0..]
Sharded encoding (processes or GPUs; the same negatives as one process, scores equal to float32
rounding since each shard batches its own texts):
  torchrun --nproc_per_node 2 -m nvr mine --beir data/scifact --out mined.jsonl

The last four are sentence-transformers' mine_hard_negatives formats (same columns and rows);
load them with datasets.load_dataset("parquet", data_files="out.parquet")["train"].
""")
    src = p.add_argument_group("input")
    src.add_argument("--beir", type=Path, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    src.add_argument("--split", default="train", help="qrels split whose queries are mined (default: train)")
    src.add_argument("--pairs", type=Path, help="training pairs JSON lines (query_id, query, positive_ids)")
    src.add_argument("--corpus", type=Path,
                     help="candidate corpus: a BEIR corpus.jsonl (needed with --pairs), or with --dataset any table "
                          "(save_to_disk folder, .parquet, .csv, .tsv, .jsonl) whose --corpus-column holds the texts")
    src.add_argument("--dataset", default=None,
                     help="(anchor, positive) pairs: a Hugging Face dataset name (needs a network), a save_to_disk "
                          "folder, or a .parquet / .csv / .tsv / .jsonl file; repeated anchors are merged into one "
                          "query with several positives (all masked); the positives are the corpus unless --corpus "
                          "adds candidates")
    src.add_argument("--dataset-split", default="train", help="split of a hub dataset or a DatasetDict folder")
    src.add_argument("--corpus-column", default=None, help="--corpus table: the text column (default: the first)")
    src.add_argument("--hidden", type=Path,
                     help="hidden_positives.jsonl: all true positives per query, to count false negatives")
    src.add_argument("--max-queries", type=int, default=None, help="mine only the first N queries")

    t = p.add_argument_group("teacher")
    t.add_argument("--teacher", default="pkg:all-MiniLM-L6-v2",
                   help="'bm25', 'random', or a dense model: hub id, local folder or pkg:NAME (default: %(default)s)")
    t.add_argument("--revision", default=None, help="model revision (hub models)")
    t.add_argument("--pooling", default="mean", choices=["mean", "cls", "last"])
    t.add_argument("--query-prefix", default="", help="prefix or instruction for queries, e.g. 'query: '")
    t.add_argument("--passage-prefix", default="", help="prefix for passages, e.g. 'passage: '")
    t.add_argument("--max-query-length", type=int, default=64)
    t.add_argument("--max-passage-length", type=int, default=256)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                   help="dense teacher inference: torch (exact, default) or onnxruntime (CPU, float32, faster; "
                        "embeddings within ~1e-7 in cosine; the model is exported to ONNX once per machine)")
    t.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="auto/float32 (exact on CPU) or bfloat16 (autocast; fast on GPUs and on CPUs with "
                        "AVX512-BF16 / AMX, emulated and slower elsewhere)")
    t.add_argument("--no-normalize", action="store_true", help="use raw inner products instead of cosine")
    t.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code (off by default)")
    t.add_argument("--depth", type=int, default=100, help="candidates retrieved per query (default: %(default)s)")
    t.add_argument("--cache-dir", type=Path, default=None,
                   help="embedding cache folder (reused only when model, prefixes and lengths match)")

    r = p.add_argument_group("cross-encoder rescoring (optional: candidates from the teacher, scores from the "
                             "cross-encoder)")
    r.add_argument("--rescore-model", default=None, metavar="REF",
                   help="score every candidate and positive with this cross-encoder (HF sequence-classification "
                        "model: hub id, local folder or pkg:NAME) and re-rank the candidates by that score; "
                        "1 logit = the score, 2 logits = softmax probability of class 1. Negative/positive "
                        "scores and ranks in the output are then the cross-encoder's")
    r.add_argument("--rescore-batch-size", type=int, default=32, metavar="N",
                   help="(query, passage) pairs per cross-encoder batch (default: %(default)s)")
    r.add_argument("--rescore-max-length", type=int, default=256, metavar="N",
                   help="tokens per (query, passage) pair for the cross-encoder (default: %(default)s)")

    m = p.add_argument_group("method (a preset, then overrides)")
    m.add_argument("--method", default="percpos095", help="preset name (default: %(default)s); see `nvr presets`")
    m.add_argument("--num-negatives", type=int, help="n hard negatives per query")
    m.add_argument("--shift", type=int, help="skip the first N candidates (top-k shifted by N)")
    m.add_argument("--window", type=int, help="consider only the first k candidates after the shift")
    m.add_argument("--max-score", type=float, help="TopK-Abs: drop candidates scoring above this")
    m.add_argument("--min-score", type=float, help="drop candidates scoring below this")
    m.add_argument("--margin", type=float, help="TopK-MarginPos: keep score < positive - margin")
    m.add_argument("--perc", type=float, help="TopK-PercPos: keep score < positive * perc (sign-safe)")
    m.add_argument("--anchor", choices=["min", "max", "mean"], help="which positive score anchors the margins")
    m.add_argument("--selection", choices=["top", "softmax", "uniform", "top1_softmax", "simans"],
                   help="take the top n, or sample n (softmax of scores / uniform / top-1 + softmax / SimANS: "
                        "peaked where a candidate scores close to its positive)")
    m.add_argument("--simans-width", type=float,
                   help="SimANS: weight exp(-((s - positive - offset) / width)^2) (default 0.1)")
    m.add_argument("--simans-offset", type=float, help="SimANS: where the peak sits relative to the positive (default 0)")
    m.add_argument("--max-positive-cosine", type=float, metavar="C",
                   help="near-duplicate defence: never a negative if its embedding cosine with a labeled positive "
                        "is >= C (dense teachers; e.g. 0.95)")
    m.add_argument("--max-positive-overlap", type=float, metavar="J",
                   help="near-duplicate defence: never a negative if its word 3-gram Jaccard with a labeled positive "
                        "is >= J (any teacher; e.g. 0.5). With --hidden, the stats count what each defence removed")
    m.add_argument("--relabel-above", type=float, metavar="S",
                   help="relevance judge: a candidate scoring >= S is never a negative but an extra positive "
                        "(relabeled_positive_ids in the output; a positive in the other formats). The judge is the "
                        "teacher's score, or the cross-encoder's with --rescore-model (RLHN / Gecko style)")
    m.add_argument("--temperature", type=float, help="softmax temperature for sampled selections")
    m.add_argument("--shortfall", choices=["keep", "drop", "fill"],
                   help="when fewer than n survive: emit fewer, drop the query, or fill from filtered candidates")
    m.add_argument("--seed", type=int, help="sampling seed (same inputs + seed = same negatives)")

    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, required=True,
                   help="output file: JSON lines (nvr, flagembedding, tevatron) or .parquet (the "
                        "sentence-transformers formats)")
    o.add_argument("--format", default="nvr", choices=["nvr", "flagembedding", "tevatron", "triplet", "n-tuple",
                                                        "labeled-pair", "labeled-list"],
                   help="nvr: ids, scores and ranks (default); flagembedding: {query, pos, neg} JSON lines; "
                        "tevatron: {query_id, query, positive_passages, negative_passages} JSON lines; triplet / "
                        "n-tuple / labeled-pair / labeled-list: sentence-transformers' mine_hard_negatives "
                        "output formats as parquet (SentenceTransformerTrainer takes them as is)")
    o.add_argument("--output-scores", action="store_true",
                   help="add the teacher's scores (sentence-transformers formats: a scores column; flagembedding: "
                        "pos_scores / neg_scores for distillation)")
    o.add_argument("--anchor-column", default=None,
                   help="the query column of --dataset (default: its first) and of the sentence-transformers "
                        "formats (default: the input's name, else 'anchor')")
    o.add_argument("--positive-column", default=None,
                   help="the positive column of --dataset (default: its second) and of the sentence-transformers "
                        "formats (default: the input's name, else 'positive')")
    o.add_argument("--stats", type=Path, default=None, help="stats JSON (default: <out>.stats.json)")
    o.add_argument("--device", default="auto", help="torch device for dense teachers (auto, cpu, cuda, cuda:1)")
    p.set_defaults(func=cmd_mine)
    return p


def _load_inputs(args):
    from . import data as D
    from .errors import ConfigError, DataError

    if args.dataset is not None:
        from .data.tables import load_table, pairs_from_table

        table = load_table(args.dataset, split=args.dataset_split)
        extra = None
        if args.corpus is not None:
            c = Path(args.corpus)
            extra = D.read_corpus(c) if c.suffix == ".jsonl" and _is_beir_corpus(c) else \
                load_table(c, split=args.dataset_split, flag="--corpus")
        corpus, pairs = pairs_from_table(table, anchor_column=args.anchor_column,
                                         positive_column=args.positive_column, corpus=extra,
                                         corpus_column=args.corpus_column)
        args._columns = (args.anchor_column or table.column_names[0], args.positive_column or table.column_names[1])
        if not pairs:
            raise DataError(f"--dataset {args.dataset}: no rows")
    elif args.beir:
        ds = D.load_beir(args.beir, splits=[args.split])
        corpus = ds.corpus
        pairs = D.pairs_from_qrels(ds, args.split)
        if not pairs:
            raise DataError(f"{Path(args.beir) / 'qrels' / (args.split + '.tsv')}: no query of split "
                            f"'{args.split}' has a positive (score > 0); nothing to mine")
    else:
        corpus = D.read_corpus(args.corpus)
        pairs = D.read_train_pairs(args.pairs, corpus_ids=corpus)
        if not pairs:
            raise DataError(f"{args.pairs}: no training pairs (--pairs file is empty)")
    if args.max_queries is not None:
        pairs = pairs[: args.max_queries]
    if not pairs:
        raise ConfigError("no queries to mine (empty split or pairs file)")
    hidden = D.read_hidden_positives(args.hidden, corpus_ids=corpus) if args.hidden else None
    return corpus, pairs, hidden


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _mining_config(args):
    """The method: ``--method``'s preset with the flags' overrides; errors name the flag."""
    import dataclasses

    from . import mining as M
    from .errors import ConfigError

    if args.method not in M.PRESETS:
        close = difflib.get_close_matches(args.method, list(M.PRESETS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"--method: unknown preset '{args.method}'{hint}; valid: {', '.join(M.PRESETS)} "
                          f"(see `nvr presets`)")
    overrides = {f: getattr(args, f) for f in MINING_FIELDS if getattr(args, f) is not None}
    cfg = dataclasses.replace(M.PRESETS[args.method], **overrides)
    where = "<nvr-mine>"
    try:
        cfg.validate(where)
    except ConfigError as exc:
        msg = str(exc)
        if not msg.startswith(where + "."):
            raise
        field, _, rest = msg[len(where) + 1:].partition(":")
        name = _flag(field) if field in overrides else f"--method {args.method} ({field})"
        raise ConfigError(f"{name}:{rest}") from None
    return cfg, overrides


def _check_values(args, cfg, overrides) -> None:
    """Flag values that need no data: counts >= 1, and a window that can give --num-negatives."""
    from .errors import ConfigError

    if args.max_queries is not None and args.max_queries < 1:
        raise ConfigError(f"--max-queries: must be >= 1, got {args.max_queries} (leave it out to mine every query)")
    for opt in ("depth", "batch_size", "max_query_length", "max_passage_length", "rescore_batch_size",
                "rescore_max_length"):
        if getattr(args, opt) < 1:
            raise ConfigError(f"{_flag(opt)}: must be >= 1, got {getattr(args, opt)}")

    from .mining import MiningConfig

    def src(field):  # a value the preset set (not a flag, not the default) is named as the preset's
        from_preset = field not in overrides and getattr(cfg, field) != getattr(MiningConfig(), field)
        return f" (from --method {args.method})" if from_preset else ""

    if cfg.shift >= args.depth:
        raise ConfigError(f"--shift: {cfg.shift}{src('shift')} must be < --depth {args.depth} "
                          f"(no candidate would be left after the shift)")
    room = args.depth - cfg.shift
    if cfg.window is not None and cfg.window < room:
        cap, how = cfg.window, (f"min(--window {cfg.window}{src('window')}, --depth {args.depth} - --shift "
                                f"{cfg.shift}{src('shift')})")
    else:
        cap, how = room, f"--depth {args.depth} - --shift {cfg.shift}{src('shift')}"
    if cfg.num_negatives > cap:
        raise ConfigError(f"--num-negatives: {cfg.num_negatives}{src('num_negatives')} is more than the "
                          f"window can give: {how} = {cap}")


def _is_beir_corpus(path: Path) -> bool:
    """A JSON-lines file whose first record has BEIR's ``_id`` field."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    return isinstance(json.loads(line), dict) and "_id" in json.loads(line)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return False


def _input_files(args) -> dict[Path, str]:
    """Every file the run reads (resolved) -> how the message names it."""
    files: dict[Path, str] = {}
    if args.beir:
        folder = Path(args.beir)
        for name in ("corpus.jsonl", "queries.jsonl"):
            files[(folder / name).resolve()] = f"--beir {folder}'s {name}"
        qdir = folder / "qrels"
        qrels = sorted(qdir.iterdir()) if qdir.is_dir() else []
        for q in [qdir / f"{args.split}.tsv", *qrels]:
            files.setdefault(q.resolve(), f"--beir {folder}'s qrels/{q.name}")
    for opt in ("pairs", "corpus", "hidden"):
        if getattr(args, opt) is not None:
            files.setdefault(Path(getattr(args, opt)).resolve(), f"--{opt}")
    if args.dataset is not None and Path(args.dataset).exists():
        files.setdefault(Path(args.dataset).resolve(), "--dataset")
    return files


def _check_output(path: Path, flag: str, inputs: dict[Path, str]) -> None:
    from .errors import ConfigError

    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; give a file name")
    if path.resolve() in inputs:
        raise ConfigError(f"{flag} {path}: is an input of this run ({inputs[path.resolve()]}); "
                          f"writing it would destroy the input")
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{flag} {path}: cannot create its folder: {folder} is a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: folder {folder} is not writable")


def _check_paths(args, dense: bool) -> tuple[Path, Path, Path]:
    """Output paths (--out, --stats, the embedding cache) checked before anything is read or written."""
    from .errors import ConfigError

    if sum(x is not None and x is not False for x in (args.beir, args.pairs, args.dataset)) != 1:
        raise ConfigError("give exactly one of --beir FOLDER, --pairs FILE (with --corpus) or --dataset NAME/PATH")
    if args.pairs and args.corpus is None:
        raise ConfigError("--pairs needs --corpus corpus.jsonl")
    inputs = _input_files(args)
    out = Path(args.out)
    stats = Path(args.stats) if args.stats is not None else out.with_name(out.name + ".stats.json")
    _check_output(out, "--out", inputs)
    from .mining.formats import ST_FORMATS

    if args.format in ST_FORMATS and out.suffix != ".parquet":
        raise ConfigError(f"--out {out}: --format {args.format} is written as parquet; name the file *.parquet")
    if args.format not in ST_FORMATS and out.suffix == ".parquet":
        raise ConfigError(f"--out {out}: --format {args.format} is JSON lines; use a .parquet name only with "
                          f"a sentence-transformers format ({', '.join(ST_FORMATS)})")
    _check_output(stats, "--stats" if args.stats is not None else "--stats (default <out>.stats.json)", inputs)
    if stats.resolve() == out.resolve():
        raise ConfigError(f"--stats {stats}: same file as --out; give the stats their own file")
    cache = Path(args.cache_dir) if args.cache_dir is not None else out.parent / f".{out.stem}.embeddings"
    if args.cache_dir is not None or dense:
        flag = "--cache-dir" if args.cache_dir is not None else "--cache-dir (default beside --out)"
        node = cache.absolute()
        while not node.exists() and node != node.parent:
            node = node.parent
        if node.exists() and not node.is_dir():
            what = "is a file" if node == cache.absolute() else f"cannot be created: {node} is a file"
            raise ConfigError(f"{flag} {cache}: {what}, expected a folder")
    return out, stats, cache


def _shard_encode(tc, dense: bool, doc_texts, q_texts, cache: Path, device: str) -> bool:
    """Under ``torchrun --nproc_per_node N -m nvr mine ...``: every process encodes a contiguous
    shard of the corpus and the queries into the embedding cache (rank 0 joins them; equal to one
    process's to float32 rounding), then the ranks other than 0 are done (True). False without torchrun."""
    import os

    from . import distributed as Dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    Dist.init_from_env()
    rank, ws = Dist.world()
    if dense:
        from .text.cache import encode_cached
        from .text.encoder import Encoder

        enc = Encoder(tc.encoder(device))
        encode_cached(enc, doc_texts, "passage", cache / "corpus.npy")
        encode_cached(enc, q_texts, "query", cache / "queries.npy")
        del enc
    Dist.barrier()
    import torch.distributed as dist

    dist.destroy_process_group()   # rank 0 goes on alone (no collective call waits for the others)
    return rank != 0


def cmd_mine(args) -> int:
    import numpy as np

    from . import data as D
    from . import mining as M
    from .config import TeacherConfig, build
    from .errors import ConfigError
    from . import io as nio
    from .mining.teachers import rank_candidates
    from .runtime import log, setup_logging
    from .stages.context import id_matrix, jsonable

    setup_logging()
    t0 = time.time()
    # everything checked before a model or a data file is loaded, and before anything is written
    cfg, _overrides = _mining_config(args)
    _check_values(args, cfg, _overrides)
    dense = args.teacher not in ("bm25", "random")
    if cfg.max_positive_cosine is not None and not dense:
        raise ConfigError(f"--max-positive-cosine: needs a dense teacher's embeddings (--teacher {args.teacher} "
                          f"has none); use --max-positive-overlap for a text measure")
    out, stats_path, cache = _check_paths(args, dense)
    nio.recover(out)  # an earlier run killed between the renames of its publish: complete it
    rescore = {"rescore_model": args.rescore_model, "rescore_batch_size": args.rescore_batch_size,
               "rescore_max_length": args.rescore_max_length}
    if not dense:
        tc = build(TeacherConfig, {"kind": args.teacher, "depth": args.depth,
                                   "trust_remote_code": args.trust_remote_code, **rescore}, "nvr mine --teacher")
    else:
        tc = build(TeacherConfig, {
            "kind": "dense", "model": args.teacher, "revision": args.revision, "pooling": args.pooling,
            "query_prefix": args.query_prefix, "passage_prefix": args.passage_prefix,
            "max_query_length": args.max_query_length, "max_passage_length": args.max_passage_length,
            "batch_size": args.batch_size, "normalize": not args.no_normalize, "backend": args.backend,
            "dtype": args.dtype, "trust_remote_code": args.trust_remote_code, "depth": args.depth, **rescore},
            "nvr mine --teacher")
    if tc.kind == "dense":
        from .models import resolve_model

        resolve_model(tc.model)  # a missing local model fails before any data is read
    if tc.rescore_model:
        from .models import resolve_model

        try:
            resolve_model(tc.rescore_model)  # likewise for the cross-encoder
        except ConfigError as exc:
            raise ConfigError(f"--rescore-model: {exc}") from None
    corpus, pairs, hidden = _load_inputs(args)
    doc_ids = list(corpus)
    index = {d: i for i, d in enumerate(doc_ids)}
    doc_texts = [D.doc_text(corpus[d]) for d in doc_ids]
    pos = id_matrix([[index[d] for d in p.positive_ids] for p in pairs])
    q_ids = [p.query_id for p in pairs]
    if _shard_encode(tc, dense, doc_texts, [p.query for p in pairs], cache, args.device):
        return 0   # torchrun: this rank's share of the encode is written; rank 0 searches, mines and writes
    cands = rank_candidates(tc, q_ids, [p.query for p in pairs], doc_texts, pos, seed=cfg.seed,
                            cache_dir=cache, name="nvr mine", depth_key="--depth", device=args.device,
                            rescore_key="--rescore-model")
    from .mining.neardup import defence_stats, similarity_arrays

    emb = np.load(cache / "corpus.npy", mmap_mode="r") if dense and (cache / "corpus.npy").is_file() else None
    sims = similarity_arrays(cfg, cands, doc_texts=doc_texts, embeddings=emb, where="nvr mine")
    mined = cands.mine(cfg, progress=True, **sims)
    hidden_mat = None
    if hidden is not None:
        hidden_mat = id_matrix([[index[d] for d in hidden.get(q, [])] for q in q_ids])
    stats = M.mining_stats(mined, cands.pos_scores, hidden_pos_ids=hidden_mat)
    if hidden_mat is not None and sims:
        stats["near_duplicate_defences"] = defence_stats(cfg, cands, hidden_mat, sims)
    rows = M.to_rows(mined, q_ids, [p.query for p in pairs], [p.positive_ids for p in pairs],
                     cands.pos_scores, doc_ids)
    stats.update(method=args.method, teacher=args.teacher, config=vars(cfg), seconds=round(time.time() - t0, 2))
    if tc.rescore_model:
        stats["rescore_model"] = tc.rescore_model
    # the mined file and its stats are published together: both are written under temporary
    # names, then renamed by one journaled step (a kill between the renames is rolled forward)
    out_abs, stats_abs = out.absolute(), stats_path.absolute()
    staged = []
    try:
        if args.format == "nvr":
            staged.append(nio.stage_jsonl(out_abs, rows)[0])
        else:
            from .mining.formats import convert, stage_output

            a_col, p_col = getattr(args, "_columns", None) or (args.anchor_column or "anchor",
                                                               args.positive_column or "positive")
            records = convert(rows, args.format, corpus.__getitem__, output_scores=args.output_scores,
                              num_negatives=cfg.num_negatives, anchor_column=a_col, positive_column=p_col)
            stats["format"] = {"name": args.format, "records": len(records)}
            staged.append(stage_output(out_abs, records, args.format))
        staged.append(nio.stage_json(stats_abs, jsonable(stats)))
    except BaseException:
        nio.discard(staged)
        raise
    nio.publish([(staged[0], out_abs), (staged[1], stats_abs)])
    log.info("nvr mine: %d of %d queries written to %s (%d with a full set) in %.1fs", len(rows), len(pairs),
             args.out, int(np.sum(mined.n_found == cfg.num_negatives)), time.time() - t0)
    return 0


def cmd_presets(args) -> int:
    from . import mining as M

    default = M.MiningConfig()
    for name, cfg in M.PRESETS.items():
        diff = {k: v for k, v in vars(cfg).items() if getattr(default, k) != v}
        print(f"{name:24s} {', '.join(f'{k}={v}' for k, v in diff.items()) or '(top-n of the ranked candidates)'}")
    return 0


def cmd_check(args) -> int:
    from .config import load

    study = load(args.params)
    print(f"{args.params}: ok (profile {study.profile}; {len(study.method_names())} mining methods; "
          f"teachers {', '.join(study.teacher_ablation)})")
    if args.dry_run:
        from .dryrun import dry_run

        report = dry_run(study)
        for line in report:
            print("  " + line)
    return 0


def main(argv: list[str] | None = None) -> int:
    from .errors import NvrError

    ap = _Parser(prog="nvr", description="Positive-aware hard-negative mining (NV-Retriever).")
    sub = ap.add_subparsers(dest="command", required=True)
    _mine_parser(sub)
    sp = sub.add_parser("presets", help="list the mining presets (the paper's methods)")
    sp.set_defaults(func=cmd_presets)
    sc = sub.add_parser("check", help="validate a params file; --dry-run builds its models without downloading")
    sc.add_argument("params", nargs="?", default="params.yaml")
    sc.add_argument("--dry-run", action="store_true")
    sc.set_defaults(func=cmd_check)
    try:
        args = ap.parse_args(argv)
    except _UsageError as exc:
        print(f"{exc.prog}: error: {exc} (see {exc.prog} --help)", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except NvrError as exc:
        print(f"nvr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
