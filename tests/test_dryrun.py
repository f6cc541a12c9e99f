"""`nvr check --dry-run`: GPU profiles built on the meta device offline; broken values name their key;
and one real (tiny) run of the code path the NV-Retriever-v1 profile trains with."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from nvr import config
from nvr.dryrun import build_meta, dry_run, estimate_train_memory, model_info
from nvr.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"
LORA_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(ROOT)          # profiles name data folders relative to the project root


def raw(name):
    return yaml.safe_load((PROFILES / name).read_text())


def run_raw(r):
    return dry_run(config.parse(r))


@pytest.fixture(scope="module")
def v1_report():
    return dry_run(config.load(PROFILES / "nv-retriever-v1.yaml"))


@pytest.fixture(scope="module")
def ablation_report():
    return dry_run(config.load(PROFILES / "gpu-ablation.yaml"))


# --------------------------------------------------------------------------- parameter counts
def test_known_architectures_match_the_published_sizes():
    # MistralModel (no LM head): 7.11B; + the 32000 x 4096 head = 7.24B, Mistral-7B-v0.1's published size
    m = build_meta(model_info("mistralai/Mistral-7B-v0.1").config, bidirectional=True, lora=None,
                   gradient_checkpointing=False, where="t")
    assert m.decoder and m.total == m.trainable
    assert m.total + 32000 * 4096 == pytest.approx(7.24e9, rel=0.002)
    e5 = build_meta(model_info("intfloat/e5-large-unsupervised").config, bidirectional=None, lora=None,
                    gradient_checkpointing=False, where="t")
    assert not e5.decoder and not e5.bidirectional
    assert e5.total == pytest.approx(335e6, rel=0.002)      # BERT-large, the paper's "334M"
    assert model_info("someone/not-a-known-model").config is None   # a line in the report, not an error


def test_v1_profile_dry_run(v1_report):
    text = "\n".join(v1_report)
    assert v1_report[-1] == "dry run ok"
    # LoRA r=16 on the 7 projections of 32 blocks: r * (in + out) per projection
    per_layer = 16 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)
    assert per_layer * 32 == 41_943_040
    assert "41.9M trainable of 7.15B (0.59%" in text
    assert "bidirectional True, gradient checkpointing on" in text
    stage_lines = [ln for ln in v1_report if "GPU memory" in ln]
    assert len(stage_lines) == 2
    totals = [float(ln.split("= ")[-1].split(" GiB")[0]) for ln in stage_lines]
    assert all(20 < t < 72 for t in totals), totals          # fits an 80 GiB H100 with checkpointing
    assert text.count("no gradient cache needed") == 2
    from nvr.evaluation import BEIR_15_TASKS

    assert ", ".join(BEIR_15_TASKS) in text
    assert "e5-mistral-7b-instruct: mistral (decoder), 7.11B params, pooling last" in text


def test_ablation_profile_dry_run(ablation_report):
    text = "\n".join(ablation_report)
    assert ablation_report[-1] == "dry run ok"
    assert "335.1M trainable of 335.1M (100.00%; full fine-tuning)" in text
    assert "NQ, HotpotQA, FiQA2018" in text
    assert text.count("pooling last") == 1 and "pooling cls" in text   # e5-mistral, arctic-embed-l


def test_memory_estimate_responds_to_checkpointing_and_grad_cache():
    cfg = model_info("mistralai/Mistral-7B-v0.1").config
    meta = build_meta(cfg, bidirectional=True, lora={"r": 16, "alpha": 32, "target_modules": LORA_ALL},
                      gradient_checkpointing=False, where="t")
    study = config.load(PROFILES / "nv-retriever-v1.yaml")
    stage = study.stage_config("stage1")
    plain = estimate_train_memory(cfg, meta, stage, gradient_checkpointing=False)
    ckpt = estimate_train_memory(cfg, meta, stage, gradient_checkpointing=True)
    cached = estimate_train_memory(cfg, meta, stage, gradient_checkpointing=False, grad_cache_chunk=4)
    assert plain["total_gib"] > 80 > ckpt["total_gib"] and cached["total_gib"] < 80
    assert plain["weights_gib"] == pytest.approx(7.11e9 * 2 / 2**30, rel=0.01)   # bf16 frozen weights
    assert plain["train_state_gib"] == pytest.approx(41_943_040 * 16 / 2**30)    # fp32 + grad + AdamW m, v


def test_dry_run_suggests_a_gradient_cache_when_activations_do_not_fit():
    r = raw("nv-retriever-v1.yaml")
    r["train"]["stage1"]["gradient_checkpointing"] = False
    text = "\n".join(run_raw(r))
    assert "WARNING" in text and "train.stage1.grad_cache_chunk <=" in text


# --------------------------------------------------------------------------- broken profiles
def _set(r, dotted, value):
    *path, last = dotted.split(".")
    node = r
    for k in path:
        node = node[k]
    if value is _DEL:
        del node[last]
    else:
        node[last] = value


class _Deleted:
    def __repr__(self):
        return "<deleted>"


_DEL = _Deleted()

BROKEN = [
    ("nv-retriever-v1.yaml", "train.stage1.lora.target_modules", ["q_proj", "qkv_proj"],
     "train.stage1.lora.target_modules"),
    ("nv-retriever-v1.yaml", "train.stage2.lora", _DEL, "train.stage2.lora"),    # full fine-tuning of 7B
    ("gpu-ablation.yaml", "train.stage1.max_passage_length", 1024, "train.stage1.max_passage_length"),
    ("gpu-ablation.yaml", "evaluate.max_query_length", 600, "evaluate.max_query_length"),
    ("nv-retriever-v1.yaml", "teachers.e5mistral.max_passage_length", 40000, "teachers.e5mistral.max_passage_length"),
    ("gpu-ablation.yaml", "evaluate.hub_tasks", ["NQ", "HotpotQAA"], "evaluate.hub_tasks"),
    ("gpu-ablation.yaml", "dataset.path", "nq", "dataset.train_split"),            # BEIR nq: test split only
    ("gpu-ablation.yaml", "dataset.path", "hotpot_qa", "dataset.path"),
    ("nv-retriever-v1.yaml", "train.stage2.in_batch_negatives", True, "train.stage2.in_batch_negatives"),
    ("nv-retriever-v1.yaml", "train.stage2.num_negatives", 7, "train.stage2.num_negatives"),
    ("nv-retriever-v1.yaml", "student.dtype", "fp16", "student.dtype"),
    ("nv-retriever-v1.yaml", "student.pooling", "last", "student.mask_prefix_in_pool"),
    ("gpu-ablation.yaml", "teachers.e5mistral.pooling", "cls", "teachers.e5mistral.pooling"),
    ("nv-retriever-v1.yaml", "teacher_ablation", ["e5mistral"], "teacher_ablation"),
    ("gpu-ablation.yaml", "teachers.e5mistral.depth", 12, "teachers.e5mistral.depth"),   # shift10 needs 14
    ("scifact.yaml", "dataset.path", "../shared/data/beir/no-such-set", "dataset.path"),
]


@pytest.mark.parametrize("profile,key,value,named", BROKEN, ids=[f"{b[1]}={b[2]!r}"[:60] for b in BROKEN])
def test_broken_profile_names_the_key(profile, key, value, named):
    r = copy.deepcopy(raw(profile))
    _set(r, key, value)
    with pytest.raises(ConfigError) as exc:
        run_raw(r)
    assert str(exc.value).startswith(named), str(exc.value)


def test_causal_cls_pooling_is_refused_and_unknown_hub_models_are_reported():
    r = raw("nv-retriever-v1.yaml")
    r["student"].update(pooling="cls", mask_prefix_in_pool=False, bidirectional=False)
    with pytest.raises(ConfigError, match=r"^student\.pooling"):
        run_raw(r)
    r = raw("nv-retriever-v1.yaml")
    r["student"]["model"] = "someone/not-a-known-model"
    lines = run_raw(r)
    assert any("someone/not-a-known-model: cannot be checked offline" in ln for ln in lines)


@pytest.mark.skipif(not (PROFILES.parent.parent / "shared" / "data" / "beir" / "scifact").is_dir(),
                    reason="the profile's BEIR folder (../shared/data/beir/scifact) is not beside this checkout")
def test_cli_check_dry_run(capsys):
    from nvr.cli import main

    assert main(["check", str(PROFILES / "scifact.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run ok" in out and "BEIR folder" in out


# --------------------------------------------------------------------------- the LLM path, for real
def test_v1_code_path_on_a_tiny_mistral(tmp_path):
    """The NV-Retriever-v1 profile's stage-1 settings (LoRA on all 7 projections, bidirectional attention,
    instruction left out of the mean pool, gradient checkpointing, gradient cache) on a tiny random
    Mistral, fp32 on the CPU; the saved folder loads back through the inference path (nvr.text.Encoder)."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    from nvr.text import Encoder, EncoderConfig
    from nvr.models import build_tiny_model
    from nvr.training import EmbeddingModel, TrainExample, train_stage

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        study = config.load(PROFILES / "nv-retriever-v1.yaml")
        st = study.student
        prof = study.stage_config("stage1")
        assert prof.lora["target_modules"] == LORA_ALL and prof.gradient_checkpointing
        cfg = dataclasses.replace(prof, batch_size=4, grad_accum=1, epochs=None, max_steps=2, warmup_steps=1,
                                  learning_rate=1e-3, max_query_length=32, max_passage_length=24, save_every=0,
                                  grad_cache_chunk=3, lora={**prof.lora, "r": 4, "alpha": 8})
        tiny = build_tiny_model(tmp_path / "tiny", "mistral")
        words = "apple river stone cloud music paper light tiger green house ocean glass".split()
        examples = [TrainExample(" ".join(words[i:i + 3]), " ".join(words[i + 1:i + 7]), [" ".join(words[i + 2:i + 8])])
                    for i in range(6)]
        out = tmp_path / "stage1"
        s = train_stage(str(tiny), examples, cfg, out, dataclasses.replace(st, dtype="float32"), device="cpu",
                        progress=False)
        assert s["steps"] == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in s["log"])
        # r * (in + out) for the 7 projections of 2 tiny layers (hidden 64, kv 32, MLP 128)
        assert s["trainable_params"] == 2 * 4 * ((64 + 64) * 2 + (64 + 32) * 2 + (64 + 128) * 3)

        # merged LoRA changed every targeted projection, and nothing else
        before, after = load_file(str(tiny / "model.safetensors")), load_file(str(out / "model.safetensors"))
        changed = {k.split(".")[-2] for k in before if not torch.equal(before[k], after[k])}
        assert changed == set(LORA_ALL)
        settings = json.loads((out / "nvr_pooling.json").read_text())
        assert settings == {"pooling": "mean", "normalize": True, "query_prefix": st.query_prefix,
                            "passage_prefix": st.passage_prefix, "mask_prefix_in_pool": True, "bidirectional": True}

        # a plain AutoModel load is bidirectional: the first token sees a change in the last one
        m = AutoModel.from_pretrained(out).eval()
        assert m.config.is_causal is False
        ids = torch.tensor([[5, 6, 7, 8, 9]])
        alt = ids.clone()
        alt[0, -1] = 10
        with torch.no_grad():
            h1 = m(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0, 0]
            h2 = m(input_ids=alt, attention_mask=torch.ones_like(ids)).last_hidden_state[0, 0]
        assert not torch.allclose(h1, h2)

        # training-side and inference-side embeddings agree (instruction masked in both)
        em = EmbeddingModel.from_pretrained(str(out))
        texts = ["stone cloud music", "a longer query about rivers and apples and glass"]
        with torch.no_grad():
            want = em(**em.tokenize(texts, "query", 32))
        enc = Encoder(EncoderConfig(model=str(out), pooling="mean", query_prefix=st.query_prefix,
                                    passage_prefix=st.passage_prefix, mask_prefix_in_pool=True, max_query_length=32,
                                    max_passage_length=24, device="cpu", dtype="float32"))
        got = torch.from_numpy(enc.encode(texts, "query", progress=False))
        assert torch.allclose(want, got, atol=1e-5)
        um = EmbeddingModel.from_pretrained(str(out), mask_prefix_in_pool=False)
        with torch.no_grad():
            unmasked = um(**um.tokenize(texts, "query", 32))
        assert not torch.allclose(want, unmasked, atol=1e-4)
    finally:
        torch.set_num_threads(n_threads)


def test_hf_cache_config_is_preferred_to_the_table(tmp_path, monkeypatch):
    import huggingface_hub.constants as C
    from transformers import BertConfig

    snap = tmp_path / "models--intfloat--e5-large-unsupervised" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("a" * 40)
    BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128).save_pretrained(snap)
    monkeypatch.setattr(C, "HF_HUB_CACHE", str(tmp_path))
    info = model_info("intfloat/e5-large-unsupervised")
    assert info.source.startswith("HF cache") and info.config.hidden_size == 64
