"""Finite differences for the tests, independent of `multitask_bp.gradcheck`.

The numerical gradient of sum(f() * grad_out) with respect to one entry of an array is
a central difference, extrapolated twice (Richardson, then Romberg) from the steps
h, h/2 and h/4:

    D(h) = (f(x + h) - f(x - h)) / 2h = f' + c2 h^2 + c4 h^4 + c6 h^6 + ...
    R(h) = (4 D(h/2) - D(h)) / 3       = f' + O(h^4)
    N    = (16 R(h/2) - R(h)) / 15     = f' + O(h^6)

Plain central differences cannot reach a relative error of 1e-7 reliably: their error
c2 h^2 + eps |f| / h is smallest near h = eps^(1/3) = 6e-6 and then about
eps^(2/3) = 4e-11 times |f| / |f'|, which passes 1e-7 wherever the output is large
beside the derivative (a bias of 1 beside a small weight gradient, BatchNorm's
x / sqrt(var + eps)). Extrapolation removes the h^2 and h^4 terms, which allows the
large step STEP = 1e-2 and so a rounding error eps |f| / h of only 2e-14 |f|. One
extrapolation would leave a truncation of 2e-11 times the fifth derivative, too much
where the first derivative is nearly 0 (a soft target equal to the softmax); the
second leaves about 1e-16. A function that varies on a length s other than 1
(BatchNorm's s = sqrt(var + eps), down to 3e-3) needs the step s * STEP, which callers
pass as `h`, a scalar or an array broadcasting to the perturbed array.

The difference of the outputs is contracted with grad_out entry by entry, rather than
differencing the scalar sum(f() * grad_out): outputs that do not depend on the
perturbed entry then cancel exactly, instead of adding the rounding of a large sum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: The step for a function that varies on a length of 1 (see above).
STEP = 1e-2
#: The bar: the largest relative error a correct gradient may show.
TOLERANCE = 1e-7
#: The rounding error of one output, in units of eps |y|: a few operations, each
#: rounding by half an ulp of an intermediate value that may exceed |y| (BatchNorm's
#: x - mu, a Linear output's terms); 10 covers the layers and losses here, whose
#: outputs take at most a handful of operations.
ROUNDING = 10.0
EPS = float(np.finfo(np.float64).eps)

Index = tuple[int, ...]


def _difference_quotient(
    f: Callable[[], ArrayLike], array: NDArray[Any], index: Index, h: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(f(x + h) - f(x - h)) / 2h at `index`, and max(|f(x + h)|, |f(x - h)|)."""
    original = array[index]
    # A step of (|x| + h) - |x| takes x to x + h and x - h exactly where |x| >= h (both
    # are multiples of ulp(x)): two steps rounded unequally would move the centre by
    # an ulp of x and leave an error f'' ulp(x) that no floor accounts for.
    h = (abs(original) + h) - abs(original)
    try:
        array[index] = original + h
        plus_step = array[index] - original
        plus = np.asarray(f(), dtype=np.float64)
        array[index] = original - h
        minus_step = original - array[index]
        minus = np.asarray(f(), dtype=np.float64)
    finally:
        array[index] = original
    # Divide by the steps actually taken, which differ from h where |x| < h.
    quotient = (plus - minus) / (plus_step + minus_step)
    return quotient, np.maximum(np.abs(plus), np.abs(minus))


def derivative(
    f: Callable[[], ArrayLike],
    array: NDArray[Any],
    index: Index,
    grad_out: ArrayLike = 1.0,
    h: float = STEP,
) -> tuple[float, float]:
    """d sum(f() * grad_out) / d array[index], and the rounding error it may carry.

    `f` takes no argument and reads `array`, which is perturbed in place and restored
    exactly. Each output y is off by about ROUNDING eps |y|, so a quotient at step h
    errs by up to ROUNDING eps sum |y g| / h, with y the larger of the two outputs it
    differences (near a minimum, f(x +- h) far exceeds f(x)). The extrapolation
    (64 D(h/4) - 20 D(h/2) + D(h)) / 45 multiplies that by
    (64 * 4 + 20 * 2 + 1) / 45 < 7, the quotients at h/2 and h/4 erring 2 and 4 times
    as much. The sum runs over every output, an upper bound: outputs that the entry
    does not move cancel exactly.
    """
    g = np.abs(np.asarray(grad_out, dtype=np.float64))
    d1, size = _difference_quotient(f, array, index, h)
    d2, _ = _difference_quotient(f, array, index, h / 2)
    d4, _ = _difference_quotient(f, array, index, h / 4)
    extrapolated = (64 * d4 - 20 * d2 + d1) / 45
    rounding = 7 * ROUNDING * EPS * float(np.sum(size * g)) / h
    return float(np.sum(extrapolated * np.asarray(grad_out))), rounding


