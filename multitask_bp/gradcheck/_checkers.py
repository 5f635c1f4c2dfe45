"""The public checkers: layers, losses, the network, and any user function."""

from __future__ import annotations

import copy
import numbers
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from multitask_bp._checks import FloatArray, as_batch, as_float_array
from multitask_bp.gradcheck._engine import MODES, Engine, Options, Target
from multitask_bp.gradcheck._numeric import DEFAULT_STEP, Line, as_work_array, central
from multitask_bp.gradcheck._report import GradcheckReport
from multitask_bp.layers import Dropout, Layer
from multitask_bp.losses import CrossEntropyLoss, Loss
from multitask_bp.network import MultiTaskNet

#: Tolerances by the dtype of the analytic gradient: (rtol, floor_rel).
#: float64: the quotients reach ~1e-12 (see DEFAULT_STEP), so 1e-7 leaves five orders
#: for the analytic side's own rounding; floor_rel 1e-9 only absorbs that rounding on
#: entries twenty orders below the array's scale.
#: float32: the analytic gradient itself carries ~eps32 sqrt(n) ~ 1e-6 of the array's
#: scale (sums of n products rounded to 24 bits). Relative to a large entry that is
#: ~1e-6; relative to the floor 1e-3 * scale it stays below 1e-3.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-9),
    "float32": (1e-3, 1e-3),
}
#: Agreement required with a one-sided derivative at a kink: three-level one-sided
#: Richardson at step 1e-3 leaves an O(h^3) ~ 1e-9 truncation, so 1e-5 is generous.
KINK_RTOL = 1e-5

GradFunction = Callable[[NDArray[Any]], tuple[Any, ArrayLike]]


def numerical_gradient(
    f: Callable[[], float], x: NDArray[np.floating[Any]], h: float = DEFAULT_STEP
) -> NDArray[np.float64]:
    """Central differences of the scalar f() with respect to every entry of x.

    Each entry is moved in place to x_i +- s and x_i +- s/2, with
    s = h * max(1, |x_i|), and the two central differences are combined by Richardson
    extrapolation, (4 D(s/2) - D(s)) / 3, which cancels their s^2 error term (4
    evaluations of f per entry). Each entry is restored to its original value bit for
    bit after every evaluation, also when f raises.

    Parameters
    ----------
    f : callable
        No argument; reads x and returns a float.
    x : ndarray, floating, any shape
        Perturbed in place; must be writeable. float32 works but rounds the steps and
        f's values to 24 bits: check in float64 where possible.
    h : float > 0
        Base step (see gradcheck.DEFAULT_STEP for the choice).

    Returns
    -------
    ndarray, float64, the shape of x
    """
    as_work_array(x, "x")
    h = _positive(h, "h")
    counter = [0]
    gradient = np.empty(x.shape, dtype=np.float64)
    flat = x.reshape(-1)
    for i in range(x.size):
        line = Line(f, x, counter, 0.0, index=i)
        step = h * max(1.0, abs(float(flat[i])))
        gradient.reshape(-1)[i] = central(line, step, 2).value
    return gradient


