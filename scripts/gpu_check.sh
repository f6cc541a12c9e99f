#!/usr/bin/env bash
# Short GPU check of nvr's device code paths (about 1-2 minutes on an H100; ~10 minutes at most).
#
#   scripts/gpu_check.sh prepare   # here, once: build/gpu_check/minilm, a 45 MB fp16 copy of MiniLM to carry
#   scripts/gpu_check.sh [ARGS]    # on the GPU machine (or here on the CPU, where GPU parts are skipped)
#
# With the device tool: run(command="bash scripts/gpu_check.sh", carry=["build/gpu_check"], timeout_s=600).
# The GPU image has torch / transformers / peft but neither nvr's dependencies from PyPI nor a network:
# nvr is imported from the working tree (PYTHONPATH); MiniLM comes from the carried folder; faiss may be
# missing (search then compares torch against numpy only). Summary: $OUT/gpu_check.json when OUT is set.
# ARGS go to scripts/gpu_check.py (--only env encode search train, --model REF, --json PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then echo .venv/bin/python; return; fi
    echo python3
}
PY=$(pick_python)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ "${1:-}" = "prepare" ]; then
    exec "$PY" scripts/gpu_check.py --prepare build/gpu_check
fi

echo "python: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
    echo "nvidia-smi: not found (no GPU here: the GPU comparisons will be skipped)"
fi
exec timeout "${GPU_CHECK_TIMEOUT:-560}" "$PY" scripts/gpu_check.py "$@"
