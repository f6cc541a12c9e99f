"""Mining at scale on one machine: 10k / 100k / 1M passages, memory bounded by the chunks.

A synthetic corpus stands in for the embeddings a teacher would write (the encode of 1M real
passages takes hours on 2 CPUs and is measured separately: ``--encode-sample`` encodes real
wiki passages with the offline MiniLM and reports texts/s, from which the table extrapolates the
encode time of each size, marked as such). Each size runs in a fresh subprocess:

1. not timed: a float32 corpus (unit-norm Gaussian rows, ``d`` dims) is written block by block
   to a ``.npy`` file and memory-mapped read-only, as ``nvr.text.cache.encode_cached`` leaves it;
   ``Q`` queries are noisy copies of a random positive each;
2. timed: ``dense_candidates`` (exact top-``depth`` search, chunked over queries and corpus),
   ``positive_scores`` and ``mine`` with TopK-PercPos 95% (n = 4).

Peak memory is the child's ``ru_maxrss`` and the highest RssAnon above the level before the timed
part (the memory-mapped corpus is page cache, not anonymous memory: it is shown beside it).

    python benchmarks/bench_scale.py --sizes 10000,100000,1000000 --queries 10000 --out bench_scale.json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _child(spec: dict) -> dict:
    import numpy as np

    from _common import PeakAnon  # noqa: E402

    n, q, d, depth, seed = spec["n"], spec["queries"], spec["dim"], spec["depth"], spec["seed"]
    rng = np.random.default_rng(seed)
    path = Path(spec["dir"]) / "corpus.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for b0 in range(0, n, 65536):
        x = rng.standard_normal((min(65536, n - b0), d)).astype(np.float32)
        out[b0:b0 + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()
    del out
    corpus = np.load(path, mmap_mode="r")
    pos = rng.integers(0, n, size=q)
    xq = np.asarray(corpus[np.sort(pos)], dtype=np.float32)[np.argsort(np.argsort(pos))]
    xq = xq + 0.35 * rng.standard_normal(xq.shape).astype(np.float32) / np.sqrt(d)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)

    import torch

    torch.set_num_threads(spec["threads"])
    from nvr.mining import mine, mining_stats, preset, query_keys
    from nvr.mining.teachers import dense_candidates, positive_scores

    sampler = PeakAnon()
    t0 = time.perf_counter()
    scores, ids = dense_candidates(xq, corpus, depth)
    t_search = time.perf_counter() - t0
    pos_ids = pos[:, None].astype(np.int64)
    pos_sc = positive_scores(xq, corpus, pos_ids)
    cfg = preset("percpos095", num_negatives=4)
    t1 = time.perf_counter()
    m = mine(ids, scores, pos_ids, pos_sc, cfg, query_keys=query_keys([f"q{i}" for i in range(q)]), progress=False)
    t_mine = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    anon = sampler.stop()
    st = mining_stats(m, pos_sc)
    return {"n": n, "queries": q, "dim": d, "depth": depth, "wall_s": round(wall, 2), "search_s": round(t_search, 2),
            "mine_s": round(t_mine, 3), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "work_anon_mb": round(anon), "corpus_mb": round(n * d * 4 / 2**20),
            "positive_in_top": float(np.mean((ids == pos_ids).any(1))), "queries_full": st["queries_full"]}


def _encode_rate(sample: int, max_length: int, threads: int) -> float:
    """Texts/s of the offline MiniLM on real wiki passages (nvr's Encoder, fp32)."""
    import torch

    torch.set_num_threads(threads)
    from nvr.data.wiki import _read_wiki_articles, wiki_source_path
    from nvr.text.encoder import Encoder, EncoderConfig

    texts = [f"{a.get('title', '')} {a.get('extract', '')}".strip() for a in _read_wiki_articles(wiki_source_path())]
    texts = [t for t in texts if t][:sample]
    enc = Encoder(EncoderConfig(model="pkg:all-MiniLM-L6-v2", max_passage_length=max_length, batch_size=64,
                                device="cpu", dtype="float32"))
    enc.encode(texts[:64], progress=False)   # warm-up
    t0 = time.perf_counter()
    enc.encode(texts, progress=False)
    return len(texts) / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--encode-sample", type=int, default=0, help="encode this many real passages to measure texts/s")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(json.loads(a.child))))
        return
    rate = _encode_rate(a.encode_sample, a.max_length, a.threads) if a.encode_sample else None
    rows = []
    for n in [int(x) for x in a.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="nvr_scale_") as tmp:
            spec = {"n": n, "queries": a.queries, "dim": a.dim, "depth": a.depth, "seed": a.seed, "dir": tmp,
                    "threads": a.threads}
            res = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                                 check=True)
            row = json.loads(res.stdout.strip().splitlines()[-1])
        if rate:
            row["encode_estimate_min"] = round(n / rate / 60, 1)
        rows.append(row)
        print(f"  {n:,}: {row['wall_s']} s", file=sys.stderr)
    print(f"Q={a.queries} queries, d={a.dim}, depth={a.depth}, TopK-PercPos 95% n=4, {a.threads} threads"
          + (f"; MiniLM encode {rate:.1f} texts/s at {a.max_length} tokens (measured on {a.encode_sample} passages)"
             if rate else ""))
    print("\n| N | search + mine s | search s | mine s | peak RSS MB | work anon MB | corpus (mmap) MB | "
          "positive in top-k | encode (extrapolated) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        enc = f"{r['encode_estimate_min']} min" if "encode_estimate_min" in r else "—"
        print(f"| {r['n']:,} | {r['wall_s']} | {r['search_s']} | {r['mine_s']} | {r['peak_rss_mb']} | "
              f"{r['work_anon_mb']} | {r['corpus_mb']} | {100 * r['positive_in_top']:.1f}% | {enc} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"rows": rows, "encode_texts_per_s": rate, "args": vars(a)}, indent=2))


if __name__ == "__main__":
    main()
