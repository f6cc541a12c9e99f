"""Encoder inference backends: ONNX Runtime against torch as the oracle, CPU bf16 autocast."""

import logging

import numpy as np
import pytest
import torch

from nvr.errors import ConfigError
from nvr.text import Encoder, EncoderConfig
from nvr.text import backends
from test_encode import MINILM, minilm_tokenizer_dir, tiny_bert, wiki_texts  # noqa: F401  (fixtures)

pytest.importorskip("onnxruntime")


@pytest.fixture
def onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NVR_ONNX_CACHE", str(tmp_path / "onnx"))
    return tmp_path / "onnx"


def _cfg(model, **kw):
    return EncoderConfig(model=model, device="cpu", max_passage_length=128, batch_size=4, **kw)


def test_onnxruntime_matches_torch_and_exports_once(tiny_bert, onnx_cache, caplog):
    texts = wiki_texts(11, seed=3)
    ref = Encoder(_cfg(tiny_bert)).encode(texts, progress=False)
    caplog.set_level(logging.INFO, logger="nvr")
    enc = Encoder(_cfg(tiny_bert, backend="onnxruntime"))
    got = enc.encode(texts, progress=False)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(1 - (got * ref).sum(1)).max() < 1e-5          # cosine of unit vectors
    np.testing.assert_array_equal(got, enc.encode(texts, progress=False))   # repeatable
    files = sorted(onnx_cache.glob("*.onnx"))
    assert len(files) == 1 and caplog.text.count("exporting the model") == 1
    caplog.clear()
    again = Encoder(_cfg(tiny_bert, backend="onnxruntime")).encode(texts, progress=False)
    np.testing.assert_array_equal(again, got)
    assert "exporting the model" not in caplog.text and sorted(onnx_cache.glob("*.onnx")) == files
    assert not list(onnx_cache.glob(".*"))                       # no temporary left behind


def test_onnxruntime_agrees_with_torch_on_minilm(onnx_cache):
    texts = wiki_texts(24, seed=4)
    ref = Encoder(_cfg(MINILM)).encode(texts, progress=False)
    got = Encoder(_cfg(MINILM, backend="onnxruntime")).encode(texts, progress=False)
    assert np.abs(1 - (got * ref).sum(1)).max() < 1e-5
    assert (np.argsort(-(got @ ref.T), 1)[:, :5] == np.argsort(-(ref @ ref.T), 1)[:, :5]).all()


def test_backend_is_part_of_the_cache_key_and_validated(tiny_bert):
    assert "backend" not in _cfg(tiny_bert).cache_key()            # keys of existing torch caches unchanged
    assert _cfg(tiny_bert, backend="onnxruntime").cache_key()["backend"] == "onnxruntime"
    with pytest.raises(ConfigError, match=r"encoder\.backend: must be one of"):
        Encoder(_cfg(tiny_bert, backend="tensorrt"))
    with pytest.raises(ConfigError, match=r"encoder\.dtype: backend 'onnxruntime' runs float32"):
        Encoder(_cfg(tiny_bert, backend="onnxruntime", dtype="bfloat16"))
    with pytest.raises(ConfigError, match="runs on the CPU"):
        backends.check_backend("onnxruntime", "cuda:0")


def test_cpu_bf16_is_autocast_over_float32_weights(tiny_bert):
    texts = wiki_texts(9, seed=5)
    ref = Encoder(_cfg(tiny_bert)).encode(texts, progress=False)
    enc = Encoder(_cfg(tiny_bert, dtype="bfloat16"))
    assert enc.autocast is torch.bfloat16 and enc.dtype == torch.float32   # master weights stay fp32
    got = enc.encode(texts, progress=False)
    assert got.dtype == np.float32 and np.abs(1 - (got * ref).sum(1)).max() < 5e-3
    assert not np.array_equal(got, ref)                            # it did run in bf16


def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    real_path = backends.Path

    def fake(p, *a):
        return real_path(cpuinfo) if str(p) == "/proc/cpuinfo" else real_path(p, *a)

    monkeypatch.setattr(backends, "Path", fake)
    for flags, want in (("fpu avx2 fma", False), ("fpu avx512f avx512_bf16", True), ("amx_bf16 amx_tile", True)):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        backends.cpu_has_native_bf16.cache_clear()
        assert backends.cpu_has_native_bf16() is want
    backends.cpu_has_native_bf16.cache_clear()
