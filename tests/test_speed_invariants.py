"""What the speed work must not change: arrays the caller holds, repeated backwards,
released caches, exact scalings.

The layers and the network write into fresh temporaries and drop the last step's
caches at the start of a forward (docs/performance.md). Each test here states a
property those shortcuts could break; expected values are copies taken before, a
twin network that was not disturbed, or an exact identity (scaling by 2).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pytest

from multitask_bp import MultiTaskNet
from multitask_bp.layers import Dropout, Linear, MeanCenterBN, ReLU, Sine, Softmax
from multitask_bp.losses import SoftmaxCrossEntropyLoss

WIDTHS = (5, 6, 4, 3)  # n_in, n_hidden, n_shared, n_classes
DTYPES = (np.float64, np.float32)


def batch(m: int = 7, seed: int = 0, dtype: type = np.float64):
    """X (m, n_in), y_a_true (m, n_shared), integer labels (m,) for WIDTHS."""
    rng = np.random.default_rng(seed)
    n_in, _, n_shared, n_classes = WIDTHS
    return (
        rng.uniform(-2, 2, (m, n_in)).astype(dtype),
        rng.uniform(-2, 2, (m, n_shared)).astype(dtype),
        rng.integers(0, n_classes, m),
    )


def make_net(dtype: type = np.float64, **kwargs: Any) -> MultiTaskNet:
    return MultiTaskNet(*WIDTHS, p_drop=0.3, seed=3, dtype=dtype, **kwargs)


def step(net: MultiTaskNet, X, y_a_true, labels):
    y_a, y_b = net.forward(X)
    losses = net.loss(y_a_true, labels)
    return y_a, y_b, losses, net.backward()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fused", [True, False])
def test_step_writes_into_nothing_the_caller_holds(dtype, fused):
    net = make_net(dtype, fused_loss=fused)
    X, y_a_true, labels = batch(dtype=dtype)
    inputs = [X.copy(), y_a_true.copy(), labels.copy()]
    y_a, y_b = net.forward(X)
    outputs = [y_a.copy(), y_b.copy()]
    net.loss(y_a_true, labels)
    grads = net.backward()
    kept = {name: value.copy() for name, value in grads.items()}
    net.backward()  # a second backward on the same cache
    step(net, X[::-1].copy(), y_a_true, labels)  # and a whole new step

    for before, after in zip(inputs, [X, y_a_true, labels], strict=True):
        np.testing.assert_array_equal(after, before)
    for before, after in zip(outputs, [y_a, y_b], strict=True):
        np.testing.assert_array_equal(after, before)
    for name, value in grads.items():  # the first step's gradients stay its own
        np.testing.assert_array_equal(value, kept[name])
        assert value.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fused", [True, False])
def test_backward_twice_on_one_cache_gives_the_same_gradients(dtype, fused):
    net = make_net(dtype, fused_loss=fused, loss_weights=(0.3, 1.7))
    first = {k: v.copy() for k, v in step(net, *batch(dtype=dtype))[3].items()}
    second = net.backward()
    for name, value in first.items():
        np.testing.assert_array_equal(second[name], value)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_loss_ignores_a_caller_writing_into_y_b(dtype):
    X, y_a_true, labels = batch(dtype=dtype)
    twin = make_net(dtype)
    expected_losses, expected = step(twin, X, y_a_true, labels)[2:]

    net = make_net(dtype)
    _, y_b = net.forward(X)
    y_b[...] = 0.5  # the caller's array; the loss works from the logits
    losses = net.loss(y_a_true, labels)
    grads = net.backward()
    assert losses == expected_losses
    for name, value in expected.items():
        np.testing.assert_array_equal(grads[name], value)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fused", [True, False])
def test_doubling_both_weights_doubles_every_gradient_exactly(dtype, fused):
    # Scaling by 2 commutes with rounding, and the backward is linear in the weights:
    # the unweighted path (a weight of 1 is skipped) and the weighted one must agree.
    data = batch(dtype=dtype)
    once = step(make_net(dtype, fused_loss=fused), *data)[3]
    twice = step(make_net(dtype, fused_loss=fused, loss_weights=(2, 2)), *data)[3]
    for name, value in once.items():
        np.testing.assert_array_equal(twice[name], 2 * value)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_loss_given_the_softmax_sums_equals_the_loss_alone(dtype):
    net = make_net(dtype)
    X, y_a_true, labels = batch(dtype=dtype)
    _, _, losses, _ = step(net, X, y_a_true, labels)
    alone = SoftmaxCrossEntropyLoss()
    assert alone.forward(net._z_2b, labels) == losses.b
    np.testing.assert_array_equal(alone.backward(), net.loss_b.backward())
    np.testing.assert_array_equal(alone.probabilities, net.loss_b.probabilities)


def test_the_last_steps_caches_are_freed_before_a_new_forward_builds():
    net = make_net()
    X, y_a_true, labels = batch()
    step(net, X, y_a_true, labels)
    old = [weakref.ref(a) for a in (net.sine._x, net.fc_2a._x, net.loss_a._residual)]
    seen = []
    build = net.fc_1a._forward

    def spy(x):
        seen.append([ref() is None for ref in old])
        return build(x)

    net.fc_1a._forward = spy  # type: ignore[method-assign]
    step(net, X, y_a_true, labels)
    assert seen == [[True, True, True]]


LAYERS = [
    lambda: Sine(),
    lambda: ReLU(),
    lambda: Softmax(),
    lambda: Dropout(0.4, seed=1),
    lambda: Dropout(0.4, seed=1, inverted=False),
    lambda: MeanCenterBN(4),
    lambda: Linear(4, 4, seed=2),
]


@pytest.mark.parametrize("make", LAYERS)
@pytest.mark.parametrize("training", [True, False])
def test_layer_keeps_the_callers_arrays_and_repeats_backward(make, training):
    layer = make().train(training)
    rng = np.random.default_rng(4)
    x = rng.uniform(0.1, 2, (6, 4)) * rng.choice([-1, 1], (6, 4))  # away from 0
    g = rng.standard_normal((6, 4))
    x_kept, g_kept = x.copy(), g.copy()
    y = layer.forward(x)
    y_kept = y.copy()
    first = layer.backward(g)
    first_kept = first.copy()
    second = layer.backward(g)
    np.testing.assert_array_equal(x, x_kept)
    np.testing.assert_array_equal(g, g_kept)
    np.testing.assert_array_equal(y, y_kept)
    np.testing.assert_array_equal(first, first_kept)
    np.testing.assert_array_equal(second, first_kept)


def test_a_forward_that_fails_after_its_checks_leaves_no_stale_cache():
    dropout = Dropout(0.5, seed=0)
    dropout.forward(np.ones((3, 2)))
    dropout.backward(np.ones((3, 2)))
    with dropout.held_mask(), pytest.raises(ValueError, match="held dropout mask"):
        dropout.forward(np.ones((4, 2)))
    with pytest.raises(RuntimeError, match="before forward"):
        dropout.backward(np.ones((3, 2)))
