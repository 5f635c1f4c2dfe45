"""The notes' literal formulas fail finite differences; our corrections pass.

The reference is a central-difference helper written here, independent of
`multitask_bp.errata.loss_gradient_by_differences` and of the network's backward.
"""

from __future__ import annotations

import numpy as np
import pytest

from multitask_bp import MultiTaskNet
from multitask_bp.errata import (
    ERRATA,
    PARAMETER_NAMES,
    TYPOS,
    ErrataCase,
    Erratum,
    errata_case,
    measure_errata,
    relative_error,
    run_errata,
)

SEEDS = (0, 1, 2)
ERRATA_BY_ID = {e.id: e for e in ERRATA}


def central_differences(net, X, y_a_true, y_b_true, h=1e-5):
    """dL/d(param) for every parameter by central differences, the mask held."""

    def total():
        net.forward(X)
        return net.loss(y_a_true, y_b_true).total

    grads = {}
    with net.dropout.held_mask():
        for name, param in net.params.items():
            grad = np.zeros_like(param)
            for index in np.ndindex(param.shape):
                saved = param[index]
                param[index] = saved + h
                plus = total()
                param[index] = saved - h
                minus = total()
                param[index] = saved
                grad[index] = (plus - minus) / (2 * h)
            grads[name] = grad
        total()  # leave the caches at the unperturbed point
    return grads


def norm_relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


_MEASURED: dict[int, tuple[ErrataCase, dict, dict, dict]] = {}


def measured(seed):
    """The case of `seed`, our gradients, every literal gradient, the reference."""
    if seed not in _MEASURED:
        case = errata_case(seed)
        net = case.net
        ours = net.backward()
        literal = {e.id: e.literal(net) for e in ERRATA}
        reference = central_differences(net, case.X, case.y_a_true, case.y_b_true)
        _MEASURED[seed] = (case, ours, literal, reference)
    return _MEASURED[seed]


@pytest.mark.parametrize("seed", SEEDS)
def test_our_gradients_pass(seed):
    _, ours, _, reference = measured(seed)
    for name in PARAMETER_NAMES:
        assert norm_relative(ours[name], reference[name]) < 1e-7, name


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("erratum_id", sorted(ERRATA_BY_ID))
def test_literal_formula_fails_exactly_where_it_claims(seed, erratum_id):
    _, _, literal, reference = measured(seed)
    erratum = ERRATA_BY_ID[erratum_id]
    for name in PARAMETER_NAMES:
        error = norm_relative(literal[erratum_id][name], reference[name])
        if name in erratum.affects:
            assert error > 1e-2, (erratum_id, name, error)
        else:  # the one replaced factor does not reach this parameter
            assert error < 1e-7, (erratum_id, name, error)


def test_errata_are_the_six_found():
    assert [e.id for e in ERRATA] == ["E1", "E2", "E3", "E4", "E5", "E6"]
    assert [e.notes_equations.split(",")[0] for e in ERRATA] == [
        "(18)", "(20)", "(25)", "(26)", "(32)", "(41)",
    ]  # fmt: skip
    for e in ERRATA:
        assert set(e.affects) <= set(PARAMETER_NAMES)
        assert e.as_written and e.correction and e.title


# -- the literal formulas reduce to ours where the notes' shortcut happens to hold ----


def _net_after_loss(X, seed=5, p_drop=0.5):
    rng = np.random.default_rng(seed)
    m = X.shape[0]
    net = MultiTaskNet(X.shape[1], 4, 3, 3, p_drop=p_drop, seed=seed)
    net.set_flat_params(rng.normal(0, 0.8, net.n_params))
    net.forward(X)
    net.loss(rng.normal(size=(m, 3)), rng.dirichlet(np.ones(3), size=m))
    return net


def test_centring_identity_is_harmless_only_for_centred_X():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(6, 4)) + 2.0
    net = _net_after_loss(X)
    ours = net.backward()["theta_1B"]
    literal = ERRATA_BY_ID["E4"].literal(net)["theta_1B"]
    x_1b = X @ net.params["theta_1B"].T
    x_bn = x_1b - x_1b.mean(axis=0) + net.params["b_1B"]  # (38), (39)
    grad_x_bn = (_grad_z_2b(net) @ net.params["theta_2B"]) * (x_bn > 0)  # (50), (52)
    # dx_BN^T X - (dx_BN - mean)^T X = m mean(dx_BN)^T mean(X), derived in (55)'s note.
    expected = 6 * np.outer(grad_x_bn.mean(axis=0), X.mean(axis=0))
    np.testing.assert_allclose(literal - ours, expected, rtol=1e-12, atol=1e-14)

    centred = _net_after_loss(X - X.mean(axis=0))
    np.testing.assert_allclose(
        ERRATA_BY_ID["E4"].literal(centred)["theta_1B"],
        centred.backward()["theta_1B"],
        rtol=1e-12,
        atol=1e-14,
    )


