"""Data for the two-task network: the embedded dataset, users' files, digits.

A `Dataset` holds the inputs X (m, n_in), task A's regression targets y_a
(m, n_shared) and task B's integer labels y_b (m,) in [0, n_classes). Three sources:

- `make_embedded`: the default, generated from a seed by a random "teacher" network of
  the same shape as `MultiTaskNet`, so that task B's label depends on task A's target
  and the shared branch has something to carry. No download, no file.
- `load_file` (`load_npz`, `load_csv`): the user's own arrays. Every check runs before
  anything is returned, so a refused file leaves nothing half-loaded.
- `load_digits`: scikit-learn's bundled handwritten digits (the ``digits`` extra), as
  a real two-task problem: from the top half of an 8x8 digit, draw the bottom half
  (regression, task A) and name the digit (classification, task B).

`split` divides a dataset into training and validation sets, reproducibly.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import numbers
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from multitask_bp._checks import FloatArray, fraction, positive_int

logger = logging.getLogger(__name__)

IntArray = NDArray[np.int64]

#: The arrays a data file must hold.
REQUIRED_ARRAYS = ("X", "y_a", "y_b")


class DataError(ValueError):
    """A data file or array was refused; the message says which and why."""


@dataclass(frozen=True)
class Dataset:
    """Inputs and the targets of both tasks, one row per sample.

    Attributes
    ----------
    X : ndarray, shape (m, n_in), float64
    y_a : ndarray, shape (m, n_shared), float64
        Task A's regression targets.
    y_b : ndarray, shape (m,), int64
        Task B's labels in [0, n_classes).
    n_classes : int
        The number of classes, at least 2 and above every label.
    name : str
        Where the data came from, for messages and checkpoints.
    """

    X: FloatArray
    y_a: FloatArray
    y_b: IntArray
    n_classes: int
    name: str = "dataset"

    def __post_init__(self) -> None:
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int):
            raise TypeError(f"`n_classes` must be an integer, got {self.n_classes!r}")
        if self.n_classes < 2:
            raise ValueError(f"`n_classes` must be at least 2, got {self.n_classes}")
        arrays = {"X": self.X, "y_a": self.y_a, "y_b": self.y_b}
        _check_arrays(arrays, self.name, n_classes=self.n_classes)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_in(self) -> int:
        """The number of input columns."""
        return int(self.X.shape[1])

    @property
    def n_shared(self) -> int:
        """The width of task A's target, which is the network's n_shared."""
        return int(self.y_a.shape[1])

    def subset(self, index: NDArray[np.integer[Any]]) -> Dataset:
        """The samples at `index` (an integer array), in that order."""
        return Dataset(
            self.X[index], self.y_a[index], self.y_b[index], self.n_classes, self.name
        )

    def fingerprint(self) -> str:
        """A SHA-256 of the arrays' shapes and bytes: equal data, equal fingerprint."""
        digest = hashlib.sha256()
        for array in (self.X, self.y_a, self.y_b):
            digest.update(repr((array.shape, array.dtype.str)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(str(self.n_classes).encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class Split:
    """A training set and a validation set drawn from one dataset."""

    train: Dataset
    validation: Dataset

    def fingerprint(self) -> str:
        """A SHA-256 of both parts, in order."""
        return hashlib.sha256(
            (self.train.fingerprint() + self.validation.fingerprint()).encode()
        ).hexdigest()


def split(dataset: Dataset, validation_fraction: float = 0.2, seed: int = 0) -> Split:
    """Shuffle the samples with `seed` and hold out a fraction for validation.

    The validation set gets round(validation_fraction * m) samples, at least 1; the
    training set must keep at least 2 (the network's batch mean needs two).
    """
    fraction_ = fraction(validation_fraction, "validation_fraction", low_open=True)
    m = len(dataset)
    n_validation = max(1, round(fraction_ * m))
    if m - n_validation < 2:
        raise DataError(
            f"{dataset.name} has {m} samples: too few to keep at least 2 for training "
            f"and {n_validation} for validation"
        )
    order = np.random.default_rng(seed).permutation(m)
    return Split(
        train=dataset.subset(order[n_validation:]),
        validation=dataset.subset(order[:n_validation]),
    )


# -- the embedded dataset --------------------------------------------------------------


def make_embedded(
    n_samples: int = 1000,
    n_in: int = 8,
    n_shared: int = 3,
    n_classes: int = 4,
    noise: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """The default two-task dataset, generated by a random teacher network.

    X is standard normal, shape (n_samples, n_in). The teacher has the student's
    shape with 8 hidden units: task A's target is

        y_a = y_a_clean + noise,   y_a_clean = sin(X A^T + a) B^T / s,
                                                     shape (n_samples, n_shared)

    where s scales each column of y_a_clean to unit standard deviation and the noise
    is Gaussian with standard deviation `noise` (so the best validation MSE is about
    noise^2, and predicting the mean scores about 1 + noise^2). Task B's label is the
    argmax of

        (y_a_clean + relu(X D^T - mean_i X D^T)) C^T + c,  shape (n_samples, n_classes)

    where c centres each class's logit over the samples so that no class is rare. The
    label therefore depends on task A's target through the same sum h = y_a + a_BN as
    the network's (41): a network that has learned task A hands task B most of what it
    needs.

    The same arguments give the same arrays on every machine numpy supports (numpy's
    PCG64 generator and float64 arithmetic).
    """
    n_samples = positive_int(n_samples, "n_samples")
    n_in = positive_int(n_in, "n_in")
    n_shared = positive_int(n_shared, "n_shared")
    n_classes = positive_int(n_classes, "n_classes")
    if n_classes < 2:
        raise ValueError(f"`n_classes` must be at least 2, got {n_classes}")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
        raise TypeError(f"`noise` must be a real number, got {noise!r}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"`noise` must be a finite number >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    n_teacher = 8

    X = rng.standard_normal((n_samples, n_in))
    A = rng.standard_normal((n_teacher, n_in)) * (1.5 / np.sqrt(n_in))
    a = rng.uniform(-np.pi, np.pi, n_teacher)
    B = rng.standard_normal((n_shared, n_teacher))
    y_a_clean = np.sin(X @ A.T + a) @ B.T
    y_a_clean /= y_a_clean.std(axis=0)

    D = rng.standard_normal((n_shared, n_in)) * (0.5 / np.sqrt(n_in))
    C = rng.standard_normal((n_classes, n_shared))
    x_1b = X @ D.T
    h = y_a_clean + np.maximum(x_1b - x_1b.mean(axis=0), 0.0)
    logits = h @ C.T
    logits -= logits.mean(axis=0)
    y_b = np.argmax(logits, axis=1).astype(np.int64)

    y_a = y_a_clean + noise * rng.standard_normal(y_a_clean.shape)
    return Dataset(X, y_a, y_b, n_classes, name="embedded")


# -- scikit-learn's digits ------------------------------------------------------------


def load_digits() -> Dataset:
    """scikit-learn's 1797 handwritten digits (8x8, grey levels 0 to 16) as two tasks.

    X is the top four rows of each image (n_in = 32), task A's target the bottom four
    rows (n_shared = 32), both scaled to [0, 1]; task B's label is the digit (10
    classes). Completing the bottom half is a real regression, and the bottom half
    tells much of the digit apart (a 3 from a 9, a 1 from a 7), so task A's output
    helps task B through the shared branch.

    The images ship inside scikit-learn: no download. Raises ImportError with the
    install command when scikit-learn is missing.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as error:
        raise ImportError(
            "the digits dataset needs scikit-learn, which is not installed: "
            "pip install 'multitask_bp[digits]'"
        ) from error
    digits = sklearn_load_digits()
    images = np.asarray(digits.images, dtype=np.float64) / 16.0
    m = images.shape[0]
    X = images[:, :4, :].reshape(m, 32)
    y_a = images[:, 4:, :].reshape(m, 32)
    y_b = np.asarray(digits.target, dtype=np.int64)
    return Dataset(X, y_a, y_b, 10, name="digits")


# -- users' files ----------------------------------------------------------------------


def load_file(path: str | Path) -> Dataset:
    """Load a `.npz` (see `load_npz`) or `.csv` (see `load_csv`) file by its suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path)
    if suffix == ".csv":
        return load_csv(path)
    raise DataError(
        f"{path}: a data file must end in .npz or .csv, got the suffix {suffix!r}"
    )


def load_npz(path: str | Path) -> Dataset:
    """Load arrays X (m, n_in), y_a (m, n_shared) or (m,), y_b (m,) from a .npz file.

    X and y_a must be finite real numbers; y_b must be integer labels >= 0 (floats
    that are whole numbers are accepted); all three must have the same number of rows.
    The number of classes is the largest label plus one, at least 2. Pickled (object)
    arrays are never loaded. Other arrays in the file are ignored.

    Raises DataError (a ValueError) with a sentence naming the file and the problem;
    nothing is returned unless every check passes.
    """
    path = Path(path)
    arrays: dict[str, NDArray[Any]] = {}
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path}: expected a .npz archive of arrays "
                f"{list(REQUIRED_ARRAYS)}, got a single .npy array"
            )
        with loaded as npz:
            missing = [name for name in REQUIRED_ARRAYS if name not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {missing}; a data file must hold "
                    f"{list(REQUIRED_ARRAYS)}, this one holds {sorted(npz.files)}"
                )
            extra = sorted(set(npz.files) - set(REQUIRED_ARRAYS))
            if extra:
                logger.info("%s: ignoring the extra arrays %s", path, extra)
            for name in REQUIRED_ARRAYS:
                arrays[name] = npz[name]
    except FileNotFoundError as error:
        raise DataError(f"{path}: no such data file") from error
    except IsADirectoryError as error:
        raise DataError(f"{path}: is a directory, not a data file") from error
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path}: not a readable .npz file of numeric arrays ({error})"
        ) from error
    return _dataset_from_arrays(arrays, str(path))


