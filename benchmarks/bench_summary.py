"""Every speed target of the project in one table (``make bench``).

Runs the benchmark scripts of this folder one after another, each in its own processes, on this
machine and in this run (so the sgemm peak the search ratio divides by is measured here and now),
then prints one table: target, measured value, met or missed. The raw JSON of every script is kept
under ``--out-dir`` (default ``reports/bench/summary/``) and the table is written beside it as
``summary.md``.

    python benchmarks/bench_summary.py              # the full sizes of the targets (about an hour on 2 vCPUs)
    python benchmarks/bench_summary.py --quick      # smaller sizes, same table (about 15 minutes)

Targets (issue "Fast on the CPU"):

* encoder: nvr ``Encoder`` >= 2.5x sentence-transformers ``encode`` (same model, texts, length),
  embeddings agreeing to max |1 - cos| <= 1e-3;
* miner end to end: >= 2x ``mine_hard_negatives`` at 3,000 and 10,000 documents, identical
  negatives, lower peak memory;
* search: >= 70 % of the sgemm peak at 10k documents (and at 100k);
* training: nvr steps/s >= 2x sentence-transformers' MNRL fit at equal batch and lengths (and >= 1.0x
  in fp32); gradient caching flat in memory from batch 64 to 1024;
* stage overhead: the median fixed cost of a stage at most half of the 8.22 s measured before the
  work on it (``reports/bench/bench_stage_before.json``, revision 73b7187); a no-op ``dvc repro``
  under 5 s;
* teacher cost: the teacher's corpus embedding computed once per machine (a second project is
  served by the shared embedding store).

A target whose benchmark did not run (a failed script) is reported as such, never as met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STAGE_BASELINE = ROOT / "reports" / "bench" / "bench_stage_before.json"


def _run(name: str, args: list[str], out: Path, log: Path) -> dict | list | None:
    """Run ``benchmarks/<name>.py args --out out``; its JSON, or None when it failed."""
    cmd = [sys.executable, str(HERE / f"{name}.py"), *args, "--out", str(out)]
    print(f"bench_summary: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    print(f"bench_summary: {name} finished in {time.perf_counter() - t0:.0f} s (exit {rc})", file=sys.stderr, flush=True)
    if rc != 0 or not out.is_file():
        return None
    return json.loads(out.read_text())


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); without it torch emulates bf16."""
    from nvr.text.backends import cpu_has_native_bf16

    return cpu_has_native_bf16()


def cpu_summary() -> str:
    """The CPU's model name and the instruction sets that decide the fast paths (AVX-512, native bf16, AMX)."""
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"({name or 'unknown CPU'}; {', '.join(isa) or 'no AVX2'})"


def _verdict(ok: bool | None) -> str:
    return "not run" if ok is None else ("met" if ok else "missed")


def encoder_rows(d: dict | None) -> list[dict]:
    """One row: the fastest variant whose embeddings agree with sentence-transformers' fp32 ones
    (max |1 - cos| <= 1e-3 and top-10 overlap >= 0.99), every variant's figures beside it."""
    name = "encoder >= 2.5x ST encode (max |1-cos| <= 1e-3, top-10 overlap >= 0.99)"
    if d is None:
        return [{"target": name, "measured": "-", "verdict": _verdict(None)}]
    runs = d.get("runs")
    if not runs:   # an older single-variant result
        runs = [{"encoder": "nvr", "speedup": d["speedup"], "max_cosine_diff": d["max_cosine_diff"],
                 "top10_overlap": d.get("top10_overlap", 1.0)}]
    variants = [r for r in runs if r["encoder"] != "sentence-transformers"]
    agree = [r for r in variants if r["max_cosine_diff"] <= 1e-3 and r.get("top10_overlap", 1.0) >= 0.99]
    best = max(agree, key=lambda r: r["speedup"]) if agree else None
    each = "; ".join(f"{r['encoder']} {r['speedup']:.2f}x (1-cos {r['max_cosine_diff']:.0e}, "
                     f"top-10 {r.get('top10_overlap', 1.0):.3f})" for r in variants)
    bf16 = "" if d.get("native_bf16", True) else "; this CPU has no native bf16 (emulated)"
    return [{"target": name, "measured": f"{each} at {d['max_length']} tokens{bf16}",
             "verdict": _verdict(best is not None and best["speedup"] >= 2.5)}]