def check_layer(
    layer: Layer,
    x: ArrayLike,
    grad_out: ArrayLike | None = None,
    mode: str = "full",
    *,
    h: float = DEFAULT_STEP,
    rtol: float | None = None,
    n_samples: int = 16,
    n_directions: int = 3,
    seed: int = 0,
    safety: float = 10.0,
) -> GradcheckReport:
    """Check a layer's input gradient and every parameter gradient.

    The checked function is f = sum(forward(x) * grad_out), whose gradient with respect
    to x is backward(grad_out) and with respect to each parameter is grads[name]. The
    layer is not modified: the check runs on copies. A Dropout in training draws (or
    reuses, if its `mask` has x's shape) one mask and holds it for every evaluation.
    The layer runs in its current mode (train or eval). A float32 layer is
    differentiated by its own backward in float32 and compared with differences of a
    float64 copy, at the float32 tolerances (`TOLERANCES`).

    Parameters
    ----------
    layer : Layer
    x : array_like, shape (m, n_in)
    grad_out : array_like, shape (m, n_out), optional
        Default: standard normal from `seed`. Not all ones, which would let the
        normalisation layers pass vacuously (their input gradient sums to 0 over the
        batch for any constant grad_out column).
    mode : "full", "sampled", "fast" or "precise"
        full: every entry. sampled: `n_samples` entries per array drawn from `seed`,
        plus one random direction guarding the rest. fast: `n_directions` random
        directions per array, whatever its size; on a failure, the entries behind it
        are localized by bisection and named. precise: every entry, with Richardson's
        estimate of the quotient's own error; the verdict is |a - n| <= safety *
        estimate.
    h : float
        Base step of the differences, scaled by max(1, |x_i|).
    rtol : float, optional
        Relative tolerance; default by dtype (`TOLERANCES`): 1e-7 in float64.
    n_samples, n_directions, seed, safety
        See `mode`.

    Returns
    -------
    GradcheckReport
        One row for "x" and one per parameter, plus the diagnostics: backward twice on
        one cache gives identical results, forward is repeatable, backward is linear in
        grad_out.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"`layer` must be a multitask_bp Layer, got {type(layer)!r}")
    _check_mode(mode)
    start = time.perf_counter()
    x = as_batch(x, "x", layer.n_in, "n_in")
    subject = _copy(layer)
    with ExitStack() as stack:
        _hold_mask(subject, x, stack)
        y = subject.forward(x)
        if grad_out is None:
            rng = np.random.default_rng([seed, 1])
            grad_out = rng.standard_normal(y.shape).astype(y.dtype)
        g = subject._checked_grad_out(grad_out)
        diagnostics = _layer_diagnostics(subject, x, g, seed)
        subject.forward(x)
        grad_x = np.asarray(subject.backward(g), dtype=np.float64)
        analytic = {
            name: np.asarray(v, np.float64) for name, v in subject.grads.items()
        }

        twin = _copy(subject)
        if isinstance(twin, Dropout):
            twin.hold = True
        for name, value in twin.params.items():
            twin.params[name] = np.array(value, dtype=np.float64)
        x64 = np.array(x, dtype=np.float64)
        g64 = np.array(g, dtype=np.float64)

        def f() -> float:
            return float(np.vdot(twin.forward(x64), g64))

        y64 = twin.forward(x64)
        scale = float(np.vdot(np.abs(y64), np.abs(g64)))
        options = _options(
            mode, h, rtol, n_samples, n_directions, seed, safety, scale, y.dtype
        )
        kinks, near_kink = _elementwise_kinks(x64, layer.kinks)
        targets = [Target("x", x64, grad_x, kinks, near_kink=near_kink)]
        targets += [
            Target(name, twin.params[name], analytic[name]) for name in twin.params
        ]
        report = _run(f, options, targets, repr(layer), str(y.dtype))
    report.diagnostics = diagnostics
    report.seconds = time.perf_counter() - start
    return report


def check_loss(
    loss: Loss,
    prediction: ArrayLike,
    target: ArrayLike,
    mode: str = "full",
    *,
    h: float = DEFAULT_STEP,
    rtol: float | None = None,
    n_samples: int = 16,
    n_directions: int = 3,
    seed: int = 0,
    safety: float = 10.0,
) -> GradcheckReport:
    """Check a loss's gradient with respect to its prediction.

    f = loss.forward(prediction, target); the analytic gradient is loss.backward().
    The target is not differentiated. A `CrossEntropyLoss` takes probabilities, so its
    steps stay inside (0, 1): at most half the distance to 0 or 1. An entry exactly at
    0 or 1 cannot be differentiated numerically and is refused with ValueError.

    Parameters
    ----------
    loss : Loss
    prediction : array_like, shape (m, k)
    target : array_like
        (m, k) for MSELoss; integer labels (m,) or probability rows (m, k) otherwise.
    mode, h, rtol, n_samples, n_directions, seed, safety
        As in `check_layer`.

    Returns
    -------
    GradcheckReport
        One row, "prediction", plus the diagnostics (backward repeatable, forward
        repeatable).
    """
    if not isinstance(loss, Loss):
        raise TypeError(f"`loss` must be a multitask_bp Loss, got {type(loss)!r}")
    _check_mode(mode)
    start = time.perf_counter()
    prediction = as_batch(prediction, "prediction")
    subject = _copy(loss)
    value = subject.forward(prediction, target)
    grad = np.asarray(subject.backward(), dtype=np.float64)
    first = (value, subject.backward().copy())
    again = (subject.forward(prediction, target), subject.backward())
    diagnostics = {
        "deterministic": _same(first, again, "forward and backward twice"),
    }
    twin = _copy(loss)
    p64 = np.array(prediction, dtype=np.float64)

    def f() -> float:
        return float(twin.forward(p64, target))

    value64 = f()
    scale = abs(value64) + float(np.abs(p64).max(axis=1).mean())
    options = _options(
        mode, h, rtol, n_samples, n_directions, seed, safety, scale, prediction.dtype
    )
    domain = (0.0, 1.0) if isinstance(loss, CrossEntropyLoss) else None
    targets = [Target("prediction", p64, grad, domain=domain)]
    report = _run(f, options, targets, repr(loss), str(prediction.dtype))
    report.diagnostics = diagnostics
    report.seconds = time.perf_counter() - start
    return report


def check_network(
    net: MultiTaskNet,
    X: ArrayLike,
    y_a: ArrayLike,
    y_b: ArrayLike,
    mode: str = "full",
    *,
    h: float = DEFAULT_STEP,
    rtol: float | None = None,
    n_samples: int = 16,
    n_directions: int = 3,
    seed: int = 0,
    safety: float = 10.0,
) -> GradcheckReport:
    """Check the gradient of the total loss with respect to every parameter.

    f = net.loss(y_a, y_b).total after net.forward(X); the analytic gradients are
    net.backward(). In training, one dropout mask is held for every evaluation: the
    network's `dropout.mask` if it has the batch's shape, else the mask one training
    forward draws (the generator's state is restored afterwards, so the masks of later
    training steps are those they would have been without the check).

    Kinks: ReLU's input x_BN is affine in theta_1B and b_1B, so for every step the
    check computes exactly where x_BN would cross 0 and shortens the step to stay on
    one side; an entry whose x_BN sits exactly on 0 is judged by one-sided
    differences. Those entries are counted as kinks.

    The network is left as found: parameters restored bit for bit, the running mean
    and the dropout generator's state restored, and its caches and `grads` those of
    one forward, loss and backward at the unperturbed parameters. A float32 network
    is checked against a float64 twin.

    Parameters
    ----------
    net : MultiTaskNet
    X : array_like, shape (m, n_in)
    y_a : array_like, shape (m, n_shared)
        Task A's targets (y_a_true).
    y_b : array_like, integer labels (m,) or probability rows (m, n_classes)
        Task B's targets (y_b_true).
    mode, h, rtol, n_samples, n_directions, seed, safety
        As in `check_layer`.

    Returns
    -------
    GradcheckReport
        One row per parameter, theta_1A to b_2B, plus the diagnostics.
    """
    if not isinstance(net, MultiTaskNet):
        raise TypeError(f"`net` must be a MultiTaskNet, got {type(net)!r}")
    _check_mode(mode)
    start = time.perf_counter()
    saved_params = net.flat_params.copy()
    saved_running_mean = net.bn.running_mean.copy()
    saved_hold = net.dropout.hold
    # A mask drawn for the check must not shift the masks of later training steps.
    saved_rng_state = net.dropout.rng.bit_generator.state
    X_checked = as_batch(X, "X", net.n_in, "n_in", dtype=net.dtype)
    checked = False
    try:
        if net.training:
            mask = net.dropout.mask
            if mask is None or mask.shape != (X_checked.shape[0], net.n_hidden):
                net.forward(X_checked)
            net.dropout.hold = True
        diagnostics = _network_diagnostics(net, X_checked, y_a, y_b)
        net.forward(X_checked)
        losses = net.loss(y_a, y_b)
        analytic = {k: np.array(v, dtype=np.float64) for k, v in net.backward().items()}
        checked = True
        twin = _float64_twin(net) if net.dtype != np.float64 else net
        X64 = np.array(X_checked, dtype=np.float64)

        def f() -> float:
            twin.forward(X64)
            return float(twin.loss(y_a, y_b).total)

        w_a, w_b = net.loss_weights
        f()
        logits = twin._z_2b
        # Rounding of L scales with its terms: the logits inside log-sum-exp.
        scale = abs(w_a * losses.a) + w_b * (
            abs(losses.b) + float(np.abs(logits).max(axis=1).mean())
        )
        options = _options(
            mode, h, rtol, n_samples, n_directions, seed, safety, scale, net.dtype
        )
        kinks = _network_kinks(twin, X64)
        params = twin.params
        targets = [
            Target(name, params[name], analytic[name], kinks.get(name))
            for name in params
        ]
        report = _run(f, options, targets, repr(net), str(np.dtype(net.dtype)))
    finally:
        net.flat_params[...] = saved_params
        if checked:
            # Leave the caches those of the unperturbed network, with the mask checked.
            net.forward(X_checked)
            net.loss(y_a, y_b)
            net.backward()
        net.bn.running_mean[...] = saved_running_mean
        net.dropout.hold = saved_hold
        net.dropout.rng.bit_generator.state = saved_rng_state
    report.diagnostics = diagnostics
    report.seconds = time.perf_counter() - start
    return report


def check_gradient(
    f: GradFunction,
    x: ArrayLike,
    mode: str = "full",
    *,
    h: float = DEFAULT_STEP,
    rtol: float | None = None,
    n_samples: int = 16,
    n_directions: int = 3,
    seed: int = 0,
    safety: float = 10.0,
    name: str = "x",
) -> GradcheckReport:
    """Check any function that returns its value and its gradient.

    Parameters
    ----------
    f : callable
        f(x) -> (value, gradient): value a real scalar, gradient an array of x's shape.
        It is called on float64 copies of x for the differences (only the value is
        used there) and on x itself once for the analytic gradient.
    x : array_like, floating, any shape
        The point. Not modified.
    mode, h, rtol, n_samples, n_directions, seed, safety
        As in `check_layer`. Tolerances follow the dtype of the returned gradient.
    name : str
        The row's name in the report.

    Returns
    -------
    GradcheckReport
        One row, plus the diagnostic that f gives identical results twice. Kinks are
        found after the fact: where the central quotient disagrees, the two one-sided
        derivatives disagree with each other, and the analytic value matches one.
    """
    if not callable(f):
        raise TypeError(f"`f` must be callable as f(x) -> (value, gradient), got {f!r}")
    _check_mode(mode)
    start = time.perf_counter()
    point = as_float_array(x, "x")
    value, grad = _value_and_gradient(f, point.copy())
    again = _value_and_gradient(f, point.copy())
    diagnostics = {"deterministic": _same((value, grad), again, "f(x) twice")}
    x64 = np.array(point, dtype=np.float64)

    def scalar() -> float:
        return _value_and_gradient(f, x64, check_shape=False)[0]

    options = _options(
        mode, h, rtol, n_samples, n_directions, seed, safety, abs(value), grad.dtype
    )
    targets = [Target(name, x64, np.asarray(grad, dtype=np.float64))]
    report = _run(
        scalar, options, targets, getattr(f, "__name__", repr(f)), str(grad.dtype)
    )
    report.diagnostics = diagnostics
    report.seconds = time.perf_counter() - start
    return report


# -- helpers ----------------------------------------------------------------------


def _run(
    f: Callable[[], float],
    options: Options,
    targets: list[Target],
    subject: str,
    dtype: str,
) -> GradcheckReport:
    engine = Engine(f, options)
    report = GradcheckReport(subject, options.mode, dtype, options.rtol)
    for position, target in enumerate(targets):
        report.checks[target.name] = engine.check(target, position)
    report.n_evaluations = engine.counter[0]
    return report


def _options(
    mode: str,
    h: float,
    rtol: float | None,
    n_samples: int,
    n_directions: int,
    seed: int,
    safety: float,
    scale: float,
    dtype: Any,
) -> Options:
    """The options of one check; rtol and floor_rel default by `dtype` (TOLERANCES)."""
    default_rtol, floor_rel = TOLERANCES[
        "float32" if np.dtype(dtype) == np.float32 else "float64"
    ]
    return Options(
        mode=mode,
        h=_positive(h, "h"),
        rtol=default_rtol if rtol is None else _positive(rtol, "rtol"),
        floor_rel=floor_rel,
        kink_rtol=KINK_RTOL,
        n_samples=_count(n_samples, "n_samples"),
        n_directions=_count(n_directions, "n_directions"),
        seed=_seed(seed),
        safety=_positive(safety, "safety"),
        scale=float(scale),
    )


def _check_mode(mode: Any) -> None:
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {', '.join(MODES)}, got {mode!r}")


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a finite number above 0, got {value}")
    return float(value)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be at least 1, got {value}")
    return int(value)


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`seed` must be an integer, got {value!r}")
    if int(value) < 0:
        raise ValueError(f"`seed` must be non-negative, got {value}")
    return int(value)


def _copy(obj: Any) -> Any:
    """A deep copy: the check never touches the caller's object."""
    return copy.deepcopy(obj)


