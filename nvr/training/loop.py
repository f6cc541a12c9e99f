"""Contrastive fine-tuning of embedding models (NV-Retriever stages 1 and 2).

One call of :func:`train_stage` trains one stage and writes a Hugging Face folder.

Recipe and choices
------------------
* Loss: InfoNCE with temperature (:func:`nvr.training.losses.info_nce`). With
  ``in_batch_negatives`` every passage of the *global* micro-batch (all positives and all
  hard negatives, across DDP ranks) is a negative for every query; without it only the
  query's own hard negatives are (stage 2: examples of one class in a batch would be false
  negatives of each other). A passage that is a labeled positive of a row's query (by corpus
  id, else by text) is never a negative of that row, wherever it sits in the batch (SciFact:
  two claims about one abstract). One example never appears twice in a micro-batch (the data
  order below); were it to, its second copy would be left out of the loss (``repeated``).
* Texts: :class:`TrainExample` holds raw texts; the trainer adds ``query_prefix`` to the
  query and ``passage_prefix`` to the positive and negatives (the same prefixes are saved in
  ``nvr_pooling.json`` so inference uses them). With ``mask_prefix_in_pool`` the prefix
  tokens (query instruction and passage prefix) are left out of the mean pool.
* Hard negatives: the first ``num_negatives`` of each example (the miner already chose and
  ordered them); examples with fewer are padded and masked out of the softmax.
* One optimizer step = ``batch_size * grad_accum`` examples (``grad_accum`` micro-batches of
  ``batch_size``; in-batch negatives span one micro-batch). Steps: ``epochs`` when set
  (``ceil(epochs * N / (batch_size * grad_accum))``), else ``max_steps``. With fewer examples
  than ``batch_size`` the micro-batch is capped at N (rounded down to a multiple of the DDP
  world size), with a logged warning: a larger batch would hold an example twice.
* Data order (:class:`~nvr.training.examples.DataOrder`): example ``k`` of the run (counting
  across steps) is ``perm_e[k mod N]`` with ``e = k div N``; ``perm_e`` is a permutation seeded
  by ``(seed, e)``, whose first examples are chosen, where a micro-batch straddles two epochs,
  among those not already in that micro-batch, so no micro-batch ever holds an example twice.
  Deterministic, resumable from the step number alone, the same whatever the number of DDP
  ranks (the order is of the global micro-batch; rank ``r`` takes its ``r``-th slice), and the
  same for every mining method trained on the same queries.
* Optimizer AdamW (weight decay on matrices only, not on biases / norms). LR schedule
  ``linear``: warm-up ``lr * (s+1)/warmup_steps`` for ``s < warmup_steps``, then linear
  decay ``lr * (T-s)/(T-warmup_steps)`` (never exactly 0); ``constant``: warm-up then flat.
* Gradient cache (``grad_cache_chunk``): embeddings are computed without graph in chunks,
  the loss is taken on detached copies to get d loss / d embedding, then each chunk is
  re-encoded with graph and the cached gradient is back-propagated; the torch RNG state of
  each chunk is replayed so dropout masks are the same in both passes. Memory no longer grows
  with the batch (only the (B, d) embeddings do).
* DDP (``torchrun`` or an initialised ``torch.distributed`` group; gloo on CPU, nccl on GPU):
  each rank encodes its slice, embeddings are all-gathered (own slice kept with its graph),
  every rank computes the same global loss, and parameter gradients are summed with one
  all-reduce per step. No ``DistributedDataParallel`` wrapper (it would average, and it
  does not support the gradient cache's double forward); the loss and update equal a
  single-process run on the same global batch.
* Precision: ``auto`` is float32 on CPU (exact, the study's default) and on CUDA with bf16
  support autocast bf16; weights bf16 when LoRA trains (adapters stay fp32), fp32 master
  weights for full fine-tuning. ``bfloat16`` on a CPU: fp32 master weights and CPU autocast.
* Checkpoints: every ``save_every`` steps, ``<out_dir>.work/ckpt-<step>/`` (atomic) holds the
  trainable weights (all, or only the LoRA adapters), optimizer, scheduler, each rank's RNG
  state and ``state.json`` (step, data position, log rows, a fingerprint of the run). A new
  call resumes from the latest checkpoint (fingerprint must match) and ends bit-identical to
  an uninterrupted run on CPU given the same torch thread count (float reductions depend on
  it; a different count on resume is logged as a warning). The work folder is removed after a successful run.
* Output ``out_dir`` (atomic): HF folder (safetensors, LoRA merged), tokenizer,
  ``nvr_pooling.json``, ``train_log.jsonl`` (step, loss, lr, seconds, examples) and
  ``train_summary.json``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import StageConfig, StudentConfig
from ..distributed import Group, init_group
from ..errors import ConfigError
from ..io import atomic_dir, write_json, write_jsonl
from ..runtime import log, seed_everything, torch_device
from .checkpoints import latest_checkpoint, load_checkpoint, run_fingerprint, save_checkpoint, work_dir
from .examples import DataOrder, TrainExample
from .model import EmbeddingModel, count_parameters
from .step import Step, make_batch

def lr_lambda(cfg: StageConfig, total: int) -> Callable[[int], float]:
    w = cfg.warmup_steps

    def f(s: int) -> float:
        if s < w:
            return (s + 1) / w
        if cfg.schedule == "constant":
            return 1.0
        return max(0.0, (total - s) / max(1, total - w))

    return f


def _optimizer(model: EmbeddingModel, cfg: StageConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    params = [p for g in groups for p in g["params"]]
    # the fused kernel (one pass over each tensor instead of a dozen) where torch has it for these
    # tensors: CPU float32 / bf16 and CUDA; about 4x faster than the for-each update on this CPU
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.bfloat16) for p in params)
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=fused)


def _precision(dtype: str, device: str, lora: bool) -> tuple[torch.dtype, bool]:
    """(weight dtype, autocast bf16) for ``dtype`` in auto | float32 | bfloat16.

    ``auto``: bf16 autocast on CUDA devices with bf16, exact float32 elsewhere. ``bfloat16`` on
    a CPU: float32 master weights, products under ``torch.autocast("cpu", bfloat16)`` (fast
    only with native bf16 instructions, AVX512-BF16 or AMX; logged when they are missing)."""
    cuda_bf16 = device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dtype in ("float32", "fp32"):
        return torch.float32, False
    if dtype in ("auto", "bfloat16", "bf16"):
        if cuda_bf16:
            return (torch.bfloat16 if lora else torch.float32), True
        if dtype == "auto":
            return torch.float32, False
        if device == "cpu":
            from ..text.backends import cpu_has_native_bf16

            if not cpu_has_native_bf16():
                log.warning("dtype %s on a CPU without native bf16 (no AVX512-BF16 / AMX): autocast is "
                            "emulated there and slower than float32", dtype)
            return torch.float32, True
        raise ConfigError(f"dtype '{dtype}' needs a CPU or a CUDA device with bf16 support")
    raise ConfigError(f"dtype: '{dtype}' is not one of auto, float32, bfloat16")


def _setup(device: str, cfg: StageConfig) -> tuple[str, Group]:
    """The device of this process and the process group (torchrun: one GPU per rank)."""
    dev = torch_device(device)
    group = init_group("nccl" if dev.startswith("cuda") else "gloo")
    if dev.startswith("cuda") and group.world > 1:
        dev = f"cuda:{int(os.environ.get('LOCAL_RANK', group.rank % max(1, torch.cuda.device_count())))}"
        torch.cuda.set_device(dev)
    if cfg.batch_size % group.world:
        raise ConfigError(f"train.{cfg.name}.batch_size: {cfg.batch_size} is not divisible by {group.world} ranks")
    return dev, group


def _load_model(init: str, cfg: StageConfig, student: StudentConfig, dev: str, wdtype, group: Group) -> EmbeddingModel:
    seed_everything(cfg.seed)  # same initial weights (LoRA init) on every rank
    model = EmbeddingModel.from_pretrained(
        init, pooling=student.pooling, normalize=True, query_prefix=student.query_prefix,
        passage_prefix=student.passage_prefix, mask_prefix_in_pool=student.mask_prefix_in_pool,
        bidirectional=student.bidirectional, lora=cfg.lora, gradient_checkpointing=cfg.gradient_checkpointing,
        device=dev, dtype=wdtype)
    model.train()
    if group.world > 1:
        import torch.distributed as tdist

        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    tdist.broadcast(p.data, 0)
    return model


def _write_output(out_dir: Path, model: EmbeddingModel, rows: list[dict], summary: dict, group: Group,
                  keep_work: bool) -> None:
    if group.rank == 0:
        with atomic_dir(out_dir) as tmp:
            model.write(tmp)
            write_jsonl(tmp / "train_log.jsonl", rows)
            write_json(tmp / "train_summary.json", {k: v for k, v in summary.items() if k != "log"})
        if not keep_work:
            shutil.rmtree(work_dir(out_dir), ignore_errors=True)
    group.barrier()


def train_stage(init: str, examples: list[TrainExample], cfg: StageConfig, out_dir: str | Path,
                student: StudentConfig | None = None, *, device: str = "auto", progress: bool = True,
                keep_work: bool = False, on_step: Callable[[int], None] | None = None) -> dict:
    """Fine-tune ``init`` (a model reference or folder) on ``examples``; write ``out_dir``.

    ``student`` gives pooling, prefixes, instruction mask, bidirectional attention and dtype
    (default: :class:`~nvr.config.StudentConfig`'s defaults). See the module docstring for the
    recipe. Resumes from ``<out_dir>.work`` when a checkpoint of the same run is there.
    ``on_step(step)`` is called after each optimizer step (and its checkpoint). Returns a
    summary: ``log`` (one row per step: step, loss, lr, seconds, examples), ``steps``,
    ``final_loss``, ``seconds``, ``resumed_from``, parameter counts and the config.
    """
    from tqdm.auto import tqdm

    student = student or StudentConfig()
    cfg.validate(f"train.{cfg.name}")
    if not examples:
        raise ConfigError(f"train.{cfg.name}: no training examples")
    out_dir = Path(out_dir)
    dev, group = _setup(device, cfg)
    requested = cfg.batch_size
    if len(examples) < cfg.batch_size:   # a bigger batch would hold an example twice
        capped = len(examples) - len(examples) % group.world
        if capped < 1:
            raise ConfigError(f"train.{cfg.name}: {len(examples)} examples cannot fill one batch over "
                              f"{group.world} ranks")
        log.warning("%s: %d examples < batch_size %d: micro-batches capped at %d examples (an example never "
                    "appears twice in one batch)", cfg.name, len(examples), cfg.batch_size, capped)
        cfg = dataclasses.replace(cfg, batch_size=capped)
    wdtype, autocast = _precision(student.dtype, dev, bool(cfg.lora))
    t_start = time.time()
    model = _load_model(init, cfg, student, dev, wdtype, group)
    n_train, n_total = count_parameters(model)
    total = cfg.total_steps(len(examples))
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total))
    order = DataOrder(len(examples), cfg.seed, cfg.batch_size)   # the global micro-batch: no repeats in it
    fp = run_fingerprint(init, examples, cfg, model.settings())
    work = work_dir(out_dir)

    torch.manual_seed(cfg.seed * 1000003 + group.rank)  # dropout stream of this rank
    start, rows = 0, []
    ckpt = latest_checkpoint(work)
    if ckpt is not None:
        start, rows = load_checkpoint(ckpt, model, opt, sched, fp, group)
        log.info("%s: resuming from %s (step %d of %d)", cfg.name, ckpt, start, total)
    log.info("%s: %d examples, %d steps x %d x %d (world %d), %d negatives, in-batch %s, lr %g, "
             "trainable %d / %d params, device %s", cfg.name, len(examples), total, cfg.batch_size, cfg.grad_accum,
             group.world, cfg.num_negatives, cfg.in_batch_negatives, cfg.learning_rate, n_train, n_total, dev)

    stepper = Step(model, cfg, group, autocast=autocast)
    per_step = cfg.batch_size * cfg.grad_accum
    local = cfg.batch_size // group.world
    params = [p for p in model.parameters() if p.requires_grad]
    bar = tqdm(total=total, initial=start, desc=f"train {cfg.name}", disable=not progress or group.rank != 0,
               dynamic_ncols=True)
    try:
        for step in range(start, total):
            t0 = time.time()
            opt.zero_grad(set_to_none=True)
            lr = sched.get_last_lr()[0]
            losses = []
            for micro in range(cfg.grad_accum):
                idx = order.indices(step * per_step + micro * cfg.batch_size, cfg.batch_size)
                mine = idx[group.rank * local:(group.rank + 1) * local]
                repeated = [i in idx[:r] for r, i in enumerate(idx)]   # none (DataOrder); masked if ever
                batch = make_batch([examples[i] for i in mine], cfg.num_negatives,
                                   global_examples=[examples[i] for i in idx], repeated=repeated)
                losses.append(stepper.run(batch, scale=1.0 / cfg.grad_accum))
            if group.world > 1:   # sum the ranks' gradients (the loss is already global)
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    group.all_reduce(p.grad)
            opt.step()
            sched.step()
            loss = float(np.mean(losses))
            rows.append({"step": step + 1, "loss": loss, "lr": lr, "seconds": round(time.time() - t0, 4),
                         "examples": (step + 1) * per_step})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < total:
                save_checkpoint(work, step + 1, model, opt, sched, rows, fp, group, (step + 1) * per_step)
            if on_step is not None:
                on_step(step + 1)
    finally:
        bar.close()
    opt.zero_grad(set_to_none=True)   # free gradients and optimizer state before the final save
    del opt, sched

    secs = time.time() - t_start
    summary = {"stage": cfg.name, "out_dir": str(out_dir), "model": str(init), "steps": total,
               "num_examples": len(examples), "examples_seen": total * per_step, "world_size": group.world,
               "resumed_from": start or None, "seconds": round(secs, 3),
               "final_loss": rows[-1]["loss"] if rows else None, "trainable_params": n_train,
               "total_params": n_total, "device": dev, "config": dataclasses.asdict(cfg), "log": rows}
    if requested != cfg.batch_size:
        summary["batch_size_requested"] = requested
    _write_output(out_dir, model, rows, summary, group, keep_work)
    log.info("%s: %d steps in %.1f s, final loss %.4f -> %s", cfg.name, total, secs,
             summary["final_loss"] if summary["final_loss"] is not None else float("nan"), out_dir)
    return summary


def embed_loss_grads(model: EmbeddingModel, examples: list[TrainExample], cfg: StageConfig, *,
                     chunk: int | None = None, cache: bool | None = None, replay_rng: bool = True):
    """Loss and parameter gradients of one micro-batch (for tests and debugging)."""
    model.zero_grad(set_to_none=True)
    loss = Step(model, cfg, replay_rng=replay_rng).run(make_batch(examples, cfg.num_negatives), 1.0, chunk, cache)
    return loss, {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