def miner_rows(runs: dict[int, dict | None]) -> list[dict]:
    rows = []
    for docs, d in runs.items():
        name = f"miner >= 2x mine_hard_negatives at {docs:,} docs, identical, less memory"
        if d is None:
            rows.append({"target": name, "measured": "-", "verdict": _verdict(None)})
            continue
        by = {(r["setting"], r["tool"]): r for r in d["runs"]}
        for setting in sorted({s for s, _ in by}):
            st = by.get((setting, "sentence-transformers"))
            ours = [r for (s_, t), r in by.items() if s_ == setting and t.startswith("nvr")]
            if not ours or not st:
                continue
            parts, ok = [], False
            for nvr in ours:
                ratio = st["wall_s"] / nvr["wall_s"]
                mem = nvr["peak_rss_mb"] / st["peak_rss_mb"]
                same = nvr["identical_lists"]
                parts.append(f"{nvr['tool']} {ratio:.2f}x, identical lists {same:.1%}, peak RSS {mem:.2f}x of ST's")
                ok = ok or (ratio >= 2.0 and same == 1.0 and mem < 1.0)
            rows.append({"target": f"{name} ({setting})", "measured": "; ".join(parts), "verdict": _verdict(ok)})
    return rows


def search_rows(d: dict | None) -> list[dict]:
    if d is None:
        return [{"target": "search >= 70% of sgemm peak", "measured": "-", "verdict": _verdict(None)}]
    peak = d["sgemm_gflops"]["peak"]
    rows = []
    for r in d["runs"]:
        if r["variant"] != "nvr":
            continue
        rows.append({"target": f"search >= 70% of sgemm peak at {r['N']:,} docs",
                     "measured": f"{r['pct_peak']:.0f}% ({r['gflops']:.0f} of {peak:.0f} GFLOP/s measured in this run)",
                     "verdict": _verdict(r["pct_peak"] >= 70)})
    return rows


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def train_rows(compare: list | None, gc: list | None) -> list[dict]:
    """Median steps/s over the repeats of each framework (rows with an error are left out)."""
    rows = []
    ok_rows = [r for r in (compare or []) if r.get("steps_per_s")]
    by = {}
    for r in ok_rows:
        by.setdefault(r["label"], []).append(r)
    st, fp32, bf16 = by.get("ST MNRL"), by.get("nvr"), by.get("nvr bf16")
    if compare is None or not st or not fp32:
        rows.append({"target": "training >= 2x ST MNRL steps/s", "measured": "-", "verdict": _verdict(None)})
    else:
        r0 = fp32[0]
        st_rate = _median([r["steps_per_s"] for r in st])
        how = (f"batch {r0['batch']}, {r0['steps']} steps ({max(1, r0['steps'] - 1)} timed) x {len(fp32)} repeats, "
               f"lengths {r0['qlen']}/{r0['plen']}, median")
        fp = _median([r["steps_per_s"] for r in fp32]) / st_rate
        if bf16:
            b = _median([r["steps_per_s"] for r in bf16]) / st_rate
            b0 = bf16[0]
            emulated = "" if native_bf16() else "; this CPU has no native bf16 (emulated)"
            rows.append({"target": "training >= 2x ST MNRL steps/s (bf16 autocast)",
                         "measured": f"{b:.2f}x, bf16 {b0['steps']} steps x {len(bf16)} repeats vs the fp32 ST median"
                                     f"{emulated}", "verdict": _verdict(b >= 2.0)})
        else:
            rows.append({"target": "training >= 2x ST MNRL steps/s (bf16 autocast)",
                         "measured": f"bf16 not run; fp32 {fp:.2f}x, {how}", "verdict": _verdict(fp >= 2.0)})
        rows.append({"target": "training >= 1.0x ST MNRL steps/s in fp32", "measured": f"{fp:.2f}x, {how}",
                     "verdict": _verdict(fp >= 1.0)})
    if gc is None:
        rows.append({"target": "gradient cache flat in memory, batch 64 -> 1024", "measured": "-", "verdict": _verdict(None)})
    else:
        pts = sorted((r["batch"], r["peak_anon_mb"]) for r in gc if "cache" in r["label"])
        if pts:
            lo, hi = min(m for _, m in pts), max(m for _, m in pts)
            rows.append({"target": f"gradient cache flat in memory, batch {pts[0][0]} -> {pts[-1][0]}",
                         "measured": " / ".join(f"{m:.0f}" for _, m in pts) + f" MB peak anon (max/min {hi / lo:.2f})",
                         "verdict": _verdict(hi / lo <= 1.25)})
    return rows


