"""Batch normalisation: MeanCenterBN (15)-(18) and BatchNorm (19)-(27).

Equation numbers refer to docs/derivation.md.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from numpy.typing import DTypeLike

from multitask_bp._checks import (
    FloatArray,
    float_dtype,
    fraction,
    positive_float,
    positive_int,
)
from multitask_bp.layers.base import Layer, cast_to


class _BatchStatistics(Layer):
    """What both normalisations share: a width, a momentum, running statistics."""

    def __init__(self, n_features: int, momentum: float, dtype: DTypeLike) -> None:
        super().__init__()
        self.n_in = positive_int(n_features, "n_features")
        self.n_features = self.n_in
        self.momentum = fraction(momentum, "momentum", low_open=True, high_open=False)
        self.dtype = float_dtype(dtype)
        self.running_mean = np.zeros(self.n_features, dtype=self.dtype)

    def _check_batch(self, x: FloatArray) -> None:
        if self.training and x.shape[0] < 2:
            raise ValueError(
                f"{type(self).__name__} in training needs a batch of at least 2 "
                f"samples, got shape {x.shape}: the statistics of one sample make "
                "the output constant; use eval() to apply the running statistics"
            )

    def _update_running(self, running: FloatArray, batch_value: FloatArray) -> None:
        """running <- (1 - momentum) running + momentum batch_value, in place."""
        running *= 1.0 - self.momentum
        running += self.momentum * batch_value

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_features={self.n_features}, "
            f"momentum={self.momentum})"
        )


class MeanCenterBN(_BatchStatistics):
    """y = x - mean over the batch of x + b: centring and a learned shift, no scaling.

    Parameters
    ----------
    n_features : int
        The width n of the input (m, n) and output (m, n).
    momentum : float in (0, 1]
        The weight of the newest batch in the running mean,
        running_mean <- (1 - momentum) running_mean + momentum mean.
    dtype : float32 or float64
        The dtype of `b` and the running mean; the output takes the dtype of the input.

    In training the batch must hold at least two samples (with one, y = b whatever
    x is). In eval mode the running mean replaces the batch mean, so any batch size
    works and the output of each sample depends on that sample alone.
    """

    def __init__(
        self, n_features: int, momentum: float = 0.1, dtype: DTypeLike = np.float64
    ) -> None:
        super().__init__(n_features, momentum, dtype)
        self.params["b"] = np.zeros(self.n_features, dtype=self.dtype)

    def _forward(self, x: FloatArray, reuse_x: bool = False) -> FloatArray:
        # reuse_x: the caller hands over x, a fresh array that nothing else holds, and
        # the output is written into it.
        if self.training:
            # The sum divided by m, as x.mean(axis=0) computes it.
            mu = np.add.reduce(x, axis=0)
            mu /= x.shape[0]  # (15)
            self._update_running(self.running_mean, mu)
        else:
            mu = cast_to(self.running_mean, x.dtype)
        y = np.subtract(x, mu, out=x if reuse_x else None)  # (16)
        y += cast_to(self.params["b"], x.dtype)

        self._centred_in_training = self.training
        return y

    def _backward(self, grad_out: FloatArray, reuse_grad: bool = False) -> FloatArray:
        grad_b = np.add.reduce(grad_out, axis=0)  # (17)
        self.grads["b"] = cast_to(grad_b, self.dtype)

        if not self._centred_in_training:  # eval: the running mean is a constant
            return grad_out if reuse_grad else grad_out.copy()  # (18) without its mean
        # The mean of grad_out is the sum (17) divided by m, not summed again.
        mean = grad_b / grad_out.shape[0]
        return np.subtract(grad_out, mean, out=grad_out if reuse_grad else None)  # (18)


class BatchNorm(_BatchStatistics):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, statistics over the batch.

    Parameters
    ----------
    n_features : int
        The width n of the input (m, n) and output (m, n).
    eps : float > 0
        Added to the variance before the square root.
    momentum : float in (0, 1]
        The weight of the newest batch in the running mean and running variance.
    dtype : float32 or float64
        The dtype of `gamma`, `beta` and the running statistics; the output takes the
        dtype of the input.

    In training the variance is the biased batch variance (divided by m), which is what
    the normalisation uses; the running variance stores the unbiased estimate
    (divided by m - 1), the usual estimate of the population variance for eval mode.
    `gamma` starts at 1 and `beta` at 0. A batch of one is refused in training.
    """

    _cache = ("_x_hat", "_inv_std")

    def __init__(
        self,
        n_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        dtype: DTypeLike = np.float64,
    ) -> None:
        super().__init__(n_features, momentum, dtype)
        self.eps = positive_float(eps, "eps")
        self.params["gamma"] = np.ones(self.n_features, dtype=self.dtype)
        self.params["beta"] = np.zeros(self.n_features, dtype=self.dtype)
        self.running_var = np.ones(self.n_features, dtype=self.dtype)

    def _forward(self, x: FloatArray) -> FloatArray:
        m = x.shape[0]
        if self.training:
            mu = x.mean(axis=0)  # (19)
            centred = x - mu
            var = (centred * centred).mean(axis=0)  # (20)
            self._update_running(self.running_mean, mu)
            self._update_running(self.running_var, var * (m / (m - 1)))
        else:
            centred = x - cast_to(self.running_mean, x.dtype)
            var = cast_to(self.running_var, x.dtype)
        inv_std = 1.0 / np.sqrt(var + x.dtype.type(self.eps))
        x_hat = centred * inv_std  # (21)
        gamma = cast_to(self.params["gamma"], x.dtype)
        y = gamma * x_hat + cast_to(self.params["beta"], x.dtype)  # (22)

        self._x_hat = x_hat
        self._inv_std = inv_std
        self._normalised_in_training = self.training
        return y

    def _backward(self, grad_out: FloatArray) -> FloatArray:
        x_hat = cast(FloatArray, self._x_hat)
        inv_std = cast(FloatArray, self._inv_std)
        m = grad_out.shape[0]

        grad_gamma = (grad_out * x_hat).sum(axis=0)  # (23)
        grad_beta = grad_out.sum(axis=0)  # (24)
        self.grads["gamma"] = cast_to(grad_gamma, self.dtype)
        self.grads["beta"] = cast_to(grad_beta, self.dtype)

        gamma = cast_to(self.params["gamma"], grad_out.dtype)
        grad_x_hat = grad_out * gamma  # (25)

        if not self._normalised_in_training:  # eval: mean and variance are constants
            return grad_x_hat * inv_std  # (27)
        # gamma is constant over the batch, so the two sums of (26) are gamma times
        # the sums (24) and (23) already taken, not summed again.
        return (inv_std / m) * (  # (26)
            m * grad_x_hat - gamma * grad_beta - x_hat * (gamma * grad_gamma)
        )
