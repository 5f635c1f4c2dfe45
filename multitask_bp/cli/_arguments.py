"""Argument types shared by the sub-commands, so that each refuses alike."""

from __future__ import annotations

import argparse


def seed(text: str) -> int:
    """A --seed value: a non-negative integer; else a usage error (exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a non-negative integer, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value