def _hold_mask(layer: Layer, x: FloatArray, stack: ExitStack) -> None:
    if not (isinstance(layer, Dropout) and layer.training):
        return
    if layer.mask is None or layer.mask.shape != x.shape:
        layer.forward(x)
    stack.enter_context(layer.held_mask())


def _elementwise_kinks(x: NDArray[np.float64], kinks: tuple[float, ...]) -> Any:
    """KinkFinder and near-kink mask for an input whose entries each pass through the
    declared kink values (ReLU: 0)."""
    if not kinks:
        return None, None
    values = np.asarray(kinks, dtype=np.float64)

    def positions(direction: NDArray[np.float64]) -> NDArray[np.float64]:
        moving = direction != 0
        found = [(k - x[moving]) / direction[moving] for k in values]
        return np.concatenate(found)

    def near_kink(r: float) -> NDArray[np.bool_]:
        distance = np.abs(x[..., None] - values).min(axis=-1)
        return distance <= r * np.maximum(1.0, np.abs(x))

    return positions, near_kink


def _layer_diagnostics(
    layer: Layer, x: FloatArray, g: FloatArray, seed: int
) -> dict[str, tuple[bool, str]]:
    y_first = layer.forward(x)
    y_again = layer.forward(x)
    repeatable = _same(y_first, y_again, "forward twice, mask held")

    first = (layer.backward(g), _grads_copy(layer))
    again = (layer.backward(g), _grads_copy(layer))
    deterministic = _same(first, again, "backward twice on one cache")

    rng = np.random.default_rng([seed, 2])
    g1 = rng.standard_normal(g.shape).astype(g.dtype)
    g2 = rng.standard_normal(g.shape).astype(g.dtype)
    alpha, beta = 0.75, -1.25
    combined = [layer.backward(alpha * g1 + beta * g2), *_grads_copy(layer).values()]
    part1 = [layer.backward(g1), *_grads_copy(layer).values()]
    part2 = [layer.backward(g2), *_grads_copy(layer).values()]
    eps = float(np.finfo(g.dtype).eps)
    # Rounding scales with the terms a backward combines, not with its result (which
    # may cancel to ~0, as BatchNorm's input gradient does for m = 2): measure the
    # deviation against the largest grad_out and the largest output of either call.
    size = float(np.abs(alpha * g1).max() + np.abs(beta * g2).max())
    for p1, p2 in zip(part1, part2, strict=True):
        pair = np.abs(alpha * p1).max(initial=0) + np.abs(beta * p2).max(initial=0)
        size = max(size, float(pair))
    worst = 0.0
    for c, p1, p2 in zip(combined, part1, part2, strict=True):
        expected = alpha * np.asarray(p1, np.float64) + beta * np.asarray(
            p2, np.float64
        )
        deviation = float(np.abs(np.asarray(c, np.float64) - expected).max(initial=0))
        worst = max(worst, deviation / max(size, np.finfo(np.float64).tiny))
    # Rounding alone leaves a few ulps of the terms' size; 1e4 ulps is far below the
    # O(1) deviation of a backward that is not linear (a square, an offset, an abs).
    linear = worst <= 1e4 * eps
    layer.backward(g)
    return {
        "forward_repeatable": repeatable,
        "backward_deterministic": deterministic,
        "linear_in_grad_out": (
            linear,
            f"backward(0.75 g1 - 1.25 g2) vs the same combination of backwards: "
            f"{worst:.1e} of their size",
        ),
    }


