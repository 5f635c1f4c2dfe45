"""multitask_bp: backpropagation written by hand, every gradient proven by finite
differences.

The layers and losses each transcribe a closed-form derivative from
docs/derivation.md; `MultiTaskNet` composes them into the two-task network whose
gradients add at the shared branch; `multitask_bp.gradcheck` proves them.
"""

from multitask_bp.layers import (
    BatchNorm,
    Dropout,
    Layer,
    Linear,
    MeanCenterBN,
    ReLU,
    Sine,
    Softmax,
)
from multitask_bp.losses import (
    CrossEntropyLoss,
    Loss,
    MSELoss,
    SoftmaxCrossEntropyLoss,
)
from multitask_bp.network import Losses, MultiTaskNet

__version__ = "0.1.0"

__all__ = [
    "BatchNorm",
    "CrossEntropyLoss",
    "Dropout",
    "Layer",
    "Linear",
    "Loss",
    "Losses",
    "MSELoss",
    "MeanCenterBN",
    "MultiTaskNet",
    "ReLU",
    "Sine",
    "Softmax",
    "SoftmaxCrossEntropyLoss",
    "__version__",
]
