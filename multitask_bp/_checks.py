"""Input validation shared by every layer, loss and the network.

One place for the messages, so that every refusal reads the same way: the argument's
name, what was expected, and what was received.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.floating[Any]]


def _as_array(value: ArrayLike, name: str) -> NDArray[Any]:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be an array of numbers, got {value!r}"
        ) from error
    return array


def as_float_array(
    value: ArrayLike, name: str, dtype: np.dtype[Any] | type | None = None
) -> FloatArray:
    """Return `value` as a finite floating array.

    Floating input keeps its dtype (float32 stays float32) unless `dtype` is given;
    integer input is cast to float64. Booleans, complex numbers, strings and objects
    are refused with TypeError, NaN and infinities with ValueError.
    """
    array = _as_array(value, name)
    kind = array.dtype.kind
    if kind not in "iuf":  # "b", booleans, included
        raise TypeError(
            f"`{name}` must hold real numbers (float or integer), "
            f"got dtype {array.dtype}"
        )
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    elif kind in "iu":
        array = array.astype(np.float64)
    elif array.dtype not in (np.float32, np.float64):
        # float16 and long double have no BLAS path; compute in float64.
        array = array.astype(np.float64)
    if not np.isfinite(array).all():
        # Plain ints: numpy 2 would print the index as (np.int64(0), ...).
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(f"`{name}` must be finite, got {array[bad]} at index {bad}")
    return array


def as_batch(
    value: ArrayLike,
    name: str,
    n_features: int | None = None,
    feature_name: str = "n_features",
    dtype: np.dtype[Any] | type | None = None,
) -> FloatArray:
    """Return `value` as a finite (m, n) float array, m >= 1, checking n if given."""
    array = as_float_array(value, name, dtype)
    if array.ndim != 2:
        raise ValueError(
            f"`{name}` must be 2-D with shape (m, n), batch first; "
            f"got {array.ndim}-D shape {array.shape}"
        )
    if array.shape[0] < 1:
        raise ValueError(
            f"`{name}` must hold at least one sample, got shape {array.shape}"
        )
    if n_features is not None and array.shape[1] != n_features:
        raise ValueError(
            f"`{name}` must have {n_features} columns ({feature_name}), "
            f"got shape {array.shape}"
        )
    return array


def as_grad_out(value: ArrayLike, shape: tuple[int, ...], dtype: Any) -> FloatArray:
    """Return `grad_out` checked against the shape of the forward output."""
    array = as_float_array(value, "grad_out", dtype)
    if array.shape != shape:
        raise ValueError(
            f"`grad_out` must have the shape of the forward output {shape}, "
            f"got {array.shape}"
        )
    return array


def float_dtype(dtype: Any) -> np.dtype[Any]:
    """Return `dtype` resolved, refusing anything but float32 and float64."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"`dtype` must be float32 or float64, got {dtype!r}") from error
    if resolved not in (np.float32, np.float64):
        raise TypeError(f"`dtype` must be float32 or float64, got {resolved}")
    return resolved


def positive_int(value: Any, name: str) -> int:
    """Return `value` as an int >= 1, refusing booleans, floats and anything below 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be at least 1, got {value}")
    return int(value)


def fraction(
    value: Any, name: str, *, low_open: bool = False, high_open: bool = True
) -> float:
    """Return `value` as a float in [0, 1), or in the interval the flags describe."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    value = float(value)
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (low_ok and high_ok):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"`{name}` must lie in {interval}, got {value}")
    return value


def positive_float(value: Any, name: str) -> float:
    """Return `value` as a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a finite number above 0, got {value}")
    return value


def class_targets(
    target: ArrayLike, m: int, k: int, dtype: Any, name: str = "target"
) -> FloatArray:
    """Return classification targets as (m, k) rows of probabilities.

    Accepts integer labels of shape (m,) in [0, k), or rows of shape (m, k) that are
    one-hot or soft probabilities: non-negative and summing to 1 in each row.
    """
    array = _as_array(target, name)
    if array.ndim == 1:
        if array.dtype.kind not in "iu":
            raise TypeError(
                f"`{name}` as labels of shape (m,) must be integers, "
                f"got dtype {array.dtype}"
            )
        if array.shape[0] != m:
            raise ValueError(
                f"`{name}` must have {m} labels (one per sample), "
                f"got shape {array.shape}"
            )
        if m and (array.min() < 0 or array.max() >= k):
            bad = array[(array < 0) | (array >= k)][0]
            raise ValueError(
                f"`{name}` labels must lie in [0, {k}) for {k} classes, got {bad}"
            )
        rows = np.zeros((m, k), dtype=dtype)
        rows[np.arange(m), array] = 1
        return rows
    if array.ndim != 2:
        raise ValueError(
            f"`{name}` must be integer labels (m,) or probability rows (m, k), "
            f"got {array.ndim}-D shape {array.shape}"
        )
    rows = as_float_array(array, name, dtype)
    if rows.shape != (m, k):
        raise ValueError(
            f"`{name}` as probability rows must have shape ({m}, {k}), got {rows.shape}"
        )
    if (rows < 0).any():
        bad = tuple(int(i) for i in np.argwhere(rows < 0)[0])
        raise ValueError(
            f"`{name}` probabilities must be non-negative, "
            f"got {rows[bad]} at index {bad}"
        )
    sums = rows.sum(axis=1, dtype=np.float64)
    if not np.allclose(sums, 1.0, rtol=0, atol=1e-6 * max(k, 1)):
        worst = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(
            f"`{name}` rows must sum to 1, got {sums[worst]} in row {worst}"
        )
    return rows
