"""Bad input is refused at the door, with a message naming the argument, what was
expected and what was received.

Each case calls the public API (a layer, a loss) and matches the whole sentence's
three parts, so that a vaguer message or a numpy error from deep inside fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from multitask_bp import (
    BatchNorm,
    CrossEntropyLoss,
    Dropout,
    Layer,
    Linear,
    MeanCenterBN,
    MSELoss,
    ReLU,
    Sine,
    Softmax,
    SoftmaxCrossEntropyLoss,
)

LAYERS: dict[str, Callable[[], Layer]] = {
    "linear": lambda: Linear(3, 2, seed=0),
    "sine": Sine,
    "relu": ReLU,
    "softmax": Softmax,
    "dropout": lambda: Dropout(0.5, seed=0),
    "mean-center-bn": lambda: MeanCenterBN(3),
    "batch-norm": lambda: BatchNorm(3),
}

Case = tuple[Callable[[], Any], type[Exception], str]


def _cases(cases: dict[str, Case]) -> Any:
    return pytest.mark.parametrize(
        ("call", "error", "message"), list(cases.values()), ids=list(cases)
    )


def _refuses(call: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


# Layer inputs ------------------------------------------------------------------------


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize(
    ("x", "received"),
    [(np.ones(3), r"1-D shape \(3,\)"), (np.ones((2, 3, 1)), r"3-D shape \(2, 3, 1\)")],
    ids=["1-D", "3-D"],
)
def test_x_of_the_wrong_number_of_dimensions(
    name: str, x: np.ndarray, received: str
) -> None:
    expected = r"`x` must be 2-D with shape \(m, n\), batch first; got "
    _refuses(lambda: LAYERS[name]().forward(x), ValueError, expected + received)


@pytest.mark.parametrize("name", ["linear", "mean-center-bn", "batch-norm"])
def test_x_with_the_wrong_feature_count(name: str) -> None:
    message = r"`x` must have 3 columns \(n_in\), got shape \(4, 5\)"
    _refuses(lambda: LAYERS[name]().forward(np.ones((4, 5))), ValueError, message)


@pytest.mark.parametrize("name", LAYERS)
def test_x_with_no_sample(name: str) -> None:
    message = r"`x` must hold at least one sample, got shape \(0, 3\)"
    _refuses(lambda: LAYERS[name]().forward(np.ones((0, 3))), ValueError, message)


@pytest.mark.parametrize("name", LAYERS)
def test_grad_out_of_the_wrong_shape(name: str) -> None:
    layer = LAYERS[name]()
    y = layer.forward(np.arange(12.0).reshape(4, 3))
    message = (
        rf"`grad_out` must have the shape of the forward output "
        rf"{re.escape(str(y.shape))}, got \(4, 7\)"
    )

    _refuses(lambda: layer.backward(np.ones((4, 7))), ValueError, message)
    _refuses(lambda: layer.backward(np.ones(y.size)), ValueError, "`grad_out` must")


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_values_that_are_not_finite(name: str, bad: float) -> None:
    x = np.ones((4, 3))
    x[2, 1] = bad
    layer = LAYERS[name]()
    message = rf"`x` must be finite, got {bad} at index \(2, 1\)"

    _refuses(lambda: layer.forward(x), ValueError, message)

    y = layer.forward(np.ones((4, 3)))
    grad_out = np.ones(y.shape)
    grad_out[0, 0] = bad
    message = rf"`grad_out` must be finite, got {bad} at index \(0, 0\)"
    _refuses(lambda: layer.backward(grad_out), ValueError, message)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize(
    ("x", "received"),
    [
        (np.array([["a", "b", "c"]]), "<U1"),
        (np.ones((1, 3), dtype=complex), "complex128"),
        (np.ones((1, 3), dtype=bool), "bool"),
        (np.array([[1, None, 2]], dtype=object), "object"),
    ],
    ids=["str", "complex", "bool", "object"],
)
def test_x_of_a_bad_dtype(name: str, x: np.ndarray, received: str) -> None:
    message = rf"`x` must hold real numbers \(float or integer\), got dtype {received}"
    _refuses(lambda: LAYERS[name]().forward(x), TypeError, message)


def test_ragged_x() -> None:
    message = r"`x` must be an array of numbers, got \[\[1, 2\], \[3\]\]"
    _refuses(lambda: Sine().forward([[1, 2], [3]]), TypeError, message)


# Constructor arguments ---------------------------------------------------------------


_cases_constructors: dict[str, Case] = {
    "n_in zero": (lambda: Linear(0, 2), ValueError, "`n_in` must be at least 1, got 0"),
    "n_out negative": (
        lambda: Linear(2, -1),
        ValueError,
        "`n_out` must be at least 1, got -1",
    ),
    "n_in float": (
        lambda: Linear(2.5, 2),
        TypeError,
        r"`n_in` must be an integer, got 2\.5",
    ),
    "n_in integral float": (
        lambda: Linear(np.float64(2.0), 2),
        TypeError,
        r"`n_in` must be an integer, got .*2\.0",
    ),
    "n_out string": (
        lambda: Linear(2, "3"),
        TypeError,
        "`n_out` must be an integer, got '3'",
    ),
    "n_in bool": (lambda: Linear(True, 2), TypeError, "`n_in` must be an integer"),
    "mean-center zero": (
        lambda: MeanCenterBN(0),
        ValueError,
        "`n_features` must be at least 1, got 0",
    ),
    "batch-norm negative": (
        lambda: BatchNorm(-1),
        ValueError,
        "`n_features` must be at least 1, got -1",
    ),
    "batch-norm float": (
        lambda: BatchNorm(1.5),
        TypeError,
        r"`n_features` must be an integer, got 1\.5",
    ),
    "p negative": (
        lambda: Dropout(-0.1),
        ValueError,
        r"`p` must lie in \[0, 1\), got -0\.1",
    ),
    "p one": (lambda: Dropout(1.0), ValueError, r"`p` must lie in \[0, 1\), got 1\.0"),
    "p above one": (lambda: Dropout(1.5), ValueError, r"`p` must lie in \[0, 1\)"),
    "p nan": (
        lambda: Dropout(np.nan),
        ValueError,
        r"`p` must lie in \[0, 1\), got nan",
    ),
    "p string": (
        lambda: Dropout("0.5"),
        TypeError,
        "`p` must be a real number, got '0.5'",
    ),
    "p bool": (lambda: Dropout(False), TypeError, "`p` must be a real number"),
    "momentum zero": (
        lambda: BatchNorm(2, momentum=0.0),
        ValueError,
        r"`momentum` must lie in \(0, 1\], got 0\.0",
    ),
    "momentum above one": (
        lambda: MeanCenterBN(2, momentum=1.5),
        ValueError,
        r"`momentum` must lie in \(0, 1\], got 1\.5",
    ),
    "eps zero": (
        lambda: BatchNorm(2, eps=0),
        ValueError,
        r"`eps` must be a finite number above 0, got 0\.0",
    ),
    "eps inf": (
        lambda: BatchNorm(2, eps=np.inf),
        ValueError,
        "`eps` must be a finite number above 0, got inf",
    ),
    "dtype int": (
        lambda: Linear(2, 2, dtype=np.int64),
        TypeError,
        "`dtype` must be float32 or float64, got int64",
    ),
    "dtype float16": (
        lambda: BatchNorm(2, dtype="float16"),
        TypeError,
        "`dtype` must be float32 or float64, got float16",
    ),
    "dtype nonsense": (
        lambda: MeanCenterBN(2, dtype="nonsense"),
        TypeError,
        "`dtype` must be float32 or float64, got 'nonsense'",
    ),
}


@_cases(_cases_constructors)
def test_constructor_arguments(
    call: Callable[[], Any], error: type[Exception], message: str
) -> None:
    _refuses(call, error, message)


def test_softmax_jacobian_of_the_wrong_number_of_dimensions() -> None:
    message = r"`y` must have shape \(k,\) or \(m, k\), got 3-D shape \(1, 2, 2\)"
    _refuses(lambda: Softmax.jacobian(np.ones((1, 2, 2))), ValueError, message)


# Losses ------------------------------------------------------------------------------


def _ce(prediction: Any, target: Any) -> Callable[[], float]:
    return lambda: CrossEntropyLoss().forward(prediction, target)


def _fused(prediction: Any, target: Any) -> Callable[[], float]:
    return lambda: SoftmaxCrossEntropyLoss().forward(prediction, target)


P = np.array([[0.25, 0.75], [0.5, 0.5]])

_cases_targets: dict[str, Case] = {
    "label too large": (
        _fused(P, [0, 2]),
        ValueError,
        r"`target` labels must lie in \[0, 2\) for 2 classes, got 2",
    ),
    "label negative": (
        _ce(P, [-1, 0]),
        ValueError,
        r"`target` labels must lie in \[0, 2\) for 2 classes, got -1",
    ),
    "labels too few": (
        _fused(P, [0]),
        ValueError,
        r"`target` must have 2 labels \(one per sample\), got shape \(1,\)",
    ),
    "labels as floats": (
        _fused(P, [0.0, 1.0]),
        TypeError,
        r"`target` as labels of shape \(m,\) must be integers, got dtype float64",
    ),
    "labels as bools": (
        _ce(P, [True, False]),
        TypeError,
        r"`target` as labels of shape \(m,\) must be integers, got dtype bool",
    ),
    "labels as column": (
        _fused(P, [[0], [1]]),
        ValueError,
        r"`target` as probability rows must have shape \(2, 2\), got \(2, 1\)",
    ),
    "target 3-D": (
        _ce(P, np.ones((2, 2, 1))),
        ValueError,
        r"`target` must be integer labels \(m,\) or probability rows \(m, k\), "
        r"got 3-D shape \(2, 2, 1\)",
    ),
    "rows not summing to 1": (
        _fused(P, [[0.5, 0.4], [0.0, 1.0]]),
        ValueError,
        r"`target` rows must sum to 1, got 0\.9 in row 0",
    ),
    "rows negative": (
        _ce(P, [[1.5, -0.5], [0.0, 1.0]]),
        ValueError,
        r"`target` probabilities must be non-negative, got -0\.5 at index \(0, 1\)",
    ),
    "target nan": (
        _fused(P, [[np.nan, 1.0], [0.0, 1.0]]),
        ValueError,
        r"`target` must be finite, got nan at index \(0, 0\)",
    ),
    "target strings": (
        _ce(P, ["a", "b"]),
        TypeError,
        r"`target` as labels of shape \(m,\) must be integers, got dtype <U1",
    ),
    "probability above 1": (
        _ce([[0.5, 1.5], [0.5, 0.5]], [0, 1]),
        ValueError,
        r"`prediction` must hold probabilities in \[0, 1\], got 1\.5 at index \(0, 1\)",
    ),
    "probability negative": (
        _ce([[0.5, 0.5], [-0.25, 1.25]], [0, 1]),
        ValueError,
        r"`prediction` must hold probabilities in \[0, 1\], got -0\.25 at index "
        r"\(1, 0\)",
    ),
    "prediction 1-D": (
        _fused([0.5, 0.5], [0]),
        ValueError,
        r"`prediction` must be 2-D with shape \(m, n\), batch first; got 1-D",
    ),
    "prediction inf": (
        _fused([[np.inf, 0.0]], [0]),
        ValueError,
        r"`prediction` must be finite, got inf at index \(0, 0\)",
    ),
    "prediction complex": (
        _ce(np.ones((1, 2), dtype=complex), [0]),
        TypeError,
        r"`prediction` must hold real numbers \(float or integer\), got dtype complex",
    ),
    "mse target shape": (
        lambda: MSELoss().forward(np.ones((2, 3)), np.ones((2, 2))),
        ValueError,
        r"`target` must have the shape of `prediction` \(2, 3\), got \(2, 2\)",
    ),
    "mse target 1-D": (
        lambda: MSELoss().forward(np.ones((2, 3)), np.ones(6)),
        ValueError,
        r"`target` must be 2-D with shape \(m, n\), batch first; got 1-D shape \(6,\)",
    ),
    "mse target nan": (
        lambda: MSELoss().forward(np.ones((1, 2)), [[1.0, np.nan]]),
        ValueError,
        r"`target` must be finite, got nan at index \(0, 1\)",
    ),
}


@_cases(_cases_targets)
def test_loss_inputs(
    call: Callable[[], Any], error: type[Exception], message: str
) -> None:
    _refuses(call, error, message)


def test_soft_rows_summing_to_one_within_rounding_are_accepted() -> None:
    """Rows divided by their own sum are off by an ulp or so: that is not wrong."""
    rows = np.random.default_rng(0).uniform(size=(50, 7))
    rows /= rows.sum(axis=1, keepdims=True)

    assert np.isfinite(SoftmaxCrossEntropyLoss().forward(np.zeros((50, 7)), rows))
