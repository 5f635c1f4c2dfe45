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

    _cache = ("_x",)

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
        # It is a fresh array, so the product goes into it (x * y is y * x, exactly).
        grad_in = np.cos(x)
        grad_in *= grad_out  # (6)
        return grad_in


class ReLU(Layer):
    """y = max(x, 0), element-wise; input and output of shape (m, n).

    At x = 0, where ReLU has no derivative, `backward` uses 0 (the derivative from the
    left, and the subgradient most libraries use). The cache is a boolean mask of
    x > 0, not a float copy.
    """

    kinks = (0.0,)
    _cache = ("_positive",)

    def __init__(self) -> None:
        super().__init__()
        self._positive: np.ndarray | None = None

    def _forward(self, x: FloatArray, reuse_x: bool = False) -> FloatArray:
        # reuse_x: the caller hands over x, a fresh array that nothing else holds, and
        # the output is written into it. The mask is taken from x first.
        positive = x > 0
        y = np.maximum(x, 0, out=x if reuse_x else None)  # (7)

        self._positive = positive
        return y

    def _backward(self, grad_out: FloatArray, reuse_grad: bool = False) -> FloatArray:
        positive = cast(np.ndarray, self._positive)

        return np.multiply(
            grad_out, positive, out=grad_out if reuse_grad else None
        )  # (8)


class Softmax(Layer):
    """y_ij = exp(x_ij) / sum_l exp(x_il), over the last axis; shapes (m, k).

    The maximum of each row is subtracted before exponentiating, which changes nothing
    mathematically and keeps exp from overflowing for large inputs. `backward` applies
    the Jacobian (10) to `grad_out` in contracted form (11), O(m k) instead of the
    O(m k^2) of building it; `jacobian` builds it, for teaching and for tests.
    """

    _cache = ("_y", "_row_max", "_sum_exp")

    def __init__(self) -> None:
        super().__init__()
        self._y: FloatArray | None = None
        # (m, 1) each, private: MultiTaskNet hands them to its fused loss on the same
        # logits, which then does not compute them again.
        self._row_max: FloatArray | None = None
        self._sum_exp: FloatArray | None = None

    def _forward(self, x: FloatArray) -> FloatArray:
        row_max = np.maximum.reduce(x, axis=1, keepdims=True)
        y = x - row_max
        np.exp(y, out=y)
        sum_exp = np.add.reduce(y, axis=1, keepdims=True)
        y /= sum_exp  # (9)

        self._y = y
        self._row_max = row_max
        self._sum_exp = sum_exp
        return y

    def _backward(self, grad_out: FloatArray) -> FloatArray:
        y = cast(FloatArray, self._y)

        projected = np.add.reduce(grad_out * y, axis=1, keepdims=True)
        grad_in = grad_out - projected
        grad_in *= y  # (11)
        return grad_in

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
