"""`nvr mine` on users' own data: help, outputs, options, and clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nvr.cli import MINING_FIELDS, main

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "beir_tiny"


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["mine", "--help"])
    text = capsys.readouterr().out
    for field in MINING_FIELDS:
        assert "--" + field.replace("_", "-") in text
    for opt in ["--beir", "--pairs", "--corpus", "--hidden", "--teacher", "--query-prefix", "--passage-prefix",
                "--max-query-length", "--max-passage-length", "--depth", "--cache-dir", "--out", "--stats",
                "--device", "--trust-remote-code", "--revision", "--pooling"]:
        assert opt in text, opt


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_mine_bm25_on_beir_folder(tmp_path):
    out = tmp_path / "mined.jsonl"
    assert main(["mine", "--beir", str(TINY), "--split", "test", "--teacher", "bm25", "--depth", "5",
                 "--method", "naive", "--num-negatives", "2", "--out", str(out)]) == 0
    got = rows(out)
    q6 = next(r for r in got if r["query_id"] == "q6")
    assert q6["positive_ids"] == ["d1", "d2"]          # both qrels positives are masked
    assert not set(q6["negative_ids"]) & {"d1", "d2"}
    for r in got:
        assert len(r["negative_ids"]) == len(r["negative_scores"]) == len(r["negative_ranks"]) <= 2
        assert r["negative_scores"] == sorted(r["negative_scores"], reverse=True)
    stats = json.loads((tmp_path / "mined.jsonl.stats.json").read_text())
    assert stats["queries"] == len(got) >= 5 and stats["method"] == "naive"


def test_mine_dense_percpos_matches_library_and_is_seeded(tmp_path):
    args = ["mine", "--beir", str(TINY), "--split", "test", "--teacher", "pkg:all-MiniLM-L6-v2", "--depth", "5", "--method",
            "percpos095_sampled10", "--num-negatives", "2", "--seed", "3", "--cache-dir", str(tmp_path / "c")]
    assert main(args + ["--out", str(tmp_path / "a.jsonl")]) == 0
    assert main(args + ["--out", str(tmp_path / "b.jsonl")]) == 0        # cached embeddings, same seed
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    for r in rows(tmp_path / "a.jsonl"):
        anchor = min(r["positive_scores"])
        assert all(s < anchor - abs(anchor) * 0.05 + 1e-6 for s in r["negative_scores"])


def test_pairs_input_with_hidden_labels_counts_false_negatives(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"query_id": "q6", "query": "European capital cities", "positive_ids": ["d1"]}) + "\n")
    hidden = tmp_path / "hidden.jsonl"
    hidden.write_text(json.dumps({"query_id": "q6", "positive_ids": ["d1", "d2"]}) + "\n")
    out = tmp_path / "m.jsonl"
    assert main(["mine", "--pairs", str(pairs), "--corpus", str(TINY / "corpus.jsonl"), "--hidden", str(hidden),
                 "--teacher", "bm25", "--depth", "3", "--method", "naive", "--num-negatives", "3",
                 "--out", str(out)]) == 0
    stats = json.loads((tmp_path / "m.jsonl.stats.json").read_text())
    negs = rows(out)[0]["negative_ids"]
    assert stats["false_negatives"] == int("d2" in negs)


@pytest.mark.parametrize("argv, fragment", [
    (["--beir", str(TINY), "--teacher", "bm25", "--depth", "50"], "depth"),
    (["--beir", str(TINY), "--teacher", "bm25", "--perc", "-1"], "perc"),
    (["--beir", str(TINY), "--teacher", "bm25", "--method", "percpos"], "percpos"),
    (["--beir", str(TINY / "missing"), "--teacher", "bm25"], "missing"),
    (["--teacher", "bm25"], "--beir"),
    (["--beir", str(TINY), "--teacher", "./no/such/model"], "no/such/model"),
])
def test_bad_input_one_clear_error_and_no_output(tmp_path, capsys, argv, fragment):
    out = tmp_path / "m.jsonl"
    assert main(["mine", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error" in err and fragment in err, err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_console_script_presets():
    res = subprocess.run([sys.executable, "-m", "nvr.cli", "presets"], capture_output=True, text=True, check=True)
    for name in ["naive", "shift10", "abs07", "marginpos005", "percpos095", "percpos095_sampled10", "top1_sampled10"]:
        assert name in res.stdout


def test_check_validates_params(capsys):
    assert main(["check", str(ROOT / "params.yaml")]) == 0
    assert "ok" in capsys.readouterr().out
