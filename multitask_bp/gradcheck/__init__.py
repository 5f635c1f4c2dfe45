"""Gradient checking: analytic gradients against difference quotients.

`check_layer`, `check_loss`, `check_network` and `check_gradient` each return a
`GradcheckReport` whose `passed` is the verdict and whose ``str`` is a table. Every
checker takes ``mode``:

- ``"full"``: every entry, by Richardson-extrapolated central differences (4
  evaluations per entry);
- ``"sampled"``: ``n_samples`` entries per array, drawn from ``seed``, and one random
  direction that guards the entries not drawn;
- ``"fast"``: ``n_directions`` random directions per array, a handful of evaluations
  whatever its size; a failure is localized by bisection to the entry behind it;
- ``"precise"``: every entry, with Richardson's estimate of the quotient's own error;
  the verdict compares the discrepancy with that estimate.

The relative error of an entry is |a - n| / max(|a|, |n|, floor), with a analytic,
n numeric and floor = max(floor_rel * S, noise / rtol): S the array's gradient scale,
noise the rounding bound of the quotient. Steps that would cross a kink (ReLU's 0, any
value a layer declares in ``Layer.kinks``) are shortened or replaced by one-sided
differences and counted as kinks, not failures. See docs/gradcheck.md.
"""

from multitask_bp.gradcheck._checkers import (
    KINK_RTOL,
    TOLERANCES,
    check_gradient,
    check_layer,
    check_loss,
    check_network,
    numerical_gradient,
)
from multitask_bp.gradcheck._engine import MODES
from multitask_bp.gradcheck._numeric import DEFAULT_STEP, ROUNDING
from multitask_bp.gradcheck._report import GradcheckReport, ParamCheck

__all__ = [
    "DEFAULT_STEP",
    "KINK_RTOL",
    "MODES",
    "ROUNDING",
    "TOLERANCES",
    "GradcheckReport",
    "ParamCheck",
    "check_gradient",
    "check_layer",
    "check_loss",
    "check_network",
    "numerical_gradient",
]
