"""The losses, equations (28) to (33) of docs/derivation.md.

Each loss has ``forward(prediction, target) -> float`` and ``backward()``, which returns
dL/d(prediction) with the prediction's shape (m, k). Classification targets are integer
labels of shape (m,) or rows of shape (m, k) that are one-hot or soft probabilities
(non-negative, each row summing to 1).
"""

from __future__ import annotations

from typing import cast

import numpy as np
from numpy.typing import ArrayLike

from multitask_bp._checks import FloatArray, as_batch, class_targets


class Loss:
    """Base class: `forward` returns the loss, `backward` its gradient."""

    #: What `_forward` caches for `_backward`, dropped by `_release`.
    _cache: tuple[str, ...] = ("_prediction", "_target")

    def __init__(self) -> None:
        self._prediction: FloatArray | None = None
        self._target: FloatArray | None = None

    def forward(self, prediction: ArrayLike, target: ArrayLike) -> float:
        """Return the loss of `prediction` (m, k) against `target`.

        `target` is (m, k) for `MSELoss`; for the cross-entropies, integer labels (m,)
        or probability rows (m, k).
        """
        prediction = as_batch(prediction, "prediction")
        target = self._check_target(target, prediction)
        self._release()
        return self._forward(prediction, target)

    __call__ = forward

    def backward(self) -> FloatArray:
        """Return dL/d(prediction), shape (m, k), for the last `forward`."""
        if self._prediction is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward was called before forward: "
                "there is no prediction to differentiate at"
            )
        return self._backward()

    def _release(self) -> None:
        """Drop the last forward's cache; `backward` refuses until the next forward.

        Called before a forward builds its arrays, so that the old ones can be freed.
        """
        for name in self._cache:
            setattr(self, name, None)

    def _check_target(self, target: ArrayLike, prediction: FloatArray) -> FloatArray:
        m, k = prediction.shape
        return class_targets(target, m, k, prediction.dtype)

    def _forward(self, prediction: FloatArray, target: FloatArray) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement _forward")

    def _backward(self) -> FloatArray:
        raise NotImplementedError(f"{type(self).__name__} must implement _backward")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MSELoss(Loss):
    """L = 1/(2m) sum_i ||y_hat_i - y_i||^2, half the mean squared error per sample.

    `prediction` and `target` both have shape (m, k). The factor 1/2 cancels the 2 of
    the derivative, so that dL/dy_hat = (y_hat - y)/m.
    """

    _cache = ("_prediction", "_target", "_residual")

    def _check_target(self, target: ArrayLike, prediction: FloatArray) -> FloatArray:
        target = as_batch(target, "target", dtype=prediction.dtype)
        if target.shape != prediction.shape:
            raise ValueError(
                f"`target` must have the shape of `prediction` {prediction.shape}, "
                f"got {target.shape}"
            )
        return target

    def _forward(self, prediction: FloatArray, target: FloatArray) -> float:
        m = prediction.shape[0]
        residual = prediction - target
        loss = float(np.vdot(residual, residual)) / (2 * m)  # (28)

        self._prediction = prediction
        self._residual = residual
        return loss

    def _backward(self) -> FloatArray:
        residual = self._residual
        m = residual.shape[0]

        return residual / m  # (29)


class CrossEntropyLoss(Loss):
    """L = -(1/m) sum_i sum_j y_ij log p_ij, on probabilities p of shape (m, k).

    Terms with y_ij = 0 count as 0 (the limit of y log y), whatever p_ij is, and their
    gradient is 0.

    Warnings
    --------
    Where a probability p_ij has underflowed to 0 while y_ij > 0, the loss is +inf and
    that gradient entry is -inf: the true value cannot be recovered from p alone. This
    happens as soon as a softmax input trails its row's maximum by about 745 (float64)
    or 104 (float32). Train on logits with `SoftmaxCrossEntropyLoss`, which stays
    finite and exact there.
    """

    _cache = ("_prediction", "_target", "_counts")

    def _forward(self, prediction: FloatArray, target: FloatArray) -> float:
        outside = (prediction < 0) | (prediction > 1)
        if outside.any():
            bad = tuple(int(i) for i in np.argwhere(outside)[0])
            raise ValueError(
                "`prediction` must hold probabilities in [0, 1], "
                f"got {prediction[bad]} at index {bad}"
            )
        m = prediction.shape[0]
        counts = target > 0
        with np.errstate(divide="ignore"):
            log_p = np.log(prediction, where=counts, out=np.zeros_like(prediction))
        loss = -float(np.vdot(target, log_p)) / m  # (30)

        self._prediction = prediction
        self._target = target
        self._counts = counts
        return loss

    def _backward(self) -> FloatArray:
        p = cast(FloatArray, self._prediction)
        y = cast(FloatArray, self._target)
        m = p.shape[0]

        grad = np.zeros_like(p)
        with np.errstate(divide="ignore"):
            np.divide(-y, m * p, where=self._counts, out=grad)  # (31)
        return grad


class SoftmaxCrossEntropyLoss(Loss):
    """Softmax and cross-entropy fused, on logits z of shape (m, k).

    L = (1/m) sum_i (logsumexp(z_i) - sum_j y_ij z_ij), and dL/dz = (softmax(z) - y)/m.
    Both stay finite and exact for logits of any magnitude: the log-probabilities are
    computed as z - logsumexp(z) with the row maximum factored out, never as log of an
    underflowed probability.

    Attributes
    ----------
    probabilities : ndarray, shape (m, k), or None
        softmax(z) of the last forward; None from the start of the next forward.
    """

    _cache = ("_prediction", "_target", "probabilities")

    def __init__(self) -> None:
        super().__init__()
        self.probabilities: FloatArray | None = None

    def _forward(
        self,
        prediction: FloatArray,
        target: FloatArray,
        row_max: FloatArray | None = None,
        sum_exp: FloatArray | None = None,
    ) -> float:
        # row_max and sum_exp, (m, 1): the row maxima of `prediction` and the row sums
        # of exp(prediction - row_max), when a softmax of the same logits has already
        # computed them (MultiTaskNet's Softmax layer); computed here when None.
        m = prediction.shape[0]
        if row_max is None:
            row_max = np.maximum.reduce(prediction, axis=1, keepdims=True)
        # Two (m, k) arrays, each worked in place: the shifted logits become the
        # log-probabilities, their exponentials the probabilities.
        log_probabilities = prediction - row_max
        probabilities = np.exp(log_probabilities)
        if sum_exp is None:
            sum_exp = np.add.reduce(probabilities, axis=1, keepdims=True)
        log_probabilities -= np.log(sum_exp)
        # (32) in its first form, -(1/m) sum_ij y_ij (z_ij - lse(z_i)).
        loss = -float(np.vdot(target, log_probabilities)) / m  # (32)
        probabilities /= sum_exp

        self._prediction = prediction
        self._target = target
        self.probabilities = probabilities
        return loss

    def _backward(self) -> FloatArray:
        y = cast(FloatArray, self._target)
        m = y.shape[0]

        grad = cast(FloatArray, self.probabilities) - y
        grad /= m  # (33)
        return grad
