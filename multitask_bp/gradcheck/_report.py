"""The report of a gradient check: one row per checked array, and diagnostics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ParamCheck:
    """The check of one array (an input or a parameter), named `name`.

    Relative error of an entry: |a - n| / max(|a|, |n|, floor), with a the analytic and
    n the numeric value. The floor is max(floor_rel * S, noise / rtol): S is the largest
    |a| or |n| over the array (its gradient scale), and noise the rounding bound of that
    entry's difference quotient, so that an entry too small for the quotient to resolve
    is judged by |a - n| <= noise rather than by a ratio of two roundings.

    Attributes
    ----------
    name, shape
        The array checked.
    mode : str
        "full", "sampled", "fast" or "precise".
    n_entries : int
        Entries compared one by one.
    n_directions : int
        Random directions compared (fast and sampled modes).
    max_abs_error, max_rel_error : float
        Over every entry and direction checked (kink entries excluded, see n_kinks).
    worst_index : tuple of int, or None
        The entry of the largest relative error; None if no entry was compared alone.
    worst_numeric, worst_analytic : float
        Its two values (or the worst direction's, when no entry was compared).
    worst_direction : int or None
        The direction of the largest relative error, when a direction is the worst.
    error_estimate : float or None
        Precise mode: the numeric derivative's own error estimate at the worst entry
        (truncation from Richardson plus the rounding bound).
    max_ratio : float or None
        Precise mode: the largest |a - n| / estimate; the verdict is ratio <= safety.
    n_kinks : int
        Entries whose step crossed a non-differentiable point and were judged by
        one-sided differences (or a shorter step), not counted as failures.
    kink_indices : list of tuple
        The first few such entries.
    vacuous : bool
        Analytic and numeric values are all below the noise floor: the check could not
        tell a right gradient from a zero one.
    passed : bool
    verdict : str
        "pass", "FAIL" or "vacuous" (not a failure, but not evidence either).
    """

    name: str
    shape: tuple[int, ...]
    mode: str
    n_entries: int = 0
    n_directions: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst_index: tuple[int, ...] | None = None
    worst_numeric: float = 0.0
    worst_analytic: float = 0.0
    worst_direction: int | None = None
    error_estimate: float | None = None
    max_ratio: float | None = None
    n_kinks: int = 0
    kink_indices: list[tuple[int, ...]] = field(default_factory=list)
    vacuous: bool = False
    passed: bool = True
    note: str = ""

    @property
    def verdict(self) -> str:
        """ "pass", "FAIL" or "vacuous"."""
        if not self.passed:
            return "FAIL"
        return "vacuous" if self.vacuous else "pass"

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, for json.dumps (infinities become strings)."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "mode": self.mode,
            "n_entries": self.n_entries,
            "n_directions": self.n_directions,
            "max_abs_error": _json_float(self.max_abs_error),
            "max_rel_error": _json_float(self.max_rel_error),
            "worst_index": None if self.worst_index is None else list(self.worst_index),
            "worst_numeric": _json_float(self.worst_numeric),
            "worst_analytic": _json_float(self.worst_analytic),
            "worst_direction": self.worst_direction,
            "error_estimate": _json_float(self.error_estimate),
            "max_ratio": _json_float(self.max_ratio),
            "n_kinks": self.n_kinks,
            "kink_indices": [list(index) for index in self.kink_indices],
            "vacuous": bool(self.vacuous),
            "passed": bool(self.passed),
            "verdict": self.verdict,
            "note": self.note,
        }


@dataclass
class GradcheckReport:
    """The result of one check_* call.

    Attributes
    ----------
    subject : str
        What was checked, e.g. "Linear(n_in=3, n_out=2, bias=True)".
    mode : str
    dtype : str
        The dtype of the analytic gradient.
    rtol : float
        The relative tolerance of the verdicts (full, sampled and fast modes).
    checks : dict of str to ParamCheck
        One per array, in order.
    diagnostics : dict of str to (bool, str)
        Determinism and linearity checks: passed, and a sentence.
    n_evaluations : int
        Forward evaluations spent on difference quotients.
    seconds : float
        Wall time of the check.
    """

    subject: str
    mode: str
    dtype: str
    rtol: float
    checks: dict[str, ParamCheck] = field(default_factory=dict)
    diagnostics: dict[str, tuple[bool, str]] = field(default_factory=dict)
    n_evaluations: int = 0
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True if every array and every diagnostic passed."""
        return all(check.passed for check in self.checks.values()) and all(
            ok for ok, _ in self.diagnostics.values()
        )

    @property
    def failures(self) -> list[str]:
        """Names of the arrays and diagnostics that failed."""
        names = [name for name, check in self.checks.items() if not check.passed]
        return names + [name for name, (ok, _) in self.diagnostics.items() if not ok]

    @property
    def max_rel_error(self) -> float:
        """The largest relative error over every array."""
        return max((c.max_rel_error for c in self.checks.values()), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only: json.dumps(report.to_dict()) works."""
        return {
            "subject": self.subject,
            "mode": self.mode,
            "dtype": self.dtype,
            "rtol": self.rtol,
            "passed": bool(self.passed),
            "n_evaluations": self.n_evaluations,
            "seconds": self.seconds,
            "checks": [check.to_dict() for check in self.checks.values()],
            "diagnostics": {
                name: {"passed": bool(ok), "detail": detail}
                for name, (ok, detail) in self.diagnostics.items()
            },
        }

    def __str__(self) -> str:
        precise = self.mode == "precise"
        header = ["name", "shape", "checked", "max abs", "max rel", "worst index"]
        header += ["numeric", "analytic"]
        header += ["estimate", "ratio"] if precise else []
        header += ["kinks", "verdict"]
        rows = [header]
        for check in self.checks.values():
            checked = f"{check.n_entries}"
            if check.n_directions:
                checked += f"+{check.n_directions}d"
            if check.worst_index is not None:
                where = str(list(check.worst_index))
            elif check.worst_direction is not None:
                where = f"direction {check.worst_direction}"
            else:
                where = "-"
            row = [
                check.name,
                "x".join(str(n) for n in check.shape) or "()",
                checked,
                f"{check.max_abs_error:.2e}",
                f"{check.max_rel_error:.2e}",
                where,
                f"{check.worst_numeric:.10g}",
                f"{check.worst_analytic:.10g}",
            ]
            if precise:
                row.append(_fmt(check.error_estimate))
                row.append(_fmt(check.max_ratio))
            row += [str(check.n_kinks), check.verdict]
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [
            f"gradcheck {self.subject}: mode={self.mode}, dtype={self.dtype}, "
            f"rtol={self.rtol:g}, {self.n_evaluations} evaluations, "
            f"{self.seconds:.3f} s: {'PASSED' if self.passed else 'FAILED'}"
        ]
        for i, row in enumerate(rows):
            lines.append(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            )
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        for check in self.checks.values():
            if check.note:
                lines.append(f"  {check.name}: {check.note}")
        for name, (ok, detail) in self.diagnostics.items():
            lines.append(f"  {name}: {'ok' if ok else 'FAIL'} ({detail})")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def _json_float(value: float | None) -> float | str | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else str(value)