def stage_rows(d: dict | None) -> list[dict]:
    if d is None:
        return [{"target": "stage fixed cost <= 50% of before", "measured": "-", "verdict": _verdict(None)}]
    before = json.loads(STAGE_BASELINE.read_text())["rows"] if STAGE_BASELINE.is_file() else None
    now = {r["what"].strip(): r["median_s"] for r in d["rows"]}
    work = next(v for k, v in now.items() if k.startswith("notebook, no work"))
    noop = next(v for k, v in now.items() if k.startswith("dvc repro"))
    rows = []
    if before:
        base = next(r["median_s"] for r in before if r["what"].startswith("notebook, no work"))
        rows.append({"target": "stage fixed cost <= 50% of before",
                     "measured": f"{work:.2f} s median vs {base:.2f} s before ({work / base:.0%})",
                     "verdict": _verdict(work <= base / 2)})
    rows.append({"target": "dvc repro with nothing to do < 5 s", "measured": f"{noop:.2f} s median",
                 "verdict": _verdict(noop < 5)})
    return rows


def teacher_rows(d: dict | None) -> list[dict]:
    name = "teacher embedding computed once per machine (shared store)"
    if d is None:
        return [{"target": name, "measured": "-", "verdict": _verdict(None)}]
    return [{"target": name, "measured": f"second project {d['second_s']:.1f} s vs first {d['first_s']:.1f} s "
             f"({d['n']} passages, {d['model']}), identical arrays: {d['identical']}",
             "verdict": _verdict(d["identical"] and d["second_s"] < 0.2 * d["first_s"])}]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a check of the table, not the targets' sizes)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "reports" / "bench" / "summary")
    a = ap.parse_args(argv)
    out = a.out_dir
    out.mkdir(parents=True, exist_ok=True)
    q = a.quick
    t0 = time.perf_counter()
    j = lambda name: out / f"{name}.json"  # noqa: E731
    lg = lambda name: out / f"{name}.log"  # noqa: E731
    enc = _run("bench_encode", ["--n", "300" if q else "1000", "--max-length", "128", "--repeat", "1" if q else "3",
                                       "--variants", "nvr,nvr-onnxruntime,nvr-bf16,ort-int8-probe"],
               j("encode"), lg("encode"))
    docs = [3000] if q else [3000, 10000]
    # the ONNX Runtime backend is timed at the smaller size only: at 10k it would add two ~4-minute runs
    mining = {n: _run("bench_mining", ["--max-docs", str(n), "--settings", "naive" if q else "naive,percpos095",
                                       "--nvr-backends", "torch,onnxruntime" if n == docs[0] else "torch"],
                      j(f"mining_{n}"), lg(f"mining_{n}")) for n in docs}
    search = _run("bench_search", ["--sizes", "10000" if q else "10000,100000", "--variants", "nvr"],
                  j("search"), lg("search"))
    # on a CPU without native bf16 torch emulates it (~20x slower than fp32): a short bf16 run shows that
    # much, without spending half an hour on it
    bf16_short = [] if native_bf16() else ["--bf16-steps", "6", "--bf16-repeats", "1"]
    train = _run("bench_train", ["--steps", "6" if q else "21", "--repeats", "1" if q else "3", "--bf16",
                                 *bf16_short, "--gc-batches", ""], j("train"), lg("train"))
    gc = _run("bench_train", ["--skip-compare", "--gc-batches", "64,256" if q else "64,256,1024", "--gc-steps", "1"],
              j("train_gc"), lg("train_gc"))
    stage = _run("bench_stage", ["--repeats", "3" if q else "5"], j("stage"), lg("stage"))
    teacher = _run("bench_teacher_cache", ["--n", "100" if q else "300"], j("teacher_cache"), lg("teacher_cache"))

    rows = (encoder_rows(enc) + miner_rows(mining) + search_rows(search) + train_rows(train, gc) + stage_rows(stage)
            + teacher_rows(teacher))
    head = (f"nvr speed targets, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{platform.machine()} {cpu_summary()}, {len(os.sched_getaffinity(0))} CPUs"
            f"{' (quick sizes)' if q else ''}; all measured in this run ({time.perf_counter() - t0:.0f} s)")
    lines = [head, "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {r['target']} | {r['measured']} | **{r['verdict']}** |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    (out / "summary.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
