"""Benchmark nvr.mining.search.exact_topk against the machine's sgemm peak.

Synthetic normalized float32 corpora (memory-mapped from a temporary .npy, as the
embed stage writes them), Q queries, top-k by inner product. Each search runs in
its own subprocess so peak memory is measured per run:

* peak RSS: the child's ru_maxrss (includes the memory-mapped corpus pages it read);
* peak anon: the highest RssAnon (/proc/self/status, sampled every 5 ms) above
  the level before the search, i.e. what the search allocates itself; it should
  stay flat in N (chunks + the (Q, k) result), whatever the corpus size.

GFLOP/s = 2 Q N d / wall time, printed beside the measured sgemm peak (best of
np.matmul / torch.mm on a (query_chunk x d) @ (d x 32768) product).

    python benchmarks/bench_search.py --sizes 10000,100000,1000000 --out bench_search.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakAnon  # noqa: E402  (shared RssAnon sampler)


def sgemm_peak(m: int, d: int, n: int = 32768, repeat: int = 3) -> dict:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, d), dtype=np.float32)
    b = rng.standard_normal((n, d), dtype=np.float32)
    flops = 2.0 * m * n * d
    out = {}
    best = 1e9
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b.T
        best = min(best, time.perf_counter() - t0)
    out["numpy"] = flops / best / 1e9
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        best = 1e9
        for _ in range(repeat):
            t0 = time.perf_counter()
            torch.mm(ta, tb.T)
            best = min(best, time.perf_counter() - t0)
        out["torch"] = flops / best / 1e9
    except ImportError:
        pass
    out["peak"] = max(out.values())
    return out


def numpy_topk(xq, corpus, k, query_chunk, corpus_chunk):
    """Plain matmul + argpartition over the same chunks (no tie handling)."""
    nq = len(xq)
    best_s = np.full((nq, k), -np.inf, np.float32)
    best_i = np.zeros((nq, k), np.int64)
    for c0 in range(0, len(corpus), corpus_chunk):
        xb = np.ascontiguousarray(corpus[c0:c0 + corpus_chunk], dtype=np.float32)
        kc = min(k, len(xb))
        for q0 in range(0, nq, query_chunk):
            s = xq[q0:q0 + query_chunk] @ xb.T
            part = np.argpartition(-s, kc - 1, axis=1)[:, :kc]
            ps = np.take_along_axis(s, part, 1)
            cs = np.concatenate([best_s[q0:q0 + query_chunk], ps], 1)
            ci = np.concatenate([best_i[q0:q0 + query_chunk], part + c0], 1)
            o = np.argsort(-cs, axis=1, kind="stable")[:, :k]
            best_s[q0:q0 + query_chunk] = np.take_along_axis(cs, o, 1)
            best_i[q0:q0 + query_chunk] = np.take_along_axis(ci, o, 1)
    return best_s, best_i


def child(args) -> None:
    """One search in this process; prints a JSON line."""
    corpus = np.load(args.corpus, mmap_mode="r")
    xq = np.load(args.queries)
    sampler = PeakAnon()
    t0 = time.perf_counter()
    if args.variant == "nvr":
        from nvr.mining.search import exact_topk

        s, i = exact_topk(xq, corpus, args.k, query_chunk=args.query_chunk,
                          corpus_chunk=args.corpus_chunk, use_gpu=args.use_gpu, progress=False)
    else:
        s, i = numpy_topk(xq, corpus, args.k, args.query_chunk, args.corpus_chunk)
    wall = time.perf_counter() - t0
    search_anon_mb = sampler.stop()
    print(json.dumps({
        "wall_s": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "search_anon_mb": search_anon_mb,
        "checksum": float(s[:, 0].astype(np.float64).sum()),
        "first_ids": i[:3, :3].tolist(),
    }))


def make_corpus(path: Path, n: int, d: int, seed: int, block: int = 65536) -> None:
    """Normalized Gaussian rows written block by block (no n x d array in memory)."""
    rng = np.random.default_rng(seed)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for a in range(0, n, block):
        x = rng.standard_normal((min(block, n - a), d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        mm[a:a + len(x)] = x
    mm.flush()
    del mm


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="corpus sizes, comma-separated")
    ap.add_argument("--queries", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--query-chunk", type=int, default=None, help="default: exact_topk's default")
    ap.add_argument("--corpus-chunk", type=int, default=None, help="default: exact_topk's default")
    ap.add_argument("--variants", default="nvr,numpy", help="nvr (faiss) and/or numpy (matmul+argpartition)")
    ap.add_argument("--use-gpu", default="auto", choices=["auto", "true", "false"])
    ap.add_argument("--tmp", default=None, help="folder for the temporary corpus files")
    ap.add_argument("--out", default=None, help="write results as JSON here")
    # internal: one measured run
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", default="nvr", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--queries-file", dest="queries_file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import inspect

    from nvr.mining.search import exact_topk

    sig = inspect.signature(exact_topk).parameters
    args.query_chunk = args.query_chunk or sig["query_chunk"].default
    args.corpus_chunk = args.corpus_chunk or sig["corpus_chunk"].default
    args.use_gpu = {"auto": "auto", "true": True, "false": False}.get(args.use_gpu, args.use_gpu)
    if args.child:
        args.queries = args.queries_file
        child(args)
        return

    sizes = [int(s) for s in args.sizes.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]
    peak = sgemm_peak(min(args.query_chunk, args.queries), args.dim)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        qpath = Path(tmp) / "queries.npy"
        rng = np.random.default_rng(1)
        xq = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
        xq /= np.linalg.norm(xq, axis=1, keepdims=True)
        np.save(qpath, xq)
        for n in sizes:
            cpath = Path(tmp) / f"corpus_{n}.npy"
            make_corpus(cpath, n, args.dim, seed=n)
            for v in variants:
                cmd = [sys.executable, os.path.abspath(__file__), "--child", "--variant", v,
                       "--corpus", str(cpath), "--queries-file", str(qpath), "--k", str(args.k),
                       "--query-chunk", str(args.query_chunk), "--corpus-chunk", str(args.corpus_chunk),
                       "--use-gpu", str(args.use_gpu).lower()]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    sys.stderr.write(res.stderr)
                    raise SystemExit(f"run {v} N={n} failed")
                r = json.loads(res.stdout.strip().splitlines()[-1])
                gflops = 2.0 * args.queries * n * args.dim / r["wall_s"] / 1e9
                rows.append({"variant": v, "N": n, "Q": args.queries, "d": args.dim, "k": args.k,
                             "query_chunk": args.query_chunk, "corpus_chunk": args.corpus_chunk,
                             "wall_s": r["wall_s"], "gflops": gflops,
                             "pct_peak": 100 * gflops / peak["peak"],
                             "peak_rss_mb": r["peak_rss_mb"], "search_anon_mb": r["search_anon_mb"],
                             "corpus_mb": n * args.dim * 4 / 2**20})
                print(f"  {v:6s} N={n:>8d}: {r['wall_s']:.2f}s {gflops:.0f} GFLOP/s", file=sys.stderr)
            cpath.unlink()

    print(f"\nsgemm peak: {peak['peak']:.0f} GFLOP/s "
          f"({', '.join(f'{k} {v:.0f}' for k, v in peak.items() if k != 'peak')}); "
          f"Q={args.queries} d={args.dim} k={args.k} query_chunk={args.query_chunk} "
          f"corpus_chunk={args.corpus_chunk}\n")
    print("| variant | N | wall s | GFLOP/s | % of sgemm peak | peak RSS MB | search anon MB | corpus MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['N']:,} | {r['wall_s']:.2f} | {r['gflops']:.0f} | {r['pct_peak']:.0f}% "
              f"| {r['peak_rss_mb']:.0f} | {r['search_anon_mb']:.0f} | {r['corpus_mb']:.0f} |")
    if args.out:
        from nvr.io import write_json

        write_json(args.out, {"sgemm_gflops": peak, "runs": rows})


if __name__ == "__main__":
    main()
