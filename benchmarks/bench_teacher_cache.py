"""The teacher's corpus embedding is computed once per machine: a second project (another profile,
an experiment, a fresh checkout) gets it from the shared embedding store instead of encoding again.

Encodes ``--n`` wiki passages with the default study teacher (all-mpnet-base-v2, 48 passage tokens
as ``params.yaml`` sets it) into project A's cache with a fresh store, then asks for the same
embeddings from project B's empty cache; times both and checks the arrays are identical.

    python benchmarks/bench_teacher_cache.py --n 300 --out bench_teacher_cache.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encode import wiki_texts  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pkg:all-mpnet-base-v2")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_teacher_cache_") as tmp:
        tmp = Path(tmp)
        os.environ["NVR_EMBEDDING_STORE"] = str(tmp / "store")
        from nvr.text import Encoder, EncoderConfig, encode_cached

        texts = wiki_texts(a.n)
        times, arrays = [], []
        for project in ("a", "b"):
            t0 = time.perf_counter()
            enc = Encoder(EncoderConfig(model=a.model, max_passage_length=a.max_length, device="cpu"))
            arrays.append(np.array(encode_cached(enc, texts, "passage", tmp / project / "corpus.npy", progress=False)))
            times.append(time.perf_counter() - t0)
    same = bool(np.array_equal(arrays[0], arrays[1]))
    print(f"\nteacher {a.model}, {a.n} wiki passages at {a.max_length} tokens\n")
    print("| project | wall s (model load included) |\n|---|---:|")
    print(f"| first (encodes, fills the store) | {times[0]:.1f} |\n| second (served by the store) | {times[1]:.1f} |")
    print(f"\nsecond / first: {times[1] / times[0]:.3f}; arrays identical: {same}")
    if a.out:
        from nvr.io import write_json

        write_json(a.out, {"model": a.model, "n": a.n, "max_length": a.max_length, "first_s": times[0],
                           "second_s": times[1], "identical": same})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
