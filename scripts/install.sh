#!/usr/bin/env bash
# Create the virtual environment (.venv) and install nvr with the right torch and faiss builds.
#
#   bash scripts/install.sh            # CPU box: CPU torch + faiss-cpu; GPU box: CUDA torch + faiss-gpu
#   NVR_TORCH_INDEX=https://download.pytorch.org/whl/cu124 bash scripts/install.sh   # pick a torch build
#   NVR_FAISS=faiss-gpu-cu12 bash scripts/install.sh                               # pick a faiss build
#
# An unpinned `pip install torch` on Linux pulls a multi-GB CUDA build even on a CPU-only machine,
# so torch is installed here, before nvr, from a CPU source when no GPU is visible.
# faiss-cpu and faiss-gpu both provide the `faiss` module: exactly one of them is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${NVR_TORCH_VERSION:-2.13.0}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip 2>&1 | grep -v "is ignored" || true

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if [ -n "${NVR_TORCH_INDEX:-}" ]; then
    echo "install: torch from $NVR_TORCH_INDEX"
    "${PIP[@]}" install -q torch --index-url "$NVR_TORCH_INDEX"
  elif has_gpu; then
    echo "install: GPU found: CUDA torch from PyPI"
    "${PIP[@]}" install -q "torch>=2.4"
  elif "${PIP[@]}" install -q --no-index "torch==${TORCH_VERSION}" 2>/dev/null; then
    echo "install: CPU torch ${TORCH_VERSION} from the local wheel folder"
  else
    echo "install: CPU torch from the PyTorch CPU index"
    "${PIP[@]}" install -q torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi

if ! "$VENV/bin/python" -c "import faiss" >/dev/null 2>&1; then
  FAISS=${NVR_FAISS:-}
  if [ -z "$FAISS" ]; then if has_gpu; then FAISS=faiss-gpu-cu12; else FAISS=faiss-cpu; fi; fi
  echo "install: $FAISS"
  "${PIP[@]}" install -q "$FAISS" 2>&1 | grep -v "is ignored" || true
fi

"${PIP[@]}" install -q -e ".[test]" 2>&1 | grep -v -e "is ignored" -e BuildBackendWarning || true
"$VENV/bin/python" -c "import nvr, torch, faiss, mteb, papermill; print('install: ok: torch', torch.__version__, '| faiss', faiss.__version__, '| mteb', mteb.__version__)"
