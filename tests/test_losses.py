"""The losses: finite-difference checks, hand-worked values and the fused gradient.

Equation numbers refer to docs/derivation.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import _fd
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from strategies import (
    batch_sizes,
    class_counts,
    class_targets,
    float_arrays,
    labels,
    logits,
    one_hot_targets,
    probability_rows,
    soft_targets,
)

from multitask_bp import (
    CrossEntropyLoss,
    Loss,
    MSELoss,
    Softmax,
    SoftmaxCrossEntropyLoss,
)

TOLERANCE = _fd.TOLERANCE
ENTRIES = 12
FD_EXAMPLES = 25

Array = NDArray[np.float64]
TargetFactory = Callable[[NDArray[np.int64], int], Any]

#: The three forms of a classification target, built from the same labels.
TARGETS: dict[str, TargetFactory] = {
    "labels": lambda y, k: y,
    "one-hot": lambda y, k: np.eye(k)[y],
    "soft": lambda y, k: 0.7 * np.eye(k)[y] + 0.3 / k,
}


def _ce_step(p: Array) -> Array:
    """-y log p varies on the length p: the step is STEP * p, entry by entry.

    It keeps p +- h inside (0, 1) while p < 1 / (1 + STEP).
    """
    return _fd.STEP * p


def _probabilities(m: int, k: int, seed: int) -> Array:
    z = np.random.default_rng(seed).uniform(-2, 2, (m, k))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# Finite differences ------------------------------------------------------------------


@pytest.mark.parametrize("form", TARGETS)
def test_finite_differences_fixed_case(form: str) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 6)
    target = TARGETS[form](y, 4)
    z = rng.uniform(-3, 3, (6, 4))
    p = _probabilities(6, 4, 1)

    assert _fd.check_loss(SoftmaxCrossEntropyLoss(), z, target) <= TOLERANCE
    assert _fd.check_loss(CrossEntropyLoss(), p, target, _ce_step(p)) <= TOLERANCE


def test_finite_differences_mse_fixed_case() -> None:
    rng = np.random.default_rng(2)
    y_hat, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))

    assert _fd.check_loss(MSELoss(), y_hat, y) <= TOLERANCE


def test_finite_differences_fused_at_large_logits() -> None:
    """Logits around 1e3 and 1e5: the gradient (33) is still exact."""
    rng = np.random.default_rng(3)
    z = rng.uniform(-3, 3, (3, 4)) + np.array([[1e3], [-1e5], [1e5]])

    assert _fd.check_loss(SoftmaxCrossEntropyLoss(), z, [0, 3, 1]) <= TOLERANCE


@settings(max_examples=FD_EXAMPLES)
@given(data=st.data())
def test_finite_differences_mse_drawn(data: st.DataObject) -> None:
    m, k = data.draw(batch_sizes()), data.draw(class_counts())
    y_hat = data.draw(float_arrays((m, k)))
    y = data.draw(float_arrays((m, k)))

    assert _fd.check_loss(MSELoss(), y_hat, y, max_entries=ENTRIES) <= TOLERANCE


@settings(max_examples=FD_EXAMPLES)
@given(data=st.data())
def test_finite_differences_fused_drawn(data: st.DataObject) -> None:
    m, k = data.draw(batch_sizes()), data.draw(class_counts())
    z = data.draw(logits(m, k))
    target = data.draw(class_targets(m, k))

    error = _fd.check_loss(SoftmaxCrossEntropyLoss(), z, target, max_entries=ENTRIES)
    assert error <= TOLERANCE


@settings(max_examples=FD_EXAMPLES)
@given(data=st.data())
def test_finite_differences_cross_entropy_drawn(data: st.DataObject) -> None:
    # k >= 2: with one class p = 1, and p + h would leave [0, 1].
    m, k = data.draw(batch_sizes()), data.draw(class_counts(2))
    p = data.draw(probability_rows(m, k))
    target = data.draw(class_targets(m, k))

    error = _fd.check_loss(CrossEntropyLoss(), p, target, _ce_step(p), ENTRIES)
    assert error <= TOLERANCE


# Hand-worked values ------------------------------------------------------------------


def test_mse_hand_worked() -> None:
    """Residuals (1, 2) and (0, -2): L = (1 + 4 + 0 + 4) / (2 * 2), grad = r / 2."""
    loss = MSELoss()

    value = loss.forward([[1.0, 2.0], [3.0, 0.0]], [[0.0, 0.0], [3.0, 2.0]])

    assert value == 9 / 4  # (28)
    np.testing.assert_array_equal(loss.backward(), [[0.5, 1.0], [0.0, -1.0]])  # (29)


def test_cross_entropy_hand_worked() -> None:
    """p = (1/4, 3/4) with label 1 and p = (1/2, 1/2) with soft (1/4, 3/4)."""
    loss = CrossEntropyLoss()
    p = [[0.25, 0.75], [0.5, 0.5]]

    value = loss.forward(p, [[0.0, 1.0], [0.25, 0.75]])
    grad = loss.backward()

    assert value == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2, rel=1e-15)
    expected = [[0.0, -1 / (2 * 0.75)], [-0.25 / (2 * 0.5), -0.75 / (2 * 0.5)]]
    np.testing.assert_allclose(grad, expected, rtol=1e-15)  # (31)


def test_cross_entropy_where_a_probability_is_zero() -> None:
    """As its docstring says: y = 0 there counts 0; y > 0 there gives +inf and -inf."""
    loss = CrossEntropyLoss()

    assert loss.forward([[0.0, 1.0]], [1]) == 0.0
    np.testing.assert_array_equal(loss.backward(), [[0.0, -1.0]])

    with np.errstate(divide="raise"):  # no floating-point warning escapes either
        assert loss.forward([[0.0, 1.0]], [0]) == np.inf
        np.testing.assert_array_equal(loss.backward(), [[-np.inf, 0.0]])


@pytest.mark.parametrize("form", ["labels", "one-hot"])
def test_fused_at_logits_1e3_hand_worked(form: str) -> None:
    """Logits (1000, 0): label 0 costs log(1 + e^-1000), which is 0 in float64 (e^-1000
    underflows), label 1 costs 1000 - log(1 + e^-1000) = 1000; the gradient is
    (softmax(z) - y) / m with softmax(z) = (1, 0) exactly.
    """
    target = TARGETS[form](np.array([0, 1]), 2)
    loss = SoftmaxCrossEntropyLoss()

    value = loss.forward([[1000.0, 0.0], [1000.0, 0.0]], target)

    assert value == (0.0 + 1000.0) / 2
    np.testing.assert_array_equal(loss.backward(), [[0.0, 0.0], [0.5, -0.5]])


def test_fused_at_logits_1e5_hand_worked() -> None:
    """(1e5, 1e5 - 1): label 0 costs log(1 + e^-1), label 1 costs 1 + log(1 + e^-1).

    (1e5, -1e5) with label 1 costs 2e5 exactly. Nothing overflows or turns into nan.
    """
    loss = SoftmaxCrossEntropyLoss()
    z = [[1e5, 1e5 - 1], [1e5, 1e5 - 1], [1e5, -1e5]]

    value = loss.forward(z, [0, 1, 1])
    grad = loss.backward()

    softplus = np.log1p(np.exp(-1.0))
    assert value == pytest.approx((softplus + 1 + softplus + 2e5) / 3, rel=1e-15)
    q = 1 / (1 + np.e)  # softmax of the smaller logit
    expected = np.array([[-q, q], [1 - q, q - 1], [1.0, -1.0]]) / 3
    np.testing.assert_allclose(grad, expected, rtol=1e-14)
    assert np.isfinite(grad).all()


@given(data=st.data())
def test_fused_is_finite_for_huge_logits(data: st.DataObject) -> None:
    m, k = data.draw(batch_sizes()), data.draw(class_counts())
    z = data.draw(logits(m, k, bound=1e5))
    loss = SoftmaxCrossEntropyLoss()

    value = loss.forward(z, data.draw(class_targets(m, k)))

    # Each row costs logsumexp(z) - y . z, at least max z - max z = 0 and at most
    # max z + log k - min z.
    upper = float(np.max(z.max(axis=1) - z.min(axis=1))) + np.log(k)
    assert 0 <= value <= upper * (1 + 1e-13)
    assert np.isfinite(loss.backward()).all()


def test_fused_at_equal_logits_costs_log_k() -> None:
    """Found by hypothesis (dev profile): zero logits (16, 54) and uniform soft rows.

    The loss is log 54 exactly in real numbers; the float64 value was 1.2e-15 above
    np.log(54), which an upper bound with a slack of 1e-15 refused. The slack is now
    1e-13, and this pins the value to a few ulps.
    """
    value = SoftmaxCrossEntropyLoss().forward(
        np.zeros((16, 54)), np.full((16, 54), 1 / 54)
    )

    assert value == pytest.approx(np.log(54), rel=1e-14)


def test_finite_differences_mse_at_a_tiny_residual() -> None:
    """Found by hypothesis (dev profile): y_hat = 0 and y = 8.87e-154.

    The gradient -8.87e-154 is lost in L(+-h) = (h -+ r)^2 / 2, which are 1e-4 while
    L itself is 4e-307; _fd's floor took its rounding from L and not from L(+-h), and
    called a lost derivative an error of 1. It now takes it from L(+-h).
    """
    error = _fd.check_loss(MSELoss(), np.zeros((1, 1)), np.array([[8.86850643e-154]]))

    assert error <= TOLERANCE


def test_finite_differences_mse_at_a_zero_residual_at_one() -> None:
    """Found by hypothesis (dev profile): y_hat = y, mostly ones, shape (38, 60).

    1 + h and 1 - h round by different amounts, so the two steps differed by an ulp
    and the curvature 1/m turned that into an error of 2.2e-7 against a derivative
    of 0. _fd now takes the step (|x| + h) - |x|, which makes both exact.
    """
    y = np.ones((2, 3))

    assert _fd.check_loss(MSELoss(), y, y) <= TOLERANCE


def test_finite_differences_fused_where_softmax_equals_the_target() -> None:
    """Found by hypothesis (a longer hunt): z = 0 with the uniform soft target, k = 3.

    The gradient is 0 (softmax(0) is the target), and a single extrapolation left a
    truncation of 2.6e-12 from the fifth derivative, a relative error of 3.6e-7
    against the floor. _fd now extrapolates twice.
    """
    target = np.full((1, 3), 1 / 3)

    assert _fd.check_loss(SoftmaxCrossEntropyLoss(), np.zeros((1, 3)), target) <= 1e-7


# Properties --------------------------------------------------------------------------


@given(data=st.data())
def test_fused_gradient_equals_cross_entropy_then_softmax(data: st.DataObject) -> None:
    m, k = data.draw(batch_sizes()), data.draw(class_counts())
    z = data.draw(logits(m, k, bound=10.0))
    target = data.draw(class_targets(m, k))
    fused = SoftmaxCrossEntropyLoss()
    softmax, cross_entropy = Softmax(), CrossEntropyLoss()

    fused.forward(z, target)
    cross_entropy.forward(softmax.forward(z), target)
    chained = softmax.backward(cross_entropy.backward())

    # Probabilities are at least e^-20 / 64 here, far from underflow; the chain's
    # division by p and multiplication by p cost a few ulps of 1/m.
    np.testing.assert_allclose(fused.backward(), chained, rtol=1e-12, atol=1e-15 / m)


@given(data=st.data())
def test_labels_and_one_hot_rows_are_the_same_target(data: st.DataObject) -> None:
    m, k = data.draw(batch_sizes()), data.draw(class_counts())
    y = data.draw(labels(m, k))
    z = data.draw(logits(m, k))
    p = data.draw(probability_rows(m, k))

    for loss, prediction in ((SoftmaxCrossEntropyLoss(), z), (CrossEntropyLoss(), p)):
        from_labels = loss.forward(prediction, y), loss.backward()
        from_rows = loss.forward(prediction, np.eye(k)[y]), loss.backward()
        assert from_labels[0] == from_rows[0]
        np.testing.assert_array_equal(from_labels[1], from_rows[1])


@given(data=st.data())
def test_soft_target_loss_is_the_mixture_of_label_losses(data: st.DataObject) -> None:
    """Both losses are linear in the target: a soft row costs the y-weighted sum."""
    m, k = data.draw(batch_sizes(1, 8)), data.draw(class_counts(1, 8))
    y = data.draw(soft_targets(m, k))
    z = data.draw(logits(m, k))
    loss = SoftmaxCrossEntropyLoss()

    value = loss.forward(z, y)

    rows = [
        sum(y[i, j] * loss.forward(z[i : i + 1], [j]) for j in range(k))
        for i in range(m)
    ]
    assert value == pytest.approx(np.mean(rows), rel=1e-12, abs=1e-14)


@given(data=st.data())
def test_one_hot_targets_from_strategies_are_accepted(data: st.DataObject) -> None:
    m, k = data.draw(batch_sizes()), data.draw(class_counts())
    rows = data.draw(one_hot_targets(m, k))

    assert SoftmaxCrossEntropyLoss().forward(np.zeros((m, k)), rows) == pytest.approx(
        np.log(k), rel=1e-15
    )


# The contract ------------------------------------------------------------------------


LOSSES: dict[str, tuple[Callable[[], Loss], Array, Any]] = {
    "mse": (MSELoss, np.array([[0.5, -1.0]]), np.array([[0.0, 1.0]])),
    "cross-entropy": (CrossEntropyLoss, np.array([[0.25, 0.75]]), np.array([1])),
    "fused": (SoftmaxCrossEntropyLoss, np.array([[2.0, -1.0]]), np.array([0])),
}


@pytest.mark.parametrize("name", LOSSES)
def test_backward_before_forward_raises_runtime_error(name: str) -> None:
    with pytest.raises(RuntimeError, match="backward was called before forward: "):
        LOSSES[name][0]().backward()


@pytest.mark.parametrize("name", LOSSES)
def test_float32_stays_float32_and_integers_become_float64(name: str) -> None:
    factory, prediction, target = LOSSES[name]
    loss = factory()

    value = loss.forward(prediction.astype(np.float32), target)

    assert isinstance(value, float)
    assert loss.backward().dtype == np.float32

    integer_prediction = np.array([[0, 1]])
    loss.forward(integer_prediction, target)
    assert loss.backward().dtype == np.float64


@pytest.mark.parametrize("name", LOSSES)
def test_calling_the_loss_is_forward(name: str) -> None:
    factory, prediction, target = LOSSES[name]

    assert factory()(prediction, target) == factory().forward(prediction, target)
