"""The training loop, its metrics, L-BFGS, checkpoints, resume and divergence.

Expected values come from outside the code under test: hand-worked baselines, a
teacher network whose optimum is known (L-BFGS), an uninterrupted run for a resumed
one, the file as it was before an interrupted save.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from multitask_bp import MultiTaskNet
from multitask_bp.data import Dataset, Split, make_embedded, split
from multitask_bp.training import (
    Baselines,
    CheckpointError,
    History,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    _checksum,
    load_checkpoint,
    minimize_lbfgs,
    rng_state_from_array,
    rng_state_to_array,
)


@pytest.fixture(scope="module")
def embedded() -> Split:
    return split(make_embedded())


@pytest.fixture(scope="module")
def small() -> Split:
    return split(make_embedded(n_samples=120), validation_fraction=0.25)


def assert_same_run(first: Trainer, second: Trainer) -> None:
    """Every array a checkpoint holds, equal bit for bit (config included)."""
    a, b = first.state_arrays(), second.state_arrays()
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# -- training does real work -----------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [TrainConfig(), TrainConfig(optimizer="sgd", nesterov=True)],
    ids=["adam", "sgd-nesterov"],
)
def test_training_lowers_both_losses_and_beats_the_baselines(
    embedded: Split, config: TrainConfig
) -> None:
    # The stated factors, within 20 epochs of the embedded data (about 0.5 s): L_A on
    # the training set falls at least 10-fold and L_B at least 2.5-fold; on validation
    # the MSE is below a fifth of the training-mean baseline and the accuracy at least
    # 30 points above the majority class.
    trainer = Trainer(embedded, config)
    history = trainer.fit(20)
    first, last = history[0], history[-1]
    assert len(history) == 21 and last.epoch == 20
    assert last.train_loss_a <= first.train_loss_a / 10
    assert last.train_loss_b <= first.train_loss_b / 2.5
    assert last.val_mse_a < trainer.baselines.mse_a / 5
    assert last.val_accuracy_b > trainer.baselines.accuracy_b + 0.30


def test_baselines_hand_worked() -> None:
    # Training y_a = 0, 2, 4 has mean 2; validation y_a = 3, 5 scores
    # ((3-2)^2 + (5-2)^2) / 2 = 5. Training labels 1, 1, 0: majority 1; validation
    # labels 1, 0 score 1/2.
    train = Dataset(
        np.zeros((3, 1)), np.array([[0.0], [2.0], [4.0]]), np.array([1, 1, 0]), 2
    )
    val = Dataset(np.zeros((2, 1)), np.array([[3.0], [5.0]]), np.array([1, 0]), 2)
    baselines = Baselines.of(Split(train, val))
    assert baselines.mse_a == 5.0 and baselines.accuracy_b == 0.5


def test_metrics_match_an_independent_computation(small: Split) -> None:
    trainer = Trainer(small, TrainConfig(p_drop=0.3))
    trainer.fit(2)
    record = trainer.history[-1]
    net = trainer.net.eval()
    y_a, y_b = net.forward(small.validation.X)
    net.train()
    assert record.val_mse_a == pytest.approx(np.mean((y_a - small.validation.y_a) ** 2))
    # L_A is half the summed squared error per sample: n_shared / 2 times the MSE.
    assert record.val_loss_a == pytest.approx(
        record.val_mse_a * small.train.n_shared / 2
    )
    accuracy = np.mean(np.argmax(y_b, axis=1) == small.validation.y_b)
    assert record.val_accuracy_b == accuracy
    picked = y_b[np.arange(len(y_b)), small.validation.y_b]
    assert record.val_loss_b == pytest.approx(-np.mean(np.log(picked)))


def test_batches_cover_the_training_set_and_never_leave_one_alone(small: Split) -> None:
    # 90 training samples in batches of 8: 11 batches of 8 and a remainder of 2.
    trainer = Trainer(small, TrainConfig(batch_size=8))
    batches = trainer.batches()
    assert [len(b) for b in batches] == [8] * 11 + [2]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(90))
    # Batches of 89: a remainder of 1 joins the batch before.
    trainer = Trainer(small, TrainConfig(batch_size=89))
    assert [len(b) for b in trainer.batches()] == [90]


def test_the_same_seed_gives_the_same_losses_bit_for_bit(small: Split) -> None:
    config = TrainConfig(optimizer="sgd", p_drop=0.3, batch_size=16, seed=7)
    first, second = Trainer(small, config), Trainer(small, config)
    first.fit(3)
    second.fit(3)
    assert_same_run(first, second)
    other = Trainer(small, TrainConfig(optimizer="sgd", p_drop=0.3, batch_size=16))
    other.fit(3)
    assert other.history[-1].train_loss_a != first.history[-1].train_loss_a


# -- L-BFGS ---------------------------------------------------------------------------


def test_lbfgs_converges_to_a_known_optimum() -> None:
    # A teacher of the student's shape labels 60 samples with its own y_a and with its
    # softmax probabilities as soft targets. The student starts near the teacher, so
    # L-BFGS must reach the known optimum: L_A = 0 and L_B = the mean entropy of the
    # teacher's y_b (cross-entropy is smallest where the prediction equals the target).
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 3))
    teacher = MultiTaskNet(3, 3, 2, 3, p_drop=0.0, seed=5)
    teacher.set_flat_params(2 * teacher.flat_params)
    y_a, y_b = teacher.forward(X)
    optimum = float(-np.mean(np.sum(y_b * np.log(y_b), axis=1)))

    student = MultiTaskNet(3, 3, 2, 3, p_drop=0.0, seed=5)
    student.set_flat_params(
        teacher.flat_params + 0.05 * rng.standard_normal(teacher.n_params)
    )
    student.forward(X)
    start = student.loss(y_a, y_b).total
    result = minimize_lbfgs(student, X, y_a, y_b, max_iter=1000, gtol=1e-10, ftol=1e-15)
    assert start - optimum > 1e-3
    assert 0 <= result.fun - optimum < 1e-10
    assert np.max(np.abs(result.jac)) < 1e-7
    np.testing.assert_array_equal(student.flat_params, result.x)


def test_lbfgs_trainer_records_each_iteration_and_beats_baselines(
    small: Split,
) -> None:
    trainer = Trainer(small, TrainConfig(optimizer="lbfgs"))
    history = trainer.fit(15)
    assert [r.epoch for r in history] == list(range(len(history)))
    assert trainer.epoch == len(history) - 1 <= 15
    assert history[-1].train_loss_a < history[0].train_loss_a / 5
    assert history[-1].val_mse_a < trainer.baselines.mse_a
    assert history[-1].val_accuracy_b > trainer.baselines.accuracy_b
    # Eval mode uses the full-batch mean of x_1B, so it equals training mode here.
    net = trainer.net
    net.forward(small.train.X)
    train_mode = net.loss(small.train.y_a, small.train.y_b)
    assert history[-1].train_loss_a == pytest.approx(train_mode.a, rel=1e-12)


def test_lbfgs_refuses_a_learning_rate_and_dropout() -> None:
    with pytest.raises(ValueError, match="`lr` is not used by L-BFGS"):
        TrainConfig(optimizer="lbfgs", lr=0.1)
    with pytest.raises(ValueError, match="`p_drop` must be 0 with L-BFGS"):
        TrainConfig(optimizer="lbfgs", p_drop=0.5)
    with pytest.raises(ValueError, match="p_drop = 0 for L-BFGS"):
        minimize_lbfgs(
            MultiTaskNet(2, 2, 1, 2, p_drop=0.5),
            np.zeros((4, 2)),
            np.zeros((4, 1)),
            np.zeros(4, dtype=int),
        )


def test_config_refusals() -> None:
    with pytest.raises(ValueError, match="`optimizer` must be one of sgd, adam, lbfgs"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="`batch_size` must be at least 2"):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="`seed` must be >= 0"):
        TrainConfig(seed=-1)
    with pytest.raises(ValueError, match="`lr` must be a finite number above 0"):
        TrainConfig(lr=-0.1)


# -- checkpoints -----------------------------------------------------------------------


def test_rng_state_round_trip() -> None:
    rng = np.random.default_rng(11)
    rng.random(3)
    rng.integers(0, 10, 1)  # leaves a cached 32-bit half (has_uint32) to carry over
    words = rng_state_to_array(rng)
    restored = np.random.default_rng()
    rng_state_from_array(restored, words)
    assert restored.bit_generator.state == rng.bit_generator.state
    np.testing.assert_array_equal(restored.random(5), rng.random(5))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_checkpoint_round_trip_is_exact(
    small: Split, tmp_path: Path, optimizer: str
) -> None:
    trainer = Trainer(small, TrainConfig(optimizer=optimizer, p_drop=0.2))
    trainer.fit(2)
    trainer.save(tmp_path / "run.npz")
    assert_same_run(Trainer.resume(tmp_path / "run.npz", small), trainer)


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(optimizer="sgd", nesterov=True, weight_decay=1e-3, p_drop=0.3),
        TrainConfig(optimizer="adam", p_drop=0.3, batch_size=16),
    ],
    ids=["sgd", "adam"],
)
def test_resume_equals_an_uninterrupted_run(
    small: Split, tmp_path: Path, config: TrainConfig
) -> None:
    uninterrupted = Trainer(small, config)
    uninterrupted.fit(5)

    interrupted = Trainer(small, config)
    interrupted.fit(2, checkpoint=tmp_path / "run.npz")
    del interrupted  # the process ends here; only the file survives
    resumed = Trainer.resume(tmp_path / "run.npz", small)
    assert resumed.epoch == 2
    resumed.fit(5)
    assert_same_run(resumed, uninterrupted)


def test_an_interrupted_save_leaves_the_previous_checkpoint(
    small: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.npz"
    trainer = Trainer(small, TrainConfig(p_drop=0.2))
    trainer.fit(1, checkpoint=path)
    before = path.read_bytes()

    def half_then_crash(handle: Any, **arrays: Any) -> None:
        handle.write(b"PK\x03\x04 half of a zip archive")
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-write

    monkeypatch.setattr(np, "savez", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(2, checkpoint=path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path).epoch == 1

    def no_rename(source: Any, target: Any) -> None:
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="disk vanished"):
        trainer.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]  # no temp files


def rewrite(path: Path, arrays: dict[str, np.ndarray], checksum: bool = True) -> None:
    """Save `arrays` with a fresh checksum, or with the stale one they carry."""
    if checksum:
        arrays = {k: v for k, v in arrays.items() if k != "checksum"}
        arrays["checksum"] = np.array(_checksum(arrays))
    np.savez(path, **arrays)


def test_corrupt_truncated_and_foreign_files_are_refused(
    small: Split, tmp_path: Path
) -> None:
    good = tmp_path / "good.npz"
    Trainer(small).save(good)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)

    # Flip one byte inside the stored parameters: the zip CRC or our SHA-256 refuses.
    with zipfile.ZipFile(good) as archive:
        info = archive.getinfo("param.theta_1A.npy")
    corrupt = tmp_path / "corrupt.npz"
    flipped = bytearray(data)
    flipped[info.header_offset + 120] ^= 0xFF
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(corrupt)

    # A value changed without its checksum: only the SHA-256 can tell.
    arrays = dict(np.load(good, allow_pickle=False))
    arrays["param.b_2A"] = arrays["param.b_2A"] + 1.0
    edited = tmp_path / "edited.npz"
    rewrite(edited, arrays, checksum=False)
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        load_checkpoint(edited)

    foreign = tmp_path / "data.npz"
    np.savez(foreign, X=np.zeros((3, 2)))
    with pytest.raises(CheckpointError, match="not a multitask_bp checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.npz")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a.pop("optim.m.theta_2B"), r"missing \['optim.m.theta_2B'\]"),
        (lambda a: a.update({"param.extra": np.zeros(2)}), r"unexpected \['param.ex"),
        (
            lambda a: a.update({"param.theta_1A": np.zeros((3, 3))}),
            "'param.theta_1A' must have shape",
        ),
        (
            lambda a: a.update({"param.b_1A": a["param.b_1A"].astype(np.float32)}),
            "dtype float64",
        ),
        (
            lambda a: a.update({"param.b_2B": np.full_like(a["param.b_2B"], np.nan)}),
            "'param.b_2B' is not finite",
        ),
        (
            lambda a: a.update({"history.epoch": a["history.epoch"][::-1].copy()}),
            "epochs must run 0, 1",
        ),
    ],
)
def test_mismatched_checkpoints_are_refused(
    small: Split, tmp_path: Path, edit: Any, message: str
) -> None:
    good = tmp_path / "good.npz"
    trainer = Trainer(small)
    trainer.fit(1)
    trainer.save(good)
    arrays = dict(np.load(good, allow_pickle=False))
    edit(arrays)
    bad = tmp_path / "bad.npz"
    rewrite(bad, arrays)
    with pytest.raises(CheckpointError, match=message):
        Trainer.resume(bad, small)


def test_a_checkpoint_refuses_other_data(small: Split, tmp_path: Path) -> None:
    path = tmp_path / "run.npz"
    Trainer(small).save(path)
    other = split(make_embedded(n_samples=120, seed=1), validation_fraction=0.25)
    with pytest.raises(CheckpointError, match="trained on other data"):
        Trainer.resume(path, other)


# -- divergence ------------------------------------------------------------------------


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(
    small: Split, tmp_path: Path
) -> None:
    path = tmp_path / "run.npz"
    trainer = Trainer(small, TrainConfig(optimizer="sgd"))
    trainer.fit(2, checkpoint=path)
    good = trainer.state_arrays()
    # An overflow a step could produce: the next forward's losses are inf and NaN.
    trainer.net.params["theta_2B"][...] = 1e308
    with pytest.raises(
        TrainingDiverged, match="no longer finite at batch 1 of epoch 3"
    ):
        trainer.fit(4, checkpoint=path)
    kept = Trainer.resume(path, small)
    assert kept.epoch == 2
    for key, value in kept.state_arrays().items():
        np.testing.assert_array_equal(value, good[key])


def test_a_learning_rate_far_too_large_diverges_with_a_clear_error(
    small: Split, tmp_path: Path
) -> None:
    path = tmp_path / "run.npz"
    trainer = Trainer(small, TrainConfig(optimizer="sgd", lr=1e6, momentum=0.0))
    with pytest.raises(TrainingDiverged, match="Try a smaller learning rate") as error:
        trainer.fit(20, checkpoint=path)
    # Seeded: the loss overflows in a later epoch (9 here), after good checkpoints.
    assert error.value.checkpoint_epoch is not None
    kept = Trainer.resume(path, small)
    assert kept.epoch == error.value.checkpoint_epoch >= 1
    assert all(r.is_finite() for r in kept.history)


def test_history_csv_reads_back_the_same_floats(small: Split, tmp_path: Path) -> None:
    trainer = Trainer(small)
    trainer.fit(2)
    trainer.history.to_csv(tmp_path / "h.csv")
    rows = np.genfromtxt(tmp_path / "h.csv", delimiter=",", names=True)
    for name, column in History.to_arrays(trainer.history).items():
        np.testing.assert_array_equal(rows[name], column)
    assert not math.isnan(rows["val_accuracy_b"][-1])
