"""Contrastive fine-tuning of embedding models (NV-Retriever stages 1 and 2).

One call of :func:`train_stage` trains one stage and writes a Hugging Face folder.

Recipe and choices
------------------
* Loss: InfoNCE with temperature (:func:`nvr.losses.info_nce`). With
  ``in_batch_negatives`` every passage of the *global* micro-batch (all positives and all
  hard negatives, across DDP ranks) is a negative for every query; without it only the
  query's own hard negatives are (stage 2: examples of one class in a batch would be false
  negatives of each other).
* Texts: :class:`TrainExample` holds raw texts; the trainer adds ``query_prefix`` to the
  query and ``passage_prefix`` to the positive and negatives (the same prefixes are saved in
  ``nvr_pooling.json`` so inference uses them). With ``mask_prefix_in_pool`` the prefix
  tokens (query instruction and passage prefix) are left out of the mean pool.
* Hard negatives: the first ``num_negatives`` of each example (the miner already chose and
  ordered them); examples with fewer are padded and masked out of the softmax.
* One optimizer step = ``batch_size * grad_accum`` examples (``grad_accum`` micro-batches of
  ``batch_size``; in-batch negatives span one micro-batch). Steps: ``epochs`` when set
  (``ceil(epochs * N / (batch_size * grad_accum))``), else ``max_steps``.
* Data order: example ``k`` of the run (counting across steps) is
  ``perm_e[k mod N]`` with ``e = k div N`` and ``perm_e`` a permutation seeded by
  ``(seed, e)``: deterministic, resumable from the step number alone, and the same whatever
  the number of DDP ranks (rank ``r`` takes the ``r``-th slice of each micro-batch).
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
* Precision: float32 on CPU. On CUDA with bf16 support: autocast bf16; weights bf16 when
  LoRA trains (adapters stay fp32), fp32 master weights for full fine-tuning.
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

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .errors import ConfigError
from .io import atomic_dir, write_json, write_jsonl
from .losses import info_nce
from .modeling import EmbeddingModel, check_lora, count_parameters
from .runtime import log, seed_everything, torch_device

#: test hook: called with the finished step number after each step (and checkpoint)
_AFTER_STEP_HOOK: Callable[[int], None] | None = None

SCHEDULES = ("linear", "constant")


# --------------------------------------------------------------------------- config
@dataclass
class StageConfig:
    """One fine-tuning stage (``train.stage1`` / ``train.stage2`` in params.yaml)."""

    name: str = "stage1"
    num_negatives: int = 4
    in_batch_negatives: bool = True
    batch_size: int = 16
    grad_accum: int = 1
    learning_rate: float = 2e-5
    warmup_steps: int = 10
    max_steps: int = 50
    epochs: float | None = None
    temperature: float = 0.02
    weight_decay: float = 0.0
    schedule: str = "linear"
    max_query_length: int = 32
    max_passage_length: int = 64
    grad_cache_chunk: int | None = None
    save_every: int = 0
    seed: int = 0
    gradient_checkpointing: bool = False
    lora: dict | None = None

    def validate(self, where: str = "train.stage") -> None:
        def pos(k, zero=False):
            v = getattr(self, k)
            if v is None:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (v == 0 and not zero):
                raise ConfigError(f"{where}.{k}: must be {'>= 0' if zero else '> 0'}, got {v!r}")

        for k in ("batch_size", "grad_accum", "max_steps", "max_query_length", "max_passage_length",
                  "learning_rate", "temperature"):
            pos(k)
        for k in ("num_negatives", "warmup_steps", "save_every", "weight_decay"):
            pos(k, zero=True)
        pos("epochs")
        pos("grad_cache_chunk")
        for k in ("batch_size", "grad_accum", "max_steps", "num_negatives", "warmup_steps", "save_every",
                  "max_query_length", "max_passage_length", "seed"):
            if not isinstance(getattr(self, k), int) or isinstance(getattr(self, k), bool):
                raise ConfigError(f"{where}.{k}: expected an integer, got {getattr(self, k)!r}")
        if self.grad_cache_chunk is not None and not isinstance(self.grad_cache_chunk, int):
            raise ConfigError(f"{where}.grad_cache_chunk: expected an integer or null, got {self.grad_cache_chunk!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"{where}.schedule: '{self.schedule}' is not one of {', '.join(SCHEDULES)}")
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{where}.name: expected a non-empty string")
        check_lora(self.lora, f"{where}.lora")

    def total_steps(self, num_examples: int) -> int:
        """Optimizer steps of the stage: from ``epochs`` when set, else ``max_steps``."""
        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * num_examples / (self.batch_size * self.grad_accum)))
        return self.max_steps


@dataclass
class TrainExample:
    """Raw texts (no prefixes: the trainer adds the model's query / passage prefixes)."""

    query: str
    positive: str
    negatives: list[str] = dataclasses.field(default_factory=list)


# --------------------------------------------------------------------------- stage 2 data
def classification_examples(texts: list[str], labels: list, label_texts: dict | list, *, num_negatives: int,
                            seed: int, instruction: str = "") -> list[TrainExample]:
    """NV-Embed-style classification examples for stage 2.

    query = ``instruction + text``, positive = the text of its label, negatives =
    ``num_negatives`` texts of *other* labels sampled without replacement (all of them when
    fewer exist), seeded by ``seed``. Train them with ``in_batch_negatives=False``: two
    examples of the same class in a batch would otherwise be each other's false negatives.
    """
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    lt = dict(enumerate(label_texts)) if isinstance(label_texts, (list, tuple)) else dict(label_texts)
    missing = sorted({str(y) for y in labels if y not in lt})
    if missing:
        raise ValueError(f"labels without a label text: {', '.join(missing[:5])}")
    keys = list(lt)
    rng = np.random.default_rng(seed)
    out = []
    for text, y in zip(texts, labels):
        others = [k for k in keys if k != y]
        k = min(num_negatives, len(others))
        pick = rng.choice(len(others), size=k, replace=False) if k else []
        out.append(TrainExample(query=instruction + text, positive=lt[y], negatives=[lt[others[i]] for i in pick]))
    return out


# --------------------------------------------------------------------------- data order
class DataOrder:
    """Example index of the k-th sample of a run (see module docstring)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._cache: dict[int, np.ndarray] = {}

    def perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.clear()
            self._cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._cache[epoch]

    def indices(self, start: int, count: int) -> list[int]:
        out = []
        for k in range(start, start + count):
            e, pos = divmod(k, self.n)
            out.append(int(self.perm(e)[pos]))
        return out


def lr_lambda(cfg: StageConfig, total: int) -> Callable[[int], float]:
    w = cfg.warmup_steps

    def f(s: int) -> float:
        if s < w:
            return (s + 1) / w
        if cfg.schedule == "constant":
            return 1.0
        return max(0.0, (total - s) / max(1, total - w))

    return f


# --------------------------------------------------------------------------- distributed
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """All-gather along dim 0; the own slice keeps its autograd graph."""
        if self.world == 1:
            return t
        import torch.distributed as dist

        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.detach().contiguous())
        parts[self.rank] = t
        return torch.cat(parts)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def _init_dist(device: str) -> _Dist:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size())
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws > 1 and dist.is_available():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return _Dist(dist.get_rank(), dist.get_world_size())
    return _Dist()


# --------------------------------------------------------------------------- one micro-batch
@dataclass
class _Batch:
    """Texts of one (local) micro-batch, grouped by kind."""

    queries: list[str]
    positives: list[str]
    negatives: list[str]          # the real negatives, flattened row by row
    neg_pos: torch.Tensor         # (len(negatives),) positions in the (b*n) padded grid
    neg_mask: torch.Tensor        # (b, n) bool
    n: int


def _make_batch(examples: list[TrainExample], n: int) -> _Batch:
    negs, pos = [], []
    mask = torch.zeros(len(examples), n, dtype=torch.bool)
    for i, ex in enumerate(examples):
        for j, t in enumerate(ex.negatives[:n]):
            negs.append(t)
            pos.append(i * n + j)
            mask[i, j] = True
    return _Batch([e.query for e in examples], [e.positive for e in examples], negs,
                  torch.tensor(pos, dtype=torch.long), mask, n)


def _rng_state(device: torch.device):
    st = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st, device: torch.device) -> None:
    torch.set_rng_state(st["cpu"])
    if "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


def _chunks(texts: list[str], chunk: int | None):
    if not texts:
        return
    step = chunk or len(texts)
    for i in range(0, len(texts), step):
        yield i, texts[i:i + step]


class _Step:
    """Runs the forward/backward of micro-batches (plain or gradient-cached)."""

    def __init__(self, model: EmbeddingModel, cfg: StageConfig, dist: _Dist | None = None, autocast: bool = False,
                 replay_rng: bool = True):
        self.model, self.cfg = model, cfg
        self.dist = dist or _Dist()
        self.autocast = autocast
        self.replay_rng = replay_rng

    def _ctx(self):
        if self.autocast:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _groups(self, b: _Batch):
        c = self.cfg
        return [("query", b.queries, c.max_query_length), ("passage", b.positives, c.max_passage_length),
                ("passage", b.negatives, c.max_passage_length)]

    def _encode(self, texts, kind, max_len):
        tok = {k: v.to(self.model.device) for k, v in self.model.tokenize(texts, kind, max_len).items()}
        with self._ctx():
            return self.model(**tok, normalize=True).float()

    def _empty(self):
        d = self.model.model.config.hidden_size
        return torch.zeros(0, d, device=self.model.device)

    def loss(self, q: torch.Tensor, p: torch.Tensor, ne: torch.Tensor, b: _Batch) -> torch.Tensor:
        """Global InfoNCE from local embeddings (gathered across ranks)."""
        negs = None
        mask = b.neg_mask.to(q.device)
        if b.n > 0:
            grid = q.new_zeros(len(b.queries) * b.n, q.shape[1])
            if ne.shape[0]:
                grid = grid.index_copy(0, b.neg_pos.to(q.device), ne)
            negs = self.dist.gather(grid.view(len(b.queries), b.n, -1))
            mask = self.dist.gather(mask.to(torch.uint8)).bool()
        return info_nce(self.dist.gather(q), self.dist.gather(p), negs, temperature=self.cfg.temperature,
                        in_batch=self.cfg.in_batch_negatives, negs_mask=mask if b.n > 0 else None)

    def run(self, b: _Batch, scale: float = 1.0, chunk: int | None = None, cache: bool | None = None) -> float:
        """Forward + backward of one micro-batch (gradients accumulate, scaled by ``scale``).

        ``chunk`` defaults to ``cfg.grad_cache_chunk``; ``cache`` False with a chunk encodes
        chunk by chunk keeping every graph (the reference the gradient cache must match)."""
        chunk = self.cfg.grad_cache_chunk if chunk is None else chunk
        cache = (chunk is not None) if cache is None else cache
        if not cache:
            embs = []
            for kind, texts, L in self._groups(b):
                parts = [self._encode(t, kind, L) for _, t in _chunks(texts, chunk)]
                embs.append(torch.cat(parts) if parts else self._empty())
            loss = self.loss(*embs, b)
            (loss * scale).backward()
            return float(loss.detach())
        # ---- gradient cache: pass 1 without graph, remembering each chunk's RNG state
        dev = self.model.device
        saved, embs = [], []
        with torch.no_grad():
            for kind, texts, L in self._groups(b):
                parts = []
                for _, t in _chunks(texts, chunk):
                    saved.append((kind, t, L, _rng_state(dev)))
                    parts.append(self._encode(t, kind, L))
                embs.append(torch.cat(parts) if parts else self._empty())
        after = _rng_state(dev)
        leaves = [e.detach().requires_grad_(True) for e in embs]
        loss = self.loss(*leaves, b)
        (loss * scale).backward()
        grads = [lf.grad if lf.grad is not None else torch.zeros_like(lf) for lf in leaves]
        # ---- pass 2: re-encode each chunk with graph, back-propagate the cached gradient
        gi = 0
        for g, (kind, texts, L) in zip(grads, self._groups(b)):
            for i, t in _chunks(texts, chunk):
                k2, t2, L2, st = saved[gi]
                gi += 1
                if self.replay_rng:
                    _set_rng_state(st, dev)
                e = self._encode(t2, k2, L2)
                torch.autograd.backward(e, g[i:i + len(t)])
        _set_rng_state(after, dev)
        return float(loss.detach())


# --------------------------------------------------------------------------- checkpoints
_CKPT = re.compile(r"^ckpt-(\d+)$")


def work_dir(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".work")


def latest_checkpoint(work: Path) -> Path | None:
    if not work.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in work.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))
             and (p / "state.json").is_file()]
    return max(found)[1] if found else None


def _fingerprint(model_ref, examples, cfg, settings) -> str:
    h = hashlib.sha256()
    c = dataclasses.asdict(cfg)
    c.pop("save_every")
    h.update(json.dumps([str(model_ref), c, settings], sort_keys=True, default=str).encode())
    for ex in examples:
        h.update(json.dumps([ex.query, ex.positive, ex.negatives]).encode())
    return h.hexdigest()[:16]


def _save_checkpoint(work, step, model, opt, sched, rows, fp, dist, position, keep=2):
    import torch.distributed as tdist
    from safetensors.torch import save_file

    rng = _rng_state(model.device)
    rngs = [rng]
    if dist.world > 1:
        rngs = [None] * dist.world
        tdist.all_gather_object(rngs, {k: v.cpu() for k, v in rng.items()})
    if dist.rank == 0:
        with atomic_dir(work / f"ckpt-{step}") as tmp:
            save_file({k: v.cpu() for k, v in model.trainable_state_dict().items()}, str(tmp / "trainable.safetensors"))
            torch.save(opt.state_dict(), tmp / "optimizer.pt")
            torch.save(sched.state_dict(), tmp / "scheduler.pt")
            torch.save(rngs, tmp / "rng.pt")
            write_json(tmp / "state.json", {"step": step, "fingerprint": fp, "world_size": dist.world,
                                            "position": position, "rows": rows,
                                            "threads": torch.get_num_threads()})
        old = sorted((int(m.group(1)), p) for p in work.iterdir() if (m := _CKPT.match(p.name)))
        for _, p in old[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
    dist.barrier()


def _load_checkpoint(ckpt: Path, model, opt, sched, fp, dist) -> tuple[int, list]:
    from safetensors.torch import load_file

    state = json.loads((ckpt / "state.json").read_text())
    if state["fingerprint"] != fp:
        raise ConfigError(f"{ckpt}: checkpoint belongs to another run (different model, data or train config); "
                          f"delete {ckpt.parent} to start over")
    model.load_trainable_state_dict({k: v.to(model.device) for k, v in load_file(str(ckpt / "trainable.safetensors")).items()})
    opt.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=model.device, weights_only=True))
    sched.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
    rngs = torch.load(ckpt / "rng.pt", weights_only=True)
    if state.get("threads") not in (None, torch.get_num_threads()):
        log.warning("%s: saved with %s torch threads, now %s: results will not be bit-identical to an "
                    "uninterrupted run", ckpt, state["threads"], torch.get_num_threads())
    if state.get("world_size") == dist.world:
        _set_rng_state(rngs[dist.rank], model.device)
    else:
        log.warning("%s: saved with %s ranks, now %s: dropout RNG reseeded", ckpt, state.get("world_size"), dist.world)
    return int(state["step"]), list(state["rows"])


# --------------------------------------------------------------------------- training
def _optimizer(model: EmbeddingModel, cfg: StageConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate)


def _precision(dtype: str, device: str, lora: bool) -> tuple[torch.dtype, bool]:
    """(weight dtype, autocast bf16) for ``dtype`` in auto | float32 | bfloat16."""
    cuda_bf16 = device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dtype in ("float32", "fp32"):
        return torch.float32, False
    if dtype in ("auto", "bfloat16", "bf16"):
        if not cuda_bf16:
            if dtype != "auto":
                raise ConfigError(f"dtype '{dtype}' needs a CUDA device with bf16 support")
            return torch.float32, False
        return (torch.bfloat16 if lora else torch.float32), True
    raise ConfigError(f"dtype: '{dtype}' is not one of auto, float32, bfloat16")


def train_stage(model_ref_or_dir: str, examples: list[TrainExample], cfg: StageConfig, out_dir: str | Path, *,
                query_prefix: str = "", passage_prefix: str = "", pooling: str = "mean", device: str = "auto",
                progress: bool = True, mask_prefix_in_pool: bool = False, bidirectional: bool | None = None,
                dtype: str = "auto", keep_work: bool = False) -> dict:
    """Fine-tune ``model_ref_or_dir`` on ``examples``; write ``out_dir``; return a summary.

    See the module docstring for the recipe. ``bidirectional`` None = automatic (decoder-only
    models get bidirectional attention). Resumes from ``<out_dir>.work`` when a checkpoint of
    the same run is there. The summary holds ``log`` (one row per step: step, loss, lr,
    seconds, examples), ``steps``, ``final_loss``, ``seconds``, ``resumed_from``, parameter
    counts and the config.
    """
    from tqdm.auto import tqdm

    cfg.validate(f"train.{cfg.name}")
    if not examples:
        raise ConfigError(f"train.{cfg.name}: no training examples")
    out_dir = Path(out_dir)
    dev = torch_device(device)
    dist = _init_dist(dev)
    if dev.startswith("cuda") and dist.world > 1:
        dev = f"cuda:{int(os.environ.get('LOCAL_RANK', dist.rank % max(1, torch.cuda.device_count())))}"
        torch.cuda.set_device(dev)
    if cfg.batch_size % dist.world:
        raise ConfigError(f"train.{cfg.name}.batch_size: {cfg.batch_size} is not divisible by {dist.world} ranks")
    if len(examples) < cfg.batch_size:
        log.warning("%s: %d examples < batch_size %d: batches repeat examples", cfg.name, len(examples), cfg.batch_size)
    wdtype, autocast = _precision(dtype, dev, bool(cfg.lora))
    t_start = time.time()

    seed_everything(cfg.seed)  # same initial weights (LoRA init) on every rank
    model = EmbeddingModel.from_pretrained(
        model_ref_or_dir, pooling=pooling, normalize=True, query_prefix=query_prefix, passage_prefix=passage_prefix,
        mask_prefix_in_pool=mask_prefix_in_pool, bidirectional=bidirectional, lora=cfg.lora,
        gradient_checkpointing=cfg.gradient_checkpointing, device=dev, dtype=wdtype)
    model.train()
    if dist.world > 1:
        import torch.distributed as tdist

        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    tdist.broadcast(p.data, 0)
    n_train, n_total = count_parameters(model)
    total = cfg.total_steps(len(examples))
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total))
    order = DataOrder(len(examples), cfg.seed)
    fp = _fingerprint(model_ref_or_dir, examples, cfg, model.settings())
    work = work_dir(out_dir)

    torch.manual_seed(cfg.seed * 1000003 + dist.rank)  # dropout stream of this rank
    start, rows = 0, []
    ckpt = latest_checkpoint(work)
    if ckpt is not None:
        start, rows = _load_checkpoint(ckpt, model, opt, sched, fp, dist)
        log.info("%s: resuming from %s (step %d of %d)", cfg.name, ckpt, start, total)
    log.info("%s: %d examples, %d steps x %d x %d (world %d), %d negatives, in-batch %s, lr %g, "
             "trainable %d / %d params, device %s", cfg.name, len(examples), total, cfg.batch_size, cfg.grad_accum,
             dist.world, cfg.num_negatives, cfg.in_batch_negatives, cfg.learning_rate, n_train, n_total, dev)

    stepper = _Step(model, cfg, dist, autocast=autocast)
    per_step = cfg.batch_size * cfg.grad_accum
    local = cfg.batch_size // dist.world
    params = [p for p in model.parameters() if p.requires_grad]
    bar = tqdm(total=total, initial=start, desc=f"train {cfg.name}", disable=not progress or dist.rank != 0,
               dynamic_ncols=True)
    try:
        for step in range(start, total):
            t0 = time.time()
            opt.zero_grad(set_to_none=True)
            lr = sched.get_last_lr()[0]
            losses = []
            for micro in range(cfg.grad_accum):
                idx = order.indices(step * per_step + micro * cfg.batch_size, cfg.batch_size)
                mine = idx[dist.rank * local:(dist.rank + 1) * local]
                batch = _make_batch([examples[i] for i in mine], cfg.num_negatives)
                losses.append(stepper.run(batch, scale=1.0 / cfg.grad_accum))
            if dist.world > 1:
                import torch.distributed as tdist

                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    tdist.all_reduce(p.grad)
            opt.step()
            sched.step()
            loss = float(np.mean(losses))
            rows.append({"step": step + 1, "loss": loss, "lr": lr, "seconds": round(time.time() - t0, 4),
                         "examples": (step + 1) * per_step})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < total:
                _save_checkpoint(work, step + 1, model, opt, sched, rows, fp, dist, (step + 1) * per_step)
            if _AFTER_STEP_HOOK is not None:
                _AFTER_STEP_HOOK(step + 1)
    finally:
        bar.close()
    opt.zero_grad(set_to_none=True)   # free gradients and optimizer state before the final save
    del opt, sched

    secs = time.time() - t_start
    summary = {"stage": cfg.name, "out_dir": str(out_dir), "model": str(model_ref_or_dir), "steps": total,
               "num_examples": len(examples), "examples_seen": total * per_step, "world_size": dist.world,
               "resumed_from": start or None, "seconds": round(secs, 3),
               "final_loss": rows[-1]["loss"] if rows else None, "trainable_params": n_train,
               "total_params": n_total, "device": dev, "config": dataclasses.asdict(cfg), "log": rows}
    if dist.rank == 0:
        with atomic_dir(out_dir) as tmp:
            model.write(tmp)
            write_jsonl(tmp / "train_log.jsonl", rows)
            write_json(tmp / "train_summary.json", {k: v for k, v in summary.items() if k != "log"})
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
    dist.barrier()
    log.info("%s: %d steps in %.1f s, final loss %.4f -> %s", cfg.name, total, secs,
             summary["final_loss"] if summary["final_loss"] is not None else float("nan"), out_dir)
    return summary


def embed_loss_grads(model: EmbeddingModel, examples: list[TrainExample], cfg: StageConfig, *,
                     chunk: int | None = None, cache: bool | None = None, replay_rng: bool = True):
    """Loss and parameter gradients of one micro-batch (for tests and debugging)."""
    model.zero_grad(set_to_none=True)
    loss = _Step(model, cfg, replay_rng=replay_rng).run(_make_batch(examples, cfg.num_negatives), 1.0, chunk, cache)
    return loss, {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


__all__ = ["StageConfig", "TrainExample", "train_stage", "classification_examples", "DataOrder", "lr_lambda",
           "latest_checkpoint", "work_dir", "embed_loss_grads"]
