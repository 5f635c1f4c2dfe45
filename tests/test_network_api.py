"""MultiTaskNet's contract: parameters, flat views, modes, float32, refused input.

Expected values come from the float64 reference forward in tests/_netfd.py, from
hand-worked running means, or from identities (a round trip, a sum); none from the
network's own output.
"""

from __future__ import annotations

import math
import re

import _netfd as fd
import numpy as np
import pytest
import scipy.optimize

from multitask_bp import MultiTaskNet

WIDTHS = (3, 4, 2, 3)  # n_in, n_hidden, n_shared, n_classes


def batch(m: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (m, n_in), y_a_true (m, n_shared), integer labels (m,) for WIDTHS."""
    rng = np.random.default_rng(seed)
    n_in, _, n_shared, n_classes = WIDTHS
    return (
        rng.uniform(-2, 2, (m, n_in)),
        rng.uniform(-2, 2, (m, n_shared)),
        rng.integers(0, n_classes, m),
    )


def net(**kwargs: object) -> MultiTaskNet:
    kwargs.setdefault("seed", 0)
    return MultiTaskNet(*WIDTHS, **kwargs)  # type: ignore[arg-type]


# -- params ---------------------------------------------------------------------------


def test_params_are_exactly_the_eight_with_their_shapes() -> None:
    network = net()
    params = network.params
    assert list(params) == list(fd.NAMES)
    shape_of = fd.shapes(*WIDTHS)
    for name in fd.NAMES:
        assert params[name].shape == shape_of[name], name
        assert params[name].dtype == np.float64, name
    assert network.n_params == sum(math.prod(shape) for shape in shape_of.values())


@pytest.mark.parametrize("name", fd.NAMES)
def test_writing_into_a_parameter_in_place_changes_the_output(name: str) -> None:
    network = net(p_drop=0.0)
    X, _, _ = batch()
    y_a, y_b = network.forward(X)
    before = {n: p.copy() for n, p in network.params.items()}
    # Shift b_1B up so that ReLU passes every sample and theta_1B and b_1B reach y_b.
    network.params["b_1B"][...] += 10.0
    network.params[name][...] += 0.5
    y_a_new, y_b_new = network.forward(X)

    expected = {n: p.copy() for n, p in before.items()}
    expected["b_1B"] += 10.0
    expected[name] += 0.5
    reference = fd.reference_forward(expected, X)
    np.testing.assert_allclose(y_a_new, reference["y_a"], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(
        np.log(y_b_new), reference["log_y_b"], rtol=1e-12, atol=1e-12
    )
    changed = not np.array_equal(y_a_new, y_a) or not np.array_equal(y_b_new, y_b)
    assert changed
    # The write also shows in the flat vector: params are views into it.
    where = fd.slices(fd.shapes(*WIDTHS))[name]
    np.testing.assert_array_equal(
        network.flat_params[where], network.params[name].ravel()
    )


def test_flat_params_hold_the_params_in_the_documented_order() -> None:
    network = net()
    flat = network.flat_params
    assert flat.shape == (network.n_params,)
    shape_of = fd.shapes(*WIDTHS)
    for name, value in fd.unflatten(flat, shape_of).items():
        np.testing.assert_array_equal(value, network.params[name])


def test_set_flat_params_round_trips_and_writes_through_to_params() -> None:
    network = net()
    vector = np.arange(network.n_params, dtype=np.float64) / 7.0
    network.set_flat_params(vector)
    np.testing.assert_array_equal(network.flat_params, vector)
    for name, value in fd.unflatten(vector, fd.shapes(*WIDTHS)).items():
        np.testing.assert_array_equal(network.params[name], value)
    # The vector is copied in, not aliased.
    vector[0] = 123.0
    assert network.flat_params[0] == 0.0
    # Writing into flat_params in place changes params.
    network.flat_params[-1] = -4.0
    assert network.params["b_2B"][-1] == -4.0


def test_flat_grads_agree_with_grads() -> None:
    network = net(p_drop=0.5)
    X, y_a_true, y_b_true = batch()
    network.forward(X)
    network.loss(y_a_true, y_b_true)
    grads = network.backward()
    flat = network.flat_grads
    assert flat.shape == (network.n_params,)
    for name, value in fd.unflatten(flat, fd.shapes(*WIDTHS)).items():
        np.testing.assert_array_equal(value, grads[name])
    # backward returns a copy of the dict: the network's own record is not changed.
    grads.clear()
    assert list(network.grads) == list(fd.NAMES)


def test_set_flat_params_refuses_a_wrong_shape_or_non_finite_values() -> None:
    network = net()
    with pytest.raises(ValueError, match=r"`vector` must have shape \(\d+,\)"):
        network.set_flat_params(np.zeros(network.n_params + 1))
    bad = np.zeros(network.n_params)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="`vector` must be finite"):
        network.set_flat_params(bad)


def test_flat_grads_before_backward_is_refused() -> None:
    with pytest.raises(RuntimeError, match="backward"):
        _ = net().flat_grads


# -- objective for scipy --------------------------------------------------------------


def test_objective_passes_scipy_check_grad_with_a_held_mask() -> None:
    network = net(p_drop=0.5)
    X, y_a_true, y_b_true = batch(6)
    fd.keep_relu_off_kink(network.params, X)
    network.forward(X)  # draws the mask that the objective then holds
    f = network.objective(X, y_a_true, y_b_true)
    x0 = network.flat_params.copy()
    with network.dropout.held_mask():
        # check_grad takes a forward difference with step 1.5e-8: its error is about
        # sqrt(eps) times the curvature, so 1e-6 of the gradient's norm is its bar.
        error = scipy.optimize.check_grad(
            lambda v: f(v)[0], lambda v: f(v)[1], x0, seed=0
        )
        norm = np.linalg.norm(f(x0)[1])
    assert error <= 1e-6 * norm


def test_objective_value_and_gradient_against_the_reference() -> None:
    network = net(p_drop=0.5)
    X, y_a_true, y_b_true = batch(6)
    distance = fd.keep_relu_off_kink(network.params, X)
    network.forward(X)
    mask = network.dropout.mask.copy()
    f = network.objective(X, y_a_true, y_b_true)
    shape_of = fd.shapes(*WIDTHS)
    rows = fd.one_hot(y_b_true, WIDTHS[3])

    def reference(vector: np.ndarray) -> float:
        params = fd.unflatten(vector, shape_of)
        return fd.reference_losses(params, X, y_a_true, rows, mask=mask)[0]

    x0 = network.flat_params.copy()
    with network.dropout.held_mask():
        value, grad = f(x0)
        # A fresh vector each call: a later call does not overwrite the first result.
        kept = grad.copy()
        f(x0 + 0.01)
    np.testing.assert_array_equal(grad, kept)
    np.testing.assert_array_equal(network.flat_params, x0 + 0.01)
    assert fd.relative_error(value, reference(x0)) <= 1e-13
    steps = fd.safe_steps(shape_of, X, distance)
    numeric = [
        fd.extrapolated_difference(reference, x0, i, steps[i]) for i in range(x0.size)
    ]
    errors = [fd.relative_error(a, n) for a, n in zip(grad, numeric, strict=True)]
    assert max(errors) <= fd.TOLERANCE


def test_objective_drives_scipy_minimize() -> None:
    network = net(p_drop=0.0)
    X, y_a_true, y_b_true = batch(8)
    f = network.objective(X, y_a_true, y_b_true)
    x0 = network.flat_params.copy()
    start = f(x0)[0]
    result = scipy.optimize.minimize(
        f, x0, jac=True, method="L-BFGS-B", options={"maxiter": 30}
    )
    assert result.fun < 0.5 * start


def test_objective_refuses_bad_data_at_once() -> None:
    with pytest.raises(ValueError, match="`y_a_true` must have 5 rows"):
        net().objective(batch()[0], batch(4)[1], batch()[2])


# -- dropout mask ---------------------------------------------------------------------


def test_dropout_mask_is_the_m_of_the_last_training_forward() -> None:
    network = net(p_drop=0.5)
    X, _, _ = batch(8)
    y_a, _ = network.forward(X)
    mask = network.dropout.mask
    assert mask.shape == (8, WIDTHS[1])
    assert set(np.unique(mask)) <= {0.0, 2.0}  # inverted: 0 or 1/(1 - p)
    reference = fd.reference_forward(network.params, X, mask)
    np.testing.assert_allclose(y_a, reference["y_a"], rtol=1e-13, atol=1e-13)

    # An eval forward applies no mask and leaves the last one in place.
    network.eval()
    network.forward(X)
    assert network.dropout.mask is mask
    # The next training forward draws a new one.
    network.train()
    y_a, _ = network.forward(X)
    assert not np.array_equal(network.dropout.mask, mask)
    reference = fd.reference_forward(network.params, X, network.dropout.mask)
    np.testing.assert_allclose(y_a, reference["y_a"], rtol=1e-13, atol=1e-13)


# -- eval mode ------------------------------------------------------------------------


def test_eval_is_deterministic_without_dropout_and_uses_the_running_mean() -> None:
    network = net(p_drop=0.5)
    batches = [batch(6, seed)[0] for seed in (1, 2, 3)]
    # The running mean by hand: it starts at 0 and moves by momentum 0.1 towards
    # each training batch's mean of x_1B = X theta_1B^T.
    theta_1b = network.params["theta_1B"].copy()
    running_mean = np.zeros(WIDTHS[2])
    for X in batches:
        network.forward(X)
        running_mean = 0.9 * running_mean + 0.1 * (X @ theta_1b.T).mean(axis=0)
    np.testing.assert_allclose(network.bn.running_mean, running_mean, rtol=1e-14)

    network.eval()
    X, _, _ = batch(4, seed=9)
    y_a, y_b = network.forward(X)
    y_a_again, y_b_again = network.forward(X)
    np.testing.assert_array_equal(y_a, y_a_again)
    np.testing.assert_array_equal(y_b, y_b_again)
    # Eval forwards leave the running mean alone.
    np.testing.assert_allclose(network.bn.running_mean, running_mean, rtol=1e-14)

    reference = fd.reference_forward(network.params, X, None, running_mean)
    np.testing.assert_allclose(y_a, reference["y_a"], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.log(y_b), reference["log_y_b"], rtol=1e-12)

    # Each sample's output depends on that sample alone, so a batch of one works.
    y_a_one, y_b_one = network.forward(X[2:3])
    np.testing.assert_allclose(y_a_one, y_a[2:3], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(y_b_one, y_b[2:3], rtol=1e-14, atol=1e-15)
    network.loss(np.zeros((1, WIDTHS[2])), np.array([1]))
    assert list(network.backward()) == list(fd.NAMES)


def test_train_and_eval_set_every_layer() -> None:
    network = net()
    assert network.eval() is network
    assert not network.training
    assert not network.dropout.training and not network.bn.training
    network.train()
    assert network.training and network.dropout.training and network.bn.training


# -- float32 --------------------------------------------------------------------------


@pytest.mark.parametrize("p_drop", [0.0, 0.5])
@pytest.mark.parametrize("kind", ["labels", "soft"])
def test_float32_end_to_end_is_close_to_float64(p_drop: float, kind: str) -> None:
    rng = np.random.default_rng(7)
    widths = (6, 8, 5, 4)
    m = 16
    net32 = MultiTaskNet(*widths, p_drop=p_drop, seed=7, dtype=np.float32)
    net64 = MultiTaskNet(*widths, p_drop=p_drop, seed=8)
    X = rng.uniform(-2, 2, (m, 6)).astype(np.float32)
    y_a_true = rng.uniform(-2, 2, (m, 5)).astype(np.float32)
    labels = rng.integers(0, 4, m)
    if kind == "labels":
        y_b_true: np.ndarray = labels
    else:
        soft = rng.uniform(0, 1, (m, 4)) + fd.one_hot(labels, 4)
        y_b_true = (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)
    # Both networks must take the same ReLU branches: keep x_BN off 0 in float64,
    # then round b_1B to float32 so that both hold exactly the same parameters.
    params = {name: value.astype(np.float64) for name, value in net32.params.items()}
    fd.keep_relu_off_kink(params, X.astype(np.float64))
    net32.params["b_1B"][...] = params["b_1B"]
    net64.set_flat_params(net32.flat_params.astype(np.float64))

    y_a32, y_b32 = net32.forward(X)
    net64.dropout.mask = net32.dropout.mask.astype(np.float64)
    with net64.dropout.held_mask():
        y_a64, y_b64 = net64.forward(X.astype(np.float64))
    assert y_a32.dtype == np.float32 and y_b32.dtype == np.float32
    assert net32.flat_params.dtype == np.float32
    assert net32.dropout.mask.dtype == np.float32

    losses32 = net32.loss(y_a_true, y_b_true)
    losses64 = net64.loss(y_a_true.astype(np.float64), y_b_true)
    grads32, grads64 = net32.backward(), net64.backward()
    assert all(math.isfinite(v) for v in (losses32.total, losses32.a, losses32.b))
    assert net32.flat_grads.dtype == np.float32

    # float32's unit roundoff is 6e-8. The chain is about ten operations deep and the
    # bias gradients sum m = 16 terms that partly cancel; over 200 random networks
    # (m up to 64, widths up to 32) the worst normwise relative error of a gradient
    # was 2.5e-6. 1e-4 leaves forty times that, and a wrong gradient term would be
    # off by order 1.
    np.testing.assert_allclose(y_a32, y_a64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y_b32, y_b64, rtol=1e-5, atol=1e-6)
    assert fd.relative_error(losses32.total, losses64.total) <= 1e-5
    for name in fd.NAMES:
        assert grads32[name].dtype == np.float32, name
        difference = np.linalg.norm(grads32[name] - grads64[name])
        assert difference <= 1e-4 * np.linalg.norm(grads64[name]) + 1e-12, name


def test_float32_with_a_float64_batch_casts_the_batch() -> None:
    network = net(dtype=np.float32)
    X, y_a_true, y_b_true = batch()
    y_a, y_b = network.forward(X)
    assert y_a.dtype == np.float32 and y_b.dtype == np.float32
    network.loss(y_a_true, y_b_true)
    assert all(g.dtype == np.float32 for g in network.backward().values())


# -- refused input --------------------------------------------------------------------


def test_x_of_the_wrong_width_is_refused() -> None:
    X = np.zeros((4, 2))
    message = re.escape("`X` must have 3 columns (n_in), got shape (4, 2)")
    with pytest.raises(ValueError, match=message):
        net().forward(X)


def test_x_not_two_dimensional_is_refused() -> None:
    with pytest.raises(ValueError, match=r"`X` must be 2-D .* got 1-D shape \(3,\)"):
        net().forward(np.zeros(3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_x_is_refused(bad: float) -> None:
    X, _, _ = batch()
    X[2, 1] = bad
    with pytest.raises(ValueError, match=rf"`X` must be finite, got {bad} at index"):
        net().forward(X)


def test_a_batch_of_one_is_refused_in_training_and_allowed_in_eval() -> None:
    network = net()
    X = np.ones((1, 3))
    with pytest.raises(ValueError, match=r"at least 2 samples in training.*eval\(\)"):
        network.forward(X)
    network.eval()
    y_a, y_b = network.forward(X)
    assert y_a.shape == (1, 2) and y_b.shape == (1, 3)


def forwarded(m: int = 5) -> MultiTaskNet:
    network = net()
    network.forward(batch(m)[0])
    return network


@pytest.mark.parametrize(
    ("y_a_true", "message"),
    [
        (np.zeros((4, 2)), "`y_a_true` must have 5 rows, one per sample of the last"),
        (np.zeros((5, 3)), re.escape("`y_a_true` must have 2 columns (n_shared)")),
        (np.zeros(5), "`y_a_true` must be 2-D"),
    ],
)
def test_y_a_not_matching_x_or_the_widths_is_refused(
    y_a_true: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        forwarded().loss(y_a_true, batch()[2])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_y_a_is_refused(bad: float) -> None:
    y_a_true = np.zeros((5, 2))
    y_a_true[4, 0] = bad
    with pytest.raises(ValueError, match=rf"`y_a_true` must be finite, got {bad}"):
        forwarded().loss(y_a_true, batch()[2])


@pytest.mark.parametrize(
    ("y_b_true", "error", "message"),
    [
        (np.array([0, 1, 2, 0]), ValueError, "`y_b_true` must have 5 labels"),
        (np.array([0, 1, 3, 0, 1]), ValueError, r"labels must lie in \[0, 3\).*got 3"),
        (np.array([0, -1, 2, 0, 1]), ValueError, r"must lie in \[0, 3\).*got -1"),
        (np.array([0.0, 1.0, 2.0, 0.0, 1.0]), TypeError, "must be integers, got dtype"),
        (
            np.eye(3)[[0, 1, 2, 0]],
            ValueError,
            r"must have shape \(5, 3\), got \(4, 3\)",
        ),
        (np.ones((5, 2)) / 2, ValueError, r"must have shape \(5, 3\), got \(5, 2\)"),
        (np.ones((5, 3)), ValueError, "`y_b_true` rows must sum to 1, got 3.0"),
        (
            np.array([[1.5, -0.5, 0.0]] * 5),
            ValueError,
            "`y_b_true` probabilities must be non-negative",
        ),
        (np.zeros((5, 3, 1)), ValueError, "`y_b_true` must be integer labels"),
    ],
)
def test_y_b_not_matching_x_or_the_widths_is_refused(
    y_b_true: np.ndarray, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        forwarded().loss(np.zeros((5, 2)), y_b_true)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_y_b_is_refused(bad: float) -> None:
    y_b_true = np.eye(3)[[0, 1, 2, 0, 1]]
    y_b_true[1, 1] = bad
    with pytest.raises(ValueError, match=rf"`y_b_true` must be finite, got {bad}"):
        forwarded().loss(np.zeros((5, 2)), y_b_true)


def test_loss_before_forward_and_backward_before_loss_are_refused() -> None:
    network = net()
    with pytest.raises(RuntimeError, match="loss was called before forward"):
        network.loss(np.zeros((5, 2)), batch()[2])
    network.forward(batch()[0])
    with pytest.raises(RuntimeError, match="backward was called before loss"):
        network.backward()
    network.loss(np.zeros((5, 2)), batch()[2])
    network.backward()
    # A new forward invalidates the loss of the previous one.
    network.forward(batch()[0])
    with pytest.raises(RuntimeError, match="backward was called before loss"):
        network.backward()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_in": 0}, ValueError, "`n_in` must be at least 1, got 0"),
        ({"n_hidden": -2}, ValueError, "`n_hidden` must be at least 1, got -2"),
        ({"n_shared": 0}, ValueError, "`n_shared` must be at least 1, got 0"),
        ({"n_classes": 0}, ValueError, "`n_classes` must be at least 1, got 0"),
        ({"n_in": 2.5}, TypeError, "`n_in` must be an integer, got 2.5"),
        ({"n_classes": True}, TypeError, "`n_classes` must be an integer, got True"),
        ({"p_drop": 1.0}, ValueError, r"`p_drop` must lie in \[0, 1\), got 1.0"),
        ({"p_drop": -0.1}, ValueError, r"`p_drop` must lie in \[0, 1\), got -0.1"),
        ({"p_drop": np.nan}, ValueError, r"`p_drop` must lie in \[0, 1\), got nan"),
        ({"p_drop": "half"}, TypeError, "`p_drop` must be a real number, got 'half'"),
        (
            {"loss_weights": (-1.0, 1.0)},
            ValueError,
            r"`loss_weights` must be finite and non-negative, got \(-1.0, 1.0\)",
        ),
        (
            {"loss_weights": (1.0, np.inf)},
            ValueError,
            r"`loss_weights` must be finite and non-negative, got \(1.0, inf\)",
        ),
        (
            {"loss_weights": (1.0, np.nan)},
            ValueError,
            "`loss_weights` must be finite and non-negative",
        ),
        ({"loss_weights": (1.0,)}, TypeError, r"`loss_weights` must be a pair"),
        (
            {"dtype": np.int32},
            TypeError,
            "`dtype` must be float32 or float64, got int32",
        ),
        ({"dtype": np.float16}, TypeError, "`dtype` must be float32 or float64"),
        ({"dtype": "banana"}, TypeError, "`dtype` must be float32 or float64"),
        ({"seed": -1}, ValueError, "`seed` must be a non-negative integer or None"),
        ({"seed": 1.5}, TypeError, "`seed` must be a non-negative integer or None"),
        ({"fused_loss": "no"}, TypeError, "`fused_loss` must be True or False"),
    ],
)
def test_bad_constructor_arguments_are_refused(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, object] = {
        "n_in": 3,
        "n_hidden": 4,
        "n_shared": 2,
        "n_classes": 3,
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        MultiTaskNet(**arguments)  # type: ignore[arg-type]


def test_backward_twice_gives_the_same_gradients() -> None:
    network = net(p_drop=0.5)
    X, y_a_true, y_b_true = batch()
    network.forward(X)
    network.loss(y_a_true, y_b_true)
    first = network.backward()
    second = network.backward()
    for name in fd.NAMES:
        np.testing.assert_array_equal(first[name], second[name])


def test_y_a_true_may_be_one_dimensional_when_n_shared_is_1() -> None:
    network = MultiTaskNet(2, 3, 1, 2, p_drop=0.0, seed=0)
    X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.5, 0.0]])
    network.forward(X)
    flat = network.loss(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 1]))
    network.forward(X)
    column = network.loss(np.array([[0.1], [0.2], [0.3]]), np.array([0, 1, 1]))
    assert flat == column
    with pytest.raises(ValueError, match="`y_a_true` must have 3 rows"):
        network.loss(np.array([0.1, 0.2]), np.array([0, 1, 1]))


def test_edge_arguments_are_accepted() -> None:
    # p_drop = 0 (no dropout), zero loss weights, numpy integers for widths.
    network = MultiTaskNet(
        np.int64(1), 1, 1, 1, p_drop=0.0, loss_weights=(0.0, 0.0), seed=np.uint8(3)
    )
    network.forward(np.array([[0.5], [-0.5]]))
    losses = network.loss(np.zeros((2, 1)), np.array([0, 0]))
    assert losses.total == 0.0 and losses.b == 0.0
    assert all(not g.any() for g in network.backward().values())
