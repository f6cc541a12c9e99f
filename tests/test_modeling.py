"""EmbeddingModel: pooling, instruction masking, bidirectional decoders, LoRA, save/load."""

import json

import pytest
import torch

from nvr.models import build_tiny_model
from nvr.text.pooling import pool
from nvr.training.model import EmbeddingModel, is_decoder_only, make_bidirectional


def train_embed(em, texts, kind, max_length=64):
    """Embeddings through the training path (EmbeddingModel.tokenize + forward), no graph."""
    with torch.no_grad():
        return em(**em.tokenize(texts, kind, max_length))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"bert": build_tiny_model(root / "bert", "bert"), "mistral": build_tiny_model(root / "mistral", "mistral")}


def test_pool_modes():
    h = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)   # token values 0..7
    m = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])                   # right / left padding
    assert pool(h, m, "mean").flatten().tolist() == [1.0, 6.0]
    assert pool(h, m, "cls").flatten().tolist() == [0.0, 5.0]     # first attended token (left padding too)
    assert pool(h, m, "last").flatten().tolist() == [2.0, 7.0]
    skip = torch.tensor([[False, True, False, False], [False, False, False, False]])
    assert pool(h, m, "mean", skip).flatten().tolist() == [1.0, 6.0]   # (0+2)/2, unchanged row 2
    skip[0, 0] = True
    assert pool(h, m, "mean", skip).flatten().tolist() == [2.0, 6.0]


def test_decoder_detection(tiny):
    from transformers import AutoConfig

    assert is_decoder_only(AutoConfig.from_pretrained(tiny["mistral"]))
    assert not is_decoder_only(AutoConfig.from_pretrained(tiny["bert"]))


@pytest.mark.parametrize("padded", [False, True])
def test_bidirectional_attention(tiny, padded):
    from transformers import AutoModel

    ids = torch.tensor([[101, 2000, 2001, 2002, 102]])
    ids2 = ids.clone()
    ids2[0, 3] = 2500                                  # change a later token
    mask = torch.ones_like(ids)
    if padded:                                         # a padded batch goes through the mask path
        ids, ids2 = (torch.cat([x, torch.tensor([[101, 2000, 102, 0, 0]])]) for x in (ids, ids2))
        mask = torch.cat([mask, torch.tensor([[1, 1, 1, 0, 0]])])

    def first_token_change(model):
        with torch.no_grad():
            a = model(input_ids=ids, attention_mask=mask).last_hidden_state
            b = model(input_ids=ids2, attention_mask=mask).last_hidden_state
        return (a[0, :3] - b[0, :3]).abs().max().item()

    causal = AutoModel.from_pretrained(tiny["mistral"]).eval()
    assert first_token_change(causal) == 0.0           # decoder as shipped: earlier tokens blind to later
    assert make_bidirectional(causal) > 0
    assert first_token_change(causal) > 1e-4
    em = EmbeddingModel.from_pretrained(tiny["mistral"])  # auto: decoder -> bidirectional
    assert em.bidirectional
    assert first_token_change(em.model.eval()) > 1e-4


def test_instruction_tokens_left_out_of_mean(tiny):
    em = EmbeddingModel.from_pretrained(tiny["bert"], query_prefix="query: ", mask_prefix_in_pool=True).eval()
    b = em.tokenize(["hello world"], "query", 16)
    toks = em.tokenizer.convert_ids_to_tokens(b["input_ids"][0])
    assert toks == ["[CLS]", "query", ":", "hello", "world", "[SEP]"]
    assert b["skip_mask"][0].tolist() == [False, True, True, False, False, False]
    em.passage_prefix = "passage: "
    assert em.tokenize(["hello"], "passage", 16)["skip_mask"][0].tolist() == [False, True, True, False, False]
    em.passage_prefix = ""
    assert "skip_mask" not in em.tokenize(["hello world"], "passage", 16)
    with torch.no_grad():
        hidden = em.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        want = torch.nn.functional.normalize(hidden[0, [0, 3, 4, 5]].mean(0), dim=-1)
        got = em(**b)[0]
        plain = em(b["input_ids"], b["attention_mask"])[0]
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(plain, want, atol=1e-4)


def test_save_load_roundtrip(tiny, tmp_path):
    from transformers import AutoModel

    em = EmbeddingModel.from_pretrained(tiny["bert"], pooling="cls", query_prefix="q: ", passage_prefix="p: ")
    texts = ["alpha beta", "gamma"]
    before = train_embed(em, texts, "query")
    out = em.save(tmp_path / "m")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    settings = json.loads((out / "nvr_pooling.json").read_text())
    assert settings == {"pooling": "cls", "normalize": True, "query_prefix": "q: ", "passage_prefix": "p: ",
                        "mask_prefix_in_pool": False, "bidirectional": False}
    AutoModel.from_pretrained(out)
    back = EmbeddingModel.load(out)
    assert back.pooling == "cls" and back.query_prefix == "q: "
    assert torch.allclose(train_embed(back, texts, "query"), before, atol=1e-6)


def test_lora_trains_adapters_and_merges_on_save(tiny, tmp_path):
    from transformers import AutoModel

    em = EmbeddingModel.from_pretrained(tiny["mistral"], lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    trainable = [n for n, p in em.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():                              # make the adapters non-zero
        for n, p in em.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    texts = ["alpha beta gamma", "delta"]
    before = train_embed(em, texts, "passage")
    out = em.save(tmp_path / "lora")
    assert not em.is_lora
    raw = AutoModel.from_pretrained(out)
    assert not any("lora" in k for k in raw.state_dict())
    assert raw.config.is_causal is False
    ids = torch.tensor([[101, 2000, 2001, 2002, 102]])
    with torch.no_grad():                              # plain AutoModel load is bidirectional too
        h1 = raw(input_ids=ids).last_hidden_state
        h2 = raw(input_ids=ids.index_fill(1, torch.tensor([3]), 2500)).last_hidden_state
    assert (h1[0, 0] - h2[0, 0]).abs().max() > 1e-4
    back = EmbeddingModel.load(out)
    assert back.bidirectional
    assert torch.allclose(train_embed(back, texts, "passage"), before, atol=1e-5)


def test_gradient_checkpointing_same_gradients(tiny):
    texts = ["one two three", "four five"]

    def grads(gc):
        torch.manual_seed(0)
        em = EmbeddingModel.from_pretrained(tiny["bert"], gradient_checkpointing=gc).train()
        b = em.tokenize(texts, "passage", 16)
        em(**b).sum().backward()
        return {n: p.grad for n, p in em.named_parameters() if p.grad is not None}

    a, b = grads(False), grads(True)
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
