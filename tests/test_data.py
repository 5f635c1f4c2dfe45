"""The embedded dataset, the split, users' files (refused when malformed), digits."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from multitask_bp.data import (
    DataError,
    Dataset,
    load_csv,
    load_digits,
    load_file,
    load_npz,
    make_embedded,
    split,
)


def good_arrays(m: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "X": rng.standard_normal((m, 3)),
        "y_a": rng.standard_normal((m, 2)),
        "y_b": np.arange(m) % 3,
    }


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


# -- the embedded dataset --------------------------------------------------------------


def test_embedded_is_deterministic_from_its_seed() -> None:
    first, again, other = make_embedded(seed=3), make_embedded(seed=3), make_embedded()
    for name in ("X", "y_a", "y_b"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.X, other.X)


def test_embedded_shapes_classes_and_target_scale() -> None:
    data = make_embedded(n_samples=500, n_in=5, n_shared=2, n_classes=3, noise=0.0)
    assert (data.X.shape, data.y_a.shape, data.y_b.shape) == (
        (500, 5),
        (500, 2),
        (500,),
    )
    assert data.y_b.dtype == np.int64 and data.n_classes == 3
    # Documented: without noise each column of y_a has unit standard deviation.
    np.testing.assert_allclose(data.y_a.std(axis=0), 1.0, rtol=1e-12)
    # Documented: the logits are centred so that no class is rare.
    assert np.bincount(data.y_b, minlength=3).min() >= 0.1 * 500


def test_task_b_depends_on_task_a_target() -> None:
    # The label is the argmax of a linear map of h = y_a_clean + a_BN. With task B
    # predictable from y_a, a nearest-class-mean rule on y_a alone must beat the
    # majority class by a wide margin; on a shuffled y_a it must not.
    data = make_embedded(n_samples=2000, noise=0.0)
    majority = np.bincount(data.y_b).max() / len(data)

    def nearest_mean_accuracy(features: np.ndarray) -> float:
        means = np.stack([features[data.y_b == k].mean(0) for k in range(4)])
        distances = ((features[:, None, :] - means[None]) ** 2).sum(-1)
        return float(np.mean(np.argmin(distances, axis=1) == data.y_b))

    assert nearest_mean_accuracy(data.y_a) > majority + 0.25
    shuffled = np.random.default_rng(0).permutation(data.y_a)
    assert nearest_mean_accuracy(shuffled) < majority + 0.05


def test_split_is_a_reproducible_partition() -> None:
    data = make_embedded(n_samples=50)
    parts = split(data, validation_fraction=0.2, seed=1)
    assert (len(parts.train), len(parts.validation)) == (40, 10)
    rows = np.concatenate([parts.train.X, parts.validation.X])
    order = np.lexsort(rows.T)
    np.testing.assert_array_equal(rows[order], data.X[np.lexsort(data.X.T)])
    again = split(data, validation_fraction=0.2, seed=1)
    np.testing.assert_array_equal(again.validation.X, parts.validation.X)
    assert parts.fingerprint() == again.fingerprint()
    assert split(data, 0.2, seed=2).fingerprint() != parts.fingerprint()


def test_split_refuses_too_few_samples() -> None:
    tiny = Dataset(np.zeros((2, 1)), np.zeros((2, 1)), np.array([0, 1]), 2)
    with pytest.raises(DataError, match="too few to keep at least 2 for training"):
        split(tiny, 0.5)


# -- users' files ----------------------------------------------------------------------


def test_npz_round_trip(tmp_path: Path) -> None:
    arrays = good_arrays()
    data = load_npz(write_npz(tmp_path / "d.npz", **arrays))
    np.testing.assert_array_equal(data.X, arrays["X"])
    np.testing.assert_array_equal(data.y_a, arrays["y_a"])
    np.testing.assert_array_equal(data.y_b, arrays["y_b"])
    assert data.n_classes == 3


def test_npz_accepts_1d_y_a_and_whole_float_labels(tmp_path: Path) -> None:
    arrays = good_arrays()
    arrays["y_a"] = arrays["y_a"][:, 0]
    arrays["y_b"] = arrays["y_b"].astype(np.float64)
    data = load_npz(write_npz(tmp_path / "d.npz", **arrays))
    assert data.y_a.shape == (6, 1) and data.y_b.dtype == np.int64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("y_b"), r"missing array\(s\) \['y_b'\]"),
        (lambda a: a.update(X=a["X"][:5]), "same number of rows"),
        (lambda a: a["X"].__setitem__((2, 1), np.nan), r"X must be finite, got nan"),
        (lambda a: a["y_a"].__setitem__((0, 0), np.inf), "y_a must be finite"),
        (lambda a: a.update(y_b=np.array([0, 1, 2, 0, 1, np.nan])), "y_b must be fin"),
        (lambda a: a.update(y_b=np.array([0, 1, 2, 0, 1, 0.5])), "integer labels"),
        (lambda a: a.update(y_b=np.array([0, 1, 2, 0, 1, -1])), "labels must be >= 0"),
        (lambda a: a.update(y_b=np.zeros(6, dtype=int)), "at least 2 classes"),
        (lambda a: a.update(X=a["X"][:, 0]), r"X must be 2-D \(m, n_in\)"),
        (lambda a: a.update(y_b=np.zeros((6, 2), dtype=int)), "y_b must be 1-D"),
        (lambda a: a.update(X=np.full((6, 3), "a")), "must hold real numbers"),
        (lambda a: a.update(X=np.ones((6, 3), dtype=bool)), "must hold real numbers"),
    ],
)
def test_malformed_npz_is_refused_with_a_sentence(
    tmp_path: Path, change: object, message: str
) -> None:
    arrays = good_arrays()
    change(arrays)  # type: ignore[operator]
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as error:
        load_npz(path)
    assert str(path) in str(error.value)


def test_files_that_are_not_npz_archives_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "text.npz"
    text.write_text("X,y_a,y_b\n1,2,3\n")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_npz(text)

    good = write_npz(tmp_path / "good.npz", **good_arrays())
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_npz(truncated)

    objects = good_arrays()
    objects["X"] = np.array([object()] * 6)
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_npz(write_npz(tmp_path / "pickled.npz", **objects))

    single = tmp_path / "single.npz"
    with single.open("wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(DataError, match="got a single .npy array"):
        load_npz(single)

    with pytest.raises(DataError, match="no such data file"):
        load_npz(tmp_path / "absent.npz")
    with pytest.raises(DataError, match="must end in .npz or .csv"):
        load_file(tmp_path / "data.txt")


def test_csv_round_trip_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("x0,x1,y_a0,y_b\n0.5,1,2.5,1\n-1,2,3,0\n4,5,6,2\n")
    data = load_file(path)
    np.testing.assert_array_equal(data.X, [[0.5, 1], [-1, 2], [4, 5]])
    np.testing.assert_array_equal(data.y_a, [[2.5], [3], [6]])
    np.testing.assert_array_equal(data.y_b, [1, 0, 2])

    for text, message in [
        ("x0,y_a0,y_b\n1,2\n", "line 2: expected 3 values"),
        ("x0,y_a0,y_b\n1,2,oops\n", "line 2: not a number"),
        ("x0,y_a0\n1,2\n", "one label column y_b"),
        ("x0,y_a0,y_b\n", "at least one data row"),
        ("x0,y_a0,y_b\n1,nan,1\n2,3,0\n", "y_a must be finite"),
    ]:
        path.write_text(text)
        with pytest.raises(DataError, match=message):
            load_csv(path)


# -- digits ----------------------------------------------------------------------------


def test_digits_as_two_tasks() -> None:
    pytest.importorskip("sklearn")
    data = load_digits()
    assert data.X.shape == (1797, 32) and data.y_a.shape == (1797, 32)
    assert set(np.unique(data.y_b)) == set(range(10))
    assert 0.0 <= data.X.min() and data.X.max() <= 1.0
    # The top and bottom halves are the two halves of one image: joined back, the
    # rows are sklearn's 8x8 images scaled by 1/16.
    from sklearn.datasets import load_digits as sklearn_digits

    images = sklearn_digits().images / 16.0
    np.testing.assert_array_equal(
        np.concatenate([data.X, data.y_a], axis=1), images.reshape(1797, 64)
    )


def test_digits_without_scikit_learn_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'multitask_bp\[digits\]'"):
        load_digits()
