"""Batch normalisation: MeanCenterBN (15)-(18) and BatchNorm (19)-(26).

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
from multitask_bp.layers.base import Layer


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

    def _update_running(self, name: str, batch_value: FloatArray) -> None:
        running = getattr(self, name)
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

    In training the batch must hold at least two samples (with one, y = b whatever
    x is). In eval mode the running mean replaces the batch mean, so any batch size
    works and the output of each sample depends on that sample alone.
    """

    def __init__(
        self, n_features: int, momentum: float = 0.1, dtype: DTypeLike = np.float64
    ) -> None:
        super().__init__(n_features, momentum, dtype)
        self.params["b"] = np.zeros(self.n_features, dtype=self.dtype)

    def _forward(self, x: FloatArray) -> FloatArray:
        if self.training:
            mu = x.mean(axis=0)  # (15)
            self._update_running("running_mean", mu)
        else:
            mu = self.running_mean.astype(x.dtype, copy=False)
        y = x - mu  # (16)
        y += self.params["b"].astype(x.dtype, copy=False)

        self._centred_in_training = self.training
        return y

    def _backward(self, grad_out: FloatArray) -> FloatArray:
        self.grads["b"] = grad_out.sum(axis=0).astype(self.dtype, copy=False)  # (17)

        if not self._centred_in_training:  # eval: the running mean is a constant
            return grad_out.copy()  # (18) without its mean term
        return grad_out - grad_out.mean(axis=0)  # (18)


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

    In training the variance is the biased batch variance (divided by m), which is what
    the normalisation uses; the running variance stores the unbiased estimate
    (divided by m - 1), the usual estimate of the population variance for eval mode.
    `gamma` starts at 1 and `beta` at 0. A batch of one is refused in training.
    """

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
            self._update_running("running_mean", mu)
            self._update_running("running_var", var * (m / (m - 1)))
        else:
            centred = x - self.running_mean.astype(x.dtype, copy=False)
            var = self.running_var.astype(x.dtype, copy=False)
        inv_std = 1.0 / np.sqrt(var + x.dtype.type(self.eps))
        x_hat = centred * inv_std  # (21)
        gamma = self.params["gamma"].astype(x.dtype, copy=False)
        y = gamma * x_hat + self.params["beta"].astype(x.dtype, copy=False)  # (22)

        self._x_hat = x_hat
        self._inv_std = inv_std
        self._normalised_in_training = self.training
        return y

    def _backward(self, grad_out: FloatArray) -> FloatArray:
        x_hat = cast(FloatArray, self._x_hat)
        inv_std = cast(FloatArray, self._inv_std)
        m = grad_out.shape[0]

        grad_gamma = (grad_out * x_hat).sum(axis=0)  # (23)
        self.grads["gamma"] = grad_gamma.astype(self.dtype, copy=False)
        self.grads["beta"] = grad_out.sum(axis=0).astype(self.dtype, copy=False)  # (24)

        gamma = self.params["gamma"].astype(grad_out.dtype, copy=False)
        grad_x_hat = grad_out * gamma  # (25)

        if not self._normalised_in_training:  # eval: mean and variance are constants
            return grad_x_hat * inv_std  # (27)
        return (inv_std / m) * (  # (26)
            m * grad_x_hat
            - grad_x_hat.sum(axis=0)
            - x_hat * (grad_x_hat * x_hat).sum(axis=0)
        )
