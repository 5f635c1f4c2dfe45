"""The comparison of one analytic gradient with difference quotients, in every mode.

A `Target` is one array x that a scalar f() reads, with the analytic df/dx. The engine
moves x in place (restoring it exactly), measures the numeric derivative entry by entry
or along random directions, handles kinks, and returns a `ParamCheck`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from multitask_bp.gradcheck._numeric import Line, Quotient, central, one_sided
from multitask_bp.gradcheck._report import ParamCheck

MODES = ("full", "sampled", "fast", "precise")

#: Signed positions t along a line where a kink is crossed: x0 + t d is on the kink.
KinkFinder = Callable[[NDArray[np.float64]], NDArray[np.float64]]

#: How many kink entries a report lists by index.
LISTED_KINKS = 10
#: How many non-finite analytic entries fast and sampled modes check one by one.
NONFINITE_ALONE = 10
#: A kink within SNAP times the step of x is treated as under x (one-sided quotients).
SNAP = 1e-3
#: A whole array is vacuous when every |a| and |n| is within this factor of the
#: quotients' rounding bound: the numbers cannot tell the gradient from zero.
VACUOUS_FACTOR = 100.0


@dataclass
class Target:
    """One array to check.

    Attributes
    ----------
    name : str
    x : ndarray, float64
        Read by f and moved in place.
    analytic : ndarray, float64, the shape of x
    kinks : KinkFinder, optional
        Given a direction d (the shape of x), the signed t where x + t d crosses a
        non-differentiable point of f; None when f has no known kink in x.
    domain : (low, high), optional
        Open interval every entry of x must stay in (probabilities: (0, 1)).
    near_kink : callable, optional
        near_kink(r) is the boolean mask of the entries within r of a kink of their
        own (element-wise kinks); random directions leave them out and they are
        checked one by one instead.
    """

    name: str
    x: NDArray[np.floating[Any]]
    analytic: NDArray[np.float64]
    kinks: KinkFinder | None = None
    domain: tuple[float, float] | None = None
    near_kink: Callable[[float], NDArray[np.bool_]] | None = None


@dataclass
class Options:
    """Settings shared by every target of one check (see the checkers' docstrings)."""

    mode: str
    h: float
    rtol: float
    floor_rel: float
    kink_rtol: float
    n_samples: int
    n_directions: int
    seed: int
    safety: float
    scale: float


@dataclass
class _Measure:
    analytic: float
    quotient: Quotient
    kink: bool  # a step would have crossed a kink
    exact_kink: bool  # x sits on the kink: judged by one-sided differences
    index: int | None = None
    direction: int | None = None
    vector: NDArray[np.float64] | None = None
    rel: float = 0.0
    failed: bool = False


class Engine:
    """Runs the checks of one report over a shared evaluation counter."""

    def __init__(self, f: Callable[[], float], options: Options) -> None:
        if options.mode not in MODES:
            raise ValueError(
                f"`mode` must be one of {', '.join(MODES)}, got {options.mode!r}"
            )
        self.f = f
        self.options = options
        self.counter = [0]

    # -- measuring ------------------------------------------------------------------

    def _line(
        self,
        target: Target,
        index: int | None = None,
        direction: NDArray[np.float64] | None = None,
    ) -> Line:
        return Line(
            self.f, target.x, self.counter, self.options.scale, index, direction
        )

    def _base_step(
        self, target: Target, index: int | None, direction: NDArray[np.float64] | None
    ) -> float:
        h = self.options.h
        flat = target.x.reshape(-1)
        if index is not None:
            values = flat[index : index + 1]
            d = np.ones(1)
        else:
            support = np.flatnonzero(np.asarray(direction))
            values = flat[support]
            d = np.asarray(direction).reshape(-1)[support]
        step = h * max(1.0, float(np.max(np.abs(values), initial=0.0)))
        if target.domain is not None:
            low, high = target.domain
            room = np.minimum(values - low, high - values) / np.abs(d)
            if (room <= 0).any():
                raise ValueError(
                    f"`{target.name}` has an entry on the boundary of its domain "
                    f"({low}, {high}); no difference quotient can be taken there"
                )
            # A domain boundary is usually a singularity (log p at p = 0), where the
            # derivatives grow like powers of 1/room: a step of h * room keeps the
            # truncation at h^4 relative, as far from the boundary as anywhere else.
            step = min(step, h * float(room.min()))
        return step

    def _kink_positions(
        self, target: Target, index: int | None, direction: NDArray[np.float64] | None
    ) -> NDArray[np.float64]:
        if target.kinks is None:
            return np.empty(0)
        if direction is None:
            direction = np.zeros(target.x.shape)
            direction.reshape(-1)[index] = 1.0
        return np.asarray(target.kinks(direction), dtype=np.float64).reshape(-1)

    def _measure(
        self,
        target: Target,
        analytic: float,
        index: int | None = None,
        direction: NDArray[np.float64] | None = None,
        levels: int = 2,
    ) -> _Measure:
        line = self._line(target, index, direction)
        step = self._base_step(target, index, direction)
        positions = np.abs(self._kink_positions(target, index, direction))
        # A kink closer than SNAP * step counts as under x: shortening the central
        # step below it would drown the quotient in rounding.
        # Along a direction, only a kink exactly under x is: the others are passed
        # by shortening the step (the entries near a kink are taken out of the
        # direction beforehand where the target says which they are).
        snap = SNAP * step if index is not None else 0.0
        at_kink = positions <= snap
        nearest = float(positions[~at_kink].min(initial=np.inf))
        if at_kink.any():
            # On the kink: each side is smooth up to the next kink, so compare with
            # both one-sided derivatives, taken short of that next kink.
            side_step = min(step, nearest / 2)
            quotient = self._closer_one_sided(line, side_step, analytic)
            return _Measure(analytic, quotient, True, True, index)
        if nearest <= step:
            # A step would cross a kink: shorten it to stay on the smooth side. The
            # rounding bound grows as 1/step and the floor with it.
            quotient = central(line, nearest / 2, levels)
            return _Measure(analytic, quotient, True, False, index)
        return _Measure(analytic, central(line, step, levels), False, False, index)

    def _closer_one_sided(self, line: Line, step: float, analytic: float) -> Quotient:
        plus = one_sided(line, step, +1)
        minus = one_sided(line, step, -1)
        return min(plus, minus, key=lambda q: abs(q.value - analytic))

    # -- judging --------------------------------------------------------------------

    def _floor(self, measure: _Measure, scale: float) -> float:
        o = self.options
        return max(
            o.floor_rel * scale,
            measure.quotient.noise / o.rtol,
            np.finfo(np.float64).tiny,
        )

    def _judge(self, target: Target, measures: list[_Measure], scale: float) -> None:
        """Set rel and failed on each measure; try one-sided quotients on failures."""
        o = self.options
        for m in measures:
            n = m.quotient.value
            floor = self._floor(m, scale)
            m.rel = float(abs(m.analytic - n) / max(abs(m.analytic), abs(n), floor))
            # Written as `not (error <= bound)` so that a NaN analytic value fails:
            # every comparison with NaN is False.
            if m.exact_kink:
                m.failed = not m.rel <= o.kink_rtol
            elif o.mode == "precise":
                # The estimate covers the quotient; floor_rel * scale the analytic
                # value's own rounding, which no step size changes.
                allowed = o.safety * m.quotient.estimate + o.floor_rel * scale
                m.failed = not abs(m.analytic - n) <= allowed
            else:
                m.failed = not m.rel <= o.rtol
            if m.failed and not m.exact_kink:
                self._kink_after_the_fact(target, m, scale)

    def _kink_after_the_fact(self, target: Target, m: _Measure, scale: float) -> None:
        """A failing quotient may straddle a kink nobody declared: if the one-sided
        derivatives disagree with each other and the analytic value matches one of
        them, the entry is at a kink, not wrong."""
        o = self.options
        if m.direction is not None:
            return  # a failing direction is localized instead; see _localize
        line = self._line(target, m.index)
        step = m.quotient.step
        plus = one_sided(line, step, +1)
        minus = one_sided(line, step, -1)
        floor = self._floor(m, scale)
        gap = abs(plus.value - minus.value) / max(
            abs(plus.value), abs(minus.value), floor
        )
        if gap <= o.kink_rtol:
            return
        best = min(plus, minus, key=lambda q: abs(q.value - m.analytic))
        rel = abs(m.analytic - best.value) / max(
            abs(m.analytic), abs(best.value), floor
        )
        if rel <= o.kink_rtol:
            m.quotient, m.kink, m.exact_kink, m.rel, m.failed = (
                best,
                True,
                True,
                rel,
                False,
            )

    # -- modes ----------------------------------------------------------------------

    def check(self, target: Target, position: int) -> ParamCheck:
        """Check one target in the engine's mode; `position` varies its random draws."""
        o = self.options
        rng = np.random.default_rng([o.seed, position])
        size = target.x.size
        result = ParamCheck(target.name, tuple(target.x.shape), o.mode)
        entries: list[_Measure] = []
        directions: list[_Measure] = []
        if size == 0:
            result.vacuous = True
            result.note = "empty array: nothing to check"
            return result

        if o.mode in ("full", "precise"):
            levels = 3 if o.mode == "precise" else 2
            entries = [self._entry(target, i, levels) for i in range(size)]
        elif o.mode == "sampled":
            chosen = np.sort(rng.choice(size, min(o.n_samples, size), replace=False))
            entries = [self._entry(target, int(i)) for i in chosen]
            if size > len(chosen):
                # One direction over every entry guards the entries not drawn.
                directions = self._directions(target, rng, 1)
        else:  # fast
            directions = self._directions(target, rng, o.n_directions)
        if directions:
            # Entries near their own kink are left out of the directions, and a
            # non-finite analytic entry poisons every direction through it (bisection
            # cannot follow a NaN): both are checked one by one.
            alone = np.flatnonzero(~np.isfinite(target.analytic))[:NONFINITE_ALONE]
            if target.near_kink is not None:
                alone = np.union1d(alone, np.flatnonzero(target.near_kink(o.h)))
            done = {m.index for m in entries}
            entries += [self._entry(target, int(i)) for i in alone if i not in done]

        scale = _scale(entries, directions)
        self._judge(target, entries, scale)
        self._judge(target, directions, scale)
        failing = [d for d in directions if d.failed]
        if failing:
            entries += self._localize(target, failing, rng, scale, entries)
        self._summarize(result, entries, directions, scale)
        return result

    def _entry(self, target: Target, index: int, levels: int = 2) -> _Measure:
        analytic = float(target.analytic.reshape(-1)[index])
        return self._measure(target, analytic, index=index, levels=levels)

    def _directions(
        self, target: Target, rng: np.random.Generator, count: int
    ) -> list[_Measure]:
        measures = []
        near = None
        if target.near_kink is not None:
            near = target.near_kink(self.options.h)
        for k in range(count):
            v = rng.standard_normal(target.x.shape)
            if near is not None:
                v[near] = 0.0
                if not v.any():
                    break
            v /= np.linalg.norm(v)
            analytic = float(np.vdot(target.analytic, v))
            measure = self._measure(target, analytic, direction=v)
            measure.direction = k
            measure.vector = v
            measures.append(measure)
        return measures

    def _localize(
        self,
        target: Target,
        failing: list[_Measure],
        rng: np.random.Generator,
        scale: float,
        known: list[_Measure],
    ) -> list[_Measure]:
        """Name the entries behind failing directions.

        The discrepancy along v, e(S) = sum over i in S of (a_i - df/dx_i) v_i, adds
        over disjoint sets of entries S; halving S and following the half with the
        larger |e| ends, after log2(size) directional quotients, at the entry that
        contributes most. Random sampled entries are added beside it.
        """
        o = self.options
        found: list[_Measure] = []
        seen = {m.index for m in known}
        for failed in failing[:2]:
            v = failed.vector
            if v is None:
                continue
            support = np.flatnonzero(v)
            error = failed.analytic - failed.quotient.value
            while support.size > 1:
                half = support[: support.size // 2]
                masked = np.zeros(v.shape)
                masked.reshape(-1)[half] = v.reshape(-1)[half]
                analytic = float(np.vdot(target.analytic, masked))
                quotient = self._measure(target, analytic, direction=masked).quotient
                error_half = analytic - quotient.value
                if abs(error_half) >= abs(error - error_half):
                    support, error = half, error_half
                else:
                    support, error = support[support.size // 2 :], error - error_half
            index = int(support[0])
            if index not in seen:
                seen.add(index)
                found.append(self._entry(target, index))
        drawn = rng.permutation(target.x.size)[: o.n_samples]
        extra = [i for i in drawn if i not in seen]
        found += [self._entry(target, int(i)) for i in extra]
        self._judge(target, found, max(scale, _scale(found, [])))
        return found

    def _summarize(
        self,
        result: ParamCheck,
        entries: list[_Measure],
        directions: list[_Measure],
        scale: float,
    ) -> None:
        o = self.options
        result.n_entries = len(entries)
        result.n_directions = len(directions)
        kinks = [m for m in entries if m.kink]
        result.n_kinks = len(kinks) + sum(1 for d in directions if d.kink)
        result.kink_indices = [
            _unravel(m.index, result.shape) for m in kinks[:LISTED_KINKS]
        ]
        # Kink entries judged by one-sided quotients stay out of the maxima unless
        # they failed: then they are the news.
        judged = [m for m in entries + directions if m.failed or not m.exact_kink]
        result.passed = not any(m.failed for m in entries + directions)
        result.vacuous = bool(
            all(
                max(abs(m.analytic), abs(m.quotient.value))
                <= VACUOUS_FACTOR * m.quotient.noise
                for m in entries + directions
            )
        )
        if judged:
            result.max_abs_error = max(
                abs(m.analytic - m.quotient.value) for m in judged
            )
            # The worst entry is named whenever an entry was compared alone.
            pool = [m for m in judged if m.index is not None] or judged
            worst = max(pool, key=lambda m: (m.failed, m.rel))
            result.max_rel_error = max(m.rel for m in judged)
            result.worst_numeric = worst.quotient.value
            result.worst_analytic = worst.analytic
            if worst.index is not None:
                result.worst_index = _unravel(worst.index, result.shape)
            else:
                result.worst_direction = worst.direction
            if o.mode == "precise":
                result.error_estimate = worst.quotient.estimate
                result.max_ratio = max(
                    abs(m.analytic - m.quotient.value)
                    / max(m.quotient.estimate, np.finfo(np.float64).tiny)
                    for m in judged
                )
        failed_directions = [d for d in directions if d.failed]
        if failed_directions and not any(m.failed for m in entries):
            result.note = (
                "a random direction disagrees but the localized entries agree: the "
                "error is spread thinly over many entries"
            )
        elif result.vacuous:
            result.note = (
                "analytic and numeric values are all near zero: this check cannot "
                "tell the gradient from zero"
            )


def _scale(entries: list[_Measure], directions: list[_Measure]) -> float:
    values = [max(abs(m.analytic), abs(m.quotient.value)) for m in entries + directions]
    return max(values, default=0.0)


def _unravel(index: int | None, shape: tuple[int, ...]) -> tuple[int, ...]:
    if index is None:
        return ()
    return tuple(int(i) for i in np.unravel_index(index, shape))
