"""nvr: positive-aware hard-negative mining (NV-Retriever) and embedding fine-tuning.

Modules, one job each:
  errors   - the exception types every module raises on bad input
  io       - atomic writes, JSON lines with file:line errors
  models   - resolve a model reference (package-shipped, local folder, hub id)
  runtime  - one place that picks devices and seeds everything
  config   - params.yaml -> typed, validated dataclasses
  data     - BEIR IO and validation, training pairs, dataset builders
  encode   - Hugging Face encoders, pooling, prompts, embedding caches
  search   - exact chunked inner-product top-k (faiss, CPU or GPU)
  mining   - candidate windows, filters and selections on score arrays
  teachers - dense, BM25, random and ensemble teachers producing candidates
  train    - InfoNCE, two-stage fine-tuning, gradient cache, DDP
  evaluate - MTEB retrieval / classification scoring
  report   - the paper's numbers, tables and figures
  cli      - the `nvr` command
"""

__version__ = "0.1.0"
