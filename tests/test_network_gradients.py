"""MultiTaskNet's gradients against finite differences; the sum at the shared branch.

Every expected value comes from tests/_netfd.py: the forward of the derivation written
out again in float64 and differentiated by extrapolated central differences, never from
the network itself. The bar: a relative error of at most 1e-7, computed as
|a - n| / max(|a|, |n|, 1e-3) (see FLOOR in tests/_netfd.py for why 1e-3).

ReLU's kink is kept away by setting b_1B so that every x_BN lies at least 0.05 from 0,
and by capping the steps of theta_1B and b_1B below what would reach 0
(`keep_relu_off_kink`, `safe_steps`); tolerances are never loosened for it.
"""

from __future__ import annotations

import math
from typing import Any

import _netfd as fd
import numpy as np
import pytest
import strategies as sts
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_bp import MultiTaskNet

WEIGHTS = ((1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.25, 3.0))
TASK_A = ("theta_1A", "b_1A", "theta_2A", "b_2A")
TASK_B = ("theta_1B", "b_1B", "theta_2B", "b_2B")


def target_rows(y_b_true: Any, n_classes: int) -> np.ndarray:
    """Any classification target as float64 rows (m, n_classes), for the reference."""
    y_b_true = np.asarray(y_b_true)
    if y_b_true.ndim == 1:
        return fd.one_hot(y_b_true, n_classes)
    return y_b_true.astype(np.float64)


def make_case(
    m: int,
    widths: tuple[int, int, int, int],
    p_drop: float,
    kind: str,
    seed: int,
    weights: tuple[float, float] = (1.0, 1.0),
) -> tuple[MultiTaskNet, np.ndarray, np.ndarray, np.ndarray]:
    """A network and a batch drawn from `seed`, targets of the given kind."""
    n_in, n_hidden, n_shared, n_classes = widths
    rng = np.random.default_rng(seed)
    net = MultiTaskNet(*widths, p_drop=p_drop, loss_weights=weights, seed=seed)
    X = rng.uniform(-2, 2, (m, n_in))
    y_a_true = rng.uniform(-2, 2, (m, n_shared))
    labels = rng.integers(0, n_classes, m)
    if kind == "labels":
        y_b_true: np.ndarray = labels
    elif kind == "one_hot":
        y_b_true = fd.one_hot(labels, n_classes)
    else:
        soft = rng.uniform(0, 1, (m, n_classes)) + fd.one_hot(labels, n_classes)
        y_b_true = soft / soft.sum(axis=1, keepdims=True)
    return net, X, y_a_true, y_b_true


def worst_gradient_error(
    net: MultiTaskNet,
    X: np.ndarray,
    y_a_true: np.ndarray,
    y_b_true: np.ndarray,
    per_parameter: int | None = None,
    seed: int = 0,
) -> tuple[float, str]:
    """Run forward, loss and backward in the current mode and compare every gradient.

    Returns the largest relative error over the checked entries and a description of
    where it occurred. With `per_parameter` set, that many random entries of each
    parameter are checked instead of all of them.
    """
    shape_of = fd.shapes(net.n_in, net.n_hidden, net.n_shared, net.n_classes)
    training = net.training
    running_mean = None if training else net.bn.running_mean.astype(np.float64)
    distance = fd.keep_relu_off_kink(net.params, X, running_mean=running_mean)

    net.forward(X)
    losses = net.loss(y_a_true, y_b_true)
    grads = net.backward()
    mask = net.dropout.mask if training else None

    rows = target_rows(y_b_true, net.n_classes)
    assert list(grads) == list(fd.NAMES)
    for name in fd.NAMES:
        assert grads[name].shape == shape_of[name], name
    expected = fd.reference_losses(
        net.params, X, y_a_true, rows, net.loss_weights, mask, running_mean
    )
    for got, want in zip((losses.total, losses.a, losses.b), expected, strict=True):
        assert fd.relative_error(got, want) <= 1e-12, (losses, expected)

    def total_loss(vector: np.ndarray) -> float:
        params = fd.unflatten(vector, shape_of)
        return fd.reference_losses(
            params, X, y_a_true, rows, net.loss_weights, mask, running_mean
        )[0]

    at = np.concatenate([net.params[name].ravel() for name in fd.NAMES])
    analytic = np.concatenate([grads[name].ravel() for name in fd.NAMES])
    steps = fd.safe_steps(shape_of, X, distance, training=training)
    entries = fd.chosen_entries(shape_of, per_parameter, np.random.default_rng(seed))
    worst, where = 0.0, "nothing checked"
    for index in entries:
        numeric = fd.extrapolated_difference(total_loss, at, int(index), steps[index])
        error = fd.relative_error(analytic[index], numeric)
        if error >= worst:
            worst = error
            where = f"flat entry {index}: analytic {analytic[index]!r}, fd {numeric!r}"
    return worst, where


