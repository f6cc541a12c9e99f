"""Text in, vectors out: the one tokenizer, batcher and pooling every model of nvr uses.

* :mod:`nvr.text.pooling` - mean / cls / last-token pooling (with an instruction mask).
* :mod:`nvr.text.tokenize` - prefixes (instructions), truncation, the prefix mask, padding.
* :mod:`nvr.text.batching` - length-sorted batches and padding of token lists.
* :mod:`nvr.text.encoder` - :class:`Encoder`, inference embeddings of queries and passages.
* :mod:`nvr.text.cache` - embedding caches keyed by every setting that changes the vectors.

The trainable model (:mod:`nvr.training.model`), the MTEB adapter (:mod:`nvr.evaluation`)
and the cross-encoder (:mod:`nvr.mining.rescoring`) are built on these, so a query is
tokenized, masked and pooled the same way when it is mined, trained on and evaluated.
"""

from .cache import encode_cached, encode_sharded
from .encoder import Encoder, EncoderConfig
from .pooling import POOLINGS, pool
from .tokenize import KINDS, TextTokenizer

__all__ = ["encode_cached", "encode_sharded", "Encoder", "EncoderConfig", "POOLINGS", "pool", "KINDS", "TextTokenizer"]
