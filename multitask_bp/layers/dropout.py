"""Dropout, equations (12) to (14) of docs/derivation.md."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import numpy as np

from multitask_bp._checks import FloatArray, fraction
from multitask_bp.layers.base import Layer, cast_to


class Dropout(Layer):
    """y = x * M in training, with a fresh mask M per sample and feature.

    Parameters
    ----------
    p : float in [0, 1)
        The probability of dropping an entry.
    seed : int or numpy.random.Generator, optional
        Seeds the masks: the same seed draws the same sequence of masks.
    inverted : bool
        True (the default): M is 0 or 1/(1-p), so that the expected output equals the
        input and eval mode is the identity. False: M is 0 or 1 as the derivation
        writes it, and eval mode multiplies by (1-p) to match the training expectation.

    Attributes
    ----------
    mask : ndarray of shape (m, n), or None
        The multiplier M applied by the last training forward.
    hold : bool
        While True, a training forward reuses `mask` instead of drawing a new one, so
        that repeated forwards (finite differences) see one fixed function. See
        `held_mask`.
    """

    _cache = ("_mask_in_use",)

    def __init__(
        self,
        p: float,
        seed: int | np.random.Generator | None = None,
        inverted: bool = True,
    ) -> None:
        super().__init__()
        self.p = fraction(p, "p")
        self.inverted = bool(inverted)
        self.rng = np.random.default_rng(seed)
        self.mask: FloatArray | None = None
        self.hold = False
        # The mask of the last forward, or None after an eval forward (no mask).
        self._mask_in_use: FloatArray | None = None

    @property
    def keep_value(self) -> float:
        """The value of M where an entry is kept: 1/(1-p) if inverted, else 1."""
        return 1.0 / (1.0 - self.p) if self.inverted else 1.0

    @contextmanager
    def held_mask(self) -> Iterator[Dropout]:
        """Hold the last mask fixed inside a ``with`` block, then release it."""
        if self.mask is None:
            raise RuntimeError(
                "Dropout.held_mask needs a mask: run a training forward first"
            )
        previous, self.hold = self.hold, True
        try:
            yield self
        finally:
            self.hold = previous

    def _forward(self, x: FloatArray, reuse_x: bool = False) -> FloatArray:
        # reuse_x: the caller hands over x, a fresh array that nothing else holds, and
        # the output is written into it.
        out = x if reuse_x else None
        if not self.training:
            self._mask_in_use = None
            if self.inverted:
                return x if reuse_x else x.copy()  # (14)
            return np.multiply(x, 1.0 - self.p, out=out)  # (14)

        if self.hold and self.mask is not None:
            if self.mask.shape != x.shape:
                raise ValueError(
                    f"the held dropout mask has shape {self.mask.shape}, "
                    f"but `x` has shape {x.shape}"
                )
            mask = cast_to(self.mask, x.dtype)
        else:
            keep = self.rng.random(x.shape) >= self.p
            # One pass from the booleans to M: True * c is c and False * c is 0,
            # exactly, in either dtype.
            mask = np.multiply(keep, self.keep_value, dtype=x.dtype)
        y = np.multiply(x, mask, out=out)  # (12)

        self.mask = mask
        self._mask_in_use = mask
        return y

    def _backward(self, grad_out: FloatArray, reuse_grad: bool = False) -> FloatArray:
        out = grad_out if reuse_grad else None
        mask = self._mask_in_use
        if mask is None:  # eval, (14): y = c x with c = 1 (inverted) or 1 - p
            return np.multiply(
                grad_out, 1.0 if self.inverted else 1.0 - self.p, out=out
            )

        return np.multiply(grad_out, cast(FloatArray, mask), out=out)  # (13)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p}, inverted={self.inverted})"