def _grads_copy(layer: Layer) -> dict[str, NDArray[Any]]:
    return {name: np.array(value) for name, value in layer.grads.items()}


def _network_diagnostics(
    net: MultiTaskNet, X: FloatArray, y_a: ArrayLike, y_b: ArrayLike
) -> dict[str, tuple[bool, str]]:
    running = net.bn.running_mean.copy()
    first_out = net.forward(X)
    first_loss = net.loss(y_a, y_b).total
    again_out = net.forward(X)
    again_loss = net.loss(y_a, y_b).total
    repeatable = _same(
        (first_out, first_loss), (again_out, again_loss), "forward twice, mask held"
    )
    first = net.backward()
    again = net.backward()
    deterministic = _same(first, again, "backward twice on one cache")
    net.bn.running_mean[...] = running
    return {"forward_repeatable": repeatable, "backward_deterministic": deterministic}


def _same(first: Any, again: Any, what: str) -> tuple[bool, str]:
    """Bitwise equality of two nested results."""
    a, b = _leaves(first), _leaves(again)
    equal = len(a) == len(b) and all(
        np.array_equal(u, v, equal_nan=True) for u, v in zip(a, b, strict=True)
    )
    return equal, f"{what}: {'identical' if equal else 'DIFFERENT results'}"


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for key in value for leaf in _leaves(value[key])]
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [np.asarray(value)]


