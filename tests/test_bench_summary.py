"""The `make bench` table: each target's verdict comes from the measured numbers, and a benchmark
that did not run is reported as not run, never as met."""

import importlib.util
import json
from pathlib import Path

spec = importlib.util.spec_from_file_location("bench_summary", Path(__file__).parents[1] / "benchmarks" / "bench_summary.py")
bs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bs)


def test_encoder_needs_speed_and_agreement():
    fast = {"speedup": 2.6, "max_cosine_diff": 1e-5, "max_length": 128}
    assert bs.encoder_rows(fast)[0]["verdict"] == "met"
    assert bs.encoder_rows({**fast, "speedup": 1.3})[0]["verdict"] == "missed"
    assert bs.encoder_rows({**fast, "max_cosine_diff": 2e-3})[0]["verdict"] == "missed"
    assert bs.encoder_rows(None)[0]["verdict"] == "not run"


def test_encoder_takes_the_fastest_variant_that_agrees():
    def d(*variants):
        return {"max_length": 128, "native_bf16": False, "runs": [
            {"encoder": "sentence-transformers", "speedup": 1.0, "max_cosine_diff": 0.0, "top10_overlap": 1.0},
            *({"encoder": n, "speedup": x, "max_cosine_diff": c, "top10_overlap": o} for n, x, c, o in variants)]}
    exact = ("nvr", 1.2, 2e-7, 1.0)
    assert bs.encoder_rows(d(exact, ("nvr-bf16", 2.7, 2e-5, 0.995)))[0]["verdict"] == "met"
    assert bs.encoder_rows(d(exact, ("nvr-int8", 3.0, 7e-2, 0.86)))[0]["verdict"] == "missed"   # fast, disagrees
    assert bs.encoder_rows(d(exact, ("nvr-bf16", 2.7, 2e-5, 0.98)))[0]["verdict"] == "missed"  # overlap too low
    row = bs.encoder_rows(d(exact, ("nvr-onnxruntime", 1.5, 2e-7, 1.0)))[0]
    assert row["verdict"] == "missed" and "nvr-onnxruntime 1.50x" in row["measured"] and "no native bf16" in row["measured"]


def test_miner_ratio_identity_and_memory():
    def runs(nvr_s, st_s, same=1.0, nvr_mb=700, st_mb=1000):
        return {"runs": [
            {"setting": "naive", "tool": "nvr", "wall_s": nvr_s, "identical_lists": same, "peak_rss_mb": nvr_mb},
            {"setting": "naive", "tool": "sentence-transformers", "wall_s": st_s, "identical_lists": same,
             "peak_rss_mb": st_mb}]}
    assert bs.miner_rows({3000: runs(10, 25)})[0]["verdict"] == "met"
    assert bs.miner_rows({3000: runs(10, 15)})[0]["verdict"] == "missed"
    assert bs.miner_rows({3000: runs(10, 25, same=0.99)})[0]["verdict"] == "missed"
    assert bs.miner_rows({3000: runs(10, 25, nvr_mb=1200)})[0]["verdict"] == "missed"
    assert bs.miner_rows({10000: None})[0]["verdict"] == "not run"
    two = runs(30, 25)
    two["runs"].append({"setting": "naive", "tool": "nvr-onnxruntime", "wall_s": 12, "identical_lists": 1.0,
                        "peak_rss_mb": 900})
    row = bs.miner_rows({3000: two})[0]
    assert row["verdict"] == "met" and "nvr-onnxruntime 2.08x" in row["measured"]    # any variant may meet it


def test_search_uses_the_peak_of_the_same_run():
    d = {"sgemm_gflops": {"peak": 200.0}, "runs": [
        {"variant": "nvr", "N": 10000, "pct_peak": 36.0, "gflops": 72.0},
        {"variant": "numpy", "N": 10000, "pct_peak": 90.0, "gflops": 180.0},
        {"variant": "nvr", "N": 100000, "pct_peak": 79.0, "gflops": 158.0}]}
    rows = bs.search_rows(d)
    assert [r["verdict"] for r in rows] == ["missed", "met"]
    assert "of 200 GFLOP/s" in rows[0]["measured"]


