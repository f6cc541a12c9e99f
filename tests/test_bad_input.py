"""Every bad input to `nvr mine` / `nvr check`: one clear message, status 2, nothing touched.

Each case runs ``nvr.cli.main([...])`` in-process on a corrupted copy of the tiny BEIR fixture
(teacher ``bm25``, no model) or on a corrupted copy of ``profiles/smoke.yaml``, and checks: the
return code is 2; stderr holds exactly one error line, no traceback, and the fragment that names
the ``file:line``, the flag or the dotted params key; every file under the test's folder (a
previous run's mined file and stats included) is byte-identical afterwards, and nothing new (no
``.*.tmp``, no journal, no folder) appeared. The last test kills ``nvr mine`` between the two
renames of its publish step and checks that the next run (or ``nvr.io.recover``) completes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import nvr.io
from nvr.cli import main
from nvr.runtime import log

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "beir_tiny"
SMOKE = ROOT / "profiles" / "smoke.yaml"

PREV_MINED = b'{"query_id": "old", "negative_ids": []}\n'
PREV_STATS = b'{"queries": 1}\n'
PAIRS = (b'{"query_id": "q6", "query": "European capital cities", "positive_ids": ["d1"]}\n'
         b'{"query_id": "q1", "query": "What is the capital of France?", "positive_ids": ["d1"]}\n')
HIDDEN = b'{"query_id": "q6", "positive_ids": ["d1", "d2"]}\n'
COMMON = ["--teacher", "bm25", "--depth", "3", "--method", "naive", "--num-negatives", "2"]


@pytest.fixture(autouse=True)
def _fresh_log_handler():
    """nvr's stderr log handler binds the stream it first sees; give each test its own (capsys)."""
    log.handlers.clear()
    yield
    log.handlers.clear()


