"""Difference quotients: central and one-sided, Richardson-extrapolated, with their
rounding bounds.

Everything here works along a line: phi(t) = f() with x moved to x0 + t d for one
direction d (a single entry, or a random unit vector). The caller owns x; these helpers
move it and always put it back bit for bit, also when f raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Base step of the difference quotients, in units of max(1, |x_i|).
#: Why 1e-3: two central differences D(h) and D(h/2) combined by Richardson leave a
#: truncation error of about (c h)^4 |f^(5)| / 480, where c is how strongly x enters f
#: (a weight multiplies an input of up to ~4 in the tests: c h ~ 4e-3, error ~ 1e-12),
#: and a rounding error of about 3 * 32 eps |f| / h ~ 2e-11 |f|. At 3e-3 the truncation
#: reached 1e-8 relative on such inputs; at 1e-3 the worst seen is ~2e-9, fifty times
#: below the 1e-7 bar. A plain central difference at its best step (~6e-6) reaches
#: ~1e-10 only where the third derivative is of order one, and far worse elsewhere.
DEFAULT_STEP = 1e-3

#: Rounding model of one evaluation of f: |computed f - f| <= ROUNDING * eps * scale,
#: with `scale` the magnitude of the terms f sums. A handful of roundings per term and
#: pairwise summation stay well inside 32 ulps; more would hide real errors.
ROUNDING = 32.0

EPS64 = float(np.finfo(np.float64).eps)


@dataclass
class Quotient:
    """A numeric derivative along a line.

    Attributes
    ----------
    value : float
        The derivative estimate.
    noise : float
        Bound on its rounding error: sum of |weights| on the f values times the
        rounding bound of one f value.
    truncation : float
        Estimate of its truncation error (Richardson's next column); 0 when not asked.
    step : float
        The largest |t| used.
    """

    value: float
    noise: float
    truncation: float
    step: float

    @property
    def estimate(self) -> float:
        """Truncation estimate plus rounding bound: the quotient's own error."""
        return self.truncation + self.noise


class Line:
    """phi(t) = f() with x[...] = x0 + t d, restoring x0 exactly after each call.

    Parameters
    ----------
    f : callable
        No argument; reads x and returns a float.
    x : ndarray, float64
        Moved in place.
    index : int, optional
        Flat index of a single entry to move (d = e_index); else `direction`.
    direction : ndarray, optional
        The shape of x; entries that are 0 stay untouched.
    counter : list of one int
        Incremented at every evaluation of f.
    scale : float
        Magnitude of the terms f sums, for the rounding bound.
    """

    def __init__(
        self,
        f: Callable[[], float],
        x: NDArray[np.floating[Any]],
        counter: list[int],
        scale: float,
        index: int | None = None,
        direction: NDArray[np.float64] | None = None,
    ) -> None:
        self.f = f
        self.x = x
        self.counter = counter
        self.index = index
        self.direction = direction
        self.support: NDArray[np.intp] | None = None
        if index is None:
            if direction is None:
                raise ValueError("a Line needs an `index` or a `direction`")
            self.support = np.flatnonzero(direction)
            self.saved = x.ravel()[self.support].copy()
            self.d = direction.ravel()[self.support]
        else:
            self.saved = np.array([x.ravel()[index]])
        self.rounding = ROUNDING * EPS64 * scale
        self.largest_value = 0.0
        self._centre: float | None = None

    def __call__(self, t: float) -> tuple[float, float]:
        """Return (phi(t), the step actually taken)."""
        flat = self.x.reshape(-1)
        try:
            if self.support is None:
                x0 = float(self.saved[0])
                moved = x0 + t
                flat[self.index] = moved
                # The representable neighbour differs from x0 + t by rounding; the
                # quotient divides by the step actually taken.
                taken = moved - x0
            else:
                flat[self.support] = self.saved + t * self.d
                taken = t
            self.counter[0] += 1
            value = float(self.f())
        finally:
            if self.support is None:
                flat[self.index] = self.saved[0]
            else:
                flat[self.support] = self.saved
        if not np.isfinite(value):
            raise FloatingPointError(
                f"f returned {value} at a step of {t:g}: the step leaves f's domain; "
                "pass a smaller `h`"
            )
        self.largest_value = max(self.largest_value, abs(value))
        return value, taken

    def rounding_now(self) -> float:
        """Rounding bound of one f value, from `scale` and the largest |f| seen.

        The largest |f| covers an f whose terms grow away from the centre beyond the
        caller's `scale`.
        """
        return max(self.rounding, ROUNDING * EPS64 * self.largest_value)

    def centre(self) -> float:
        """phi(0), evaluated once."""
        if self._centre is None:
            self._centre = self(0.0)[0]
        return self._centre


def central(line: Line, step: float, levels: int = 2) -> Quotient:
    """Richardson-extrapolated central differences along `line`.

    D(s) = (phi(s) - phi(-s)) / 2s has an error in even powers of s, so
    R = (4^j R' - R'') / (4^j - 1) removes them one by one. `levels` = 2 returns
    (4 D(step/2) - D(step)) / 3, O(step^4). `levels` = 3 returns the same combination
    one halving finer, with truncation estimated as |it - the coarser one| / 15.
    """
    ds: list[float] = []
    weights: list[float] = []
    for k in range(levels):
        s = step / 2**k
        plus, s_plus = line(s)
        minus, s_minus = line(-s)
        ds.append((plus - minus) / (s_plus - s_minus))
        weights.append(2.0 / (s_plus - s_minus))
    table = [ds]
    noise_table = [weights]
    for j in range(1, levels):
        factor = 4.0**j
        previous, previous_noise = table[-1], noise_table[-1]
        table.append(
            [
                (factor * previous[k] - previous[k - 1]) / (factor - 1)
                for k in range(1, len(previous))
            ]
        )
        noise_table.append(
            [
                (factor * previous_noise[k] + previous_noise[k - 1]) / (factor - 1)
                for k in range(1, len(previous_noise))
            ]
        )
    rounding = line.rounding_now()
    if levels <= 2:
        value = table[-1][-1]
        return Quotient(value, noise_table[-1][-1] * rounding, 0.0, step)
    # The O(s^4) column at the finest and next-finest levels: their difference is
    # 15/16 of the coarser one's error, so /15 estimates the finer one's error.
    value = table[1][-1]
    truncation = abs(table[1][-1] - table[1][-2]) / 15.0
    return Quotient(value, noise_table[1][-1] * rounding, truncation, step)


def one_sided(line: Line, step: float, side: int, levels: int = 3) -> Quotient:
    """Richardson-extrapolated one-sided differences, on the side `side` (+1 or -1).

    D(s) = (phi(side s) - phi(0)) / (side s) has an error in every power of s; the
    table R = (2^j R' - R'') / (2^j - 1) removes them. Three levels reach O(step^3).
    Used at kinks, where only one side of the point is smooth.
    """
    centre = line.centre()
    ds: list[float] = []
    weights: list[float] = []
    for k in range(levels):
        s = step / 2**k
        value, taken = line(side * s)
        ds.append((value - centre) / taken)
        weights.append(2.0 / abs(taken))
    table, noise = ds, weights
    for j in range(1, levels):
        factor = 2.0**j
        table = [
            (factor * table[k] - table[k - 1]) / (factor - 1)
            for k in range(1, len(table))
        ]
        noise = [
            (factor * noise[k] + noise[k - 1]) / (factor - 1)
            for k in range(1, len(noise))
        ]
    return Quotient(table[-1], noise[-1] * line.rounding_now(), 0.0, step)


def as_work_array(x: Any, name: str) -> NDArray[np.float64]:
    """Refuse anything but a writeable float ndarray (it is perturbed in place)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"`{name}` must be a numpy ndarray (it is perturbed in place), "
            f"got {type(x).__name__}"
        )
    if x.dtype.kind != "f":
        raise TypeError(
            f"`{name}` must have a floating dtype to be perturbed, got {x.dtype}"
        )
    if not x.flags.writeable:
        raise ValueError(f"`{name}` must be writeable: it is perturbed in place")
    return x
