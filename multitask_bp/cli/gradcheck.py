"""``multitask-bp gradcheck``: every layer, loss and the network against finite
differences, on a seeded random case."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np

from multitask_bp import (
    BatchNorm,
    CrossEntropyLoss,
    Dropout,
    Layer,
    Linear,
    Loss,
    MeanCenterBN,
    MSELoss,
    MultiTaskNet,
    ReLU,
    Sine,
    Softmax,
    SoftmaxCrossEntropyLoss,
    gradcheck,
)
from multitask_bp.cli import _arguments
from multitask_bp.gradcheck import GradcheckReport

#: The random case: batch m and widths small enough that the full mode takes a second.
M, N_IN, N_OUT = 6, 5, 4
NET_WIDTHS: dict[str, int] = {"n_in": 5, "n_hidden": 6, "n_shared": 4, "n_classes": 3}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gradcheck`` sub-command."""
    parser = subparsers.add_parser(
        "gradcheck",
        help="check every gradient against finite differences",
        description=(
            "Check every layer, every loss and the MultiTaskNet against "
            "Richardson-extrapolated central differences on a seeded random case. "
            "Prints one table per check (or JSON) and exits with status 1 if any "
            "check fails."
        ),
    )
    parser.add_argument(
        "--mode",
        choices=gradcheck.MODES,
        default="full",
        help=(
            "full: every entry; sampled: a few entries per array; fast: random "
            "directions; precise: every entry judged against Richardson's error "
            "estimate (default: full)"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print JSON, not tables")
    parser.add_argument(
        "--seed",
        type=_arguments.seed,
        default=0,
        help="seed of the random case (default: 0)",
    )
    parser.set_defaults(func=run)


def cases(seed: int) -> list[tuple[str, Callable[[str], GradcheckReport]]]:
    """The checks the command runs, by label, each a function of the mode."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, N_IN))
    logits = 3 * rng.standard_normal((M, N_OUT))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, N_OUT, M)
    regression_target = rng.standard_normal((M, N_OUT))
    layers: list[Layer] = [
        Linear(N_IN, N_OUT, seed=seed),
        Sine(),
        ReLU(),
        Softmax(),
        Dropout(0.5, seed=seed),
        Dropout(0.5, seed=seed, inverted=False),
        MeanCenterBN(N_IN),
        MeanCenterBN(N_IN).eval(),
        BatchNorm(N_IN),
        BatchNorm(N_IN).eval(),
    ]
    for layer in layers:
        # A nonzero bias and scale make the eval-mode statistics matter.
        for value in layer.params.values():
            value += 0.1 * rng.standard_normal(value.shape)
    found: list[tuple[str, Callable[[str], GradcheckReport]]] = []
    for layer in layers:
        label = repr(layer) + ("" if layer.training else " eval")
        found.append((label, _layer_check(layer, x, seed)))
    losses: list[tuple[Loss, np.ndarray, np.ndarray]] = [
        (MSELoss(), logits, regression_target),
        (CrossEntropyLoss(), probabilities, labels),
        (SoftmaxCrossEntropyLoss(), logits, labels),
        (SoftmaxCrossEntropyLoss(), logits, np.eye(N_OUT)[labels]),
    ]
    for loss, prediction, target in losses:
        found.append((repr(loss), _loss_check(loss, prediction, target, seed)))
    for p_drop in (0.0, 0.5):
        net = MultiTaskNet(
            NET_WIDTHS["n_in"],
            NET_WIDTHS["n_hidden"],
            NET_WIDTHS["n_shared"],
            NET_WIDTHS["n_classes"],
            p_drop=p_drop,
            seed=seed,
        )
        X = rng.standard_normal((M, NET_WIDTHS["n_in"]))
        y_a = rng.standard_normal((M, NET_WIDTHS["n_shared"]))
        y_b = rng.integers(0, NET_WIDTHS["n_classes"], M)
        found.append((repr(net), _network_check(net, X, y_a, y_b, seed)))
    return found


def _layer_check(
    layer: Layer, x: np.ndarray, seed: int
) -> Callable[[str], GradcheckReport]:
    return lambda mode: gradcheck.check_layer(layer, x, mode=mode, seed=seed)


def _loss_check(
    loss: Loss, prediction: np.ndarray, target: np.ndarray, seed: int
) -> Callable[[str], GradcheckReport]:
    return lambda mode: gradcheck.check_loss(
        loss, prediction, target, mode=mode, seed=seed
    )


def _network_check(
    net: MultiTaskNet, X: np.ndarray, y_a: np.ndarray, y_b: np.ndarray, seed: int
) -> Callable[[str], GradcheckReport]:
    return lambda mode: gradcheck.check_network(net, X, y_a, y_b, mode=mode, seed=seed)


def run(args: argparse.Namespace) -> int:
    """Run every check; print the tables or JSON; return 1 if any failed, else 0."""
    reports = [check(args.mode) for _, check in cases(args.seed)]
    failed = [report.subject for report in reports if not report.passed]
    if args.json:
        document = {
            "mode": args.mode,
            "seed": args.seed,
            "passed": not failed,
            "reports": [report.to_dict() for report in reports],
        }
        print(json.dumps(document, indent=2))
    else:
        for report in reports:
            print(report)
            print()
        evaluations = sum(report.n_evaluations for report in reports)
        print(
            f"{len(reports) - len(failed)} of {len(reports)} checks passed "
            f"(mode {args.mode}, seed {args.seed}, {evaluations} evaluations)"
        )
        for subject in failed:
            print(f"FAILED: {subject}")
    return 1 if failed else 0
