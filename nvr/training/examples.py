"""What a training stage sees: examples, the stage-2 blend, and the order they come in.

* :class:`TrainExample` - raw texts of a query, its positive and its hard negatives (no
  prefixes: the trainer adds the model's query / passage prefixes).
* :func:`classification_examples` - NV-Embed-style examples for stage 2.
* :func:`blend` - stage 2's mix of retrieval and classification examples.
* :class:`DataOrder` - example ``k`` of a run (counting across steps) is ``perm_e[k mod N]``
  with ``e = k div N`` and ``perm_e`` a permutation of epoch ``e``; batches are consecutive
  runs of ``batch`` samples and never hold one example twice, across an epoch boundary too.
  Deterministic, resumable from the step number alone, the same whatever the number of DDP
  ranks, and the same for every method trained on the same queries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

@dataclass
class TrainExample:
    """Raw texts (no prefixes: the trainer adds the model's query / passage prefixes).

    Optional ids let the loss recognise a passage wherever it appears in a batch:
    ``positive_id`` / ``negative_ids`` are the corpus ids of the texts, ``positive_ids`` every
    labeled positive of the query. A passage of the batch that is a labeled positive of a
    row's query is never a negative of that row. Without ids, passages are matched by text.
    """

    query: str
    positive: str
    negatives: list[str] = dataclasses.field(default_factory=list)
    positive_id: str | None = None
    negative_ids: list[str] | None = None
    positive_ids: tuple = ()

    def passage_keys(self, n: int) -> tuple[frozenset, list[frozenset]]:
        """Identities of the positive and of the first ``n`` negatives: its text, and its id when known."""
        def keys(pid, text):
            return frozenset({f"text:{text}"} | ({f"id:{pid}"} if pid is not None else set()))

        ids = list(self.negative_ids or [])
        return (keys(self.positive_id, self.positive),
                [keys(ids[j] if j < len(ids) else None, t) for j, t in enumerate(self.negatives[:n])])

    def positive_keys(self) -> frozenset:
        """Every identity of a positive of this query (ids of all labeled positives, the positive's text)."""
        return frozenset({f"id:{p}" for p in self.positive_ids}) | self.passage_keys(0)[0]


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


class DataOrder:
    """Example index of the k-th sample of a run; batch ``b`` is samples ``[b * batch, (b+1) * batch)``.

    Epoch ``e`` (samples ``[e * N, (e+1) * N)``) is a permutation ``perm_e`` of the N examples, so
    every example is seen once per epoch. ``perm_e`` is the permutation seeded by ``(seed, e)``,
    except where a batch straddles the boundary between epochs ``e - 1`` and ``e``: the last ``t``
    examples of ``perm_{e-1}`` share that batch with the first ``h = batch - t`` of ``perm_e``, so
    ``perm_e`` takes as its first ``h`` the first ``h`` examples of the seeded permutation that are
    *not* among those ``t`` (the rest follow in the seeded order). No batch then holds an example
    twice. When ``batch`` divides N (or ``batch`` is 1) no batch straddles and ``perm_e`` is the
    seeded permutation itself. ``batch`` must be at most N (a batch of more examples than there
    are would repeat one: the trainer caps it). The order depends on ``(N, seed, batch)`` only.
    """

    def __init__(self, n: int, seed: int, batch: int = 1):
        if n < 1:
            raise ValueError(f"DataOrder: no examples (n={n})")
        if not 1 <= batch <= n:
            raise ValueError(f"DataOrder: batch {batch} must be between 1 and the {n} examples (a larger batch "
                             f"would hold an example twice)")
        self.n, self.seed, self.batch = n, seed, batch
        self._cache: dict[int, np.ndarray] = {}

    def _seeded(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def _next(self, prev: np.ndarray, epoch: int) -> np.ndarray:
        """``perm_epoch`` given ``perm_{epoch-1}`` (see the class docstring)."""
        seeded = self._seeded(epoch)
        t = (epoch * self.n) % self.batch        # samples of the previous epoch in the straddling batch
        if t == 0:
            return seeded
        h = self.batch - t                       # samples of this epoch in it (t + h = batch <= n)
        head = seeded[~np.isin(seeded, prev[self.n - t:])][:h]
        return np.concatenate([head, seeded[~np.isin(seeded, head)]])

    def perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            # each epoch's permutation depends on the one before: walk forward from the latest known
            known = [e for e in self._cache if e < epoch]
            if known:
                e0 = max(known)
                p = self._cache[e0]
            else:
                e0, p = 0, self._seeded(0)
                self._cache[0] = p
            for e in range(e0 + 1, epoch + 1):
                p = self._next(p, e)
                self._cache[e] = p
            for e in sorted(self._cache)[:-3]:   # keep the last few (reads move forward)
                del self._cache[e]
        return self._cache[epoch]

    def indices(self, start: int, count: int) -> list[int]:
        out = []
        for k in range(start, start + count):
            e, pos = divmod(k, self.n)
            out.append(int(self.perm(e)[pos]))
        return out


def blend(retrieval: list[TrainExample], classification: list[TrainExample], retrieval_fraction: float,
          seed: int) -> list[TrainExample]:
    """Stage 2's examples: a seeded sample of retrieval examples, then every classification
    example, so that retrieval makes ``retrieval_fraction`` of the whole (all retrieval
    examples when the fraction is 1 or when there are too few)."""
    frac = float(retrieval_fraction)
    n_ret = int(round(len(classification) * frac / max(1e-9, 1 - frac))) if frac < 1 else len(retrieval)
    rng = np.random.default_rng(seed)
    keep = sorted(rng.choice(len(retrieval), size=min(n_ret, len(retrieval)), replace=False).tolist())
    return [retrieval[i] for i in keep] + list(classification)