# -- fixed cases ----------------------------------------------------------------------

FIXED = [
    # m, widths, p_drop, target kind, loss weights
    (2, (1, 1, 1, 1), 0.0, "labels", (1.0, 1.0)),
    (2, (1, 1, 1, 2), 0.5, "one_hot", (1.0, 1.0)),
    (3, (2, 1, 3, 2), 0.0, "soft", (1.0, 1.0)),
    (5, (3, 4, 2, 3), 0.5, "soft", (0.25, 3.0)),
    (8, (4, 6, 5, 3), 0.3, "labels", (1.0, 1.0)),
    (7, (5, 3, 4, 6), 0.0, "one_hot", (0.0, 1.0)),
    (6, (3, 5, 4, 2), 0.5, "labels", (1.0, 0.0)),
    (16, (6, 7, 5, 4), 0.9, "soft", (1.0, 1.0)),
]


@pytest.mark.parametrize(("m", "widths", "p_drop", "kind", "weights"), FIXED)
def test_every_entry_of_every_gradient_matches_finite_differences(
    m: int,
    widths: tuple[int, int, int, int],
    p_drop: float,
    kind: str,
    weights: tuple[float, float],
) -> None:
    net, X, y_a_true, y_b_true = make_case(
        m, widths, p_drop, kind, seed=m, weights=weights
    )
    worst, where = worst_gradient_error(net, X, y_a_true, y_b_true)
    assert worst <= fd.TOLERANCE, where


@pytest.mark.parametrize("kind", ["labels", "one_hot", "soft"])
def test_gradients_in_eval_mode_match_finite_differences(kind: str) -> None:
    # In eval mode the running mean is a constant and dropout is the identity, so the
    # backward takes other branches (18 without its mean term, 13 with M = 1).
    net, X, y_a_true, y_b_true = make_case(6, (3, 4, 3, 3), 0.5, kind, seed=11)
    for _ in range(3):
        net.forward(X + 0.5)  # give the running mean a value of its own
    net.eval()
    worst, where = worst_gradient_error(net, X, y_a_true, y_b_true)
    assert worst <= fd.TOLERANCE, where


def test_finite_differences_through_the_network_itself_with_a_held_mask() -> None:
    # The other tests difference an independent forward; this one differences the
    # network's own forward with the mask held, which is how check_network works.
    net, X, y_a_true, y_b_true = make_case(6, (3, 4, 3, 3), 0.5, "labels", seed=5)
    distance = fd.keep_relu_off_kink(net.params, X)
    net.forward(X)
    net.loss(y_a_true, y_b_true)
    analytic = np.concatenate([net.backward()[name].ravel() for name in fd.NAMES])
    mask = net.dropout.mask.copy()
    at = net.flat_params.copy()

    def total_loss(vector: np.ndarray) -> float:
        net.set_flat_params(vector)
        net.forward(X)
        return net.loss(y_a_true, y_b_true).total

    shape_of = fd.shapes(3, 4, 3, 3)
    steps = fd.safe_steps(shape_of, X, distance)
    with net.dropout.held_mask():
        numeric = np.array(
            [
                fd.extrapolated_difference(total_loss, at, i, steps[i])
                for i in range(at.size)
            ]
        )
    np.testing.assert_array_equal(net.dropout.mask, mask)
    errors = [fd.relative_error(a, n) for a, n in zip(analytic, numeric, strict=True)]
    assert max(errors) <= fd.TOLERANCE