def _float64_twin(net: MultiTaskNet) -> MultiTaskNet:
    twin = MultiTaskNet(
        net.n_in,
        net.n_hidden,
        net.n_shared,
        net.n_classes,
        p_drop=net.dropout.p,
        loss_weights=net.loss_weights,
        dtype=np.float64,
        fused_loss=net.fused_loss,
    )
    twin.set_flat_params(net.flat_params.astype(np.float64))
    twin.bn.running_mean[...] = net.bn.running_mean
    twin.dropout.inverted = net.dropout.inverted
    twin.train(net.training)
    if net.dropout.mask is not None:
        twin.dropout.mask = net.dropout.mask.astype(np.float64)
        twin.dropout.hold = True
    return twin


def _network_kinks(net: MultiTaskNet, X: NDArray[np.float64]) -> dict[str, Any]:
    """Where x_BN = center(X theta_1B^T) + b_1B crosses 0 along a direction.

    x_BN is affine in (theta_1B, b_1B) and does not depend on the other parameters,
    so the crossing points along x + t d are exactly t = -x_BN / (dx_BN/dt). The
    arithmetic repeats the network's own (38), (39), so a zero there is a zero here.
    """
    theta = net.params["theta_1B"]
    b = net.params["b_1B"]
    x_1b = X @ theta.T
    mu = x_1b.mean(axis=0) if net.training else net.bn.running_mean
    x_bn = x_1b - mu
    x_bn += b

    def crossings(change: NDArray[np.float64]) -> NDArray[np.float64]:
        moving = change != 0
        return -x_bn[moving] / change[moving]

    def along_theta(direction: NDArray[np.float64]) -> NDArray[np.float64]:
        change = X @ direction.T
        if net.training:
            change = change - change.mean(axis=0)
        return crossings(change)

    def along_b(direction: NDArray[np.float64]) -> NDArray[np.float64]:
        return crossings(np.broadcast_to(direction, x_bn.shape))

    return {"theta_1B": along_theta, "b_1B": along_b}


def _value_and_gradient(
    f: GradFunction, x: NDArray[np.floating[Any]], check_shape: bool = True
) -> tuple[float, NDArray[Any]]:
    result = f(x)
    try:
        value, grad = result
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`f` must return a pair (value, gradient), got {type(result).__name__}"
        ) from error
    value_array = np.asarray(value)
    if value_array.size != 1:
        raise ValueError(f"`f`'s value must be a scalar, got shape {value_array.shape}")
    grad_array = np.asarray(grad)
    if check_shape and grad_array.shape != x.shape:
        raise ValueError(
            f"`f`'s gradient must have the shape of `x` {x.shape}, "
            f"got {grad_array.shape}"
        )
    if check_shape and grad_array.dtype.kind != "f":
        grad_array = grad_array.astype(np.float64)
    return float(value_array.reshape(())), grad_array
