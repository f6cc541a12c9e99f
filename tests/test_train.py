"""Training: config, data order, gradient cache, determinism, resume, DDP, LoRA, stage-2 data."""

import json
import os

import numpy as np
import pytest
import torch

from nvr.config import StageConfig, StudentConfig
from nvr.errors import ConfigError
from nvr.models import build_tiny_model
from nvr.training import DataOrder, EmbeddingModel, TrainExample, classification_examples, embed_loss_grads, train_stage
from nvr.training import checkpoints as C
from nvr.training import loop as T

WORDS = ("apple river stone cloud music paper light tiger green house ocean glass bread storm violin "
         "mountain silver garden rocket winter candle forest yellow dragon").split()


def make_examples(k=12, negs=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    pick = lambda n: " ".join(WORDS[i] for i in torch.randint(len(WORDS), (n,), generator=g).tolist())  # noqa: E731
    # a ragged number of negatives exercises the padding mask
    return [TrainExample(pick(3), pick(8), [pick(8) for _ in range(negs - (i % 2))]) for i in range(k)]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"bert": build_tiny_model(root / "bert", "bert"),
            "bert_drop": build_tiny_model(root / "bert_drop", "bert", dropout=0.1),
            "mistral": build_tiny_model(root / "mistral", "mistral")}


def cfg(**kw):
    base = dict(num_negatives=3, batch_size=4, max_steps=4, warmup_steps=1, learning_rate=1e-3, temperature=0.1,
                max_query_length=8, max_passage_length=12)
    base.update(kw)
    c = StageConfig(**base)
    c.validate("t")
    return c


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def same_weights(a, b, atol=0.0):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return all(torch.equal(wa[k], wb[k]) if atol == 0 else torch.allclose(wa[k], wb[k], atol=atol) for k in wa)


# --------------------------------------------------------------------------- config and data
@pytest.mark.parametrize("field,value", [("batch_size", 0), ("learning_rate", -1.0), ("schedule", "cosine"),
                                         ("grad_cache_chunk", 0), ("epochs", 0.0), ("num_negatives", -1),
                                         ("lora", {"rank": 4}), ("lora", {"r": 0})])
def test_config_errors_name_the_field(field, value):
    c = StageConfig(**{field: value})
    with pytest.raises(ConfigError, match=rf"train\.stage1\.{field}"):
        c.validate("train.stage1")


def test_config_from_params_builder():
    from nvr.config import build

    c = build(StageConfig, {"batch_size": 8, "lora": {"r": 8, "alpha": 16}, "epochs": 1}, "train.stage1")
    assert c.total_steps(100) == 13 and c.epochs == 1.0
    assert StageConfig(max_steps=7).total_steps(100) == 7


def test_lr_schedule():
    f = T.lr_lambda(StageConfig(warmup_steps=2, max_steps=6), 6)
    assert [f(s) for s in range(6)] == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25])
    g = T.lr_lambda(StageConfig(warmup_steps=2, schedule="constant"), 6)
    assert [g(s) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]


def test_data_order_is_seeded_permutation_per_epoch():
    o = DataOrder(5, seed=3)
    first = o.indices(0, 10)
    assert sorted(first[:5]) == sorted(first[5:]) == list(range(5))
    assert DataOrder(5, 3).indices(4, 3) == first[4:7]          # resumable from any position
    assert DataOrder(5, 4).indices(0, 5) != first[:5]


@pytest.mark.parametrize("n", range(1, 14))
def test_data_order_never_repeats_an_example_within_a_batch(n):
    """Every batch of ``batch`` consecutive samples holds distinct examples, across epoch boundaries;
    every epoch is still a permutation; resumable; the seeded order itself when ``batch`` divides N."""
    for batch in range(1, n + 1):
        idx = DataOrder(n, 5, batch).indices(0, 6 * n + batch)
        for k in range(0, len(idx) - batch + 1, batch):
            assert len(set(idx[k:k + batch])) == batch, (n, batch, k, idx[k:k + batch])
        for e in range(6):
            assert sorted(idx[e * n:(e + 1) * n]) == list(range(n))
        assert DataOrder(n, 5, batch).indices(3 * batch, 2 * batch) == idx[3 * batch:5 * batch]
        if n % batch == 0:
            assert idx == DataOrder(n, 5).indices(0, len(idx))
    with pytest.raises(ValueError, match="twice"):
        DataOrder(n, 5, n + 1)


