"""SGD and Adam against single steps worked by hand, and their exported state.

Each expected value is written out from the update rule on numbers small enough to
follow with pencil and paper (the arithmetic is in the comments); none comes from the
optimizer under test.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_bp import MultiTaskNet
from multitask_bp.optim import SGD, Adam, Optimizer


def params_of(*values: list[float]) -> dict[str, np.ndarray]:
    return {f"p{i}": np.array(v, dtype=np.float64) for i, v in enumerate(values)}


def test_sgd_plain_step() -> None:
    # theta - lr g = [1 - 0.1 * 0.5, -2 - 0.1 * 0.25] = [0.95, -2.025]
    params = params_of([1.0, -2.0])
    SGD(params, lr=0.1).step({"p0": np.array([0.5, 0.25])})
    np.testing.assert_allclose(params["p0"], [0.95, -2.025], rtol=1e-15)


def test_sgd_momentum_two_steps() -> None:
    # v1 = g1 = [1, 2], theta1 = -0.1 v1 = [-0.1, -0.2];
    # v2 = 0.9 v1 + g2 = [0.9 + 0.5, 1.8 - 1] = [1.4, 0.8],
    # theta2 = theta1 - 0.1 v2 = [-0.24, -0.28].
    params = params_of([0.0, 0.0])
    sgd = SGD(params, lr=0.1, momentum=0.9)
    sgd.step({"p0": np.array([1.0, 2.0])})
    np.testing.assert_allclose(params["p0"], [-0.1, -0.2], rtol=1e-15)
    sgd.step({"p0": np.array([0.5, -1.0])})
    np.testing.assert_allclose(params["p0"], [-0.24, -0.28], rtol=1e-14)
    np.testing.assert_allclose(sgd.state_dict()["velocity.p0"], [1.4, 0.8], rtol=1e-15)


def test_sgd_nesterov_two_steps() -> None:
    # Step 1: v = [1, 2]; theta -= 0.1 (g + 0.9 v) = 0.1 [1.9, 3.8] -> [-0.19, -0.38].
    # Step 2: v = [1.4, 0.8]; g + 0.9 v = [0.5 + 1.26, -1 + 0.72] = [1.76, -0.28];
    # theta = [-0.19 - 0.176, -0.38 + 0.028] = [-0.366, -0.352].
    params = params_of([0.0, 0.0])
    sgd = SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    sgd.step({"p0": np.array([1.0, 2.0])})
    np.testing.assert_allclose(params["p0"], [-0.19, -0.38], rtol=1e-14)
    sgd.step({"p0": np.array([0.5, -1.0])})
    np.testing.assert_allclose(params["p0"], [-0.366, -0.352], rtol=1e-14)


def test_sgd_weight_decay_is_added_to_the_gradient() -> None:
    # g' = 0.5 + 0.1 * 2 = 0.7; theta = 2 - 0.1 * 0.7 = 1.93. A zero gradient still
    # shrinks: -3 - 0.1 * (0.1 * -3) = -2.97.
    params = params_of([2.0, -3.0])
    SGD(params, lr=0.1, weight_decay=0.1).step({"p0": np.array([0.5, 0.0])})
    np.testing.assert_allclose(params["p0"], [1.93, -2.97], rtol=1e-15)


def test_adam_first_step_is_lr_times_the_sign() -> None:
    # m1 = 0.1 g, v1 = 0.001 g^2; bias-corrected m_hat = g, v_hat = g^2, so the step
    # is lr g / (|g| + eps): lr * sign(g) up to eps, whatever the gradient's scale.
    params = params_of([1.0, 1.0, 1.0])
    g = np.array([0.5, -2.0, 1e-3])
    Adam(params, lr=0.01).step({"p0": g})
    expected = 1.0 - 0.01 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(params["p0"], expected, rtol=1e-15)


def test_adam_second_step_bias_correction() -> None:
    # With g1 = 0.5 and g2 = -0.25 and the default betas (0.9, 0.999):
    # m2 = 0.9 * 0.05 + 0.1 * (-0.25) = 0.02, v2 = 0.999 * 0.00025 + 0.001 * 0.0625
    # = 0.00031225; corrections 1 - 0.9^2 = 0.19 and 1 - 0.999^2 = 0.001999.
    params = params_of([0.0])
    adam = Adam(params, lr=0.1)
    adam.step({"p0": np.array([0.5])})
    after_one = -0.1 * 0.5 / (0.5 + 1e-8)
    np.testing.assert_allclose(params["p0"], [after_one], rtol=1e-15)
    adam.step({"p0": np.array([-0.25])})
    m_hat = 0.02 / 0.19
    v_hat = 0.00031225 / 0.001999
    expected = after_one - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8)
    np.testing.assert_allclose(params["p0"], [expected], rtol=1e-13)
    state = adam.state_dict()
    np.testing.assert_allclose(state["m.p0"], [0.02], rtol=1e-14)
    np.testing.assert_allclose(state["v.p0"], [0.00031225], rtol=1e-14)
    assert int(state["t"]) == 2


def test_adam_weight_decay_coupled_and_decoupled() -> None:
    # Coupled (L2): g' = 1 + 0.5 * 2 = 2, and the first step is lr * sign(g') = 0.1.
    params = params_of([2.0])
    Adam(params, lr=0.1, weight_decay=0.5).step({"p0": np.array([1.0])})
    np.testing.assert_allclose(params["p0"], [2.0 - 0.1 * 2 / (2 + 1e-8)], rtol=1e-15)
    # Decoupled (AdamW): theta = 2 - 0.1 * 0.5 * 2 = 1.9 first, then the Adam step on
    # g = -1 alone: 1.9 + 0.1 * 1 / (1 + 1e-8).
    params = params_of([2.0])
    Adam(params, lr=0.1, weight_decay=0.5, decoupled_weight_decay=True).step(
        {"p0": np.array([-1.0])}
    )
    np.testing.assert_allclose(params["p0"], [1.9 + 0.1 / (1 + 1e-8)], rtol=1e-15)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda p: Adam(p, lr=0.01, weight_decay=1e-3),
        lambda p: Adam(p, lr=0.01, weight_decay=1e-3, decoupled_weight_decay=True),
    ],
)
def test_network_params_update_in_place_and_flat_path_matches(
    make: Callable[[dict[str, np.ndarray]], Optimizer],
) -> None:
    # net.params tile net.flat_params, so the optimizer updates the flat vector in one
    # go; separate arrays take the per-parameter path. Same arithmetic per element, so
    # the same bits, and the network must see every update.
    net = MultiTaskNet(3, 4, 2, 3, p_drop=0.0, seed=1)
    separate = {name: value.copy() for name, value in net.params.items()}
    on_net, on_copies = make(net.params), make(separate)
    assert on_net._flat is net.flat_params
    assert on_copies._flat is None
    rng = np.random.default_rng(0)
    before = net.flat_params.copy()
    for _ in range(3):
        grads = {n: rng.standard_normal(v.shape) for n, v in separate.items()}
        on_net.step(grads)
        on_copies.step(grads)
    assert not np.array_equal(net.flat_params, before)
    for name, value in net.params.items():
        np.testing.assert_array_equal(value, separate[name])
    for key, value in on_net.state_dict().items():
        np.testing.assert_array_equal(value, on_copies.state_dict()[key])


@settings(max_examples=15)
@given(steps=st.integers(0, 4), nesterov=st.booleans(), seed=st.integers(0, 2**16))
def test_state_round_trip_continues_identically(
    steps: int, nesterov: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    grads = [
        {"p0": rng.standard_normal((2, 3)), "p1": rng.standard_normal(3)}
        for _ in range(steps + 2)
    ]
    for make in (
        lambda p: SGD(p, lr=0.1, momentum=0.5, nesterov=nesterov),
        lambda p: Adam(p, lr=0.1),
    ):
        first = {"p0": np.ones((2, 3)), "p1": np.zeros(3)}
        original = make(first)
        for g in grads[:steps]:
            original.step(g)
        second = {name: value.copy() for name, value in first.items()}
        restored = make(second)
        restored.load_state_dict(original.state_dict())
        for g in grads[steps:]:
            original.step(g)
            restored.step(g)
        for name in first:
            np.testing.assert_array_equal(first[name], second[name])


def test_load_state_dict_refuses_a_mismatch_and_changes_nothing() -> None:
    params = params_of([1.0, 2.0])
    adam = Adam(params)
    adam.step({"p0": np.array([1.0, 1.0])})
    good = adam.state_dict()
    with pytest.raises(ValueError, match=r"missing \['v.p0'\]"):
        adam.load_state_dict({k: v for k, v in good.items() if k != "v.p0"})
    with pytest.raises(ValueError, match="'m.p0' must have shape"):
        adam.load_state_dict({**good, "m.p0": np.zeros(3)})
    with pytest.raises(ValueError, match="'v.p0' must be finite"):
        adam.load_state_dict({**good, "v.p0": np.array([np.nan, 0.0])})
    with pytest.raises(ValueError, match="`t` must be >= 0"):
        adam.load_state_dict({**good, "t": np.array(-1)})
    for key, value in adam.state_dict().items():
        np.testing.assert_array_equal(value, good[key])


def test_bad_arguments_are_refused_with_a_sentence() -> None:
    with pytest.raises(ValueError, match="`lr` must be a finite number above 0"):
        SGD(params_of([1.0]), lr=0.0)
    with pytest.raises(ValueError, match="`nesterov` needs `momentum` above 0"):
        SGD(params_of([1.0]), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"`momentum` must lie in \[0, 1\)"):
        SGD(params_of([1.0]), lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="`weight_decay` must be a finite number >= 0"):
        Adam(params_of([1.0]), weight_decay=-1.0)
    with pytest.raises(TypeError, match="must be a floating numpy array"):
        SGD({"p0": np.array([1, 2])}, lr=0.1)
    with pytest.raises(TypeError, match="non-empty mapping"):
        Adam({})
    sgd = SGD(params_of([1.0, 2.0]), lr=0.1)
    with pytest.raises(ValueError, match=r"missing \['p0'\]"):
        sgd.step({})
    with pytest.raises(ValueError, match=r"`grads\['p0'\]` must have the shape"):
        sgd.step({"p0": np.zeros(3)})