def test_training_and_gradient_cache():
    cmp_rows = [{"framework": "nvr", "label": "nvr", "batch": 16, "steps": 21, "qlen": 32, "plen": 64, "steps_per_s": 1.0},
                {"framework": "st", "label": "ST MNRL", "batch": 16, "steps": 21, "qlen": 32, "plen": 64, "steps_per_s": 0.9}]
    gc = [{"label": "nvr grad-cache", "batch": b, "peak_anon_mb": m} for b, m in ((64, 1000), (256, 960), (1024, 1030))]
    rows = bs.train_rows(cmp_rows, gc)
    assert [r["verdict"] for r in rows] == ["missed", "met", "met"]
    bf16 = [{**cmp_rows[0], "label": "nvr bf16", "steps_per_s": v} for v in (2.0, 1.7, 2.1)]
    sts = [{**cmp_rows[1], "steps_per_s": v} for v in (0.9, 1.0, 0.95)]
    rows = bs.train_rows(cmp_rows[:1] + bf16 + sts, None)
    assert rows[0]["verdict"] == "met" and rows[0]["measured"].startswith("2.11x")   # medians: 2.0 / 0.95
    assert "bf16 21 steps x 3 repeats" in rows[0]["measured"]


def test_short_bf16_run_only_where_bf16_is_emulated(monkeypatch):
    monkeypatch.setattr("nvr.text.backends.cpu_has_native_bf16", lambda: False)   # avx2, avx512f only
    assert not bs.native_bf16()
    short = [{"framework": "nvr", "label": "nvr bf16", "batch": 16, "steps": 6, "qlen": 32, "plen": 64,
              "steps_per_s": 0.05}]
    st = [{"framework": "st", "label": "ST MNRL", "batch": 16, "steps": 21, "qlen": 32, "plen": 64, "steps_per_s": 1.0}]
    nv = [{**st[0], "framework": "nvr", "label": "nvr"}]
    row = bs.train_rows(nv + st + short, None)[0]
    assert row["verdict"] == "missed" and "bf16 6 steps x 1 repeats" in row["measured"] and "emulated" in row["measured"]
    monkeypatch.setattr("nvr.text.backends.cpu_has_native_bf16", lambda: True)    # avx512_bf16 too
    assert bs.native_bf16() and "emulated" not in bs.train_rows(nv + st + short, None)[0]["measured"]
    gc_growing = [{"label": "nvr grad-cache", "batch": b, "peak_anon_mb": m} for b, m in ((64, 1000), (1024, 4000))]
    assert bs.train_rows(None, gc_growing)[-1]["verdict"] == "missed"
    assert bs.train_rows(None, None)[0]["verdict"] == "not run"


def test_stage_overhead_against_the_recorded_baseline(tmp_path, monkeypatch):
    base = tmp_path / "before.json"
    base.write_text(json.dumps({"rows": [{"what": "notebook, no work (set-up cell + box + HTML)", "median_s": 8.0}]}))
    monkeypatch.setattr(bs, "STAGE_BASELINE", base)
    now = lambda s, noop: {"rows": [{"what": "notebook, no work (set-up cell + box + HTML)", "median_s": s},  # noqa: E731
                                    {"what": "dvc repro, nothing to do (45 stages)", "median_s": noop}]}
    assert [r["verdict"] for r in bs.stage_rows(now(3.9, 3.0))] == ["met", "met"]
    assert [r["verdict"] for r in bs.stage_rows(now(6.2, 5.5))] == ["missed", "missed"]


def test_teacher_cache_row():
    d = {"model": "pkg:all-mpnet-base-v2", "n": 300, "first_s": 40.0, "second_s": 0.5, "identical": True}
    assert bs.teacher_rows(d)[0]["verdict"] == "met"
    assert bs.teacher_rows({**d, "identical": False})[0]["verdict"] == "missed"
    assert bs.teacher_rows({**d, "second_s": 30.0})[0]["verdict"] == "missed"
    assert bs.teacher_rows(None)[0]["verdict"] == "not run"
