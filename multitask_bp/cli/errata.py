"""``multitask-bp errata``: run the course notes' wrong formulas literally.

Prints the table of `multitask_bp.errata.run_errata`: for each erratum, the
parameters it affects and the relative errors, against central finite differences,
of the notes' literal formula and of ours; then the typos. The exit status is 0 when
every literal formula fails and every correction passes, 1 otherwise.
"""

from __future__ import annotations

import argparse

from multitask_bp.cli import _arguments
from multitask_bp.errata import run_errata


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``errata`` sub-command to `subparsers`."""
    parser = subparsers.add_parser(
        "errata",
        help="run the course notes' wrong backward formulas against finite differences",
        description=(
            "Transcribe each wrong chain-rule step of the course notes literally, "
            "and compare its gradients and ours with central finite differences on "
            "a seeded random case. Exit status 0 when every literal formula fails "
            "and every correction passes, 1 otherwise."
        ),
    )
    parser.add_argument(
        "--seed",
        type=_arguments.seed,
        default=0,
        help="seed of the random case (default: 0)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the errata table; return 0 if every erratum behaves as expected."""
    report = run_errata(seed=args.seed)
    print(report)
    return 0 if report.passed else 1
