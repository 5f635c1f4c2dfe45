"""The command line: ``multitask-bp`` / ``python -m multitask_bp``.

Each sub-command lives in its own module with ``register(subparsers)``, which adds its
parser and sets ``func``, a callable taking the parsed arguments and returning the exit
status. This package only wires them together; it is the one place that prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from multitask_bp import __version__
from multitask_bp.cli import errata, gradcheck, train


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="multitask-bp",
        description=(
            "Hand-derived backpropagation for a two-task network: train it, check "
            "every gradient against finite differences, and run the course notes' "
            "errata."
        ),
    )
    parser.add_argument("--version", action="version", version=__version__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for command in (train, gradcheck, errata):
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return status


if __name__ == "__main__":
    sys.exit(main())
