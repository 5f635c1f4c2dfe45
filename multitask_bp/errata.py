"""The course notes' wrong backward formulas, transcribed literally and measured.

The course notes this package's derivation started from get several chain-rule steps
of the network's backward wrong. Each such step is an `Erratum`: the formula as the
notes write it, what is wrong, the correction (equation numbers of
docs/derivation.md), the parameters whose gradient it changes, and a function that
computes the gradients with the notes' formula taken literally.

Each literal function is the correct backward (47)-(62) with exactly one factor
replaced by the notes' version, so that each mistake is measured on its own. That
backward is written out again here, in `_chain`, apart from `network.py`: the
literal formulas live only in this module and nothing else imports them.

`run_errata(seed)` builds a seeded random case, and for every erratum measures the
relative error, against central finite differences of the loss, of the literal
gradients and of ours (`MultiTaskNet.backward`). Typos that do not change a
gradient are listed in `TYPOS`, without code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np

from multitask_bp._checks import FloatArray
from multitask_bp.network import PARAMETERS, MultiTaskNet

#: A literal gradient counts as wrong above this relative error.
FAIL_ABOVE = 1e-2
#: Our gradient counts as right at or below this relative error.
PASS_AT = 1e-7
#: Step of the central differences over the parameters: the truncation error
#: (about h^2 times the third derivative) and the rounding error (about 1e-16 / h)
#: are then both near 1e-10, far below PASS_AT.
STEP = 1e-5
#: The seeded case keeps every ReLU input at least this far from 0, so that no
#: finite difference straddles the kink.
RELU_MARGIN = 0.05

PARAMETER_NAMES: tuple[str, ...] = tuple(name for name, _, _ in PARAMETERS)


# -- the forward values the backward needs ------------------------------------------


@dataclass(frozen=True)
class _Forward:
    """What the backward reads, taken from a network after forward and loss."""

    X: FloatArray  # (m, n_in)
    z_1a: FloatArray  # (m, n_hidden)
    mask: FloatArray  # (m, n_hidden)
    x_dp: FloatArray  # (m, n_hidden)
    y_a: FloatArray  # (m, n_shared)
    y_a_true: FloatArray  # (m, n_shared)
    relu_positive: np.ndarray  # (m, n_shared), bool: x_BN > 0
    h: FloatArray  # (m, n_shared)
    y_b: FloatArray  # (m, n_classes)
    y_b_true: FloatArray  # (m, n_classes), rows summing to 1
    theta_2a: FloatArray  # (n_shared, n_hidden)
    theta_2b: FloatArray  # (n_classes, n_shared)
    w_a: float
    w_b: float

    @property
    def m(self) -> int:
        return int(self.X.shape[0])

    @property
    def a_bn(self) -> FloatArray:
        # Not cached by the network; exact from (41), h = y_hat_A + a_BN.
        return self.h - self.y_a


def _read_forward(net: MultiTaskNet) -> _Forward:
    """Collect the cached forward values of `net`'s last forward and loss.

    The layers' caches are private attributes; this module reads them deliberately,
    since recomputing them would test a second forward instead of the one the
    backward differentiates.
    """
    if not isinstance(net, MultiTaskNet):
        raise TypeError(f"`net` must be a MultiTaskNet, got {type(net).__name__}")
    if net._losses is None:
        raise RuntimeError(
            "the errata need a network after forward and loss: call net.forward(X) "
            "and net.loss(y_a_true, y_b_true) first"
        )
    if not net.training or net.dropout._mask_in_use is None:
        raise ValueError(
            "the errata differentiate the training forward: call net.train() before "
            "net.forward(X)"
        )
    y_a, y_b = cast(tuple[FloatArray, FloatArray], net._forwarded)
    params = net.params
    return _Forward(
        X=cast(FloatArray, net.fc_1a._x),
        z_1a=cast(FloatArray, net.sine._x),
        mask=net.dropout._mask_in_use,
        x_dp=cast(FloatArray, net.fc_2a._x),
        y_a=y_a,
        y_a_true=y_a - net.loss_a._residual,
        relu_positive=cast(np.ndarray, net.relu._positive),
        h=cast(FloatArray, net.fc_2b._x),
        y_b=y_b,
        y_b_true=cast(FloatArray, net.loss_b._target),
        theta_2a=params["theta_2A"],
        theta_2b=params["theta_2B"],
        w_a=net.loss_weights[0],
        w_b=net.loss_weights[1],
    )


def _chain(
    fw: _Forward,
    *,
    grad_y_b: FloatArray | None = None,
    h_for_theta_2b: FloatArray | None = None,
    relu_slope: FloatArray | None = None,
    centre: bool = True,
    grad_y_a_own: FloatArray | None = None,
    cos_in_task_b_term_of_theta_1a: bool = True,
) -> dict[str, FloatArray]:
    """The backward (47)-(62), with one keyword per factor the notes get wrong.

    Every keyword's default is the correct factor, so ``_chain(fw)`` is our
    gradient. `grad_y_b` (m, n_classes) is dL_B/dy_hat_B, taken through the softmax
    (11) instead of the fused (47); `grad_y_a_own` (m, n_shared) is dL_A/dy_hat_A,
    task A's own term of (51), before the weight w_A.
    """
    m = fw.m

    if grad_y_b is None:
        grad_z_2b = fw.w_b * (fw.y_b - fw.y_b_true) / m  # (47)
    else:
        g = fw.w_b * grad_y_b
        grad_z_2b = fw.y_b * (g - (g * fw.y_b).sum(axis=1, keepdims=True))  # (11)
    h = fw.h if h_for_theta_2b is None else h_for_theta_2b
    grad_theta_2b = grad_z_2b.T @ h  # (48)
    grad_b_2b = grad_z_2b.sum(axis=0)  # (49)
    grad_h = grad_z_2b @ fw.theta_2b  # (50)

    own = (fw.y_a - fw.y_a_true) / m if grad_y_a_own is None else grad_y_a_own
    own = fw.w_a * own
    grad_y_a = own + grad_h  # (51)

    slope = fw.relu_positive if relu_slope is None else relu_slope
    grad_x_bn = grad_h * slope  # (52)
    grad_b_1b = grad_x_bn.sum(axis=0)  # (53)
    grad_x_1b = grad_x_bn - grad_x_bn.mean(axis=0) if centre else grad_x_bn  # (54)
    grad_theta_1b = grad_x_1b.T @ fw.X  # (55)

    grad_theta_2a = grad_y_a.T @ fw.x_dp  # (56)
    grad_b_2a = grad_y_a.sum(axis=0)  # (57)
    grad_x_dp = grad_y_a @ fw.theta_2a  # (58)
    grad_a_1a = grad_x_dp * fw.mask  # (59)
    cos_z_1a = np.cos(fw.z_1a)
    grad_z_1a = grad_a_1a * cos_z_1a  # (60)
    if cos_in_task_b_term_of_theta_1a:
        grad_z_1a_for_theta = grad_z_1a
    else:
        # The tasks' terms are kept apart here only because the notes' (41) treats
        # them differently; (51) adds them before this point. Their b_1A, (42),
        # keeps the cosine in both terms, so (62) below is unchanged.
        own_term = (own @ fw.theta_2a) * fw.mask * cos_z_1a
        task_b_term = (grad_h @ fw.theta_2a) * fw.mask
        grad_z_1a_for_theta = own_term + task_b_term
    grad_theta_1a = grad_z_1a_for_theta.T @ fw.X  # (61)
    grad_b_1a = grad_z_1a.sum(axis=0)  # (62)

    return {
        "theta_1A": grad_theta_1a,
        "b_1A": grad_b_1a,
        "theta_2A": grad_theta_2a,
        "b_2A": grad_b_2a,
        "theta_1B": grad_theta_1b,
        "b_1B": grad_b_1b,
        "theta_2B": grad_theta_2b,
        "b_2B": grad_b_2b,
    }


# -- the notes' formulas, literally ---------------------------------------------------


def literal_cross_entropy_batch_sum(net: MultiTaskNet) -> dict[str, FloatArray]:
    """Notes (18): dL/dy_hat_B = -(1/m) sum_i y_Bi / y_hat_Bi, the same for every row.

    The sum over the batch is taken inside the derivative with respect to one
    sample's prediction, so every sample receives the batch's summed term, which is
    then taken through the softmax Jacobian (notes (19), our (11)) of each sample.
    """
    fw = _read_forward(net)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(fw.y_b_true > 0, fw.y_b_true / fw.y_b, 0.0)
    summed = -ratio.sum(axis=0) / fw.m  # (n_classes,)
    return _chain(fw, grad_y_b=np.broadcast_to(summed, fw.y_b.shape))


def literal_target_in_theta_2b(net: MultiTaskNet) -> dict[str, FloatArray]:
    """Notes (20): dz_2B/dtheta_2B = y_A + a_BN, the target y_A for the prediction."""
    fw = _read_forward(net)
    return _chain(fw, h_for_theta_2b=fw.y_a_true + fw.a_bn)


def literal_relu_slope_one(net: MultiTaskNet) -> dict[str, FloatArray]:
    """Notes (25): da_BN/dx_BN = 1, the ReLU passing every gradient through."""
    fw = _read_forward(net)
    return _chain(fw, relu_slope=np.ones_like(fw.h))


def literal_centring_identity(net: MultiTaskNet) -> dict[str, FloatArray]:
    """Notes (26): dx_BN/dx_1B = 1, the batch mean treated as a constant."""
    fw = _read_forward(net)
    return _chain(fw, centre=False)


def literal_mse_batch_sum(net: MultiTaskNet) -> dict[str, FloatArray]:
    """Notes (32): dL_A/dy_hat_A = (1/m) sum_i (y_hat_Ai - y_Ai), the same in each row.

    Every sample receives the batch's mean residual instead of its own residual / m.
    """
    fw = _read_forward(net)
    mean_residual = (fw.y_a - fw.y_a_true).sum(axis=0) / fw.m  # (n_shared,)
    return _chain(fw, grad_y_a_own=np.broadcast_to(mean_residual, fw.y_a.shape))


def literal_missing_cosine(net: MultiTaskNet) -> dict[str, FloatArray]:
    """Notes (41): task B's term of dL/dtheta_1A without da_1A/dz_1A = cos(z_1A)."""
    fw = _read_forward(net)
    return _chain(fw, cos_in_task_b_term_of_theta_1a=False)