def test_classification_examples():
    ex = classification_examples(["t1", "t2", "t3"], [0, 1, 2], ["sports", "arts", "science"], num_negatives=5,
                                 seed=0, instruction="Classify: ")
    assert [e.query for e in ex] == ["Classify: t1", "Classify: t2", "Classify: t3"]
    assert [e.positive for e in ex] == ["sports", "arts", "science"]
    assert all(len(e.negatives) == 2 and e.positive not in e.negatives for e in ex)
    ex2 = classification_examples(["a"] * 20, ["x"] * 20, {"x": "X", "y": "Y", "z": "Z", "w": "W"},
                                  num_negatives=2, seed=1)
    assert ex2 == classification_examples(["a"] * 20, ["x"] * 20, {"x": "X", "y": "Y", "z": "Z", "w": "W"},
                                          num_negatives=2, seed=1)
    assert len({tuple(e.negatives) for e in ex2}) > 1 and all("X" not in e.negatives for e in ex2)
    with pytest.raises(ValueError):
        classification_examples(["a"], ["q"], {"x": "X"}, num_negatives=1, seed=0)


# --------------------------------------------------------------------------- gradient cache
@pytest.mark.parametrize("in_batch", [True, False])
def test_grad_cache_equals_plain_backward(tiny, in_batch):
    c = cfg(in_batch_negatives=in_batch)
    ex = make_examples(4)
    torch.manual_seed(0)
    em = EmbeddingModel.from_pretrained(tiny["bert"]).train()
    loss_a, ga = embed_loss_grads(em, ex, c, chunk=None, cache=False)
    loss_b, gb = embed_loss_grads(em, ex, c, chunk=3, cache=True)
    assert loss_a == pytest.approx(loss_b, abs=1e-5)
    assert ga.keys() == gb.keys() and len(ga) > 10
    for k in ga:
        assert torch.allclose(ga[k], gb[k], atol=1e-5), k


def test_grad_cache_replays_dropout(tiny):
    c = cfg()
    ex = make_examples(4)
    em = EmbeddingModel.from_pretrained(tiny["bert_drop"]).train()
    torch.manual_seed(1)
    loss_ref, gref = embed_loss_grads(em, ex, c, chunk=3, cache=False)   # chunked, full graph
    torch.manual_seed(1)
    loss_gc, ggc = embed_loss_grads(em, ex, c, chunk=3, cache=True)
    assert loss_ref == pytest.approx(loss_gc, abs=1e-5)
    assert all(torch.allclose(gref[k], ggc[k], atol=1e-5) for k in gref)
    torch.manual_seed(1)
    _, gbad = embed_loss_grads(em, ex, c, chunk=3, cache=True, replay_rng=False)
    assert not all(torch.allclose(gref[k], gbad[k], atol=1e-5) for k in gref)


# --------------------------------------------------------------------------- full runs
@pytest.fixture(scope="module")
def reference_run(tiny, tmp_path_factory):
    """Uninterrupted 4-step run (dropout on, grad accumulation, ragged negatives)."""
    out = tmp_path_factory.mktemp("ref") / "model"
    s = train_stage(tiny["bert_drop"], make_examples(), cfg(grad_accum=2, batch_size=2), out, progress=False)
    return out, s


def test_train_output_and_log(reference_run):
    from transformers import AutoModel

    out, s = reference_run
    assert s["steps"] == 4 and [r["step"] for r in s["log"]] == [1, 2, 3, 4]
    assert s["examples_seen"] == 16 and s["resumed_from"] is None
    assert all(set(r) == {"step", "loss", "lr", "seconds", "examples"} for r in s["log"])
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == [r["loss"] for r in s["log"]]
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 4
    assert (out / "nvr_pooling.json").is_file()
    AutoModel.from_pretrained(out)
    assert not C.work_dir(out).exists()


def test_same_seed_same_weights_bit_for_bit(tiny, reference_run, tmp_path):
    ref, s = reference_run
    out = tmp_path / "again"
    s2 = train_stage(tiny["bert_drop"], make_examples(), cfg(grad_accum=2, batch_size=2), out, progress=False)
    assert [r["loss"] for r in s2["log"]] == [r["loss"] for r in s["log"]]
    assert same_weights(ref, out)
    before = weights(tiny["bert_drop"])
    assert not torch.equal(before["embeddings.word_embeddings.weight"], weights(out)["embeddings.word_embeddings.weight"])


