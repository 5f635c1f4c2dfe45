"""MultiTaskNet, the two-task network: equations (34) to (62) of docs/derivation.md."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from multitask_bp._checks import (
    FloatArray,
    as_batch,
    as_float_array,
    class_targets,
    float_dtype,
    fraction,
    positive_int,
)
from multitask_bp.layers import Dropout, Linear, MeanCenterBN, ReLU, Sine, Softmax
from multitask_bp.losses import CrossEntropyLoss, MSELoss, SoftmaxCrossEntropyLoss

#: The parameters, in the order of the flat vector: name, layer attribute, key.
PARAMETERS: tuple[tuple[str, str, str], ...] = (
    ("theta_1A", "fc_1a", "theta"),
    ("b_1A", "fc_1a", "b"),
    ("theta_2A", "fc_2a", "theta"),
    ("b_2A", "fc_2a", "b"),
    ("theta_1B", "fc_1b", "theta"),
    ("b_1B", "bn", "b"),
    ("theta_2B", "fc_2b", "theta"),
    ("b_2B", "fc_2b", "b"),
)


@dataclass(frozen=True)
class Losses:
    """The losses of one batch: ``total = w_A * a + w_B * b``."""

    total: float
    a: float
    b: float


class MultiTaskNet:
    """Two tasks sharing a branch: regression y_a, classification y_b.

    Task A: Linear, Sine, Dropout, Linear gives y_a. Task B: Linear without bias,
    MeanCenterBN, ReLU gives a_BN; then Linear on (y_a + a_BN) and Softmax give y_b.
    L = w_A L_A + w_B L_B with L_A the half mean squared error of y_a and L_B the
    cross-entropy of y_b, so the gradient at y_a is the sum of both tasks' terms (51).

    Parameters
    ----------
    n_in : int
        Width of the input X, shape (m, n_in).
    n_hidden : int
        Width of task A's hidden layer.
    n_shared : int
        Width of y_a, which is also task B's hidden width.
    n_classes : int
        Number of classes of task B.
    p_drop : float in [0, 1)
        Dropout probability on task A's hidden layer (inverted dropout: eval mode is
        the identity).
    loss_weights : (float, float)
        (w_A, w_B), finite and non-negative.
    seed : int, optional
        Seeds the initialisation and the dropout masks.
    dtype : float32 or float64
        The dtype of every parameter and computation; X is cast to it.
    fused_loss : bool
        True (the default): L_B and its gradient come from the logits z_2B through
        `SoftmaxCrossEntropyLoss`, finite and exact for logits of any size. False: the
        explicit chain of the derivation, `CrossEntropyLoss` on y_b and then
        `Softmax.backward`, which overflows where a probability underflows to 0.

    Attributes
    ----------
    params : dict of str to ndarray
        theta_1A, b_1A, theta_2A, b_2A, theta_1B, b_1B, theta_2B, b_2B, with shapes
        (out, in) and (out,). They are views into `flat_params`: writing into either in
        place changes the network.
    flat_params : ndarray, shape (n_params,)
        Every parameter in one vector, in the order above.
    dropout : Dropout
        Its `mask` is the M of the last training forward.
    """

    def __init__(
        self,
        n_in: int,
        n_hidden: int,
        n_shared: int,
        n_classes: int,
        p_drop: float = 0.5,
        loss_weights: tuple[float, float] = (1.0, 1.0),
        seed: int | None = None,
        dtype: DTypeLike = np.float64,
        fused_loss: bool = True,
    ) -> None:
        self.n_in = positive_int(n_in, "n_in")
        self.n_hidden = positive_int(n_hidden, "n_hidden")
        self.n_shared = positive_int(n_shared, "n_shared")
        self.n_classes = positive_int(n_classes, "n_classes")
        self.dtype = float_dtype(dtype)
        p_drop = fraction(p_drop, "p_drop")
        self.loss_weights = _loss_weights(loss_weights)
        if not isinstance(fused_loss, bool | np.bool_):
            raise TypeError(f"`fused_loss` must be True or False, got {fused_loss!r}")
        self.fused_loss = bool(fused_loss)
        seeds = np.random.SeedSequence(_seed(seed)).spawn(5)
        rngs = [np.random.default_rng(s) for s in seeds]

        self.fc_1a = Linear(n_in, n_hidden, seed=rngs[0], dtype=self.dtype)
        self.sine = Sine()
        self.dropout = Dropout(p_drop, seed=rngs[1])
        self.fc_2a = Linear(n_hidden, n_shared, seed=rngs[2], dtype=self.dtype)
        self.fc_1b = Linear(n_in, n_shared, bias=False, seed=rngs[3], dtype=self.dtype)
        self.bn = MeanCenterBN(n_shared, dtype=self.dtype)
        self.relu = ReLU()
        self.fc_2b = Linear(n_shared, n_classes, seed=rngs[4], dtype=self.dtype)
        self.softmax = Softmax()
        self.loss_a = MSELoss()
        self.loss_b: SoftmaxCrossEntropyLoss | CrossEntropyLoss = (
            SoftmaxCrossEntropyLoss() if self.fused_loss else CrossEntropyLoss()
        )
        self._layers = (
            self.fc_1a, self.sine, self.dropout, self.fc_2a,
            self.fc_1b, self.bn, self.relu, self.fc_2b, self.softmax,
        )  # fmt: skip
        self._share_flat_params()
        # Each gradient's layer dict and key, for collecting them after backward.
        self._grad_sources = [
            (name, getattr(self, layer).grads, key) for name, layer, key in PARAMETERS
        ]
        self.training = True
        self._forwarded: tuple[FloatArray, FloatArray] | None = None
        self._losses: Losses | None = None
        self.grads: dict[str, FloatArray] = {}

    # -- parameters ---------------------------------------------------------------

    def _share_flat_params(self) -> None:
        """Move every parameter into one flat buffer and make the layers use views."""
        sizes = [getattr(self, layer).params[key].size for _, layer, key in PARAMETERS]
        self.flat_params: FloatArray = np.empty(sum(sizes), dtype=self.dtype)
        offset = 0
        for (_, layer, key), size in zip(PARAMETERS, sizes, strict=True):
            params = getattr(self, layer).params
            view = self.flat_params[offset : offset + size].reshape(params[key].shape)
            view[...] = params[key]
            params[key] = view
            offset += size

    @property
    def params(self) -> dict[str, FloatArray]:
        """The parameters by name; views into `flat_params`."""
        return {
            name: getattr(self, layer).params[key] for name, layer, key in PARAMETERS
        }

    @property
    def n_params(self) -> int:
        """The number of scalar parameters."""
        return int(self.flat_params.size)

    @property
    def flat_grads(self) -> FloatArray:
        """The last `backward`'s gradients as one vector, in `flat_params` order."""
        if not self.grads:
            raise RuntimeError("flat_grads needs a backward first: no gradients yet")
        return np.concatenate([self.grads[name].ravel() for name, _, _ in PARAMETERS])

    def set_flat_params(self, vector: ArrayLike) -> None:
        """Overwrite every parameter from a vector of shape (n_params,)."""
        vector = as_float_array(vector, "vector")
        if vector.shape != self.flat_params.shape:
            raise ValueError(
                f"`vector` must have shape ({self.n_params},) (n_params), "
                f"got {vector.shape}"
            )
        self.flat_params[...] = vector

    def objective(
        self, X: ArrayLike, y_a_true: ArrayLike, y_b_true: ArrayLike
    ) -> Callable[[FloatArray], tuple[float, FloatArray]]:
        """Return f(v) = (L, dL/dv) over the flat parameters, for scipy.optimize.

        f writes v into the network, runs forward, loss and backward on the fixed batch,
        and returns the total loss and a fresh gradient vector. In training mode with
        p_drop > 0, call it inside ``net.dropout.held_mask()`` so that every call sees
        the same mask and f is one deterministic function. Each call in training mode
        also moves MeanCenterBN's running mean, as every training forward does; save
        and restore `net.bn.running_mean` around an optimisation if that matters.
        """
        X = self._check_X(X)
        m = X.shape[0]
        y_a_checked = self._check_y_a(y_a_true, m)
        y_b_checked = class_targets(y_b_true, m, self.n_classes, self.dtype, "y_b_true")

        def f(vector: FloatArray) -> tuple[float, FloatArray]:
            self.set_flat_params(vector)
            self._forward_checked(X)
            losses = self._loss_checked(y_a_checked, y_b_checked)
            self.backward()
            return losses.total, self.flat_grads

        return f

    # -- modes ----------------------------------------------------------------------

    def train(self, mode: bool = True) -> MultiTaskNet:
        """Set training mode (eval mode with ``mode=False``) on every layer."""
        self.training = bool(mode)
        for layer in self._layers:
            layer.train(mode)
        return self

    def eval(self) -> MultiTaskNet:
        """Eval mode: no dropout, the running mean in MeanCenterBN. Deterministic."""
        return self.train(False)

    # -- forward, loss, backward --------------------------------------------------

    def forward(self, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Return (y_a, y_b) for the batch X.

        Parameters
        ----------
        X : array_like, shape (m, n_in)
            Finite; m >= 2 in training (MeanCenterBN needs a batch mean).

        Returns
        -------
        y_a : ndarray, shape (m, n_shared)
        y_b : ndarray, shape (m, n_classes), rows of probabilities
        """
        return self._forward_checked(self._check_X(X))

    def _release(self) -> None:
        """Drop the last step's caches, so that they are freed before a new forward.

        Gradients are results, not caches: `grads` keeps the last backward's. The
        logits z_2B, (m, n_classes), are small and left until the forward replaces them.
        """
        for layer in self._layers:
            layer._release()
        self.loss_a._release()
        self.loss_b._release()
        self._forwarded = None
        self._losses = None

    def _forward_checked(self, X: FloatArray) -> tuple[FloatArray, FloatArray]:
        self._release()
        # reuse_x=True hands a layer its input to write the output into: each such
        # input is the previous layer's fresh output, which no cache and no caller
        # holds (Sine keeps z_1A, not a_1A; ReLU keeps the mask x_BN > 0).

        # Task A.
        z_1a = self.fc_1a._forward(X)  # (34)
        a_1a = self.sine._forward(z_1a)  # (35)
        x_dp = self.dropout._forward(a_1a, reuse_x=True)  # (36)
        y_a = self.fc_2a._forward(x_dp)  # (37)

        # Task B.
        x_1b = self.fc_1b._forward(X)  # (38)
        x_bn = self.bn._forward(x_1b, reuse_x=True)  # (39)
        a_bn = self.relu._forward(x_bn, reuse_x=True)  # (40)
        h = np.add(y_a, a_bn, out=a_bn)  # (41), into ReLU's fresh output
        z_2b = self.fc_2b._forward(h)  # (42)
        y_b = self.softmax._forward(z_2b)  # (43)

        self._z_2b = z_2b
        self._forwarded = (y_a, y_b)
        return y_a, y_b

    def loss(self, y_a_true: ArrayLike, y_b_true: ArrayLike) -> Losses:
        """Return the losses of the last forward against the targets.

        Parameters
        ----------
        y_a_true : array_like, shape (m, n_shared), or (m,) when n_shared is 1
        y_b_true : array_like, integer labels (m,) or probability rows (m, n_classes)
        """
        if self._forwarded is None:
            raise RuntimeError("MultiTaskNet.loss was called before forward")
        m = self._forwarded[0].shape[0]
        y_a_checked = self._check_y_a(y_a_true, m)
        y_b_checked = class_targets(y_b_true, m, self.n_classes, self.dtype, "y_b_true")
        return self._loss_checked(y_a_checked, y_b_checked)

    def _loss_checked(self, y_a_true: FloatArray, y_b_true: FloatArray) -> Losses:
        y_a, y_b = cast(tuple[FloatArray, FloatArray], self._forwarded)
        w_a, w_b = self.loss_weights

        loss_a = self.loss_a._forward(y_a, y_a_true)  # (44)
        if isinstance(self.loss_b, SoftmaxCrossEntropyLoss):
            # (45) as the fused (32) on z_2B, with the Softmax layer's row maxima
            # and exp sums of z_2B rather than computing them again.
            loss_b = self.loss_b._forward(
                self._z_2b,
                y_b_true,
                row_max=self.softmax._row_max,
                sum_exp=self.softmax._sum_exp,
            )  # (45)
        else:
            loss_b = self.loss_b._forward(y_b, y_b_true)  # (45)
        self._losses = Losses(total=w_a * loss_a + w_b * loss_b, a=loss_a, b=loss_b)
        return self._losses  # (46)

    def backward(self) -> dict[str, FloatArray]:
        """Return dL/d(param) of the last loss's total, same keys as `params`."""
        if self._losses is None:
            raise RuntimeError(
                "MultiTaskNet.backward was called before loss: call forward, then "
                "loss, then backward"
            )
        w_a, w_b = self.loss_weights
        # Each layer replaces its gradients as it goes; without this dict's references
        # the last backward's arrays are freed as soon as they are replaced.
        self.grads = {}

        # Every loss and layer backward returns a fresh array that nothing else holds,
        # so the weights multiply into it, the branch sum adds into it and, with
        # reuse_grad=True, the next layer writes into it (x * w and w * x, x + y and
        # y + x are the same numbers bit for bit).

        # Task B's head.
        if isinstance(self.loss_b, SoftmaxCrossEntropyLoss):
            grad_z_2b = _weighted(self.loss_b._backward(), w_b)  # (47)
        else:
            grad_p = _weighted(self.loss_b._backward(), w_b)
            grad_z_2b = self.softmax._backward(grad_p)  # (47)
        grad_h = self.fc_2b._backward(grad_z_2b)  # (48) to (50)

        # The shared branch: task A's own term plus task B's term through theta_2B.
        grad_y_a = _weighted(self.loss_a._backward(), w_a)
        grad_y_a += grad_h  # (51)

        # Task B's hidden layer: the gradient at a_BN is grad_h as well.
        grad_x_bn = self.relu._backward(grad_h, reuse_grad=True)  # (52)
        grad_x_1b = self.bn._backward(grad_x_bn, reuse_grad=True)  # (53), (54)
        self.fc_1b._backward_params(grad_x_1b)  # (55)
        # One (m, n_shared) array under three names; free it before task A's
        # (m, n_hidden) arrays are built.
        del grad_h, grad_x_bn, grad_x_1b

        # Task A.
        grad_x_dp = self.fc_2a._backward(grad_y_a)  # (56) to (58)
        del grad_y_a
        grad_a_1a = self.dropout._backward(grad_x_dp, reuse_grad=True)  # (59)
        grad_z_1a = self.sine._backward(grad_a_1a)  # (60)
        del grad_x_dp, grad_a_1a
        self.fc_1a._backward_params(grad_z_1a)  # (61), (62)

        self.grads = {name: grads[key] for name, grads, key in self._grad_sources}
        return dict(self.grads)

    # -- validation -----------------------------------------------------------------

    def _check_X(self, X: ArrayLike) -> FloatArray:
        X = as_batch(X, "X", self.n_in, "n_in", dtype=self.dtype)
        if self.training and X.shape[0] < 2:
            raise ValueError(
                f"`X` must hold at least 2 samples in training, got shape {X.shape}: "
                "MeanCenterBN subtracts the batch mean, which makes the output of one "
                "sample constant; call eval() to predict single samples"
            )
        return X

    def _check_y_a(self, y_a_true: ArrayLike, m: int) -> FloatArray:
        y_a = np.asarray(y_a_true)
        if y_a.ndim == 1 and self.n_shared == 1:
            y_a = y_a[:, None]
        y_a = as_batch(y_a, "y_a_true", self.n_shared, "n_shared", dtype=self.dtype)
        if y_a.shape[0] != m:
            raise ValueError(
                f"`y_a_true` must have {m} rows, one per sample of the last forward, "
                f"got shape {y_a.shape}"
            )
        return y_a

    def __repr__(self) -> str:
        return (
            f"MultiTaskNet(n_in={self.n_in}, n_hidden={self.n_hidden}, "
            f"n_shared={self.n_shared}, n_classes={self.n_classes}, "
            f"p_drop={self.dropout.p}, loss_weights={self.loss_weights}, "
            f"dtype={self.dtype})"
        )


def _weighted(grad: FloatArray, weight: float) -> FloatArray:
    """Return weight * grad, written into `grad`, a fresh array nothing else holds.

    A weight of 1 changes no bit, and the product is skipped.
    """
    if weight != 1.0:
        grad *= weight
    return grad


def _seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"`seed` must be a non-negative integer or None, got {seed!r}")
    if seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer or None, got {seed}")
    return int(seed)


def _loss_weights(weights: Any) -> tuple[float, float]:
    try:
        w_a, w_b = (float(w) for w in weights)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`loss_weights` must be a pair of numbers (w_A, w_B), got {weights!r}"
        ) from error
    if not (np.isfinite([w_a, w_b]).all() and w_a >= 0 and w_b >= 0):
        raise ValueError(
            f"`loss_weights` must be finite and non-negative, got {(w_a, w_b)}"
        )
    return w_a, w_b
