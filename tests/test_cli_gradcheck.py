"""`python -m multitask_bp gradcheck`: every mode, JSON, seeds, and the exit status."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from multitask_bp import Sine
from multitask_bp.cli import build_parser
from multitask_bp.cli import gradcheck as cli_gradcheck


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "multitask_bp", "gradcheck", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_default_run_prints_tables_and_exits_0() -> None:
    result = run_cli()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "16 of 16 checks passed (mode full, seed 0" in result.stdout
    # Every layer, loss and the network appear, each with its table header.
    subjects = ["Linear(", "Sine()", "ReLU()", "Softmax()", "Dropout(", "BatchNorm("]
    subjects += ["MeanCenterBN(", "MSELoss()", "CrossEntropyLoss()", "MultiTaskNet("]
    for subject in subjects:
        assert f"gradcheck {subject}" in result.stdout
    assert "theta_1A" in result.stdout and "b_2B" in result.stdout


@pytest.mark.parametrize("mode", ["sampled", "fast", "precise"])
def test_each_mode_as_json_parses_and_passes(mode: str) -> None:
    result = run_cli("--mode", mode, "--json", "--seed", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["mode"] == mode and document["seed"] == 3
    assert document["passed"] is True
    assert len(document["reports"]) == 16
    assert all(report["mode"] == mode for report in document["reports"])
    network = document["reports"][-1]
    assert [row["name"] for row in network["checks"]][0] == "theta_1A"


def test_seed_changes_the_case() -> None:
    first = [report.to_dict() for report in _reports("fast", seed=1)]
    second = [report.to_dict() for report in _reports("fast", seed=2)]
    values = [c["worst_analytic"] for r in first for c in r["checks"]]
    others = [c["worst_analytic"] for r in second for c in r["checks"]]
    assert values != others


def _reports(mode: str, seed: int) -> list[object]:
    return [check(mode) for _, check in cli_gradcheck.cases(seed)]


def test_a_broken_layer_makes_run_return_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def wrong_backward(self: Sine, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * np.cos(self._x) * 1.01

    monkeypatch.setattr(Sine, "_backward", wrong_backward)
    args = build_parser().parse_args(["gradcheck", "--mode", "fast"])
    status = args.func(args)
    out = capsys.readouterr().out
    assert status == 1
    assert "FAILED: Sine()" in out
    # Sine is also inside the network, whose check fails too.
    assert "FAILED: MultiTaskNet(" in out


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["gradcheck", "--mode", "quick"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'quick'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["gradcheck", "--seed", "-1"])
    assert exit_info.value.code == 2
    assert "argument --seed: must be a non-negative integer, got -1" in (
        capsys.readouterr().err
    )
