"""Cost of gradient checking: each mode of multitask_bp.gradcheck beside
scipy.optimize.check_grad and torch.autograd.gradcheck, on the same network.

Run (about 5 to 10 minutes on 2 cores; the torch rows need PyTorch installed):

    python benchmarks/bench_gradcheck.py            # all three sizes
    python benchmarks/bench_gradcheck.py --sizes small medium

Prints one markdown table. Every row is measured in this one run, except rows marked
"estimate": those would take hours and are extrapolated from the measured cost of one
evaluation times the evaluations the method needs (ours: 4 per entry in full mode;
scipy's check_grad with direction="all": 1 per entry plus 1; torch's slow gradcheck:
2 per entry). Never run as a test.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from scipy.optimize import check_grad

from multitask_bp import MultiTaskNet, gradcheck

SIZES: dict[str, dict[str, int]] = {
    "small": {"m": 32, "n_in": 64, "n_hidden": 64, "n_shared": 32, "n_classes": 10},
    "medium": {
        "m": 256,
        "n_in": 784,
        "n_hidden": 512,
        "n_shared": 256,
        "n_classes": 10,
    },
    "large": {
        "m": 4096,
        "n_in": 1024,
        "n_hidden": 2048,
        "n_shared": 1024,
        "n_classes": 100,
    },
}
#: Which of our modes run for real at each size (the rest are estimated).
MEASURED_MODES = {
    "small": ("full", "sampled", "fast", "precise"),
    "medium": ("sampled", "fast"),
    "large": (),
}
#: Whether scipy's check_grad over every entry, and torch's slow gradcheck, are run.
FULL_BASELINES = {"small": True, "medium": False, "large": False}


def make_case(size: str) -> tuple[MultiTaskNet, np.ndarray, np.ndarray, np.ndarray]:
    s = SIZES[size]
    rng = np.random.default_rng(0)
    net = MultiTaskNet(s["n_in"], s["n_hidden"], s["n_shared"], s["n_classes"], seed=0)
    X = rng.standard_normal((s["m"], s["n_in"]))
    y_a = rng.standard_normal((s["m"], s["n_shared"]))
    y_b = rng.integers(0, s["n_classes"], s["m"])
    net.forward(X)  # draws the dropout mask every method then holds
    net.dropout.hold = True
    return net, X, y_a, y_b


def seconds_per_evaluation(net: MultiTaskNet, X: Any, y_a: Any, y_b: Any) -> float:
    repeats = 3
    start = time.perf_counter()
    for _ in range(repeats):
        net.forward(X)
        net.loss(y_a, y_b)
    return (time.perf_counter() - start) / repeats


def row(
    size: str, method: str, seconds: float, evaluations: int, result: str, kind: str
) -> dict[str, Any]:
    return {
        "size": size,
        "method": method,
        "seconds": seconds,
        "evaluations": evaluations,
        "result": result,
        "kind": kind,
    }


def ours(size: str, rows: list[dict[str, Any]]) -> float:
    net, X, y_a, y_b = make_case(size)
    per_eval = seconds_per_evaluation(net, X, y_a, y_b)
    for mode in gradcheck.MODES:
        if mode in MEASURED_MODES[size]:
            report = gradcheck.check_network(net, X, y_a, y_b, mode=mode)
            verdict = "pass" if report.passed else "FAIL"
            result = f"{verdict}, max rel {report.max_rel_error:.1e}"
            rows.append(
                row(
                    size,
                    f"gradcheck {mode}",
                    report.seconds,
                    report.n_evaluations,
                    result,
                    "measured",
                )  # fmt: skip
            )
        else:
            per_entry = {"full": 4, "precise": 6, "sampled": 4 * 17, "fast": 4 * 3}
            arrays = 1 if mode in ("full", "precise") else len(net.params)
            evaluations = (
                per_entry[mode]
                * arrays
                * (net.n_params if mode in ("full", "precise") else 1)
            )
            rows.append(
                row(
                    size,
                    f"gradcheck {mode}",
                    evaluations * per_eval,
                    evaluations,
                    "-",
                    "estimate",
                )  # fmt: skip
            )
    # One direction per parameter: the same number of directions as torch's fast
    # mode, which draws one random projection per input.
    report = gradcheck.check_network(net, X, y_a, y_b, mode="fast", n_directions=1)
    verdict = "pass" if report.passed else "FAIL"
    rows.append(
        row(
            size,
            "gradcheck fast, 1 direction",
            report.seconds,
            report.n_evaluations,
            f"{verdict}, max rel {report.max_rel_error:.1e}",
            "measured",
        )  # fmt: skip
    )
    return per_eval


def scipy_rows(size: str, rows: list[dict[str, Any]], per_eval: float) -> None:
    net, X, y_a, y_b = make_case(size)
    objective = net.objective(X, y_a, y_b)
    calls = [0]

    def value(v: np.ndarray) -> float:
        calls[0] += 1
        return objective(v)[0]

    def gradient(v: np.ndarray) -> np.ndarray:
        return objective(v)[1]

    x0 = net.flat_params.copy()
    norm = float(np.linalg.norm(gradient(x0)))
    directions = ["random", "all"] if FULL_BASELINES[size] else ["random"]
    for direction in directions:
        calls[0] = 0
        start = time.perf_counter()
        error = check_grad(value, gradient, x0, direction=direction, seed=0)
        seconds = time.perf_counter() - start
        result = f"norm of diff / norm of grad {error / norm:.1e}"
        rows.append(
            row(
                size,
                f"scipy check_grad {direction}",
                seconds,
                calls[0],
                result,
                "measured",
            )  # fmt: skip
        )
    if not FULL_BASELINES[size]:
        evaluations = net.n_params + 1
        rows.append(
            row(
                size,
                "scipy check_grad all",
                evaluations * per_eval,
                evaluations,
                "-",
                "estimate",
            )  # fmt: skip
        )


def torch_rows(size: str, rows: list[dict[str, Any]]) -> None:
    try:
        import torch
    except ImportError:
        return
    net, X, y_a, y_b = make_case(size)
    m = X.shape[0]
    X_t = torch.from_numpy(X)
    y_a_t = torch.from_numpy(y_a)
    y_b_t = torch.from_numpy(y_b)
    mask = torch.from_numpy(np.asarray(net.dropout.mask))
    params = [
        torch.from_numpy(value.copy()).requires_grad_(True)
        for value in net.params.values()
    ]
    calls = [0]

    def loss(*p: Any) -> Any:
        """The same network and total loss, equations (34) to (46), in torch."""
        calls[0] += 1
        theta_1a, b_1a, theta_2a, b_2a, theta_1b, b_1b, theta_2b, b_2b = p
        x_dp = torch.sin(X_t @ theta_1a.T + b_1a) * mask
        y_hat_a = x_dp @ theta_2a.T + b_2a
        x_1b = X_t @ theta_1b.T
        a_bn = torch.relu(x_1b - x_1b.mean(dim=0) + b_1b)
        z_2b = (y_hat_a + a_bn) @ theta_2b.T + b_2b
        loss_a = ((y_hat_a - y_a_t) ** 2).sum() / (2 * m)
        loss_b = torch.nn.functional.cross_entropy(z_2b, y_b_t)
        return loss_a + loss_b

    # The torch network agrees with ours (a check that the comparison is fair).
    net.forward(X)
    ours_total = net.loss(y_a, y_b).total
    with torch.no_grad():
        torch_total = float(loss(*params))
    if abs(torch_total - ours_total) > 1e-9 * abs(ours_total):
        raise RuntimeError(
            f"the torch network gives L = {torch_total}, ours {ours_total}: "
            "the comparison would not be on the same function"
        )

    start = time.perf_counter()
    for _ in range(3):
        loss(*params)
    per_eval = (time.perf_counter() - start) / 3
    modes = [True, False] if FULL_BASELINES[size] else [True]
    for fast_mode in modes:
        calls[0] = 0
        start = time.perf_counter()
        passed = torch.autograd.gradcheck(
            loss, tuple(params), fast_mode=fast_mode, raise_exception=False
        )
        seconds = time.perf_counter() - start
        name = "torch gradcheck " + ("fast_mode" if fast_mode else "slow")
        rows.append(
            row(
                size, name, seconds, calls[0], "pass" if passed else "FAIL", "measured"
            )  # fmt: skip
        )
    if not FULL_BASELINES[size]:
        evaluations = 2 * net.n_params
        rows.append(
            row(
                size,
                "torch gradcheck slow",
                evaluations * per_eval,
                evaluations,
                "-",
                "estimate",
            )  # fmt: skip
        )


def table(rows: list[dict[str, Any]], base: dict[str, float]) -> str:
    lines = [
        "| size | method | time (s) | x ours, 1 direction | evaluations | result | |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        ratio = r["seconds"] / base[r["size"]]
        lines.append(
            f"| {r['size']} | {r['method']} | {_seconds(r['seconds'])} | "
            f"{ratio:.3g} | {r['evaluations']:,} | {r['result']} | {r['kind']} |"
        )
    return "\n".join(lines)


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value:.3g} ({value / 3600:.1f} h)"
    return f"{value:.3g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    base: dict[str, float] = {}
    for size in args.sizes:
        net, _, _, _ = make_case(size)
        print(f"# {size}: {net.n_params:,} parameters", flush=True)
        per_eval = ours(size, rows)
        base[size] = next(
            r["seconds"]
            for r in rows
            if r["size"] == size and r["method"] == "gradcheck fast, 1 direction"
        )
        scipy_rows(size, rows, per_eval)
        torch_rows(size, rows)
    print(table(rows, base))


if __name__ == "__main__":
    main()