def test_interrupted_run_resumes_to_identical_weights(tiny, reference_run, tmp_path, monkeypatch):
    ref, s = reference_run
    out = tmp_path / "resumed"
    c = cfg(grad_accum=2, batch_size=2, save_every=2)

    def boom(step):
        if step == 3:
            raise KeyboardInterrupt("simulated crash after step 3")

    with pytest.raises(KeyboardInterrupt):
        train_stage(tiny["bert_drop"], make_examples(), c, out, progress=False, on_step=boom)
    assert not out.exists()
    assert C.latest_checkpoint(C.work_dir(out)).name == "ckpt-2"
    s2 = train_stage(tiny["bert_drop"], make_examples(), c, out, progress=False)
    assert s2["resumed_from"] == 2
    assert [r["loss"] for r in s2["log"]] == [r["loss"] for r in s["log"]]
    assert same_weights(ref, out)


def test_resume_refuses_another_run(tiny, tmp_path, monkeypatch):
    out = tmp_path / "m"
    c = cfg(max_steps=2, save_every=1)
    with pytest.raises(RuntimeError):
        train_stage(tiny["bert"], make_examples(), c, out, progress=False,
                    on_step=lambda step: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(ConfigError, match="another run"):
        train_stage(tiny["bert"], make_examples(), cfg(max_steps=2, save_every=1, learning_rate=5e-4), out,
                    progress=False)


def test_lora_decoder_stage(tiny, tmp_path):
    from transformers import AutoModel

    c = cfg(max_steps=2, in_batch_negatives=False, lora={"r": 4, "alpha": 8, "dropout": 0.0},
            gradient_checkpointing=True, grad_cache_chunk=4)
    out = tmp_path / "lora"
    st = StudentConfig(query_prefix="Retrieve: ", passage_prefix="passage: ", mask_prefix_in_pool=True)
    s = train_stage(tiny["mistral"], make_examples(8), c, out, st, progress=False)
    assert s["trainable_params"] < s["total_params"] / 50
    m = AutoModel.from_pretrained(out)
    assert m.config.is_causal is False
    settings = json.loads((out / "nvr_pooling.json").read_text())
    assert settings["bidirectional"] and settings["mask_prefix_in_pool"] and settings["query_prefix"] == "Retrieve: "
    before, after = weights(tiny["mistral"]), weights(out)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)


# --------------------------------------------------------------------------- DDP
def _ddp_worker(rank, world, init_file, model_dir, out_dir, q):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        # save_every=1 also runs the collective checkpoint code (RNG states gathered from both ranks)
        s = train_stage(model_dir, make_examples(), cfg(max_steps=2, batch_size=4, save_every=1), out_dir,
                        progress=False, device="cpu")
        q.put((rank, [r["loss"] for r in s["log"]]))
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_match_single_process(tiny, tmp_path):
    import torch.multiprocessing as mp

    single = tmp_path / "single"
    s = train_stage(tiny["bert"], make_examples(), cfg(max_steps=2, batch_size=4), single, progress=False,
                    device="cpu")
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    out = tmp_path / "ddp"
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(tiny["bert"]), str(out), q), nprocs=2,
                       join=True, start_method="spawn")
    got = dict(q.get() for _ in range(2))
    for rank in (0, 1):
        assert got[rank] == pytest.approx([r["loss"] for r in s["log"]], abs=1e-5)
    assert same_weights(single, out, atol=1e-5)


def test_sigkill_mid_run_then_resume(tiny, reference_run, tmp_path):
    """A process killed with SIGKILL right after step 3 leaves ckpt-2 intact; a new run resumes."""
    import subprocess
    import sys
    import textwrap

    ref, _ = reference_run
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        torch.set_num_threads(1)   # bit-identical floats need the thread count of the reference run
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_train import make_examples, cfg
        from nvr.training import train_stage
        train_stage({str(tiny["bert_drop"])!r}, make_examples(), cfg(grad_accum=2, batch_size=2, save_every=2),
                    {str(out)!r}, progress=False,
                    on_step=lambda s: os.kill(os.getpid(), signal.SIGKILL) if s == 3 else None)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr[-2000:]
    assert not out.exists() and C.latest_checkpoint(C.work_dir(out)).name == "ckpt-2"
    s = train_stage(tiny["bert_drop"], make_examples(), cfg(grad_accum=2, batch_size=2, save_every=2), out,
                    progress=False)
    assert s["resumed_from"] == 2
    assert same_weights(ref, out)