def _grad_z_2b(net):
    """(47) from the public outputs: w_B (y_hat_B - y_B)/m, independent of backward."""
    y_b = net._forwarded[1]
    return net.loss_weights[1] * (y_b - net.loss_b._target) / y_b.shape[0]


def test_relu_slope_one_is_harmless_when_every_relu_input_is_positive():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(6, 4))
    net = _net_after_loss(X)
    net.params["b_1B"][...] = 50.0  # x_BN = centred x_1B + 50 > 0 everywhere
    net.forward(X)
    net.loss(rng.normal(size=(6, 3)), rng.dirichlet(np.ones(3), size=6))
    literal = ERRATA_BY_ID["E3"].literal(net)
    ours = net.backward()
    for name in ("theta_1B", "b_1B"):
        np.testing.assert_allclose(literal[name], ours[name], rtol=1e-12, atol=1e-14)


def test_missing_cosine_differs_by_task_b_term_times_one_minus_cos():
    rng = np.random.default_rng(13)
    X = rng.normal(size=(5, 4))
    net = _net_after_loss(X)
    ours = net.backward()
    literal = ERRATA_BY_ID["E6"].literal(net)
    theta_2a = net.params["theta_2A"]
    task_b_term = (_grad_z_2b(net) @ net.params["theta_2B"]) @ theta_2a
    z_1a = X @ net.params["theta_1A"].T + net.params["b_1A"]  # (34)
    mask = net.dropout.mask
    expected = (task_b_term * mask * (1 - np.cos(z_1a))).T @ X
    np.testing.assert_allclose(
        literal["theta_1A"] - ours["theta_1A"], expected, rtol=1e-10, atol=1e-13
    )


def test_mse_batch_sum_gives_every_row_the_mean_residual():
    # Task A alone (w_B = 0): the literal db_2A is m times the mean residual, i.e.
    # the summed residual, where ours is the mean residual (29), (57).
    rng = np.random.default_rng(14)
    X = rng.normal(size=(2, 4))
    net = MultiTaskNet(4, 4, 3, 3, p_drop=0.0, loss_weights=(1.0, 0.0), seed=1)
    net.forward(X)
    y_a_true = rng.normal(size=(2, 3))
    net.loss(y_a_true, [0, 1])
    residual = net._forwarded[0] - y_a_true
    literal = ERRATA_BY_ID["E5"].literal(net)
    np.testing.assert_allclose(literal["b_2A"], residual.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(net.backward()["b_2A"], residual.mean(axis=0))


# -- the report -----------------------------------------------------------------------


def test_run_errata_report_lists_everything_and_passes():
    report = run_errata(seed=0)
    assert report.passed
    assert [r.erratum.id for r in report.results] == [e.id for e in ERRATA]
    text = str(report)
    for e in ERRATA:
        assert e.id in text and e.notes_equations in text
    for typo in TYPOS:
        assert typo.notes_equations in text and typo.should_read in text
    assert "seed 0" in text
    for result in report.results:
        assert result.literal_error > 1e-2
        assert result.ours_error < 1e-7


def test_report_agrees_with_independent_differences():
    case, _, literal, reference = measured(1)
    report = run_errata(seed=1)
    for result in report.results:
        for name in PARAMETER_NAMES:
            independent = norm_relative(
                literal[result.erratum.id][name], reference[name]
            )
            assert result.literal_errors[name] == pytest.approx(independent, rel=1e-3)


def test_a_correct_formula_posing_as_an_erratum_is_not_as_expected():
    fake = Erratum(
        id="X",
        title="our own backward, which must not fail",
        notes_equations="(none)",
        as_written="",
        correction="",
        affects=("theta_1A",),
        literal=lambda net: net.backward(),
    )
    report = measure_errata(errata_case(0), errata=(fake,))
    assert not report.passed
    assert "NOT AS EXPECTED" in str(report)


def test_relative_error_hand_case():
    assert relative_error(np.array([3.0, 4.0]), np.array([0.0, 0.0])) == 5e12
    assert relative_error(np.array([1.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(
        1 / np.sqrt(5)
    )


# -- refusals -------------------------------------------------------------------------


def test_errata_case_refuses_a_bad_seed():
    with pytest.raises(ValueError, match="`seed` must be a non-negative integer"):
        errata_case(-1)
    with pytest.raises(TypeError, match="got 'a'"):
        errata_case("a")


def test_literal_formula_refuses_a_network_without_loss():
    net = MultiTaskNet(3, 4, 2, 3, seed=0)
    with pytest.raises(RuntimeError, match="call net.forward"):
        ERRATA[0].literal(net)
    net.eval()
    net.forward(np.ones((4, 3)))
    net.loss(np.zeros((4, 2)), [0, 1, 2, 0])
    with pytest.raises(ValueError, match="training forward"):
        ERRATA[0].literal(net)
    with pytest.raises(TypeError, match="MultiTaskNet, got dict"):
        ERRATA[0].literal({})