@pytest.mark.parametrize("constant", [0.0, 1.5])
def test_constant_columns_of_x_give_the_right_gradients(constant: float) -> None:
    # The shape hypothesis shrinks towards: every sample alike. Then x_1B - mean x_1B
    # is 0, b_1B alone sets x_BN, and theta_1B's gradient (55) must vanish: the
    # centred gradient (54) sums to 0 over the batch and X is constant.
    net, X, y_a_true, y_b_true = make_case(4, (3, 2, 3, 2), 0.5, "one_hot", seed=1)
    X[:] = constant
    worst, where = worst_gradient_error(net, X, y_a_true, y_b_true)
    assert worst <= fd.TOLERANCE, where
    assert np.abs(net.grads["theta_1B"]).max() <= 1e-15


# -- hypothesis: drawn widths, batches, targets, masks --------------------------------


@st.composite
def network_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Widths m in [2, 64] and n in [1, 32], values in [-2, 2], any target kind.

    Also a factor for the initial parameters, and weights, p_drop and seed.
    """
    m = draw(sts.batch_sizes(2, 64))
    widths = tuple(draw(sts.widths(1, 32)) for _ in range(4))
    n_in, _, n_shared, n_classes = widths
    kind = draw(st.sampled_from(["labels", "one_hot", "soft"]))
    if kind == "labels":
        y_b_true = draw(sts.labels(m, n_classes))
    elif kind == "one_hot":
        y_b_true = draw(sts.one_hot_targets(m, n_classes))
    else:
        y_b_true = draw(sts.soft_targets(m, n_classes))
    return {
        "widths": widths,
        "p_drop": draw(st.one_of(st.just(0.0), sts.drop_probabilities(0.9))),
        "weights": draw(st.sampled_from(WEIGHTS)),
        "seed": draw(sts.seeds()),
        "scale": draw(st.sampled_from([1.0, 3.0])),
        "X": draw(sts.float_arrays((m, n_in), bound=2.0)),
        "y_a_true": draw(sts.float_arrays((m, n_shared), bound=2.0)),
        "y_b_true": y_b_true,
    }


def test_pinned_sharp_curvature_with_heavy_dropout() -> None:
    # Found by hypothesis 6.170 in CI: widths (1, 1, 1, 2), p_drop 0.875 (M = 8),
    # parameters tripled, X = 0. A fixed difference step of 2e-2 had a truncation
    # error of 3.6e-7 on b_1A; the reference now picks its step (see _netfd).
    net = MultiTaskNet(1, 1, 1, 2, p_drop=0.875, seed=4)
    net.flat_params[...] *= 3.0
    worst, where = worst_gradient_error(
        net, np.zeros((2, 1)), np.zeros((2, 1)), np.array([0, 0])
    )
    assert worst <= fd.TOLERANCE, where


@settings(max_examples=40)
@given(case=network_cases())
def test_drawn_networks_match_finite_differences(case: dict[str, Any]) -> None:
    net = MultiTaskNet(
        *case["widths"],
        p_drop=case["p_drop"],
        loss_weights=case["weights"],
        seed=case["seed"],
    )
    # Parameters three times their initial size reach sin's and softmax's curvature.
    net.flat_params[...] *= case["scale"]
    # Large draws have thousands of entries; six random entries of each parameter
    # (all of them for a small parameter) keep an example near 20 ms.
    worst, where = worst_gradient_error(
        net,
        case["X"],
        case["y_a_true"],
        case["y_b_true"],
        per_parameter=6,
        seed=case["seed"],
    )
    assert worst <= fd.TOLERANCE, where


# -- the shared branch ----------------------------------------------------------------


def gradients_by_weights(
    widths: tuple[int, int, int, int],
    p_drop: float,
    seed: int,
    X: np.ndarray,
    y_a_true: np.ndarray,
    y_b_true: np.ndarray,
) -> dict[tuple[float, float], dict[str, np.ndarray]]:
    """The gradients for weights (1, 1), (1, 0), (0, 1): same parameters, same mask."""
    first = MultiTaskNet(*widths, p_drop=p_drop, loss_weights=(1.0, 1.0), seed=seed)
    first.forward(X)
    first.loss(y_a_true, y_b_true)
    grads = {(1.0, 1.0): first.backward()}
    for weights in ((1.0, 0.0), (0.0, 1.0)):
        net = MultiTaskNet(*widths, p_drop=p_drop, loss_weights=weights, seed=seed + 1)
        net.set_flat_params(first.flat_params)
        net.dropout.mask = first.dropout.mask.copy()
        with net.dropout.held_mask():
            net.forward(X)
        np.testing.assert_array_equal(net.dropout.mask, first.dropout.mask)
        net.loss(y_a_true, y_b_true)
        grads[weights] = net.backward()
    return grads


def assert_shared_branch_sums(
    grads: dict[tuple[float, float], dict[str, np.ndarray]],
) -> None:
    both, only_a, only_b = grads[(1.0, 1.0)], grads[(1.0, 0.0)], grads[(0.0, 1.0)]
    for name in fd.NAMES:
        # Linear in the weights: the only difference is rounding in the sum (51) and
        # in the products after it, a few ulps of the largest entry.
        scale = max(np.abs(both[name]).max(), np.abs(only_b[name]).max(), 1e-300)
        np.testing.assert_allclose(
            both[name], only_a[name] + only_b[name], rtol=1e-12, atol=1e-13 * scale
        )
    for name in TASK_B:
        # L_A does not depend on task B's parameters: w_B = 0 makes dz_2B exactly 0
        # (47), and every product after it is exactly 0.
        np.testing.assert_array_equal(only_a[name], np.zeros_like(only_a[name]))


@pytest.mark.parametrize("p_drop", [0.0, 0.5])
def test_weights_one_one_give_the_sum_of_each_task_alone(p_drop: float) -> None:
    net, X, y_a_true, y_b_true = make_case(9, (4, 5, 3, 4), p_drop, "labels", seed=3)
    grads = gradients_by_weights((4, 5, 3, 4), p_drop, 3, X, y_a_true, y_b_true)
    assert_shared_branch_sums(grads)


@settings(max_examples=40)
@given(case=network_cases())
def test_drawn_shared_branch_sums(case: dict[str, Any]) -> None:
    grads = gradients_by_weights(
        case["widths"],
        case["p_drop"],
        case["seed"] % 2**31,
        case["X"],
        case["y_a_true"],
        case["y_b_true"],
    )
    assert_shared_branch_sums(grads)


def test_loss_b_alone_reaches_every_task_a_parameter() -> None:
    # Task B's loss depends on y_hat_A through h = y_hat_A + a_BN (41), so with
    # w_A = 0 every task-A parameter still gets a gradient (50, 51), and it is the
    # right one.
    net, X, y_a_true, y_b_true = make_case(
        8, (4, 5, 3, 4), 0.5, "labels", seed=21, weights=(0.0, 1.0)
    )
    worst, where = worst_gradient_error(net, X, y_a_true, y_b_true)
    assert worst <= fd.TOLERANCE, where
    for name in TASK_A:
        assert np.count_nonzero(net.grads[name]) > 0, name
    # Every unit of task A's hidden layer that dropout kept reaches L_B.
    kept = net.dropout.mask.any(axis=0)
    assert np.all(np.abs(net.grads["theta_1A"][kept]).sum(axis=1) > 0)


# -- the fused path and the explicit chain --------------------------------------------


def fused_and_explicit(
    scale_theta_2b: float, seed: int = 4
) -> tuple[MultiTaskNet, MultiTaskNet, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two networks with equal parameters and mask, fused and explicit, forwarded.

    Returns (fused, explicit, X, y_a_true, the explicit forward's y_b, the distance of
    each column of x_BN from ReLU's kink).
    """
    widths = (4, 5, 3, 4)
    fused, X, y_a_true, _ = make_case(6, widths, 0.5, "labels", seed=seed)
    fused.params["theta_2B"][...] *= scale_theta_2b
    distance = fd.keep_relu_off_kink(fused.params, X)
    explicit = MultiTaskNet(*widths, p_drop=0.5, seed=seed + 1, fused_loss=False)
    explicit.set_flat_params(fused.flat_params)
    fused.forward(X)
    explicit.dropout.mask = fused.dropout.mask.copy()
    with explicit.dropout.held_mask():
        _, y_b = explicit.forward(X)
    return fused, explicit, X, y_a_true, y_b, distance


