"""Where the study's artifacts live: one layout for stages, notebooks, the report and dvc.yaml.

Relative to the project root (all DVC outputs)::

    data/                               BEIR folder + train_pairs.jsonl + hidden_positives.jsonl + topics.jsonl
    cache/embeddings/<teacher>/         embedding cache (keyed by every setting that changes vectors)
    artifacts/teachers/<t>/             candidates.npz, corpus.npy / queries.npy (+ manifests), summary.json
    artifacts/mined/<method>.jsonl      mined negatives (+ .stats.json, .scores.npz): the method ablation
    artifacts/teacher_mined/<t>.jsonl   the reference method's negatives from teacher <t> (Table 1)
    artifacts/ensembles/<kind>.jsonl    teacher ensembles (Table 2)
    models/<name>/                      fine-tuned students (further seeds under models/<name>/seeds/<seed>)
    metrics/<name>.json                 NDCG@10, Recall@100, MRR@10 per model
    metrics/per_query/<name>.json       per-query NDCG@10 of each training seed (for paired bootstraps)
    reports/                            executed notebooks, HTML renders, figures, loss curves
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA = Path("data")
CACHE = Path("cache")
ARTIFACTS = Path("artifacts")
MODELS = Path("models")
METRICS = Path("metrics")
REPORTS = Path("reports")


@dataclass(frozen=True)
class Layout:
    """The artifact paths of a study rooted at ``root`` (default: the working directory)."""

    root: Path = Path(".")

    @classmethod
    def at(cls, root=None) -> "Layout":
        return cls(Path(root) if root is not None else Path.cwd())

    # ---- data
    @property
    def data(self) -> Path:
        return self.root / DATA

    @property
    def train_pairs(self) -> Path:
        return self.data / "train_pairs.jsonl"

    @property
    def hidden_positives(self) -> Path:
        return self.data / "hidden_positives.jsonl"

    @property
    def topics(self) -> Path:
        return self.data / "topics.jsonl"

    def hub_cache(self, name: str) -> Path:
        return self.root / CACHE / "beir" / name

    # ---- teachers and mining
    def embedding_cache(self, teacher: str) -> Path:
        return self.root / CACHE / "embeddings" / teacher

    def teacher_dir(self, teacher: str) -> Path:
        return self.root / ARTIFACTS / "teachers" / teacher

    def candidates(self, teacher: str) -> Path:
        return self.teacher_dir(teacher) / "candidates.npz"

    @property
    def mined_dir(self) -> Path:
        return self.root / ARTIFACTS / "mined"

    @property
    def teacher_mined_dir(self) -> Path:
        return self.root / ARTIFACTS / "teacher_mined"

    @property
    def ensembles_dir(self) -> Path:
        return self.root / ARTIFACTS / "ensembles"

    def mined(self, method: str) -> Path:
        """The method ablation's negatives (the study's teacher)."""
        return self.mined_dir / f"{method}.jsonl"

    def teacher_mined(self, teacher: str) -> Path:
        """The reference method's negatives from ``teacher`` (the teacher ablation)."""
        return self.teacher_mined_dir / f"{teacher}.jsonl"

    # ---- models and metrics
    def model(self, name: str) -> Path:
        return self.root / MODELS / name

    def seed_models(self, name: str, seeds) -> dict[int, Path]:
        """``{seed: folder}`` of a model trained once per seed: the first seed at ``models/<name>``,
        further seeds at ``models/<name>/seeds/<seed>``."""
        base = self.model(name)
        return {s: base if i == 0 else base / "seeds" / str(s) for i, s in enumerate(seeds)}

    def metrics(self, name: str) -> Path:
        return self.root / METRICS / f"{name}.json"

    def per_query(self, name: str) -> Path:
        """Per-query NDCG@10 of a model, per training seed (what the paired bootstrap reads)."""
        return self.root / METRICS / "per_query" / f"{name}.json"

    @property
    def metrics_dir(self) -> Path:
        return self.root / METRICS

    # ---- reports
    @property
    def reports(self) -> Path:
        return self.root / REPORTS

    @property
    def figures(self) -> Path:
        return self.reports / "figures"

    def loss_curve(self, name: str) -> Path:
        return self.reports / "04_finetune" / f"{name}.loss.json"


def stem(path: Path) -> Path:
    """``x/y.jsonl`` -> ``x/y`` (the base of a mined file's ``.stats.json`` / ``.scores.npz``)."""
    return path.with_suffix("")