# -- the records ----------------------------------------------------------------------


@dataclass(frozen=True)
class Erratum:
    """A wrong chain-rule step of the notes, with the means to run it literally.

    Attributes
    ----------
    id : str
        A short name, E1, E2, ...
    title : str
        What is wrong, in a few words.
    notes_equations : str
        The notes' equation number(s) holding the formula.
    as_written : str
        The formula as the notes write it (LaTeX, in the notes' column-vector form).
    correction : str
        The correct formula, citing docs/derivation.md.
    affects : tuple of str
        The parameters whose gradient the literal formula changes.
    literal : callable
        net -> gradients of every parameter with the notes' formula, for a network
        after forward and loss in training mode.
    """

    id: str
    title: str
    notes_equations: str
    as_written: str
    correction: str
    affects: tuple[str, ...]
    literal: Callable[[MultiTaskNet], dict[str, FloatArray]]


@dataclass(frozen=True)
class Typo:
    """A slip of the notes that changes no gradient: listed, not run."""

    notes_equations: str
    as_written: str
    should_read: str


ERRATA: tuple[Erratum, ...] = (
    Erratum(
        id="E1",
        title="batch sum inside the cross-entropy's per-sample derivative",
        notes_equations="(18)",
        as_written=(
            r"\frac{\partial L}{\partial \hat{y}_B} = -\frac{1}{m} \sum_{i=1}^m "
            r"\frac{y_{Bi}}{\hat{y}_{Bi}}"
        ),
        correction=(
            "each sample keeps its own term: dL/dy_hat_B = -y_B / (m y_hat_B), "
            "(31); through the softmax (11) this is (47)"
        ),
        affects=PARAMETER_NAMES,
        literal=literal_cross_entropy_batch_sum,
    ),
    Erratum(
        id="E2",
        title="target y_A where the prediction y_hat_A enters theta_2B's gradient",
        notes_equations="(20)",
        as_written=r"\frac{\partial z_{2B}}{\partial \theta_{2B}} = y_A + a_{BN}",
        correction="dtheta_2B = dz_2B^T h with h = y_hat_A + a_BN, (41) and (48)",
        affects=("theta_2B",),
        literal=literal_target_in_theta_2b,
    ),
    Erratum(
        id="E3",
        title="ReLU's derivative taken as 1",
        notes_equations="(25), used in (29)",
        as_written=r"\frac{\partial a_{BN}}{\partial x_{BN}} = 1",
        correction="dx_BN = dh * 1[x_BN > 0], (8) and (52)",
        affects=("theta_1B", "b_1B"),
        literal=literal_relu_slope_one,
    ),
    Erratum(
        id="E4",
        title="batch mean of the centring treated as a constant",
        notes_equations="(26), used in (29)",
        as_written=r"\frac{\partial x_{BN}}{\partial x_{1B}} = 1",
        correction=(
            "dx_1B = dx_BN - (1/m) sum_i dx_BN_i, i.e. (I - 11^T/m) dx_BN: (18) "
            "and (54)"
        ),
        affects=("theta_1B",),
        literal=literal_centring_identity,
    ),
    Erratum(
        id="E5",
        title="batch sum inside the squared error's per-sample derivative",
        notes_equations="(32)",
        as_written=(
            r"\frac{\partial L_A}{\partial \hat{y}_A} = \frac{1}{m} \sum_{i=1}^m "
            r"\hat{y}_{Ai} - y_{Ai}"
        ),
        correction="dL_A/dy_hat_A = (y_hat_A - y_A)/m row by row, (29) and (51)",
        affects=("theta_1A", "b_1A", "theta_2A", "b_2A"),
        literal=literal_mse_batch_sum,
    ),
    Erratum(
        id="E6",
        title="cos(z_1A) missing from task B's term of dL/dtheta_1A",
        notes_equations="(41)",
        as_written=(
            r"\frac{\partial L}{\partial \theta_{1A}} = \ldots + "
            r"\frac{\partial L}{\partial \hat{y}_B} "
            r"\frac{\partial \hat{y}_B}{\partial z_{2B}} "
            r"\frac{\partial z_{2B}}{\partial \hat{y}_A} "
            r"\frac{\partial \hat{y}_A}{\partial x_{DP}} "
            r"\frac{\partial x_{DP}}{\partial a_{1A}} "
            r"\frac{\partial z_{1A}}{\partial \theta_{1A}}"
        ),
        correction="both tasks' terms pass through cos z_1A: (51), (60) and (61)",
        affects=("theta_1A",),
        literal=literal_missing_cosine,
    ),
)