def test_false_negative_masks_follow_ids_then_texts():
    """Two claims about one abstract (SciFact): each claim's positive is the other's in-batch
    negative unless masked. A hard negative that is a labeled positive of its row is masked too."""
    from nvr.training.step import false_negative_masks, make_batch

    a = TrainExample("claim one", "abstract X", ["abstract Y"], positive_id="X", negative_ids=["Y"],
                     positive_ids=("X",))
    b = TrainExample("claim two", "abstract X", ["abstract Z"], positive_id="X", negative_ids=["Z"],
                     positive_ids=("X", "Z"))
    c = TrainExample("no ids", "abstract Y", ["abstract X"])      # matched by text
    in_batch, own = false_negative_masks([a, b, c], 1)
    # columns: pos a (X), pos b (X), pos c (Y), neg a (Y), neg b (Z), neg c (X)
    assert in_batch.tolist() == [[False, True, False, False, False, True],
                                 [True, False, False, False, True, True],
                                 [False, False, False, True, False, False]]
    assert own.tolist() == [[False, False], [False, True], [False, False]]
    batch = make_batch([a, b, c], 1, repeated=[False, False, True])
    assert batch.row_mask.tolist() == [True, True, False]


def test_masked_loss_equals_loss_without_the_false_negative_columns():
    """Oracle: masking a column gives the same loss as deleting that passage from the row's softmax."""
    torch.manual_seed(0)
    q, p = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1), torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    p[1] = p[0]                                   # rows 0 and 1 share their positive
    from nvr.training.losses import info_nce

    ex = [TrainExample(f"q{i}", "shared" if i < 2 else "other", [], positive_id="S" if i < 2 else "O") for i in range(3)]
    from nvr.training.step import false_negative_masks

    in_batch, _ = false_negative_masks(ex, 0)
    got = info_nce(q, p, None, temperature=0.1, in_batch=True, exclude=in_batch, reduction="none")
    logits = q @ p.T / 0.1
    want = [torch.logsumexp(logits[0, [0, 2]], 0) - logits[0, 0], torch.logsumexp(logits[1, [1, 2]], 0) - logits[1, 1],
            torch.logsumexp(logits[2], 0) - logits[2, 2]]
    assert torch.allclose(got, torch.stack(want), atol=1e-5)


# --------------------------------------------------------------------------- batches and masks reach the loss
def _spy(monkeypatch):
    """Record what each micro-batch of train_stage hands make_batch and the loss."""
    from nvr.training import step as S

    seen = {"make_batch": [], "loss": []}
    real_make, real_loss = T.make_batch, S.info_nce

    def make_batch(local, n, **kw):
        seen["make_batch"].append((list(local), kw))
        return real_make(local, n, **kw)

    def info_nce(*a, **kw):
        seen["loss"].append(kw)
        return real_loss(*a, **kw)

    monkeypatch.setattr(T, "make_batch", make_batch)
    monkeypatch.setattr(S, "info_nce", info_nce)
    return seen


def _ided(k):
    return [TrainExample(f"query {WORDS[i]}", f"passage {WORDS[i]}", [f"negative {WORDS[i]}"], positive_id=f"p{i}",
                         negative_ids=[f"n{i}"], positive_ids=(f"p{i}",)) for i in range(k)]


@pytest.mark.parametrize("k,batch,steps", [(10, 4, 6), (3, 4, 3)])
def test_training_batches_never_hold_an_example_twice(tiny, tmp_path, monkeypatch, caplog, k, batch, steps):
    """10 examples in batches of 4 straddle every epoch boundary; 3 examples with batch_size 4 cap the
    batch at 3 (logged). No batch the loss sees holds one example twice, and the order is the same
    in a second run (and so for every mining method trained on these queries)."""
    import logging

    seen = _spy(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="nvr"):
        s = train_stage(tiny["bert"], _ided(k), cfg(num_negatives=1, batch_size=batch, max_steps=steps), tmp_path / "a",
                        progress=False)
    batches = [[e.positive_id for e in kw["global_examples"]] for _, kw in seen["make_batch"]]
    assert len(batches) == steps and all(len(b) == min(batch, k) for b in batches)
    assert all(len(set(b)) == len(b) for b in batches), batches
    assert all(kw["row_mask"] is None for kw in seen["loss"])            # no repeat to mask
    if k < batch:
        assert "capped at 3" in caplog.text and s["batch_size_requested"] == batch
        assert s["config"]["batch_size"] == 3
    order = [i for b in batches for i in b]
    assert sorted(order[:k]) == sorted(f"p{i}" for i in range(k))         # the first epoch is a permutation
    seen["make_batch"].clear()
    train_stage(tiny["bert"], _ided(k), cfg(num_negatives=1, batch_size=batch, max_steps=steps), tmp_path / "b",
                progress=False)
    assert [[e.positive_id for e in kw["global_examples"]] for _, kw in seen["make_batch"]] == batches


