"""The layers; each `backward` cites the numbered equations of docs/derivation.md."""

from multitask_bp.layers.activations import ReLU, Sine, Softmax
from multitask_bp.layers.base import Layer
from multitask_bp.layers.dropout import Dropout
from multitask_bp.layers.linear import Linear
from multitask_bp.layers.normalization import BatchNorm, MeanCenterBN

__all__ = [
    "BatchNorm",
    "Dropout",
    "Layer",
    "Linear",
    "MeanCenterBN",
    "ReLU",
    "Sine",
    "Softmax",
]