TYPOS: tuple[Typo, ...] = (
    Typo("(6), (37)", "dy_i/dx_j = M_j, no case i != j", "M_j delta_ij, diagonal (13)"),
    Typo("(7)", "e^{j_j} in the off-diagonal numerator", "e^{z_j}, as in (10)"),
    Typo("after (10)", "the product o 'in formula (3)'", "introduced in (10)"),
    Typo("(19)", "y_i(1 - y_i), -y_i y_j with the target's letter", "y_hat_B, (10)"),
    Typo("(22)", "dL/dtheta_2B never written (21 jumps to 23)", "(48)"),
    Typo("(29)", "two equations under one number; (30) missing", "(53), (55)"),
    Typo("(33)", "dy_hat_A/dy_hat_A, a line with no right-hand side", "delete"),
    Typo("(34)", "dz_2A/dy_hat_A (there is no z_2A)", "dz_2B/dy_hat_A = theta_2B"),
    Typo("(40)", "db_1A/dx_DP = theta_2A", "dy_hat_A/dx_DP = theta_2A, (58)"),
    Typo("(33), (40), (42)", "numbers used 3, 4 and 2 times", "one number each"),
    Typo("(1)-(2)", "BatchNorm's input gradient never derived", "(26)"),
    Typo("(18), (31)", "L_B and L = L_A + L_B never defined", "(45), (46)"),
)


