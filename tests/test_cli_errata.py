"""`python -m multitask_bp errata`: the table, the exit status, --seed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from multitask_bp.cli import errata as cli_errata
from multitask_bp.cli import main
from multitask_bp.errata import ERRATA, TYPOS, Erratum, errata_case, measure_errata


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "multitask_bp", "errata", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_subprocess_prints_the_table_and_exits_0():
    result = run_cli()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "parameters affected" in out and "literal" in out and "ours" in out
    for e in ERRATA:
        assert f"\n{e.id} " in out
    for typo in TYPOS:
        assert typo.as_written in out
    assert "seed 0" in out
    assert "NOT AS EXPECTED" not in out


def test_subprocess_seed():
    result = run_cli("--seed", "7")
    assert result.returncode == 0, result.stderr
    assert "seed 7" in result.stdout


def test_bad_seed_is_refused_with_a_sentence():
    result = run_cli("--seed", "-3")
    assert result.returncode == 2
    assert "argument --seed: must be a non-negative integer, got -3" in result.stderr


def test_exit_status_1_when_a_literal_formula_passes(monkeypatch, capsys):
    correct = Erratum(
        id="X",
        title="our own backward posing as an erratum",
        notes_equations="(none)",
        as_written="",
        correction="",
        affects=("b_2B",),
        literal=lambda net: net.backward(),
    )
    monkeypatch.setattr(
        cli_errata,
        "run_errata",
        lambda seed: measure_errata(errata_case(seed), errata=(correct,)),
    )
    assert main(["errata", "--seed", "2"]) == 1
    assert "NOT AS EXPECTED" in capsys.readouterr().out


@pytest.mark.parametrize("seed", [0, 4])
def test_in_process_exit_0(seed, capsys):
    assert main(["errata", "--seed", str(seed)]) == 0
    assert f"seed {seed}:" in capsys.readouterr().out