@pytest.mark.parametrize("kind", ["labels", "one_hot", "soft"])
def test_fused_and_explicit_chain_agree_where_probabilities_are_not_tiny(
    kind: str,
) -> None:
    fused, explicit, X, y_a_true, y_b, _ = fused_and_explicit(1.0)
    _, _, _, y_b_true = make_case(6, (4, 5, 3, 4), 0.5, kind, seed=4)
    # The explicit chain divides by p (31) and multiplies by p again (11): its
    # relative rounding grows like eps / min p, below 1e-14 here, so both paths must
    # agree to 1e-12.
    assert y_b.min() > 1e-2
    fused_losses = fused.loss(y_a_true, y_b_true)
    explicit_losses = explicit.loss(y_a_true, y_b_true)
    for a, b in zip(
        (fused_losses.total, fused_losses.a, fused_losses.b),
        (explicit_losses.total, explicit_losses.a, explicit_losses.b),
        strict=True,
    ):
        assert fd.relative_error(a, b) <= 1e-13
    fused_grads, explicit_grads = fused.backward(), explicit.backward()
    for name in fd.NAMES:
        scale = np.abs(fused_grads[name]).max()
        np.testing.assert_allclose(
            explicit_grads[name], fused_grads[name], rtol=1e-12, atol=1e-14 * scale
        )