def snapshot(root: Path) -> dict:
    """Every path under ``root`` -> its bytes (files) or 'dir' (folders)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else "dir") for p in sorted(root.rglob("*"))}


def workspace(tmp_path: Path) -> SimpleNamespace:
    beir = tmp_path / "beir"
    shutil.copytree(TINY, beir)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "mined.jsonl"
    out.write_bytes(PREV_MINED)                                   # a previous good run
    (tmp_path / "out" / "mined.jsonl.stats.json").write_bytes(PREV_STATS)
    (tmp_path / "pairs.jsonl").write_bytes(PAIRS)
    (tmp_path / "hidden.jsonl").write_bytes(HIDDEN)
    return SimpleNamespace(tmp=tmp_path, beir=beir, out=out, pairs=tmp_path / "pairs.jsonl",
                           hidden=tmp_path / "hidden.jsonl")


def fmt(text: str, w: SimpleNamespace) -> str:
    return text.format(tmp=w.tmp, beir=w.beir, out=w.out, pairs=w.pairs, hidden=w.hidden)


# ---- corruptions (each takes the workspace)
def _b(x):
    return x if isinstance(x, bytes) else x.encode()


def set_line(rel: str, n: int, content):
    def edit(w):
        p = w.tmp / rel
        lines = p.read_bytes().splitlines(keepends=True)
        lines[n - 1] = _b(content) + b"\n"
        p.write_bytes(b"".join(lines))
    return edit


def append(rel: str, content):
    def edit(w):
        p = w.tmp / rel
        p.write_bytes(p.read_bytes() + _b(content) + b"\n")
    return edit


def write(rel: str, content):
    def edit(w):
        (w.tmp / rel).write_bytes(_b(content))
    return edit


def remove(rel: str):
    return lambda w: (w.tmp / rel).unlink()


def mkdir(rel: str):
    return lambda w: (w.tmp / rel).mkdir()


def symlink(rel: str, target: str):
    return lambda w: (w.tmp / rel).symlink_to(w.tmp / target)


C, Q, T = "beir/corpus.jsonl", "beir/queries.jsonl", "beir/qrels/test.tsv"


def case(id, edit, extra, fragment, base="beir"):
    edits = edit if isinstance(edit, tuple) else (edit,) if edit else ()
    return pytest.param(edits, extra, fragment, base, id=id)


MINE_CASES = [
    # malformed JSON lines
    case("corpus-malformed-json", set_line(C, 2, '{"_id": "d2", "title": '), [],
         "{beir}/corpus.jsonl:2: malformed JSON"),
    case("queries-malformed-json", set_line(Q, 3, "not json"), [], "{beir}/queries.jsonl:3: malformed JSON"),
    case("corpus-line-not-object", set_line(C, 1, '["d1", "Paris"]'), [],
         "{beir}/corpus.jsonl:1: expected a JSON object, got list"),
    case("pairs-malformed-json", set_line("pairs.jsonl", 2, '{"query_id": "q1",'), [],
         "{pairs}:2: malformed JSON", base="pairs"),
    case("hidden-malformed-json", write("hidden.jsonl", "{oops}\n"), [], "{hidden}:1: malformed JSON",
         base="hidden"),
    # missing / ill-typed fields
    case("corpus-missing-id", set_line(C, 4, '{"title": "x", "text": "y"}'), [],
         "{beir}/corpus.jsonl:4: missing field '_id'"),
    case("corpus-text-int", set_line(C, 3, '{"_id": "d3", "title": "P", "text": 7}'), [],
         "{beir}/corpus.jsonl:3: field 'text' must be a string, got int"),
    case("corpus-title-list", set_line(C, 2, '{"_id": "d2", "title": ["B"], "text": "y"}'), [],
         "{beir}/corpus.jsonl:2: field 'title' must be a string, got list"),
    case("corpus-metadata-not-object", set_line(C, 6, '{"_id": "d6", "text": "y", "metadata": 3}'), [],
         "{beir}/corpus.jsonl:6: field 'metadata' must be an object"),
    case("queries-missing-text", set_line(Q, 2, '{"_id": "q2"}'), [],
         "{beir}/queries.jsonl:2: missing field 'text'"),
    case("queries-id-int", set_line(Q, 1, '{"_id": 1, "text": "What?"}'), [],
         "{beir}/queries.jsonl:1: field '_id' must be a string, got int"),
    case("qrels-bad-header", set_line(T, 1, "qid\tdid\tscore"), [],
         "{beir}/qrels/test.tsv:1: expected the header"),
    case("qrels-two-columns", set_line(T, 3, "q2\td3"), [],
         "{beir}/qrels/test.tsv:3: expected 3 tab-separated columns, got 2"),
    case("qrels-score-not-int", set_line(T, 2, "q1\td1\thigh"), [],
         "{beir}/qrels/test.tsv:2: score 'high' is not an integer"),
    case("pairs-missing-positive-ids", set_line("pairs.jsonl", 1, '{"query_id": "q6", "query": "x"}'), [],
         "{pairs}:1: missing field 'positive_ids'", base="pairs"),
    case("pairs-positive-ids-str", set_line("pairs.jsonl", 1, '{"query_id": "q6", "query": "x", "positive_ids": "d1"}'),
         [], "{pairs}:1: field 'positive_ids' must be a list, got str", base="pairs"),
    # duplicate ids
    case("corpus-duplicate-id", append(C, '{"_id": "d2", "title": "", "text": "again"}'), [],
         "{beir}/corpus.jsonl:7: duplicate document id 'd2' (first at line 2)"),
    case("queries-duplicate-id", append(Q, '{"_id": "q1", "text": "again"}'), [],
         "{beir}/queries.jsonl:9: duplicate query id 'q1' (first at line 1)"),
    case("pairs-duplicate-query-id",
         set_line("pairs.jsonl", 2, '{"query_id": "q6", "query": "x", "positive_ids": ["d2"]}'),
         [], "{pairs}:2: duplicate query_id 'q6' (first at line 1)", base="pairs"),
    case("qrels-pair-twice-different-score", append(T, "q1\td1\t3"), [],
         "{beir}/qrels/test.tsv:9: pair (q1, d1) listed again with a different score"),
    # unknown ids
    case("qrels-unknown-query", append(T, "q99\td1\t1"), [], "{beir}/qrels/test.tsv:9: unknown query id 'q99'"),
    case("qrels-unknown-doc", append(T, "q1\td99\t1"), [], "{beir}/qrels/test.tsv:9: unknown corpus id 'd99'"),
    case("pairs-unknown-positive",
         set_line("pairs.jsonl", 1, '{"query_id": "q6", "query": "x", "positive_ids": ["d99"]}'),
         [], "{pairs}:1: positive_ids names unknown corpus id 'd99'", base="pairs"),
    case("hidden-unknown-positive", write("hidden.jsonl", '{"query_id": "q6", "positive_ids": ["d42"]}\n'), [],
         "{hidden}:1: positive_ids names unknown corpus id 'd42'", base="hidden"),
    # bytes that are not UTF-8
    case("corpus-not-utf8", set_line(C, 3, b'{"_id": "d3", "title": "caf\xe9", "text": "x"}'), [],
         "{beir}/corpus.jsonl:3: not valid UTF-8"),
    case("queries-not-utf8", set_line(Q, 2, b'{"_id": "q2", "text": "\xff\xfe"}'), [],
         "{beir}/queries.jsonl:2: not valid UTF-8"),
    case("qrels-not-utf8", set_line(T, 4, b"q3\td4\t1\xff"), [], "{beir}/qrels/test.tsv:4: not valid UTF-8"),
    case("pairs-not-utf8", set_line("pairs.jsonl", 1, b'{"query_id": "q6", "query": "\xc3(", "positive_ids": ["d1"]}'),
         [], "{pairs}:1: not valid UTF-8", base="pairs"),
    case("hidden-not-utf8", write("hidden.jsonl", b'{"query_id": "q6\x80", "positive_ids": ["d1"]}\n'), [],
         "{hidden}:1: not valid UTF-8", base="hidden"),
    # empty text / ids
    case("corpus-empty-text", set_line(C, 5, '{"_id": "d5", "title": "", "text": "  "}'), [],
         "{beir}/corpus.jsonl:5: document 'd5' has an empty title and an empty text"),
    case("corpus-empty-id", set_line(C, 5, '{"_id": " ", "text": "x"}'), [],
         "{beir}/corpus.jsonl:5: field '_id' is empty"),
    case("queries-empty-text", set_line(Q, 1, '{"_id": "q1", "text": ""}'), [],
         "{beir}/queries.jsonl:1: query 'q1' has an empty text"),
    case("pairs-empty-query", set_line("pairs.jsonl", 1, '{"query_id": "q6", "query": " ", "positive_ids": ["d1"]}'),
         [], "{pairs}:1: field 'query' is empty", base="pairs"),
    # empty corpus / no queries / missing files
    case("corpus-empty", write(C, ""), [], "{beir}/corpus.jsonl: empty corpus"),
    case("queries-blank", write(Q, "\n\n"), [], "{beir}/queries.jsonl: no queries"),
    case("qrels-header-only", write(T, "query-id\tcorpus-id\tscore\n"), [],
         "{beir}/qrels/test.tsv: no qrels rows after the header"),
    case("split-without-positives", write("beir/qrels/dev.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t0\n"),
         ["--split", "dev"], "{beir}/qrels/dev.tsv: no query of split 'dev' has a positive"),
    case("pairs-empty", write("pairs.jsonl", ""), [], "{pairs}: no training pairs", base="pairs"),
    case("split-missing", None, ["--split", "nosuch"], "{beir}/qrels/nosuch.tsv: file not found"),
    case("corpus-missing", remove(C), [], "{beir}/corpus.jsonl: file not found"),
    case("beir-folder-missing", None, ["--beir", "{tmp}/nowhere"], "{tmp}/nowhere: BEIR folder not found"),
    # corpus smaller than depth
    case("corpus-smaller-than-depth", None, ["--depth", "7"], "--depth: 7 is larger than the corpus (6 documents)"),
    # bad flag values
    case("max-queries-0", None, ["--max-queries", "0"], "--max-queries: must be >= 1, got 0"),
    case("max-queries-negative", None, ["--max-queries", "-5"], "--max-queries: must be >= 1, got -5"),
    case("depth-0", None, ["--depth", "0"], "--depth: must be >= 1, got 0"),
    case("batch-size-0", None, ["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
    case("shift-equals-depth", None, ["--shift", "3"], "--shift: 3 must be < --depth 3"),
    case("preset-shift-beyond-depth", None, ["--method", "shift10", "--depth", "5"],
         "--shift: 10 (from --method shift10) must be < --depth 5"),
    case("num-negatives-beyond-depth", None, ["--num-negatives", "4"],
         "--num-negatives: 4 is more than the window can give: --depth 3 - --shift 0 = 3"),
    case("num-negatives-beyond-window", None, ["--depth", "5", "--window", "2", "--num-negatives", "3"],
         "--num-negatives: 3 is more than the window can give: min(--window 2, --depth 5 - --shift 0) = 2"),
    case("num-negatives-0", None, ["--num-negatives", "0"], "--num-negatives: must be an integer >= 1, got 0"),
    case("perc-0", None, ["--perc", "0"], "--perc: must be in (0, 2], got 0.0"),
    case("perc-2.5", None, ["--perc", "2.5"], "--perc: must be in (0, 2], got 2.5"),
    case("min-above-max-score", None, ["--min-score", "0.9", "--max-score", "0.1"],
         "--min-score: 0.9 is above max_score 0.1"),
    case("method-unknown", None, ["--method", "nosuch"], "--method: unknown preset 'nosuch'"),
    case("method-typo", None, ["--method", "percpos"], "--method: unknown preset 'percpos' (did you mean 'percpos"),
    case("temperature-0", None, ["--temperature", "0"], "--temperature: must be a finite number > 0, got 0.0"),
    case("temperature-negative", None, ["--temperature", "-1"], "--temperature: must be a finite number > 0"),
    case("temperature-nan", None, ["--temperature", "nan"], "--temperature: must be a finite number > 0, got nan"),
    case("temperature-not-a-number", None, ["--temperature", "warm"],
         "nvr mine: error: argument --temperature: invalid float value: 'warm'"),
    case("selection-unknown", None, ["--selection", "best"], "argument --selection: invalid choice: 'best'"),
    case("depth-not-an-int", None, ["--depth", "ten"], "argument --depth: invalid int value: 'ten'"),
    case("no-input", None, [], "give exactly one of --beir FOLDER, --pairs FILE (with --corpus) or --dataset", base="none"),
    case("beir-and-pairs", None, ["--pairs", "{pairs}"], "give exactly one of --beir FOLDER, --pairs FILE (with --corpus) or --dataset"),
    case("pairs-without-corpus", None, [], "--pairs needs --corpus", base="pairs-nocorpus"),
    # output paths
    case("out-is-dir", mkdir("outdir"), ["--out", "{tmp}/outdir"], "--out {tmp}/outdir: is a folder"),
    case("out-is-corpus", None, ["--out", "{beir}/corpus.jsonl"],
         "--out {beir}/corpus.jsonl: is an input of this run (--beir {beir}'s corpus.jsonl)"),
    case("out-is-other-qrels", None, ["--out", "{beir}/qrels/train.tsv"],
         "--out {beir}/qrels/train.tsv: is an input of this run (--beir {beir}'s qrels/train.tsv)"),
    case("out-symlink-to-queries", symlink("link.jsonl", Q), ["--out", "{tmp}/link.jsonl"],
         "--out {tmp}/link.jsonl: is an input of this run (--beir {beir}'s queries.jsonl)"),
    case("out-is-pairs", None, ["--out", "{pairs}"], "--out {pairs}: is an input of this run (--pairs)",
         base="pairs"),
    case("out-is-hidden", None, ["--out", "{hidden}"], "--out {hidden}: is an input of this run (--hidden)",
         base="hidden"),
    case("out-under-a-file", write("afile", "x"), ["--out", "{tmp}/afile/mined.jsonl"],
         "--out {tmp}/afile/mined.jsonl: cannot create its folder: {tmp}/afile is a file"),
    case("stats-is-dir", mkdir("statsdir"), ["--stats", "{tmp}/statsdir"], "--stats {tmp}/statsdir: is a folder"),
    case("stats-equals-out", None, ["--stats", "{out}"], "--stats {out}: same file as --out"),
    case("stats-is-queries", None, ["--stats", "{beir}/queries.jsonl"],
         "--stats {beir}/queries.jsonl: is an input of this run"),
    case("stats-is-corpus", None, ["--stats", "{beir}/corpus.jsonl"],
         "--stats {beir}/corpus.jsonl: is an input of this run (--corpus)", base="pairs"),
    case("cache-dir-is-file", write("cachefile", "x"), ["--cache-dir", "{tmp}/cachefile"],
         "--cache-dir {tmp}/cachefile: is a file, expected a folder"),
]


def mine_argv(w: SimpleNamespace, base: str, extra: list[str]) -> list[str]:
    if base in ("beir", "hidden"):
        argv = ["mine", "--beir", str(w.beir), "--split", "test"]
        if base == "hidden":
            argv += ["--hidden", str(w.hidden)]
    elif base == "pairs":
        argv = ["mine", "--pairs", str(w.pairs), "--corpus", str(w.beir / "corpus.jsonl")]
    elif base == "pairs-nocorpus":
        argv = ["mine", "--pairs", str(w.pairs)]
    else:  # none
        argv = ["mine"]
    return argv + COMMON + ["--out", str(w.out)] + [fmt(a, w) for a in extra]


def check_one_error(capsys, rc: int, fragment: str, command: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err, err
    assert err.count("error:") == 1, err
    assert f"nvr {command}: error:" in err, err
    assert fragment in err, f"expected {fragment!r} in:\n{err}"
    return err


@pytest.mark.parametrize("edits, extra, fragment, base", MINE_CASES)
def test_mine_bad_input(tmp_path, capsys, edits, extra, fragment, base):
    w = workspace(tmp_path)
    for edit in edits:
        edit(w)
    before = snapshot(tmp_path)
    rc = main(mine_argv(w, base, extra))
    check_one_error(capsys, rc, fmt(fragment, w), "mine")
    assert snapshot(tmp_path) == before            # every file byte-identical, nothing new
    assert w.out.read_bytes() == PREV_MINED
    assert not list(tmp_path.rglob(".*.tmp"))


def test_good_workspace_mines(tmp_path, capsys):
    """The uncorrupted workspace mines fine (so each case fails only for its corruption)."""
    w = workspace(tmp_path)
    for base in ("beir", "pairs", "hidden"):
        assert main(mine_argv(w, base, [])) == 0, capsys.readouterr().err
        n = len(w.out.read_text().splitlines())
        stats = json.loads((w.tmp / "out" / "mined.jsonl.stats.json").read_text())
        assert n == stats["queries_kept"] >= 1
    assert not list(tmp_path.rglob(".*.tmp")) and not list(tmp_path.rglob("*.publish.json"))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_mine_out_in_read_only_folder(tmp_path, capsys):
    w = workspace(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        before = snapshot(tmp_path)
        rc = main(mine_argv(w, "beir", ["--out", str(ro / "m.jsonl")]))
        check_one_error(capsys, rc, f"--out {ro / 'm.jsonl'}: folder {ro} is not writable", "mine")
        assert snapshot(tmp_path) == before
    finally:
        ro.chmod(0o755)


def test_mine_out_in_unwritable_folder_simulated(tmp_path, capsys, monkeypatch):
    """The same check under any user: the folder is reported unwritable by os.access."""
    w = workspace(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real_access(p, mode, **kw))
    before = snapshot(tmp_path)
    rc = main(mine_argv(w, "beir", ["--out", str(ro / "sub" / "m.jsonl")]))
    check_one_error(capsys, rc, f"--out {ro / 'sub' / 'm.jsonl'}: folder {ro} is not writable", "mine")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- nvr check
def _raw(edit):
    def make(w):
        raw = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))
        edit(raw, w)
        return yaml.safe_dump(raw, sort_keys=False).encode()
    return make


def _text(edit):
    return lambda w: _b(edit(SMOKE.read_text(encoding="utf-8"), w))


def _set(dotted: str, value):
    def edit(raw, w):
        *parents, last = dotted.split(".")
        node = raw
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = _fmt_all(value, w)
    return _raw(edit)


def _fmt_all(value, w):
    if isinstance(value, str):
        return fmt(value, w)
    if isinstance(value, dict):
        return {k: _fmt_all(v, w) for k, v in value.items()}
    return value


def _beir_local(**extra):
    def edit(raw, w):
        raw["dataset"] = {"name": "tiny", "source": "beir_local", "path": str(w.beir), "n_test": 5,
                          "train_split": "train", "test_split": "test", **extra}
    return _raw(edit)


CHECK_CASES = [
    pytest.param(_text(lambda t, w: t + "seed: 14\n"),
                 "{tmp}/params.yaml:%d: key 'seed' given twice in one mapping (first at line 3)"
                 % (len(SMOKE.read_text(encoding="utf-8").splitlines()) + 1),
                 id="duplicate-top-key"),
    pytest.param(_text(lambda t, w: t.replace("    batch_size: 4\n", "    batch_size: 4\n    batch_size: 8\n", 1)),
                 "key 'batch_size' given twice in one mapping", id="duplicate-nested-key"),
    pytest.param(_text(lambda t, w: t.replace("learning_rate: 3.0e-05", "learning_rate: 2e-5", 1)),
                 "train.stage1.learning_rate: expected a number, got '2e-5' (YAML reads '2e-5' as a string",
                 id="learning-rate-2e-5"),
    pytest.param(_text(lambda t, w: t + "report:\n  title: x\n"), "report: unknown top-level key", id="top-key-report"),
    pytest.param(_set("train.device", "cuda"), "train.device: unknown key", id="train-device"),
    pytest.param(_set("mining.sweeps", [1, 2]), "mining.sweeps: unknown key", id="mining-sweeps"),
    pytest.param(_set("train.stage2_retrieval_fraction", "half"),
                 "train.stage2_retrieval_fraction: expected a number, got 'half'", id="fraction-half"),
    pytest.param(_set("train.stage2_retrieval_fraction", 1.5),
                 "train.stage2_retrieval_fraction: must be in (0, 1], got 1.5", id="fraction-1.5"),
    pytest.param(_set("dataset", {"source": "beir_local", "path": "{tmp}/no/such/beir"}),
                 "dataset.path: BEIR folder {tmp}/no/such/beir does not exist", id="beir-local-missing"),
    pytest.param(_beir_local(train_split="dev"), "dataset.train_split: {beir}/qrels/dev.tsv not found",
                 id="beir-local-missing-split"),
    pytest.param(_set("dataset.source", "beir"), "dataset.source: 'beir' is not one of", id="dataset-source"),
    pytest.param(_set("teachers.minilm.depth", 3), "teachers.minilm.depth: 3 candidates cannot serve mining.methods",
                 id="teacher-depth-too-small"),
    pytest.param(_set("train.stage2.in_batch_negatives", True), "train.stage2.in_batch_negatives: must be false",
                 id="stage2-in-batch"),
    pytest.param(_set("train.stage1.num_negatives", 9), "train.stage1.num_negatives: 9 > mining.num_negatives (4)",
                 id="stage1-more-negatives-than-mined"),
    pytest.param(_set("mining.reference", "percpos"), "mining.reference: 'percpos' is not one of",
                 id="mining-reference"),
    pytest.param(_set("mining.methods.naive", {"perc": 5}), "mining.methods.naive.perc: must be in (0, 2]",
                 id="method-perc"),
    pytest.param(_set("teacher", "mpnet"), "teacher: 'mpnet' is not one of", id="teacher-undefined"),
    pytest.param(_set("seed", -1), "seed: expected a non-negative integer, got -1", id="seed-negative"),
    pytest.param(_raw(lambda raw, w: (raw.update(teacher_ablation=["minilm"]), raw["train"].update(teacher_models=[]))),
                 "teacher_ablation: the teacher ensembles need at least two non-random teachers",
                 id="ablation-one-teacher"),
    pytest.param(_set("evaluate.reference_models", ["teacher"]), "evaluate.reference_models: must include 'base'",
                 id="reference-models"),
    pytest.param(_set("student.pooling", "max"), "student.pooling: 'max' is not one of", id="student-pooling"),
    pytest.param(_set("train.seeds", [13, 13]), "train.seeds: expected a non-empty list of distinct", id="seeds-twice"),
    pytest.param(_text(lambda t, w: t + "extra: [unclosed\n"), "malformed YAML", id="malformed-yaml"),
    pytest.param(_text(lambda t, w: t.encode() + b"# caf\xe9\n"),
                 "params.yaml:%d: not valid UTF-8 (byte 0xe9 at column 6)"
                 % (len(SMOKE.read_text(encoding="utf-8").splitlines()) + 1), id="params-not-utf8"),
    pytest.param(None, "{tmp}/params.yaml: file not found", id="params-missing"),
]


@pytest.mark.parametrize("make, fragment", CHECK_CASES)
def test_check_bad_params(tmp_path, capsys, make, fragment):
    w = workspace(tmp_path)
    params = tmp_path / "params.yaml"
    if make is not None:
        params.write_bytes(make(w))
    before = snapshot(tmp_path)
    rc = main(["check", str(params)])
    check_one_error(capsys, rc, fmt(fragment, w), "check")
    assert snapshot(tmp_path) == before


def test_check_good_params(tmp_path, capsys):
    """The unmodified smoke profile and a beir_local variant pass (the cases above fail for their edit)."""
    w = workspace(tmp_path)
    assert main(["check", str(SMOKE)]) == 0, capsys.readouterr().err
    params = tmp_path / "params.yaml"
    params.write_bytes(_beir_local()(w))
    assert main(["check", str(params)]) == 0, capsys.readouterr().err


# --------------------------------------------------------------------------- a kill inside publish
KILL_AFTER_FIRST_RENAME = r"""
import os, sys
import nvr.io
from nvr.cli import main

