"""nvr: positive-aware hard-negative mining (NV-Retriever) and embedding fine-tuning.

Packages and modules, one job each (docs/ARCHITECTURE.md maps each paper concept to one place):
  errors       - the exception types every module raises on bad input
  io           - atomic writes, unique temp names, multi-file publish, JSON lines with file:line errors
  runtime      - devices, dtypes, seeds, logging
  models       - resolve a model reference (package-shipped, local folder, hub id); tiny test models
  distributed  - torchrun / DDP process groups
  config       - params.yaml -> typed, validated dataclasses (every cross-field rule)
  paths        - where every artifact of the study lives
  data/        - BEIR IO, training pairs and hidden labels, the wiki task, BEIR study folders, hub downloads
  text/        - the one tokenizer (prefixes, instruction mask), batching, pooling, Encoder, embedding caches
  mining/      - methods, the array miner, teachers, exact search, rescoring, ensembles, statistics, records
  training/    - examples, InfoNCE, the trainable model, one step, checkpoints, the training loop
  evaluation/  - MTEB adapter, local BEIR / hub / classification tasks, scoring
  stages/      - one module per DVC stage
  report/      - the paper's numbers, results, tables, commentary, figures
  provenance   - the "how to reproduce" box of every rendered notebook
  notebook     - run a notebook with papermill and render it, atomically
  dryrun       - `nvr check --dry-run`: models on the meta device, memory estimates
  cli          - the `nvr` command
  api          - `nvr.mine_hard_negatives`: sentence-transformers' call on nvr's miner
"""

import warnings as _warnings

__version__ = "0.1.0"

# tqdm.auto inside a notebook kernel without ipywidgets warns on every import and falls back to the
# text bar, which is what the study's logs want: say nothing
_warnings.filterwarnings("ignore", message="IProgress not found")


def mine_hard_negatives(*args, **kwargs):
    """sentence-transformers' ``mine_hard_negatives`` call on nvr's miner: see :func:`nvr.api.mine_hard_negatives`."""
    from .api import mine_hard_negatives as _mine

    return _mine(*args, **kwargs)