def test_fused_path_is_finite_and_exact_for_logits_of_magnitude_1e3() -> None:
    fused, explicit, X, y_a_true, y_b, distance = fused_and_explicit(2e3)
    mask = fused.dropout.mask
    z_2b = fd.reference_forward(fused.params, X, mask)["z_2b"]
    assert np.abs(z_2b).max() > 1e3
    # The least likely class as the label: its probability underflows to 0 in
    # float64, since its logit trails the row's maximum by far more than 745.
    labels = z_2b.argmin(axis=1)
    assert (z_2b.max(axis=1) - z_2b.min(axis=1)).min() > 800
    assert (y_b[np.arange(6), labels] == 0).all()

    # L_B by hand, one row at a time: log-sum-exp with the maximum factored out and
    # the exponentials summed exactly by math.fsum.
    per_row = []
    for row, label in zip(z_2b.tolist(), labels.tolist(), strict=True):
        top = max(row)
        log_sum_exp = top + math.log(math.fsum(math.exp(z - top) for z in row))
        per_row.append(log_sum_exp - row[label])
    loss_b = math.fsum(per_row) / len(per_row)

    losses = fused.loss(y_a_true, labels)
    assert math.isfinite(losses.total)
    assert fd.relative_error(losses.b, loss_b) <= 1e-13
    grads = fused.backward()
    assert all(np.isfinite(grads[name]).all() for name in fd.NAMES)

    # The gradients stay exact. Log-sum-exp curves on a scale of 1 in z, and every
    # parameter before theta_2B reaches z through theta_2B's factor 2e3: those take a
    # step of 2e-5, so that no logit moves by more than about 0.1; theta_2B and b_2B
    # move z directly and keep the usual step.
    shape_of = fd.shapes(4, 5, 3, 4)
    rows = fd.one_hot(labels, 4)

    def total_loss(vector: np.ndarray) -> float:
        params = fd.unflatten(vector, shape_of)
        return fd.reference_losses(params, X, y_a_true, rows, mask=mask)[0]

    at = fused.flat_params.copy()
    analytic = np.concatenate([grads[name].ravel() for name in fd.NAMES])
    steps = fd.safe_steps(shape_of, X, distance, step=2e-5)
    where = fd.slices(shape_of)
    for name in ("theta_2B", "b_2B"):
        steps[where[name]] = fd.STEP
    numeric = np.array(
        [
            fd.extrapolated_difference(total_loss, at, i, steps[i])
            for i in range(at.size)
        ]
    )
    errors = [fd.relative_error(a, n) for a, n in zip(analytic, numeric, strict=True)]
    assert max(errors) <= fd.TOLERANCE

    # The explicit chain of the derivation takes log of an underflowed probability:
    # the loss is +inf and its gradient is not finite. The fused path is the remedy.
    with np.errstate(all="ignore"):
        explicit_losses = explicit.loss(y_a_true, labels)
        explicit_grads = explicit.backward()
    assert explicit_losses.b == math.inf
    assert not all(np.isfinite(explicit_grads[name]).all() for name in fd.NAMES)
