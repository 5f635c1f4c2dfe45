"""Hypothesis strategies shared by the tests, named after the dimensions they draw.

The names follow the derivation: `m` is the batch size, `n` a width (n_in, n_out,
n_features), `k` a number of classes. Every value is finite and bounded, so that
finite differences in float64 measure the code and not overflow.

Functions whose name is plural return a strategy; those taking a shape take concrete
ints, to be combined with ``st.data()`` or ``st.composite`` where the shape is drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import DTypeLike, NDArray

#: The largest batch and width the issue asks hypothesis to explore.
MAX_BATCH = 64
MAX_WIDTH = 64
#: Values lie in [-BOUND, BOUND]: wide enough to cross sin's and softmax's curvature,
#: small enough that a Linear output (a sum of up to 64 products) stays near 1.
BOUND = 4.0
#: The least distance kept between a drawn value and a kink (ReLU's 0). It must exceed
#: the largest finite-difference step used on such inputs (tests/_fd.py uses 1e-2 at
#: most), so that no difference quotient straddles the kink.
KINK_MARGIN = 0.05


def batch_sizes(
    min_value: int = 1, max_value: int = MAX_BATCH
) -> st.SearchStrategy[int]:
    """The batch size m. Normalisation layers in training need ``min_value=2``."""
    return st.integers(min_value, max_value)


def widths(min_value: int = 1, max_value: int = MAX_WIDTH) -> st.SearchStrategy[int]:
    """A layer width n (n_in, n_out, n_features)."""
    return st.integers(min_value, max_value)


def class_counts(
    min_value: int = 1, max_value: int = MAX_WIDTH
) -> st.SearchStrategy[int]:
    """The number of classes k."""
    return st.integers(min_value, max_value)


def batch_shapes(
    min_m: int = 1, max_m: int = MAX_BATCH, min_n: int = 1, max_n: int = MAX_WIDTH
) -> st.SearchStrategy[tuple[int, int]]:
    """A batch shape (m, n)."""
    return st.tuples(batch_sizes(min_m, max_m), widths(min_n, max_n))


def finite_floats(bound: float = BOUND, width: int = 64) -> st.SearchStrategy[float]:
    """Finite floats in [-bound, bound], no subnormals, exact in a float of `width`."""
    return st.floats(-bound, bound, allow_nan=False, allow_subnormal=False, width=width)


def float_arrays(
    shape: tuple[int, ...], bound: float = BOUND, dtype: DTypeLike = np.float64
) -> st.SearchStrategy[NDArray[Any]]:
    """Arrays of `shape` and `dtype` with finite values in [-bound, bound].

    Hypothesis repeats values freely (whole constant columns included), which is the
    hard case for the normalisation layers (zero batch variance).
    """
    width = np.dtype(dtype).itemsize * 8
    return hnp.arrays(dtype, shape, elements=finite_floats(bound, width))


def batches(
    m: st.SearchStrategy[int] | None = None,
    n: st.SearchStrategy[int] | None = None,
    bound: float = BOUND,
    dtype: DTypeLike = np.float64,
) -> st.SearchStrategy[NDArray[Any]]:
    """A batch x of drawn shape (m, n), values in [-bound, bound]."""
    shapes = st.tuples(m or batch_sizes(), n or widths())
    return shapes.flatmap(lambda shape: float_arrays(shape, bound, dtype))


def arrays_away_from_kinks(
    shape: tuple[int, ...],
    kinks: tuple[float, ...] = (0.0,),
    margin: float = KINK_MARGIN,
    bound: float = BOUND,
) -> st.SearchStrategy[NDArray[np.float64]]:
    """float64 arrays in [-bound, bound] whose values stay `margin` away from `kinks`.

    Values within `margin` of a kink are pushed out to the kink plus or minus `margin`,
    keeping their side, rather than filtered: filtering would discard most draws.
    """

    def push_out(array: NDArray[np.float64]) -> NDArray[np.float64]:
        array = array.copy()
        for kink in kinks:
            near = np.abs(array - kink) < margin
            side = np.where(array[near] >= kink, 1.0, -1.0)
            array[near] = kink + side * margin
        return array

    return float_arrays(shape, bound).map(push_out)


def relu_inputs(
    shape: tuple[int, ...], margin: float = KINK_MARGIN, bound: float = BOUND
) -> st.SearchStrategy[NDArray[np.float64]]:
    """Inputs for ReLU, kept `margin` away from its kink at 0."""
    return arrays_away_from_kinks(shape, (0.0,), margin, bound)


def seeds() -> st.SearchStrategy[int]:
    """Seeds for numpy.random.default_rng."""
    return st.integers(0, 2**32 - 1)


def grad_outs(
    shape: tuple[int, ...], dtype: DTypeLike = np.float64
) -> st.SearchStrategy[NDArray[Any]]:
    """A random, non-uniform grad_out of `shape`, values in [-1, 1).

    Drawn from a seeded generator rather than element by element: hypothesis would
    often draw a constant array, and a constant grad_out makes the input gradient of
    a normalisation layer vanish, so its check passes whatever the code does.
    """
    return seeds().map(
        lambda seed: np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)
    )


def drop_probabilities(max_value: float = 0.9) -> st.SearchStrategy[float]:
    """A dropout probability p in [0, max_value]."""
    return st.floats(0.0, max_value, allow_nan=False, allow_subnormal=False)


def labels(m: int, k: int) -> st.SearchStrategy[NDArray[np.int64]]:
    """Integer class labels of shape (m,) in [0, k)."""
    return hnp.arrays(np.int64, (m,), elements=st.integers(0, k - 1))


def one_hot_targets(m: int, k: int) -> st.SearchStrategy[NDArray[np.float64]]:
    """One-hot target rows of shape (m, k)."""
    return labels(m, k).map(lambda drawn: np.eye(k)[drawn])


def soft_targets(m: int, k: int) -> st.SearchStrategy[NDArray[np.float64]]:
    """Soft target rows of shape (m, k): non-negative, each row summing to 1.

    Rows may hold exact zeros (a class absent from the target), an all-zero draw is
    replaced by the uniform row.
    """

    def normalise(weights: NDArray[np.float64]) -> NDArray[np.float64]:
        weights = weights.copy()
        weights[weights.sum(axis=1) == 0] = 1.0
        return weights / weights.sum(axis=1, keepdims=True)

    weights = hnp.arrays(
        np.float64, (m, k), elements=st.floats(0, 1, allow_subnormal=False)
    )
    return weights.map(normalise)


def class_targets(m: int, k: int) -> st.SearchStrategy[NDArray[Any]]:
    """Any classification target: labels (m,), one-hot or soft rows (m, k)."""
    return st.one_of(labels(m, k), one_hot_targets(m, k), soft_targets(m, k))


def logits(m: int, k: int, bound: float = BOUND) -> st.SearchStrategy[NDArray[Any]]:
    """Logits z of shape (m, k) in [-bound, bound]."""
    return float_arrays((m, k), bound)


def probability_rows(
    m: int, k: int, bound: float = 2.0
) -> st.SearchStrategy[NDArray[np.float64]]:
    """Rows of probabilities (m, k), the softmax of logits in [-bound, bound].

    Every entry is at least exp(-2 bound)/k (above 2.8e-4 for the defaults), so that a
    finite-difference step scaled to the smallest entry keeps p inside (0, 1).
    """

    def softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return logits(m, k, bound).map(softmax)