target = os.path.abspath(sys.argv[1])
real_replace = os.replace

def replace(src, dst, *args, **kwargs):
    real_replace(src, dst, *args, **kwargs)
    if os.path.abspath(dst) == target:   # the mined file is in place, its stats not yet
        os._exit(137)

nvr.io.os.replace = replace
sys.exit(main(sys.argv[2:]))
"""


def _n_lines(p: Path) -> int:
    return len(p.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("then", ["recover", "next-mine"])
def test_kill_between_publish_renames_is_rolled_forward(tmp_path, then):
    beir = tmp_path / "beir"
    shutil.copytree(TINY, beir)
    out, stats = tmp_path / "mined.jsonl", tmp_path / "mined.jsonl.stats.json"
    base = ["mine", "--beir", str(beir), "--split", "test", *COMMON, "--out", str(out)]
    assert main(base + ["--max-queries", "2"]) == 0
    assert _n_lines(out) == json.loads(stats.read_text())["queries_kept"] == 2

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_RENAME, str(out), *base, "--max-queries", "5"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 137, res.stderr
    # killed between the renames: the new mined file beside the old stats, the journal left behind
    assert _n_lines(out) == 5 and json.loads(stats.read_text())["queries_kept"] == 2
    assert (tmp_path / ".mined.jsonl.publish.json").is_file()
    assert len(list(tmp_path.glob(".mined.jsonl.stats.json.*.tmp"))) == 1

    if then == "recover":
        assert nvr.io.recover(out) is True
        expected = 5                                     # the killed run's outputs, both of them
    else:
        assert main(base + ["--max-queries", "4"]) == 0  # rolls the killed run forward, then publishes its own
        expected = 4
    st = json.loads(stats.read_text())
    assert _n_lines(out) == st["queries_kept"] == st["queries"] == expected
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp file, no journal