# -- measuring ----------------------------------------------------------------------


def relative_error(computed: FloatArray, reference: FloatArray) -> float:
    """||computed - reference||_2 / max(||reference||_2, 1e-12), over all entries.

    The floor keeps the ratio finite for a reference of exactly zero.
    """
    difference = np.linalg.norm(np.ravel(computed) - np.ravel(reference))
    return float(difference / max(float(np.linalg.norm(reference)), 1e-12))


def loss_gradient_by_differences(
    net: MultiTaskNet,
    X: FloatArray,
    y_a_true: FloatArray,
    y_b_true: FloatArray,
    step: float = STEP,
) -> dict[str, FloatArray]:
    """Central differences of net's total loss over every parameter, mask held.

    Perturbs `net.flat_params` one entry at a time and restores it exactly; at the
    end runs forward and loss once more at the unperturbed parameters, so that the
    network's caches describe the original point again. Needs a training forward
    first (the dropout mask to hold).
    """
    flat = net.flat_params
    gradient = np.empty_like(flat)

    def total() -> float:
        net.forward(X)
        return net.loss(y_a_true, y_b_true).total

    with net.dropout.held_mask():
        for k in range(flat.size):
            original = flat[k]
            flat[k] = original + step
            plus = total()
            flat[k] = original - step
            minus = total()
            flat[k] = original
            gradient[k] = (plus - minus) / (2 * step)
        total()

    grads: dict[str, FloatArray] = {}
    offset = 0
    for name, array in net.params.items():
        grads[name] = gradient[offset : offset + array.size].reshape(array.shape)
        offset += array.size
    return grads


