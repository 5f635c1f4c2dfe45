"""The fully connected layer, equations (1) to (4) of docs/derivation.md."""

from __future__ import annotations

from typing import cast

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from multitask_bp._checks import FloatArray, float_dtype, positive_int
from multitask_bp.layers.base import Layer, cast_to


class Linear(Layer):
    """y = x theta^T + b.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths, each at least 1.
    bias : bool
        Whether the layer has the parameter `b`. Without it, y = x theta^T.
    seed : int or numpy.random.Generator, optional
        Seeds the initialisation.
    dtype : float32 or float64
        The dtype of the parameters. The output takes the dtype of the input; a
        mismatched input costs a cast of `theta` on every call.

    Notes
    -----
    `theta` has shape (n_out, n_in) and is drawn uniformly from
    [-1/sqrt(n_in), 1/sqrt(n_in)], which keeps the variance of each output near that
    of one input column; `b` has shape (n_out,) and starts at zero.
    """

    _cache = ("_x",)

    def __init__(
        self,
        n_in: int,
        n_out: int,
        bias: bool = True,
        seed: int | np.random.Generator | None = None,
        dtype: DTypeLike = np.float64,
    ) -> None:
        super().__init__()
        self.n_in = positive_int(n_in, "n_in")
        self.n_out = positive_int(n_out, "n_out")
        self.dtype = float_dtype(dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.n_in)
        theta = rng.uniform(-bound, bound, size=(self.n_out, self.n_in))
        self.params["theta"] = theta.astype(self.dtype)
        if bias:
            self.params["b"] = np.zeros(self.n_out, dtype=self.dtype)
        self._x: FloatArray | None = None

    @property
    def bias(self) -> bool:
        """Whether the layer has the bias `b`."""
        return "b" in self.params

    def _forward(self, x: FloatArray) -> FloatArray:
        y = x @ cast_to(self.params["theta"], x.dtype).T  # (1)
        if "b" in self.params:
            y += cast_to(self.params["b"], x.dtype)

        self._x = x
        return y

    def backward(  # type: ignore[override]
        self, grad_out: ArrayLike, need_input_grad: bool = True
    ) -> FloatArray | None:
        """Fill `grads` from `grad_out` (m, n_out) and return dL/dx, shape (m, n_in).

        With ``need_input_grad=False`` the product (4) is skipped and None is returned:
        a first layer's input gradient is never used, and costs as much as its forward.
        """
        if need_input_grad:
            return super().backward(grad_out)
        self._backward_params(self._checked_grad_out(grad_out))
        return None

    def _backward_params(self, grad_out: FloatArray) -> None:
        x = cast(FloatArray, self._x)
        self.grads["theta"] = cast_to(grad_out.T @ x, self.dtype)  # (2)
        if "b" in self.params:
            grad_b = np.add.reduce(grad_out, axis=0)  # (3)
            self.grads["b"] = cast_to(grad_b, self.dtype)

    def _backward(self, grad_out: FloatArray) -> FloatArray:
        self._backward_params(grad_out)

        return grad_out @ cast_to(self.params["theta"], grad_out.dtype)  # (4)

    def __repr__(self) -> str:
        return f"Linear(n_in={self.n_in}, n_out={self.n_out}, bias={self.bias})"