def test_global_batch_and_repeat_mask_reach_the_loss(tiny, tmp_path, monkeypatch):
    """The loop hands make_batch its rank's slice and the whole global batch, and the repeated-row
    mask reaches the loss: forced here by an order that repeats example 0 (DataOrder never does)."""
    seen = _spy(monkeypatch)

    class Repeating(DataOrder):
        def indices(self, start, count):
            return [0, 1, 0, 2][:count]

    monkeypatch.setattr(T, "DataOrder", Repeating)
    ex = _ided(4)
    train_stage(tiny["bert"], ex, cfg(num_negatives=1, batch_size=4, max_steps=1), tmp_path / "m", progress=False)
    (local, kw), = seen["make_batch"]
    assert local == [ex[0], ex[1], ex[0], ex[2]] and kw["global_examples"] == local
    assert kw["repeated"] == [False, False, True, False]
    assert seen["loss"][0]["row_mask"].tolist() == [True, True, False, True]


def test_labeled_positives_from_the_mined_file_are_masked_in_the_loss(tiny, tmp_path, monkeypatch):
    """retrieval_examples passes every labeled positive of a query (positive_ids), and the loss
    masks them: query A's second positive d2 is query B's positive, so B's positive column is no
    negative of A's row (in-batch and, as A's hard negative were it one, own)."""
    import shutil
    from pathlib import Path

    from nvr.mining import write_mined
    from nvr.paths import Layout
    from nvr.stages.train import retrieval_examples

    shutil.copytree(Path(__file__).resolve().parent / "fixtures" / "beir_tiny", tmp_path / "data")
    rows = [("qa", "capital of France", ["d1", "d2"], ["d3"]), ("qb", "capital of Germany", ["d2"], ["d4"]),
            ("qc", "a programming language", ["d4"], ["d5"])]
    mined = tmp_path / "mined.jsonl"
    write_mined(mined, [{"query_id": q, "query": t, "positive_ids": p, "positive_scores": [0.5] * len(p),
                         "negative_ids": n, "negative_scores": [0.1], "negative_ranks": [1]} for q, t, p, n in rows])
    ex = retrieval_examples(Layout.at(tmp_path), mined, 1)
    assert ex[0].positive_ids == ("d1", "d2")
    seen = _spy(monkeypatch)
    train_stage(tiny["bert"], ex, cfg(num_negatives=1, batch_size=3, max_steps=1), tmp_path / "m", progress=False)
    (local, kw), = seen["make_batch"]
    order = [e.positive_id for e in kw["global_examples"]]
    exclude = seen["loss"][0]["exclude"]      # (B, B + B*n): positives, then hard negatives
    a, b, c = order.index("d1"), order.index("d2"), order.index("d4")
    assert exclude[a, b]                      # B's positive d2 is A's labeled positive
    assert exclude[c, 3 + b]                  # B's hard negative d4 is C's positive
    assert exclude.sum() == 2, exclude


def test_bf16_on_cpu_is_autocast_over_float32_master_weights(tiny, reference_run, tmp_path, monkeypatch):
    """dtype bfloat16 on a CPU: fp32 weights saved, products under CPU autocast (the route to the
    fast path on CPUs with AVX512-BF16 / AMX), losses close to the fp32 run's, not equal to them."""
    import nvr.training.loop as loop

    seen = []
    real = torch.autocast

    def spy(device_type, *a, **kw):
        seen.append((device_type, kw.get("dtype")))
        return real(device_type, *a, **kw)

    monkeypatch.setattr(torch, "autocast", spy)
    ref, s = reference_run
    out = tmp_path / "bf16"
    s2 = train_stage(tiny["bert_drop"], make_examples(), cfg(grad_accum=2, batch_size=2), out,
                     StudentConfig(dtype="bfloat16"), progress=False, device="cpu")
    assert ("cpu", torch.bfloat16) in seen
    assert all(v.dtype == torch.float32 for v in weights(out).values())
    a, b = [r["loss"] for r in s["log"]], [r["loss"] for r in s2["log"]]
    assert a != b and np.allclose(a, b, rtol=0.05, atol=0.05)
    assert loop._precision("float32", "cpu", False) == (torch.float32, False)
    assert loop._precision("auto", "cpu", False) == (torch.float32, False)
