"""Element-wise and row-wise activations: Sine (5)-(6), ReLU (7)-(8), Softmax (9)-(11).

Equation numbers refer to docs/derivation.md.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from numpy.typing import ArrayLike

from multitask_bp._checks import FloatArray, as_float_array
from multitask_bp.layers.base import Layer


class Sine(Layer):
    """y = sin(x), element-wise; input and output of shape (m, n)."""

    def __init__(self) -> None:
        super().__init__()
        self._x: FloatArray | None = None

    def _forward(self, x: FloatArray) -> FloatArray:
        y = np.sin(x)  # (5)

        self._x = x
        return y

    def _backward(self, grad_out: FloatArray) -> FloatArray:
        x = cast(FloatArray, self._x)

        # cos(x) is computed here, not in forward: an eval-only forward never needs it.
        return grad_out * np.cos(x)  # (6)


class ReLU(Layer):
    """y = max(x, 0), element-wise; input and output of shape (m, n).

    At x = 0, where ReLU has no derivative, `backward` uses 0 (the derivative from the
    left, and the subgradient most libraries use). The cache is a boolean mask of
    x > 0, not a float copy.
    """

    kinks = (0.0,)

    def __init__(self) -> None:
        super().__init__()
        self._positive: np.ndarray | None = None

    def _forward(self, x: FloatArray) -> FloatArray:
        positive = x > 0
        y = np.maximum(x, 0)  # (7)

        self._positive = positive
        return y

    def _backward(self, grad_out: FloatArray) -> FloatArray:
        positive = cast(np.ndarray, self._positive)

        return grad_out * positive  # (8)


class Softmax(Layer):
    """y_ij = exp(x_ij) / sum_l exp(x_il), over the last axis; shapes (m, k).

    The maximum of each row is subtracted before exponentiating, which changes nothing
    mathematically and keeps exp from overflowing for large inputs. `backward` applies
    the Jacobian (10) to `grad_out` in contracted form (11), O(m k) instead of the
    O(m k^2) of building it; `jacobian` builds it, for teaching and for tests.
    """

    def __init__(self) -> None:
        super().__init__()
        self._y: FloatArray | None = None

    def _forward(self, x: FloatArray) -> FloatArray:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)  # (9)

        self._y = y
        return y

    def _backward(self, grad_out: FloatArray) -> FloatArray:
        y = cast(FloatArray, self._y)

        projected = (grad_out * y).sum(axis=1, keepdims=True)
        return y * (grad_out - projected)  # (11)

    @staticmethod
    def jacobian(y: ArrayLike) -> FloatArray:
        """The per-sample Jacobian dy_i/dx_j = y_i (delta_ij - y_j), equation (10).

        Parameters
        ----------
        y : array_like, shape (k,) or (m, k)
            Softmax outputs.

        Returns
        -------
        ndarray, shape (k, k) or (m, k, k)
        """
        y = as_float_array(y, "y")
        if y.ndim not in (1, 2):
            raise ValueError(
                f"`y` must have shape (k,) or (m, k), got {y.ndim}-D shape {y.shape}"
            )
        diagonal = y[..., :, None] * np.eye(y.shape[-1], dtype=y.dtype)
        return diagonal - y[..., :, None] * y[..., None, :]  # (10)