@dataclass(frozen=True)
class ErratumResult:
    """One erratum measured: relative errors per parameter, literal and ours."""

    erratum: Erratum
    literal_errors: dict[str, float]
    ours_errors: dict[str, float]

    @property
    def literal_error(self) -> float:
        """The largest relative error of the literal formula over `affects`."""
        return max(self.literal_errors[name] for name in self.erratum.affects)

    @property
    def ours_error(self) -> float:
        """The largest relative error of our gradient over `affects`."""
        return max(self.ours_errors[name] for name in self.erratum.affects)

    @property
    def as_expected(self) -> bool:
        """The literal formula fails, ours passes, and the list `affects` is exact."""
        unaffected = [n for n in PARAMETER_NAMES if n not in self.erratum.affects]
        return (
            min(self.literal_errors[name] for name in self.erratum.affects) > FAIL_ABOVE
            and self.ours_error <= PASS_AT
            and all(self.literal_errors[name] <= PASS_AT for name in unaffected)
        )


@dataclass(frozen=True)
class ErrataCase:
    """A network, its batch and targets, after one training forward and loss."""

    net: MultiTaskNet
    X: FloatArray
    y_a_true: FloatArray
    y_b_true: FloatArray
    seed: int | None = None

    def describe(self) -> str:
        net = self.net
        return (
            f"seed {self.seed}: m={self.X.shape[0]}, n_in={net.n_in}, "
            f"n_hidden={net.n_hidden}, n_shared={net.n_shared}, "
            f"n_classes={net.n_classes}, p_drop={net.dropout.p} (mask held), "
            f"soft targets y_b_true, column means of X "
            f"{np.array2string(self.X.mean(axis=0), precision=2)}"
        )


@dataclass(frozen=True)
class ErrataReport:
    """Every erratum measured on one case, and the typos.

    `passed` is True when every literal formula fails (relative error above
    FAIL_ABOVE on each parameter it affects, at most PASS_AT on the others) and our
    gradient passes (at most PASS_AT). `str(report)` is a table.
    """

    case: str
    results: tuple[ErratumResult, ...]
    typos: tuple[Typo, ...] = TYPOS

    @property
    def passed(self) -> bool:
        return all(result.as_expected for result in self.results)

    def __str__(self) -> str:
        header = (
            f"{'erratum':<9}{'notes':<20}{'parameters affected':<32}"
            f"{'literal':>10}{'ours':>10}  verdict"
        )
        lines = [
            f"The course notes' errata, measured on {self.case}.",
            "Relative error ||g - g_fd|| / ||g_fd|| against central differences, the "
            "largest over the parameters affected.",
            "",
            header,
            "-" * len(header),
        ]
        for result in self.results:
            e = result.erratum
            affects = (
                "all eight"
                if set(e.affects) == set(PARAMETER_NAMES)
                else ", ".join(e.affects)
            )
            verdict = "as expected" if result.as_expected else "NOT AS EXPECTED"
            lines.append(
                f"{e.id:<9}{e.notes_equations:<20}{affects:<32}"
                f"{result.literal_error:>10.2e}{result.ours_error:>10.2e}  {verdict}"
            )
        lines.append("")
        for result in self.results:
            e = result.erratum
            lines.append(f"{e.id} {e.notes_equations}: {e.title}")
            lines.append(f"    as written: {e.as_written}")
            lines.append(f"    corrected:  {e.correction}")
        lines.append("")
        lines.append("Typos and omissions (they change no gradient; not run):")
        for typo in self.typos:
            lines.append(
                f"  {typo.notes_equations:<18}{typo.as_written}  ->  {typo.should_read}"
            )
        lines.append("")
        if self.passed:
            lines.append(
                f"As expected: every literal formula fails (> {FAIL_ABOVE:g}) and "
                f"every correction passes (<= {PASS_AT:g})."
            )
        else:
            lines.append(
                f"NOT as expected: a literal formula passes (<= {FAIL_ABOVE:g}) or a "
                f"correction fails (> {PASS_AT:g}); see the verdicts above."
            )
        return "\n".join(lines)


