"""An independent float64 reference for MultiTaskNet, and finite differences over it.

Nothing here imports the code under test beyond reading a network's parameters: the
forward of the derivation, (34) to (46), is written out again in plain numpy, and the
derivative of the total loss with respect to one parameter entry is a central
difference refined by Richardson extrapolation. The tests compare the network's
hand-derived backward against it.

Why Richardson: a plain central difference has a truncation error of order h^2 and a
rounding error of order eps |L| / h; with losses up to about 30 (64 samples, 32 outputs)
its best absolute error is near 1e-10, which for gradient entries of 1e-3 is a relative
error of 1e-7, the bar itself. Two rounds of Richardson extrapolation over the steps h,
h/2, h/4 cancel the h^2 and h^4 terms: with h = 2e-2 (measured best among 5e-3, 1e-2,
2e-2, 5e-2 on 30 random networks) the absolute error is about 1e-12 and the relative
error at most 2e-9 on those networks. Sharply curved cases need a smaller h, so the
extrapolation is repeated at h/4 and h/16 and the most stable estimate kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

#: The order of the parameters in the flat vector, as the issue and the docs state it.
NAMES = (
    "theta_1A",
    "b_1A",
    "theta_2A",
    "b_2A",
    "theta_1B",
    "b_1B",
    "theta_2B",
    "b_2B",
)

#: Relative errors are |a - n| / max(|a|, |n|, FLOOR): a gradient entry below FLOOR in
#: magnitude is judged by its absolute error against 1e-7 * FLOOR = 1e-10, a hundred
#: times the extrapolated difference's absolute error (about 1e-12), so that an exact
#: zero gradient next to a rounding residue of the difference still passes.
FLOOR = 1e-3

#: The bar every gradient meets in float64.
TOLERANCE = 1e-7

#: The largest first step of the extrapolated difference.
STEP = 2e-2


def shapes(n_in: int, n_hidden: int, n_shared: int, n_classes: int) -> dict[str, Any]:
    """The documented shape of every parameter: (out, in) and (out,)."""
    return {
        "theta_1A": (n_hidden, n_in),
        "b_1A": (n_hidden,),
        "theta_2A": (n_shared, n_hidden),
        "b_2A": (n_shared,),
        "theta_1B": (n_shared, n_in),
        "b_1B": (n_shared,),
        "theta_2B": (n_classes, n_shared),
        "b_2B": (n_classes,),
    }


def slices(shape_of: dict[str, Any]) -> dict[str, slice]:
    """Where each parameter lies in the flat vector, in the documented order."""
    where = {}
    offset = 0
    for name in NAMES:
        size = math.prod(shape_of[name])
        where[name] = slice(offset, offset + size)
        offset += size
    return where


def unflatten(vector: Array, shape_of: dict[str, Any]) -> dict[str, Array]:
    """Split a flat vector into the parameters, in the documented order."""
    params = {}
    offset = 0
    for name in NAMES:
        size = math.prod(shape_of[name])
        params[name] = vector[offset : offset + size].reshape(shape_of[name])
        offset += size
    if offset != vector.size:
        raise ValueError(f"vector has {vector.size} entries, the shapes need {offset}")
    return params


def one_hot(labels: Iterable[int], k: int) -> Array:
    """Integer labels (m,) as one-hot rows (m, k) in float64."""
    labels = np.asarray(list(labels))
    rows = np.zeros((labels.size, k))
    rows[np.arange(labels.size), labels] = 1.0
    return rows


def reference_forward(
    params: dict[str, Array],
    X: Array,
    mask: Array | None = None,
    running_mean: Array | None = None,
) -> dict[str, Array]:
    """The forward of the derivation, (34) to (43), in float64.

    `mask` None means no dropout (eval mode, inverted dropout); `running_mean` not
    None replaces the batch mean of x_1B (eval mode of MeanCenterBN).
    """
    p = {name: np.asarray(value, dtype=np.float64) for name, value in params.items()}
    X = np.asarray(X, dtype=np.float64)
    a_1a = np.sin(X @ p["theta_1A"].T + p["b_1A"])
    x_dp = a_1a if mask is None else a_1a * mask
    y_a = x_dp @ p["theta_2A"].T + p["b_2A"]
    x_1b = X @ p["theta_1B"].T
    mu = x_1b.mean(axis=0) if running_mean is None else running_mean
    x_bn = x_1b - mu + p["b_1B"]
    h = y_a + np.maximum(x_bn, 0.0)
    z_2b = h @ p["theta_2B"].T + p["b_2B"]
    top = z_2b.max(axis=1, keepdims=True)
    log_sum_exp = top + np.log(np.exp(z_2b - top).sum(axis=1, keepdims=True))
    return {
        "y_a": y_a,
        "x_bn": x_bn,
        "z_2b": z_2b,
        "log_y_b": z_2b - log_sum_exp,
    }


def reference_losses(
    params: dict[str, Array],
    X: Array,
    y_a_true: Array,
    y_b_rows: Array,
    weights: tuple[float, float] = (1.0, 1.0),
    mask: Array | None = None,
    running_mean: Array | None = None,
) -> tuple[float, float, float]:
    """(L, L_A, L_B) of (44) to (46), with L_B from log-probabilities (no underflow)."""
    out = reference_forward(params, X, mask, running_mean)
    m = X.shape[0]
    residual = out["y_a"] - y_a_true
    loss_a = float((residual * residual).sum()) / (2 * m)
    loss_b = -float((y_b_rows * out["log_y_b"]).sum()) / m
    return weights[0] * loss_a + weights[1] * loss_b, loss_a, loss_b


def extrapolated_difference(
    f: Callable[[Array], float], vector: Array, index: int, step: float = STEP
) -> float:
    """df/dv[index] by Richardson-extrapolated central differences.

    Two rounds of extrapolation over h, h/2, h/4 are taken at h = step, step/4 and
    step/16, and the middle or the smallest is returned, whichever agrees better with
    its larger neighbour. A fixed h fails where the loss curves sharply (parameters
    scaled up with dropout's 1/(1-p) of 8: truncation error 4e-7 at h = 2e-2, 1e-10 at
    5e-3); a very small h fails where the loss is large (rounding). Comparing
    neighbours picks the step where neither dominates.
    """

    # The three rounds share the quotients at step/4 and step/16: each is taken once.
    quotients: dict[float, float] = {}

    def central(h: float) -> float:
        if h in quotients:
            return quotients[h]
        shifted = vector.copy()
        shifted[index] = vector[index] + h
        up = f(shifted)
        shifted[index] = vector[index] - h
        down = f(shifted)
        quotients[h] = (up - down) / (2 * h)
        return quotients[h]

    def extrapolated(h: float) -> float:
        d1, d2, d3 = central(h), central(h / 2), central(h / 4)
        r1 = (4 * d2 - d1) / 3
        r2 = (4 * d3 - d2) / 3
        return (16 * r2 - r1) / 15

    coarse, middle, fine = (extrapolated(step / 4**j) for j in range(3))
    return middle if abs(coarse - middle) <= abs(middle - fine) else fine


def relative_error(analytic: float, numeric: float, floor: float = FLOOR) -> float:
    """|a - n| / max(|a|, |n|, floor)."""
    return abs(analytic - numeric) / max(abs(analytic), abs(numeric), floor)


def keep_relu_off_kink(
    params: dict[str, Array],
    X: Array,
    margin: float = 0.05,
    running_mean: Array | None = None,
) -> Array:
    """Set b_1B in place so that no x_BN of a forward on X lies near 0.

    x_BN = x_1B - mu + b_1B, with mu the batch mean of x_1B (training) or
    `running_mean` (eval). For each column, zero is put in the middle of the widest gap
    between the values of x_1B - mu when that gap is at least 2 `margin` wide (so ReLU
    is off for some samples and on for others); otherwise the column is shifted so that
    its smallest value is `margin` (ReLU on for every sample). Returns the distance of
    each column of x_BN from 0, shape (n_shared,).
    """
    x_1b = np.asarray(X, dtype=np.float64) @ np.asarray(params["theta_1B"]).T
    mu = x_1b.mean(axis=0) if running_mean is None else running_mean
    centred = x_1b - mu
    for j in range(centred.shape[1]):
        values = np.sort(centred[:, j])
        halves = (values[1:] - values[:-1]) / 2
        widest = int(np.argmax(halves)) if halves.size else 0
        if halves.size and halves[widest] >= margin:
            params["b_1B"][j] = -(values[widest] + halves[widest])
        else:
            params["b_1B"][j] = margin - values[0]
    x_bn = centred + np.asarray(params["b_1B"], dtype=np.float64)
    return np.abs(x_bn).min(axis=0)


def safe_steps(
    shape_of: dict[str, Any],
    X: Array,
    distance: Array,
    step: float = STEP,
    training: bool = True,
) -> Array:
    """The first FD step for every flat entry, so that no step carries x_BN across 0.

    Only theta_1B and b_1B move x_BN: theta_1B[j, l] + h moves column j by
    h (X[:, l] - mean X[:, l]) in training and by h X[:, l] in eval, b_1B[j] + h by h.
    Their steps are capped at half of what would reach 0; every other entry takes
    `step`.
    """
    X = np.asarray(X, dtype=np.float64)
    moved = X - X.mean(axis=0) if training else X
    spread = np.abs(moved).max(axis=0)  # (n_in,)
    steps = {name: np.full(shape_of[name], step) for name in NAMES}
    with np.errstate(divide="ignore", over="ignore"):
        cap_theta = 0.5 * distance[:, None] / spread[None, :]
    steps["theta_1B"] = np.minimum(step, cap_theta)
    steps["b_1B"] = np.minimum(step, 0.5 * distance)
    return np.concatenate([steps[name].ravel() for name in NAMES])


def chosen_entries(
    shape_of: dict[str, Any], per_parameter: int | None, rng: np.random.Generator
) -> Array:
    """Flat indices to check: all entries, or `per_parameter` of each parameter."""
    picked = []
    offset = 0
    for name in NAMES:
        size = math.prod(shape_of[name])
        if per_parameter is None or size <= per_parameter:
            picked.append(offset + np.arange(size))
        else:
            picked.append(offset + rng.choice(size, per_parameter, replace=False))
        offset += size
    return np.concatenate(picked)
