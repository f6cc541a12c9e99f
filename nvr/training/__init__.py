"""Contrastive fine-tuning of embedding models (NV-Retriever stages 1 and 2).

* :mod:`nvr.training.examples` - training examples, the stage-2 blend, the data order.
* :mod:`nvr.training.losses` - InfoNCE over positives, hard and in-batch negatives.
* :mod:`nvr.training.model` - :class:`EmbeddingModel`: backbone + pooling, LoRA, bidirectional attention.
* :mod:`nvr.training.step` - one micro-batch (plain or through a gradient cache).
* :mod:`nvr.training.checkpoints` - resumable, bit-identical checkpoints.
* :mod:`nvr.training.loop` - :func:`train_stage`, one stage from a model to a saved folder.

Importing this package imports torch.
"""

from .examples import DataOrder, TrainExample, blend, classification_examples
from .loop import embed_loss_grads, lr_lambda, train_stage
from .model import EmbeddingModel, count_parameters

__all__ = ["DataOrder", "TrainExample", "blend", "classification_examples", "embed_loss_grads", "lr_lambda",
           "train_stage", "EmbeddingModel", "count_parameters"]
