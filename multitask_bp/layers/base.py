"""The layer contract shared by every layer.

A layer maps a batch x of shape (m, n_in) to an output of shape (m, n_out). `forward`
caches exactly what `backward` needs; `backward(grad_out)` takes dL/dy of shape
(m, n_out), fills `grads` with dL/d(param) for every entry of `params`, and returns
dL/dx of shape (m, n_in).

The public `forward` and `backward` check their input at the door and then call
`_forward` and `_backward`, which trust their input. `MultiTaskNet` checks its batch
once and calls the unchecked pair, so that validation is not paid once per layer.

A forward first drops the previous forward's cache (`_release`), so that its arrays
can be freed before the new ones are built; `backward` always uses the cache of the
last forward, and may be called on it more than once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from multitask_bp._checks import FloatArray, as_batch, as_grad_out


def cast_to(array: FloatArray, dtype: np.dtype[Any]) -> FloatArray:
    """Return `array` in `dtype`: itself when it already is, else a cast copy.

    The same as ``array.astype(dtype, copy=False)`` without the numpy call in the
    usual case, where parameters, batch and gradients share one dtype.
    """
    return array if array.dtype == dtype else array.astype(dtype)


class Layer:
    """Base class: `params`, `grads`, `forward`, `backward`, `train`, `eval`.

    Attributes
    ----------
    params : dict of str to ndarray
        The learnable arrays, by name; empty for a layer without parameters. Writing
        into them in place changes the layer.
    grads : dict of str to ndarray
        The same keys as `params`, filled by `backward` with dL/d(param).
    training : bool
        True (the default) in training mode, False after `eval()`.
    """

    #: The number of input columns the layer requires, or None for any.
    n_in: int | None = None
    #: Input values where the layer's output is not differentiable (ReLU: 0.0).
    #: Gradient checkers treat finite differences across them as kinks, not failures.
    kinks: tuple[float, ...] = ()
    #: The attributes `_forward` caches for `_backward`, dropped by `_release`.
    _cache: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.params: dict[str, FloatArray] = {}
        self.grads: dict[str, FloatArray] = {}
        self.training = True
        self._out_shape: tuple[int, ...] | None = None
        self._out_dtype: np.dtype[Any] | None = None

    def train(self, mode: bool = True) -> Layer:
        """Set training mode (or eval mode with ``mode=False``); return the layer."""
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Set eval mode; return the layer."""
        return self.train(False)

    def forward(self, x: ArrayLike) -> FloatArray:
        """Return the layer's output for the batch `x`.

        Parameters
        ----------
        x : array_like, shape (m, n_in)
            Batch first. Integer input is cast to float64; float32 stays float32.

        Returns
        -------
        ndarray, shape (m, n_out), the dtype of `x`
        """
        x = as_batch(x, "x", self.n_in, "n_in")
        self._check_batch(x)
        self._release()
        y = self._forward(x)
        self._out_shape = y.shape
        self._out_dtype = y.dtype
        return y

    def backward(self, grad_out: ArrayLike) -> FloatArray:
        """Fill `grads` and return dL/dx from dL/dy of the last `forward`.

        Parameters
        ----------
        grad_out : array_like, shape (m, n_out)
            The gradient of the loss with respect to this layer's last output.

        Returns
        -------
        ndarray, shape (m, n_in)
        """
        return self._backward(self._checked_grad_out(grad_out))

    def _checked_grad_out(self, grad_out: ArrayLike) -> FloatArray:
        """Refuse a backward before any forward, then check `grad_out`'s shape."""
        if self._out_shape is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward was called before forward: "
                "there is no cached input to differentiate at"
            )
        return as_grad_out(grad_out, self._out_shape, self._out_dtype)

    def _release(self) -> None:
        """Drop the last forward's cache; `backward` refuses until the next forward."""
        self._out_shape = None
        for name in self._cache:
            setattr(self, name, None)

    def _check_batch(self, x: FloatArray) -> None:
        """Refuse a batch the layer cannot handle (overridden where needed)."""

    def _forward(self, x: FloatArray) -> FloatArray:
        raise NotImplementedError(f"{type(self).__name__} must implement _forward")

    def _backward(self, grad_out: FloatArray) -> FloatArray:
        raise NotImplementedError(f"{type(self).__name__} must implement _backward")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
