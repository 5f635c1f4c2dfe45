"""multitask_bp.gradcheck: the checker itself is checked against functions whose
derivatives are known in closed form, and against deliberately wrong gradients."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_bp import (
    BatchNorm,
    CrossEntropyLoss,
    Dropout,
    Linear,
    MeanCenterBN,
    MSELoss,
    MultiTaskNet,
    ReLU,
    Sine,
    Softmax,
    SoftmaxCrossEntropyLoss,
    gradcheck,
)

MODES = gradcheck.MODES
PARAMS = [
    "theta_1A",
    "b_1A",
    "theta_2A",
    "b_2A",
    "theta_1B",
    "b_1B",
    "theta_2B",
    "b_2B",
]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- numerical_gradient ----------------------------------------------------------------


def test_numerical_gradient_matches_a_known_derivative() -> None:
    x = rng().uniform(-2, 2, size=(3, 4))
    numeric = gradcheck.numerical_gradient(lambda: float(np.sum(x**3)), x)
    np.testing.assert_allclose(numeric, 3 * x**2, rtol=1e-10, atol=1e-12)


def test_numerical_gradient_restores_x_bit_for_bit() -> None:
    # Values whose neighbours x + h are not exactly representable steps.
    x = rng(1).standard_normal((4, 5)) * np.array([1e-3, 0.1, 1.0, 7.3, 1e3])
    before = x.copy()
    seen: list[np.ndarray] = []

    def f() -> float:
        seen.append(x.copy())
        return float(np.sum(np.sin(x)))

    gradcheck.numerical_gradient(f, x)
    assert x.tobytes() == before.tobytes()
    # Every evaluation moved exactly one entry.
    assert all(np.count_nonzero(s != before) == 1 for s in seen)


def test_numerical_gradient_restores_x_when_f_raises() -> None:
    x = np.linspace(-1, 1, 6)
    before = x.copy()
    calls = [0]

    def f() -> float:
        calls[0] += 1
        if calls[0] == 7:
            raise RuntimeError("boom")
        return float(np.sum(x**2))

    with pytest.raises(RuntimeError, match="boom"):
        gradcheck.numerical_gradient(f, x)
    assert x.tobytes() == before.tobytes()


def test_numerical_gradient_refuses_what_it_cannot_perturb() -> None:
    with pytest.raises(TypeError, match="`x` must be a numpy ndarray"):
        gradcheck.numerical_gradient(lambda: 0.0, [1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating dtype"):
        gradcheck.numerical_gradient(lambda: 0.0, np.arange(3))
    with pytest.raises(ValueError, match="`h` must be a finite number above 0"):
        gradcheck.numerical_gradient(lambda: 0.0, np.zeros(2), h=0.0)


# -- every layer, loss and the network pass at 1e-7 ------------------------------------


def layers() -> list[Any]:
    bn = BatchNorm(4)
    bn.params["gamma"][...] = [0.5, 1.5, -1.0, 2.0]
    mcbn = MeanCenterBN(4)
    mcbn.params["b"][...] = [0.1, -0.2, 0.3, 0.0]
    linear = Linear(4, 3, seed=0)
    linear.params["b"][...] = [0.2, -0.1, 0.4]
    return [
        linear,
        Linear(4, 2, bias=False, seed=1),
        Sine(),
        ReLU(),
        Softmax(),
        Dropout(0.5, seed=2),
        Dropout(0.3, seed=3, inverted=False),
        Dropout(0.3, seed=3, inverted=False).eval(),
        mcbn,
        MeanCenterBN(4).eval(),
        bn,
        BatchNorm(4).eval(),
    ]


@pytest.mark.parametrize("layer", layers(), ids=repr)
def test_every_layer_passes_at_1e_7(layer: Any) -> None:
    x = rng(4).uniform(-2, 2, size=(5, 4))
    report = gradcheck.check_layer(layer, x)
    assert report.passed, str(report)
    assert report.rtol == 1e-7
    assert report.max_rel_error <= 1e-7
    assert list(report.checks) == ["x", *layer.params]
    assert not any(check.vacuous for check in report.checks.values())
    assert set(report.diagnostics) == {
        "forward_repeatable",
        "backward_deterministic",
        "linear_in_grad_out",
    }


def test_check_layer_leaves_the_layer_untouched() -> None:
    layer = BatchNorm(3)
    running = layer.running_mean.copy()
    gamma = layer.params["gamma"].copy()
    gradcheck.check_layer(layer, rng().standard_normal((4, 3)))
    assert np.array_equal(layer.running_mean, running)
    assert np.array_equal(layer.params["gamma"], gamma)


def test_check_layer_holds_the_existing_dropout_mask() -> None:
    layer = Dropout(0.5, seed=0)
    x = rng().standard_normal((6, 3))
    layer.forward(x)
    mask = layer.mask.copy()
    # With the mask held, grad_x is grad_out * mask: compare the checked analytic
    # value with that product at the worst entry.
    g = rng(1).standard_normal((6, 3))
    report = gradcheck.check_layer(layer, x, grad_out=g)
    check = report.checks["x"]
    assert check.worst_index is not None
    assert check.worst_analytic == g[check.worst_index] * mask[check.worst_index]


@pytest.mark.parametrize(
    "loss, labels",
    [
        (MSELoss(), "regression"),
        (CrossEntropyLoss(), "int"),
        (CrossEntropyLoss(), "onehot"),
        (SoftmaxCrossEntropyLoss(), "int"),
        (SoftmaxCrossEntropyLoss(), "onehot"),
        (SoftmaxCrossEntropyLoss(), "soft"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, str) else v,
)
def test_every_loss_passes_at_1e_7(loss: Any, labels: str) -> None:
    generator = rng(5)
    z = 2 * generator.standard_normal((6, 4))
    label = generator.integers(0, 4, 6)
    target: Any = {
        "regression": generator.standard_normal((6, 4)),
        "int": label,
        "onehot": np.eye(4)[label],
        "soft": np.full((6, 4), 0.25),
    }[labels]
    prediction = z
    if isinstance(loss, CrossEntropyLoss):
        prediction = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    report = gradcheck.check_loss(loss, prediction, target)
    assert report.passed, str(report)
    assert report.max_rel_error <= 1e-7


def network_case(
    p_drop: float, labels: str, m: int = 7, widths: tuple[int, ...] = (5, 6, 4, 3)
) -> tuple[MultiTaskNet, np.ndarray, np.ndarray, np.ndarray]:
    n_in, n_hidden, n_shared, n_classes = widths
    net = MultiTaskNet(n_in, n_hidden, n_shared, n_classes, p_drop=p_drop, seed=3)
    generator = rng(6)
    # Nonzero biases so that no parameter's gradient is special.
    net.flat_params[...] += 0.1 * generator.standard_normal(net.n_params)
    X = generator.standard_normal((m, n_in))
    y_a = generator.standard_normal((m, n_shared))
    y_b: np.ndarray = generator.integers(0, n_classes, m)
    if labels == "onehot":
        y_b = np.eye(n_classes)[y_b]
    return net, X, y_a, y_b


@pytest.mark.parametrize("p_drop", [0.0, 0.5])
@pytest.mark.parametrize("labels", ["int", "onehot"])
def test_network_passes_at_1e_7(p_drop: float, labels: str) -> None:
    net, X, y_a, y_b = network_case(p_drop, labels)
    report = gradcheck.check_network(net, X, y_a, y_b)
    assert report.passed, str(report)
    assert report.max_rel_error <= 1e-7
    assert list(report.checks) == PARAMS
    assert sum(check.n_entries for check in report.checks.values()) == net.n_params


@settings(max_examples=8, deadline=None)
@given(
    m=st.integers(2, 8),
    widths=st.tuples(*[st.integers(1, 4)] * 4),
    p_drop=st.sampled_from([0.0, 0.5]),
    labels=st.sampled_from(["int", "onehot"]),
)
def test_network_passes_on_drawn_widths(
    m: int, widths: tuple[int, ...], p_drop: float, labels: str
) -> None:
    net, X, y_a, y_b = network_case(p_drop, labels, m, widths)
    report = gradcheck.check_network(net, X, y_a, y_b)
    assert report.passed, str(report)


def test_network_in_eval_mode_passes_and_keeps_its_caches() -> None:
    net, X, y_a, y_b = network_case(0.5, "int")
    net.forward(X)  # a training forward moves the running mean away from 0
    net.eval()
    report = gradcheck.check_network(net, X, y_a, y_b)
    assert report.passed, str(report)
    # The caches are those of the unperturbed network: its gradients are the ones
    # the report compared.
    grads = net.backward()
    for name, check in report.checks.items():
        assert check.worst_index is not None
        assert grads[name][check.worst_index] == check.worst_analytic


def test_check_network_leaves_the_network_as_found() -> None:
    net, X, y_a, y_b = network_case(0.5, "int")
    params = net.flat_params.copy()
    running = net.bn.running_mean.copy()
    report = gradcheck.check_network(net, X, y_a, y_b, mode="fast")
    assert net.flat_params.tobytes() == params.tobytes()
    assert np.array_equal(net.bn.running_mean, running)
    assert not net.dropout.hold
    assert report.passed, str(report)
    # The caches are those of the checked point, mask included: backward gives what a
    # twin network at the same point, with the same mask, gives.
    twin = MultiTaskNet(5, 6, 4, 3, p_drop=0.5, seed=4)
    twin.set_flat_params(params)
    twin.dropout.mask = net.dropout.mask.copy()
    with twin.dropout.held_mask():
        twin.forward(X)
    twin.loss(y_a, y_b)
    expected, grads = twin.backward(), net.backward()
    for name in PARAMS:
        np.testing.assert_array_equal(grads[name], expected[name], err_msg=name)


# -- deliberately wrong gradients, caught and named by every mode ----------------------

A = rng(7).standard_normal((6, 5))
X0 = rng(8).standard_normal((6, 5))


def sine_function(kind: str) -> Any:
    """f(x) = sum sin(A x) with its gradient, optionally broken."""

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        grad = A * np.cos(A * x)
        if kind == "entry off":
            grad[3, 2] += 1e-3
        elif kind == "sign flipped":
            grad[4, 1] = -grad[4, 1]
        elif kind == "scaled":
            grad = 1.01 * grad
        return float(np.sum(np.sin(A * x))), grad

    return f


@pytest.mark.parametrize("mode", MODES)
def test_a_right_gradient_passes_every_mode(mode: str) -> None:
    report = gradcheck.check_gradient(sine_function("right"), X0, mode=mode)
    assert report.passed, str(report)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "kind, index", [("entry off", (3, 2)), ("sign flipped", (4, 1)), ("scaled", None)]
)
def test_a_wrong_gradient_is_caught_and_named(
    mode: str, kind: str, index: tuple[int, int] | None
) -> None:
    report = gradcheck.check_gradient(sine_function(kind), X0, mode=mode)
    check = report.checks["x"]
    assert not report.passed
    assert check.verdict == "FAIL"
    assert check.worst_index is not None
    if index is not None:
        assert check.worst_index == index
        assert str(list(index)) in str(report)
    else:
        # Every entry is off by 1 %: relative error 0.01 / 1.01 wherever it is named.
        assert check.max_rel_error == pytest.approx(0.01 / 1.01, rel=1e-3)
    # The named values are the analytic and numeric derivatives of that entry.
    true = A * np.cos(A * X0)
    assert check.worst_numeric == pytest.approx(true[check.worst_index], rel=1e-9)


@pytest.mark.parametrize("mode", MODES)
def test_a_nan_in_the_gradient_fails_every_mode_and_is_named(mode: str) -> None:
    # Found in review: verdicts written as `error > bound` let NaN pass, since every
    # comparison with NaN is False.
    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = sine_function("right")(x)
        grad[2, 3] = np.nan
        return value, grad

    report = gradcheck.check_gradient(f, X0, mode=mode)
    assert not report.passed
    assert report.checks["x"].worst_index == (2, 3)


def test_check_network_leaves_later_dropout_masks_unchanged() -> None:
    def mask_after(check: bool) -> np.ndarray:
        net = MultiTaskNet(4, 5, 3, 2, p_drop=0.5, seed=1)
        generator = rng(0)
        X = generator.standard_normal((6, 4))
        y_a, y_b = generator.standard_normal((6, 3)), np.arange(6) % 2
        if check:
            assert gradcheck.check_network(net, X, y_a, y_b, mode="fast").passed
        net.forward(X)
        return net.dropout.mask.copy()

    np.testing.assert_array_equal(mask_after(check=True), mask_after(check=False))


class BrokenLinear(Linear):
    """A Linear whose theta gradient has one entry off: the injected bug."""

    offset = 1e-4

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        grad_x = super()._backward(grad_out)
        self.grads["theta"] = self.grads["theta"].copy()
        self.grads["theta"][1, 2] += self.offset
        return grad_x


@pytest.mark.parametrize("mode", MODES)
def test_a_broken_layer_is_named_at_the_entry(mode: str) -> None:
    layer = BrokenLinear(4, 3, seed=0)
    report = gradcheck.check_layer(layer, rng().standard_normal((5, 4)), mode=mode)
    assert not report.passed
    # The injected constant also makes backward affine rather than linear in grad_out.
    assert report.failures == ["theta", "linear_in_grad_out"]
    assert report.checks["theta"].worst_index == (1, 2)
    assert report.checks["x"].passed and report.checks["b"].passed


def test_fast_mode_localizes_one_wrong_entry_among_thousands() -> None:
    generator = rng(9)
    scale = generator.standard_normal((40, 60))
    x = generator.standard_normal((40, 60))

    def f(v: np.ndarray) -> tuple[float, np.ndarray]:
        grad = 2 * scale * v
        grad[17, 33] *= -1
        return float(np.sum(scale * v**2)), grad

    report = gradcheck.check_gradient(f, x, mode="fast")
    check = report.checks["x"]
    assert not report.passed
    assert check.worst_index == (17, 33)
    # Bisection costs O(log size) evaluations, far below the 4 per entry of full.
    assert report.n_evaluations < 0.1 * 4 * x.size


# -- kinks -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_inputs_exactly_at_relu_kink_are_kinks_not_failures(mode: str) -> None:
    x = rng(10).uniform(0.5, 2.0, size=(5, 4)) * rng(11).choice([-1, 1], (5, 4))
    at_kink = [(0, 0), (2, 3), (4, 1)]
    for index in at_kink:
        x[index] = 0.0
    x[1, 1] = 1e-4  # inside the step: the step is shortened
    report = gradcheck.check_layer(ReLU(), x, mode=mode)
    check = report.checks["x"]
    assert report.passed, str(report)
    assert check.n_kinks >= len(at_kink)
    assert set(at_kink) <= set(check.kink_indices)


class HalfReLU(ReLU):
    """ReLU whose derivative at 0 is 1/2: matches neither one-sided derivative."""

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        x_is_zero = ~self._positive & (self._x == 0)
        return grad_out * (self._positive + 0.5 * x_is_zero)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return super()._forward(x)


def test_a_kink_does_not_hide_a_wrong_subgradient() -> None:
    x = rng(12).uniform(0.5, 2.0, size=(3, 3))
    x[1, 2] = 0.0
    report = gradcheck.check_layer(HalfReLU(), x)
    assert not report.passed
    assert report.checks["x"].worst_index == (1, 2)


def test_an_undeclared_kink_is_found_after_the_fact() -> None:
    x = np.array([1.0, 0.0, -2.0, 0.0, 0.5])

    def relu_sum(v: np.ndarray) -> tuple[float, np.ndarray]:
        return float(np.sum(np.maximum(v, 0))), (v > 0).astype(float)

    report = gradcheck.check_gradient(relu_sum, x)
    assert report.passed, str(report)
    assert sorted(report.checks["x"].kink_indices) == [(1,), (3,)]


def test_network_kinks_are_counted_not_failed() -> None:
    net, X, y_a, y_b = network_case(0.0, "int", m=6)
    # Put one x_BN entry exactly on 0: b_1B cancels the centred x_1B of sample 0.
    x_1b = X @ net.params["theta_1B"].T
    centred = x_1b - x_1b.mean(axis=0)
    net.params["b_1B"][0] = -centred[0, 0]
    report = gradcheck.check_network(net, X, y_a, y_b)
    assert report.passed, str(report)
    assert report.checks["b_1B"].n_kinks >= 1


# -- Richardson's estimate tracks the known error --------------------------------------


@pytest.mark.parametrize(
    "name, f, df, x0",
    [
        ("exp", np.exp, np.exp, 0.7),
        ("sin", np.sin, np.cos, 1.1),
        ("cubic", lambda x: x**3 - 2 * x, lambda x: 3 * x**2 - 2, 0.4),
    ],
)
@pytest.mark.parametrize("h", [0.4, 0.1])
def test_richardson_estimate_tracks_the_true_error(
    name: str, f: Any, df: Any, x0: float, h: float
) -> None:
    x = np.array([x0])
    exact = float(df(x0))

    def value_and_exact_gradient(v: np.ndarray) -> tuple[float, np.ndarray]:
        return float(np.sum(f(v))), np.asarray(df(v))

    report = gradcheck.check_gradient(value_and_exact_gradient, x, mode="precise", h=h)
    check = report.checks["x"]
    true_error = abs(check.worst_numeric - exact)
    assert check.error_estimate is not None
    assert report.passed
    if name == "cubic":
        # Exact polynomial: only rounding is left, which the estimate bounds.
        assert true_error <= check.error_estimate
    else:
        # Truncation dominates at these steps: the estimate is the error, to a factor.
        assert 0.5 * true_error <= check.error_estimate <= 2 * true_error + 1e-12


def test_precise_mode_fails_an_error_above_its_estimate() -> None:
    x = np.array([0.3, -1.2])

    def f(v: np.ndarray) -> tuple[float, np.ndarray]:
        return float(np.sum(np.exp(v))), np.exp(v) * (1 + 1e-8)

    assert gradcheck.check_gradient(f, x, mode="full").passed  # 1e-8 < rtol 1e-7
    report = gradcheck.check_gradient(f, x, mode="precise")
    assert not report.passed  # but 1e-8 is far above the quotient's own error
    assert report.checks["x"].max_ratio is not None
    assert report.checks["x"].max_ratio > report.rtol


# -- report, vacuous checks, diagnostics -----------------------------------------------


def test_report_serialises_and_prints() -> None:
    report = gradcheck.check_layer(BrokenLinear(4, 3, seed=0), rng().random((5, 4)))
    document = json.loads(json.dumps(report.to_dict()))
    assert document["passed"] is False
    rows = {row["name"]: row for row in document["checks"]}
    assert rows["theta"]["worst_index"] == [1, 2]
    assert rows["theta"]["verdict"] == "FAIL"
    text = str(report)
    assert "FAILED" in text
    theta_line = next(line for line in text.splitlines() if line.startswith("theta"))
    assert "[1, 2]" in theta_line and "FAIL" in theta_line


def test_uniform_grad_out_makes_a_normalisation_vacuous() -> None:
    x = rng(13).standard_normal((5, 3))
    vacuous = gradcheck.check_layer(MeanCenterBN(3), x, grad_out=np.ones((5, 3)))
    assert vacuous.checks["x"].vacuous
    assert vacuous.checks["x"].verdict == "vacuous"
    assert "near zero" in str(vacuous)
    default = gradcheck.check_layer(MeanCenterBN(3), x)
    assert not default.checks["x"].vacuous


def test_all_negative_relu_input_is_vacuous() -> None:
    report = gradcheck.check_layer(ReLU(), -rng().uniform(0.5, 1, size=(3, 4)))
    assert report.passed and report.checks["x"].vacuous


class NoisyBackward(Sine):
    """A backward that differs from call to call, by 1e-14 times the call count."""

    calls = 0

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        self.calls += 1
        return super()._backward(grad_out) + 1e-14 * self.calls


class SquaredBackward(Sine):
    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        return super()._backward(grad_out) * np.abs(grad_out)


def test_diagnostics_catch_nondeterminism_and_nonlinearity() -> None:
    x = rng().standard_normal((4, 3))
    noisy = gradcheck.check_layer(NoisyBackward(), x, mode="fast")
    assert not noisy.diagnostics["backward_deterministic"][0]
    assert "backward_deterministic" in noisy.failures
    squared = gradcheck.check_layer(SquaredBackward(), x, mode="fast")
    assert not squared.diagnostics["linear_in_grad_out"][0]


# -- float32 ---------------------------------------------------------------------------


def test_float32_layer_is_checked_in_float64_at_the_float32_tolerance() -> None:
    layer = Linear(6, 5, seed=0, dtype=np.float32)
    x = rng().standard_normal((7, 6)).astype(np.float32)
    report = gradcheck.check_layer(layer, x)
    assert report.dtype == "float32"
    assert report.rtol == gradcheck.TOLERANCES["float32"][0]
    assert report.passed, str(report)
    # float32 resolves about 1e-6 of the scale; the tolerance, 1e-3: an entry off by
    # 1e-2 is caught, one off by 1e-4 (caught in float64 above) is below the bar.
    broken = BrokenLinear(6, 5, seed=0, dtype=np.float32)
    broken.offset = 1e-2
    broken_report = gradcheck.check_layer(broken, x)
    assert not broken_report.passed
    assert broken_report.checks["theta"].worst_index == (1, 2)


def test_float32_network_is_checked_against_a_float64_twin() -> None:
    net = MultiTaskNet(5, 6, 4, 3, seed=3, dtype=np.float32)
    generator = rng(6)
    X = generator.standard_normal((7, 5)).astype(np.float32)
    report = gradcheck.check_network(
        net, X, generator.standard_normal((7, 4)), generator.integers(0, 3, 7)
    )
    assert report.dtype == "float32"
    assert report.passed, str(report)


# -- bad input -------------------------------------------------------------------------


def test_bad_input_is_refused_with_a_sentence() -> None:
    x = rng().standard_normal((3, 2))
    with pytest.raises(ValueError, match="`mode` must be one of full, sampled"):
        gradcheck.check_layer(Sine(), x, mode="quick")
    with pytest.raises(TypeError, match="`layer` must be a multitask_bp Layer"):
        gradcheck.check_layer("Sine", x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`net` must be a MultiTaskNet"):
        gradcheck.check_network(Sine(), x, x, x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`n_samples` must be at least 1"):
        gradcheck.check_layer(Sine(), x, mode="sampled", n_samples=0)
    with pytest.raises(
        ValueError, match=r"gradient must have the shape of `x` \(3, 2\)"
    ):
        gradcheck.check_gradient(lambda v: (0.0, np.zeros(3)), x)
    with pytest.raises(TypeError, match="must return a pair"):
        gradcheck.check_gradient(lambda v: 1.0, x)
    with pytest.raises(ValueError, match="boundary of its domain"):
        gradcheck.check_loss(CrossEntropyLoss(), np.array([[1.0, 0.0]]), [0])
