"""How an encoder turns token ids into token states: the inference backends.

* ``torch`` (the default): the Hugging Face model itself. In float32 this is the exact path:
  bit-for-bit repeatable on one machine and thread count, and the one every committed number
  of the study uses.
* ``onnxruntime``: the same weights exported once to ONNX (float32) and run by ONNX Runtime's
  CPU kernels with all its graph optimizations (fused attention, layer norm, GELU). Embeddings
  agree with torch's to about 1e-7 in cosine (another kernel library, so not bit-identical to
  torch, but repeatable run to run); ``benchmarks/bench_encode.py`` measures the speed. The
  exported graph is kept under the model's fingerprint (:func:`onnx_cache_dir`), so a model is
  exported once per machine. CPU only.
* ``dtype: bfloat16`` with the torch backend on a CPU runs under ``torch.autocast`` (float32
  weights, matrix products in bf16). Fast only on CPUs with native bf16 instructions
  (AVX512-BF16 or AMX, see :func:`cpu_has_native_bf16`); elsewhere it is emulated and several
  times slower than float32, which the encoder logs.

Pooling, normalisation and batching are the encoder's, the same for every backend.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..runtime import log

BACKENDS = ("torch", "onnxruntime")
ONNX_OPSET = 17


def onnx_cache_dir() -> Path:
    """Where exported ONNX graphs are kept: ``$NVR_ONNX_CACHE`` or ``~/.cache/nvr/onnx``."""
    env = os.environ.get("NVR_ONNX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "nvr" / "onnx"


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 products natively (AVX512-BF16 or AMX-BF16 flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    if text:
        flags = set()
        for line in text.splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    try:  # not Linux: ask torch's oneDNN build
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - exotic builds
        return False


def _import_onnxruntime():
    """onnxruntime (and onnx, which torch's exporter writes with), or a ConfigError naming both."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:  # pragma: no cover - declared dependencies
        raise ConfigError("encoder.backend 'onnxruntime' needs the onnxruntime and onnx packages: "
                          "pip install onnxruntime onnx") from None
    return onnxruntime


def _last_hidden(model):
    """``model`` wrapped to return only its last hidden state (what the ONNX export traces)."""
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask)
            return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    return LastHidden(model)


def export_onnx(model, fingerprint: str, cache_dir: Path | None = None) -> Path:
    """The model's ONNX graph (float32, dynamic batch and length), exported once and cached.

    The file name is a hash of the model fingerprint, torch's version and the opset; it is
    written to a temporary name and renamed, so a killed export leaves nothing half-written.
    """
    import torch

    ort = _import_onnxruntime()
    cache_dir = onnx_cache_dir() if cache_dir is None else Path(cache_dir)
    key = hashlib.sha256(f"{fingerprint}\0{torch.__version__}\0{ONNX_OPSET}".encode()).hexdigest()[:32]
    path = cache_dir / f"{key}.onnx"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{key}.{os.getpid()}.onnx"
    p = next(model.parameters())
    if p.dtype != torch.float32:
        raise ConfigError(f"encoder.backend 'onnxruntime' exports float32 weights; the model is {p.dtype} "
                          "(set dtype: float32)")
    wrapper = _last_hidden(model).eval()
    ids = torch.ones(2, 8, dtype=torch.long, device=p.device)
    log.info("onnxruntime %s: exporting the model to %s (once per model)", ort.__version__, path)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (ids, ids), str(tmp), input_names=["input_ids", "attention_mask"],
                              output_names=["hidden"], opset_version=ONNX_OPSET, dynamo=False,
                              dynamic_axes={"input_ids": {0: "batch", 1: "length"},
                                            "attention_mask": {0: "batch", 1: "length"},
                                            "hidden": {0: "batch", 1: "length"}})
        os.replace(tmp, path)
    except Exception as exc:
        raise ConfigError(f"encoder.backend 'onnxruntime': the model could not be exported to ONNX "
                          f"({type(exc).__name__}: {exc}); use backend 'torch'") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class OnnxRuntimeBackend:
    """Token states from an exported ONNX graph on ONNX Runtime's CPU kernels."""

    name = "onnxruntime"

    def __init__(self, model, fingerprint: str, threads: int | None = None, cache_dir: Path | None = None):
        import torch

        ort = _import_onnxruntime()
        self.path = export_onnx(model, fingerprint, cache_dir)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = int(threads or torch.get_num_threads())
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids, attention_mask):
        """``(B, L)`` int tensors -> ``(B, L, H)`` float32 torch tensor of token states."""
        import torch

        ids = np.ascontiguousarray(input_ids.cpu().numpy(), dtype=np.int64)
        att = np.ascontiguousarray(attention_mask.cpu().numpy(), dtype=np.int64)
        (hidden,) = self.session.run(["hidden"], {"input_ids": ids, "attention_mask": att})
        return torch.from_numpy(hidden)


def check_backend(backend: str, device: str, where: str = "encoder") -> None:
    """Raise :class:`ConfigError` for an unknown backend or one that cannot run on ``device``."""
    if backend not in BACKENDS:
        raise ConfigError(f"{where}.backend: must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "onnxruntime" and not str(device).startswith(("cpu", "auto")):
        raise ConfigError(f"{where}.backend: 'onnxruntime' runs on the CPU; device is {device!r} (use backend 'torch')")