def load_csv(path: str | Path) -> Dataset:
    """Load a CSV file with a header row naming the columns.

    Columns whose name starts with ``x`` are the inputs X, those starting with ``y_a``
    task A's targets, and exactly one column ``y_b`` holds the integer labels; the
    columns' order within each group is kept. Every row must have one number per
    column. The same checks as `load_npz` follow.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except FileNotFoundError as error:
        raise DataError(f"{path}: no such data file") from error
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: not a readable CSV text file ({error})") from error
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header row and at least one data row")

    header = [name.strip() for name in rows[0]]
    x_columns = [i for i, name in enumerate(header) if name.startswith("x")]
    a_columns = [i for i, name in enumerate(header) if name.startswith("y_a")]
    b_columns = [i for i, name in enumerate(header) if name == "y_b"]
    if not x_columns or not a_columns or len(b_columns) != 1:
        raise DataError(
            f"{path}: the header must name input columns x..., target columns y_a... "
            f"and one label column y_b; got {header}"
        )
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path}, line {line}: expected {len(header)} values (one per header "
                f"column), got {len(row)}"
            )
        try:
            values[line - 2] = [float(field) for field in row]
        except ValueError as error:
            raise DataError(f"{path}, line {line}: not a number ({error})") from error
    arrays = {
        "X": values[:, x_columns],
        "y_a": values[:, a_columns],
        "y_b": values[:, b_columns[0]],
    }
    return _dataset_from_arrays(arrays, str(path))


def _dataset_from_arrays(arrays: dict[str, NDArray[Any]], source: str) -> Dataset:
    """Check and convert raw arrays; raise DataError naming `source` on any problem."""
    for name, array in arrays.items():
        if array.dtype.kind not in "iuf":
            raise DataError(
                f"{source}: array {name} must hold real numbers, "
                f"got dtype {array.dtype}"
            )
    y_a = arrays["y_a"]
    if y_a.ndim == 1:
        y_a = y_a[:, None]
    y_b = arrays["y_b"]
    if y_b.dtype.kind == "f":
        if not np.isfinite(y_b).all():
            index = int(np.argmin(np.isfinite(y_b)))
            raise DataError(
                f"{source}: y_b must be finite labels, "
                f"got {y_b[index]} at index {index}"
            )
        if (y_b == np.round(y_b)).all():
            y_b = y_b.astype(np.int64)
    checked = {"X": arrays["X"], "y_a": y_a, "y_b": y_b}
    _check_arrays(checked, source, n_classes=None)
    y_b = y_b.astype(np.int64)
    n_classes = int(y_b.max()) + 1
    return Dataset(
        X=arrays["X"].astype(np.float64),
        y_a=y_a.astype(np.float64),
        y_b=y_b,
        n_classes=n_classes,
        name=source,
    )


def _check_arrays(
    arrays: dict[str, NDArray[Any]], source: str, n_classes: int | None
) -> None:
    """Refuse arrays of the wrong shape, length, kind or value, with a sentence."""
    X, y_a, y_b = arrays["X"], arrays["y_a"], arrays["y_b"]
    if X.ndim != 2 or X.shape[1] < 1:
        raise DataError(f"{source}: X must be 2-D (m, n_in), got shape {X.shape}")
    if y_a.ndim != 2 or y_a.shape[1] < 1:
        raise DataError(
            f"{source}: y_a must be (m,) or 2-D (m, n_shared), got shape {y_a.shape}"
        )
    if y_b.ndim != 1:
        raise DataError(f"{source}: y_b must be 1-D labels (m,), got shape {y_b.shape}")
    lengths = {"X": X.shape[0], "y_a": y_a.shape[0], "y_b": y_b.shape[0]}
    if len(set(lengths.values())) != 1:
        raise DataError(
            f"{source}: X, y_a and y_b must have the same number of rows, got {lengths}"
        )
    if X.shape[0] < 1:
        raise DataError(f"{source}: the arrays hold no samples")
    for name in ("X", "y_a"):
        array = arrays[name]
        if array.dtype.kind not in "iuf":
            raise DataError(
                f"{source}: {name} must hold real numbers, got dtype {array.dtype}"
            )
        finite = np.isfinite(array)
        if not finite.all():
            bad = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise DataError(
                f"{source}: {name} must be finite, got {array[bad]} at index {bad}"
            )
    if y_b.dtype.kind not in "iu":
        raise DataError(
            f"{source}: y_b must hold integer labels, got dtype {y_b.dtype} with "
            "values that are not whole numbers (or NaN)"
        )
    if y_b.min() < 0:
        raise DataError(
            f"{source}: y_b labels must be >= 0, got {int(y_b.min())} at index "
            f"{int(np.argmin(y_b))}"
        )
    top = int(y_b.max())
    if n_classes is None:
        if top < 1:
            raise DataError(
                f"{source}: y_b must hold at least 2 classes (labels 0 and 1 or more), "
                f"got only the label {top}"
            )
    elif top >= n_classes:
        raise DataError(f"{source}: y_b labels must lie in [0, {n_classes}), got {top}")