def sample_indices(
    shape: tuple[int, ...], max_entries: int | None, seed: int = 0
) -> list[Index]:
    """Every index of `shape`, or `max_entries` of them drawn without replacement."""
    everything = list(np.ndindex(*shape))
    if max_entries is None or len(everything) <= max_entries:
        return everything
    chosen = np.random.default_rng(seed).choice(len(everything), max_entries, False)
    return [everything[i] for i in sorted(chosen)]


def relative_error(
    analytic: ArrayLike, numeric: ArrayLike, floor: ArrayLike
) -> NDArray[np.float64]:
    """|a - n| / max(|a|, |n|, floor), entry by entry (0 where a and n are both 0)."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    denominator = np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)
    difference = np.abs(a - n)
    return np.divide(
        difference,
        denominator,
        out=np.where(difference > 0, np.inf, 0.0),
        where=denominator > 0,
    )


def max_relative_error(
    f: Callable[[], ArrayLike],
    array: NDArray[Any],
    analytic: NDArray[Any],
    grad_out: ArrayLike = 1.0,
    h: ArrayLike = STEP,
    max_entries: int | None = None,
    seed: int = 0,
) -> float:
    """The largest relative error of `analytic` against finite differences of `f`.

    Checks every entry of `array`, or `max_entries` drawn with `seed`, each with its
    step from `h` (broadcast to the shape of `array`).

    The floor of an entry is the rounding error of its numerical derivative (see
    `derivative`) divided by TOLERANCE. A derivative below it cannot be resolved to
    TOLERANCE by any difference of float64 values, whatever the code does (the
    derivative for theta at an input of 1e-259 beside a bias of 1 is lost whole in
    x theta + b); such an entry is judged by its absolute error against the rounding.
    """
    steps = np.broadcast_to(np.asarray(h, dtype=np.float64), array.shape)
    indices = sample_indices(array.shape, max_entries, seed)

    numeric, rounding = zip(
        *(derivative(f, array, i, grad_out, float(steps[i])) for i in indices),
        strict=True,
    )
    chosen = [analytic[i] for i in indices]
    floor = np.array(rounding) / TOLERANCE
    return float(relative_error(chosen, numeric, floor).max(initial=0))


def check_layer(
    layer: Any,
    x: ArrayLike,
    grad_out: ArrayLike,
    h: ArrayLike = STEP,
    max_entries: int | None = None,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Max relative error of the input gradient ("x") and of each parameter gradient.

    Runs `layer.forward(x)` and `layer.backward(grad_out)` once for the analytic
    gradients, then differentiates sum(layer.forward(x) * grad_out) numerically. A
    Dropout layer must have its mask held by the caller.
    """
    x = np.array(x, dtype=np.float64)
    layer.forward(x)
    analytic = {"x": layer.backward(grad_out)}
    analytic.update({name: grad.copy() for name, grad in layer.grads.items()})
    arrays = {"x": x, **layer.params}

    def output() -> ArrayLike:
        return layer.forward(x)

    return {
        name: max_relative_error(
            output, arrays[name], analytic[name], grad_out, h, max_entries, seed
        )
        for name in (names or arrays)
    }


def check_loss(
    loss: Any,
    prediction: ArrayLike,
    target: ArrayLike,
    h: ArrayLike = STEP,
    max_entries: int | None = None,
    seed: int = 0,
) -> float:
    """Max relative error of `loss.backward()` against finite differences."""
    prediction = np.array(prediction, dtype=np.float64)
    loss.forward(prediction, target)
    analytic = loss.backward()

    def value() -> float:
        return loss.forward(prediction, target)

    return max_relative_error(value, prediction, analytic, 1.0, h, max_entries, seed)
