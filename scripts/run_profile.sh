#!/usr/bin/env bash
# Run one profile end to end and keep its results: scripts/run_profile.sh profiles/scifact.yaml
# (no argument: the default params.yaml). Times `dvc repro`, then archives the study report,
# metrics and stage renders to reports/<profile>/ and rewrites reports/index.html.
set -euo pipefail
cd "$(dirname "$0")/.."
source "${VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
if [ $# -ge 1 ]; then cp "$1" params.yaml; echo "params.yaml now holds $1"; fi
start=$(date +%s)
dvc repro
wall=$(( $(date +%s) - start ))
echo "run_profile: dvc repro took ${wall}s"
python -m nvr.report.index archive --wall-seconds "$wall"