def measure_errata(
    case: ErrataCase, errata: tuple[Erratum, ...] = ERRATA
) -> ErrataReport:
    """Measure each erratum's literal gradients and ours against finite differences.

    `case.net` must be in training mode; its last forward and loss are redone on
    `case.X` and the targets before measuring, with the current dropout mask held.
    """
    net = case.net
    with net.dropout.held_mask():
        net.forward(case.X)
        net.loss(case.y_a_true, case.y_b_true)
    ours = net.backward()
    literal = {e.id: e.literal(net) for e in errata}
    reference = loss_gradient_by_differences(net, case.X, case.y_a_true, case.y_b_true)

    results = []
    for e in errata:
        results.append(
            ErratumResult(
                erratum=e,
                literal_errors={
                    n: relative_error(literal[e.id][n], reference[n])
                    for n in PARAMETER_NAMES
                },
                ours_errors={
                    n: relative_error(ours[n], reference[n]) for n in PARAMETER_NAMES
                },
            )
        )
    return ErrataReport(case=case.describe(), results=tuple(results))


def errata_case(seed: int | None = 0, max_draws: int = 100) -> ErrataCase:
    """A seeded random case in which every erratum has something to get wrong.

    m=8, n_in=4, n_hidden=5, n_shared=3, n_classes=4, p_drop=0.5; every parameter
    drawn from N(0, 0.8^2) (biases included, so none is a special zero); X with
    column means between 1 and 2 in magnitude, so that centring matters (E4); soft
    targets y_b_true with every entry positive, so that every term of the
    cross-entropy is present (E1). The draw is repeated until the ReLU inputs x_BN
    have both signs (E3) and stay RELU_MARGIN away from 0, and the dropout mask both
    keeps and drops entries.
    """
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
    ):
        raise TypeError(f"`seed` must be a non-negative integer or None, got {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer or None, got {seed}")
    rng = np.random.default_rng(seed)
    m, n_in, n_hidden, n_shared, n_classes = 8, 4, 5, 3, 4
    net = MultiTaskNet(n_in, n_hidden, n_shared, n_classes, p_drop=0.5, seed=seed)
    for _ in range(max_draws):
        net.set_flat_params(rng.normal(0.0, 0.8, net.n_params))
        offsets = rng.uniform(1.0, 2.0, n_in) * rng.choice([-1.0, 1.0], n_in)
        X = rng.normal(size=(m, n_in)) + offsets
        y_a_true = rng.normal(size=(m, n_shared))
        y_b_true = rng.dirichlet(np.ones(n_classes), size=m)
        net.train()
        net.forward(X)
        net.loss(y_a_true, y_b_true)
        # x_BN is not cached (ReLU keeps only x_BN > 0): recomputed from (38)-(39).
        x_1b = X @ net.params["theta_1B"].T
        x_bn = x_1b - x_1b.mean(axis=0) + net.params["b_1B"]
        mask = cast(FloatArray, net.dropout.mask)
        if (
            np.abs(x_bn).min() > RELU_MARGIN
            and (x_bn < 0).any()
            and (x_bn > 0).any()
            and (mask == 0).any()
            and (mask != 0).any()
        ):
            return ErrataCase(net, X, y_a_true, y_b_true, seed)
    raise RuntimeError(
        f"no case with ReLU inputs {RELU_MARGIN} away from 0 in {max_draws} draws "
        f"for seed {seed}"
    )


def run_errata(seed: int | None = 0) -> ErrataReport:
    """Build the seeded case of `errata_case` and measure every erratum on it."""
    return measure_errata(errata_case(seed))
