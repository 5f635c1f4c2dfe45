"""Training MultiTaskNet: the loop, its history and metrics, checkpoints, L-BFGS.

`Trainer` owns one run: the network, the optimizer, the shuffling generator, the epoch
count and the history. Everything the next update depends on is saved by
`Trainer.save` and restored by `Trainer.resume`, so that a run interrupted and resumed
from its last checkpoint ends bit for bit where an uninterrupted run ends:

- the parameters and MeanCenterBN's running mean;
- the optimizer's state (step count, velocity or moments);
- the states of the generator that shuffles the batches and of the dropout generator;
- the epoch count and the history, and the run's configuration.

Checkpoints are `.npz` files read with ``allow_pickle=False``: every entry is a plain
array (the configuration is a JSON string) and a SHA-256 over all of them is stored
beside them. A checkpoint is written to a temporary file in the same directory, flushed
and synced to disk, then renamed over the target with `os.replace`, which is atomic on
POSIX and Windows: an interruption leaves the previous checkpoint whole.

One epoch of SGD or Adam is one pass over the shuffled training set in batches; the
last batch takes the remainder, joined to the batch before when it would hold a single
sample (MeanCenterBN needs two). With L-BFGS one epoch is one iteration on the full
training set.

Library code here never prints: progress goes to `logging` and to the `on_epoch`
callback of `Trainer.fit`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray

from multitask_bp._checks import FloatArray, fraction, positive_float, positive_int
from multitask_bp.data import Split
from multitask_bp.network import MultiTaskNet, _loss_weights
from multitask_bp.optim import SGD, Adam, Optimizer, _non_negative

if TYPE_CHECKING:
    import scipy.optimize

logger = logging.getLogger(__name__)

#: The optimizers `TrainConfig.optimizer` accepts.
OPTIMIZERS = ("sgd", "adam", "lbfgs")
#: The learning rate used when `TrainConfig.lr` is None (L-BFGS has none).
DEFAULT_LR = {"sgd": 0.05, "adam": 0.01}

CHECKPOINT_FORMAT = "multitask_bp checkpoint"
CHECKPOINT_VERSION = 1

#: The columns of the history, in order; `epoch` is an integer, the rest floats.
HISTORY_COLUMNS = (
    "epoch",
    "train_loss_a",
    "train_loss_b",
    "val_loss_a",
    "val_loss_b",
    "val_mse_a",
    "val_accuracy_b",
)


class CheckpointError(ValueError):
    """A checkpoint file was refused; the message says which and why."""


class TrainingDiverged(RuntimeError):
    """A loss turned NaN or infinite. Training stopped; the checkpoint was kept.

    Attributes
    ----------
    epoch : int
        The epoch being trained when the loss diverged (1 for the first).
    checkpoint_epoch : int or None
        The epoch of the last good checkpoint written by this run, if any.
    """

    def __init__(self, message: str, epoch: int, checkpoint_epoch: int | None) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.checkpoint_epoch = checkpoint_epoch


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """The choices that define a run; saved in every checkpoint.

    Parameters
    ----------
    optimizer : "sgd", "adam" or "lbfgs"
    lr : float > 0, optional
        None picks `DEFAULT_LR` for the optimizer; L-BFGS takes none (its line search
        sets the step), and giving one is refused.
    batch_size : int >= 2
        Ignored by L-BFGS, which always uses the full training set.
    seed : int >= 0
        Seeds the initialisation, the dropout masks and the shuffling.
    n_hidden : int >= 1
        Width of task A's hidden layer.
    p_drop : float in [0, 1)
        Dropout on task A's hidden layer. L-BFGS requires 0: its line search and its
        curvature pairs assume one deterministic function, which a fresh mask per
        evaluation breaks, and a single held mask would fit a fixed sub-network that
        is not the function used at evaluation (no dropout).
    momentum, nesterov : SGD's momentum in [0, 1) and its Nesterov variant.
    weight_decay : float >= 0
        L2 weight decay for SGD and Adam.
    loss_weights : (float, float)
        (w_A, w_B) of L = w_A L_A + w_B L_B.
    """

    optimizer: str = "adam"
    lr: float | None = None
    batch_size: int = 32
    seed: int = 0
    n_hidden: int = 32
    p_drop: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    loss_weights: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"`optimizer` must be one of {', '.join(OPTIMIZERS)}, "
                f"got {self.optimizer!r}"
            )
        if self.optimizer == "lbfgs":
            if self.lr is not None:
                raise ValueError(
                    "`lr` is not used by L-BFGS, whose line search chooses each step; "
                    f"got lr={self.lr}"
                )
            if self.p_drop != 0:
                raise ValueError(
                    "`p_drop` must be 0 with L-BFGS, which needs one deterministic "
                    f"objective (a fresh dropout mask per evaluation breaks its line "
                    f"search); got p_drop={self.p_drop}"
                )
        else:
            lr = DEFAULT_LR[self.optimizer] if self.lr is None else self.lr
            object.__setattr__(self, "lr", positive_float(lr, "lr"))
        batch_size = positive_int(self.batch_size, "batch_size")
        if batch_size < 2:
            raise ValueError(
                f"`batch_size` must be at least 2 (MeanCenterBN subtracts the batch "
                f"mean), got {batch_size}"
            )
        if not _is_int(self.seed):
            raise TypeError(f"`seed` must be an integer, got {self.seed!r}")
        if self.seed < 0:
            raise ValueError(f"`seed` must be >= 0, got {self.seed}")
        positive_int(self.n_hidden, "n_hidden")
        fraction(self.p_drop, "p_drop")
        fraction(self.momentum, "momentum")
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise TypeError(f"`nesterov` must be True or False, got {self.nesterov!r}")
        object.__setattr__(self, "nesterov", bool(self.nesterov))
        if self.nesterov and self.momentum == 0:
            raise ValueError("`nesterov` needs `momentum` above 0")
        object.__setattr__(
            self, "weight_decay", _non_negative(self.weight_decay, "weight_decay")
        )
        object.__setattr__(self, "loss_weights", _loss_weights(self.loss_weights))

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-serialisable values."""
        values = asdict(self)
        values["loss_weights"] = list(self.loss_weights)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The inverse of `to_dict`; refuses unknown or missing fields."""
        names = {f.name for f in fields(cls)}
        if set(values) != names:
            raise ValueError(
                f"a TrainConfig needs exactly the fields {sorted(names)}, "
                f"got {sorted(values)}"
            )
        values = dict(values)
        values["loss_weights"] = tuple(values["loss_weights"])
        if values["optimizer"] == "lbfgs":
            values["lr"] = None
        return cls(**values)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# -- metrics and history ---------------------------------------------------------------


@dataclass(frozen=True)
class Baselines:
    """What a model that ignores X achieves on the validation set.

    Attributes
    ----------
    mse_a : float
        Task A: the mean squared error of predicting the training set's mean of y_a
        for every sample, averaged over samples and the n_shared outputs.
    accuracy_b : float
        Task B: the accuracy of predicting the training set's majority class (the
        smallest label among ties).
    """

    mse_a: float
    accuracy_b: float

    @classmethod
    def of(cls, data: Split) -> Baselines:
        """The baselines of `data`: training-set statistics, scored on validation."""
        mean_a = data.train.y_a.mean(axis=0)
        majority = int(np.argmax(np.bincount(data.train.y_b, minlength=2)))
        return cls(
            mse_a=float(np.mean((data.validation.y_a - mean_a) ** 2)),
            accuracy_b=float(np.mean(data.validation.y_b == majority)),
        )


@dataclass(frozen=True)
class EpochRecord:
    """The metrics at the end of one epoch (epoch 0: at initialisation).

    Losses are those of the network in eval mode (no dropout, MeanCenterBN's running
    mean) on the whole set: ``*_loss_a`` is L_A (44), half the summed squared error per
    sample; ``val_mse_a`` is the mean squared error per sample and output, L_A's
    2 / n_shared multiple, comparable with `Baselines.mse_a`; ``val_accuracy_b`` is the
    fraction of validation samples whose most probable class is the label.
    """

    epoch: int
    train_loss_a: float
    train_loss_b: float
    val_loss_a: float
    val_loss_b: float
    val_mse_a: float
    val_accuracy_b: float

    def is_finite(self) -> bool:
        """Whether every loss and metric is finite."""
        return all(math.isfinite(getattr(self, name)) for name in HISTORY_COLUMNS)


@dataclass
class History:
    """The records of a run, one per epoch from epoch 0."""

    records: list[EpochRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[EpochRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> EpochRecord:
        return self.records[index]

    def column(self, name: str) -> NDArray[Any]:
        """One column of `HISTORY_COLUMNS` as an array (epoch int64, others float64)."""
        if name not in HISTORY_COLUMNS:
            raise ValueError(f"`name` must be one of {HISTORY_COLUMNS}, got {name!r}")
        dtype = np.int64 if name == "epoch" else np.float64
        return np.array([getattr(r, name) for r in self.records], dtype=dtype)

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """Every column by name, for checkpoints."""
        return {name: self.column(name) for name in HISTORY_COLUMNS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> History:
        """The inverse of `to_arrays`."""
        n = len(arrays["epoch"])
        records = [
            EpochRecord(
                int(arrays["epoch"][i]),
                *(float(arrays[name][i]) for name in HISTORY_COLUMNS[1:]),
            )
            for i in range(n)
        ]
        return cls(records)

    def to_csv(self, path: str | Path) -> None:
        """Write the history as CSV, one row per epoch, atomically.

        Floats are written with 17 significant digits, enough to read back the same
        float64.
        """
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(HISTORY_COLUMNS)
        for record in self.records:
            writer.writerow(
                [record.epoch]
                + [f"{getattr(record, name):.17g}" for name in HISTORY_COLUMNS[1:]]
            )
        data = text.getvalue().encode("utf-8")
        atomic_write(path, lambda handle: handle.write(data))


def plot_history(
    history: History, path: str | Path, baselines: Baselines | None = None
) -> None:
    """Save a PNG of the training and validation curves of L_A and L_B.

    Two panels, L_A and L_B against the epoch on a logarithmic loss axis, the
    training set's curve beside the validation set's. Needs matplotlib (the ``plot``
    extra); raises ImportError with the install command when it is missing. Uses the
    non-interactive Agg backend, so it works without a display.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "plotting needs matplotlib, which is not installed: "
            "pip install 'multitask_bp[plot]'"
        ) from error
    epochs = history.column("epoch")
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    panels = (
        ("a", "L_A, task A (half squared error)"),
        ("b", "L_B, task B (cross-entropy)"),
    )
    for axis, (task, title) in zip(axes, panels, strict=True):
        axis.plot(epochs, history.column(f"train_loss_{task}"), label="training")
        axis.plot(epochs, history.column(f"val_loss_{task}"), label="validation")
        axis.set_yscale("log")
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    if baselines is not None and len(history):
        last = history[-1]
        figure.suptitle(
            f"validation after epoch {last.epoch}: MSE {last.val_mse_a:.4g} "
            f"(baseline {baselines.mse_a:.4g}), accuracy {last.val_accuracy_b:.1%} "
            f"(baseline {baselines.accuracy_b:.1%})"
        )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    png = buffer.getvalue()
    atomic_write(path, lambda handle: handle.write(png))


# -- atomic writes ---------------------------------------------------------------------


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write a file so that `path` holds either its old content or the new, whole.

    `write` fills a temporary file in the same directory (so that the rename stays on
    one file system); the file is flushed and synced to disk, then renamed over `path`
    with `os.replace`. On any error the temporary file is removed and `path` is left
    as it was.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"{path}: the directory {directory} does not exist")
    descriptor, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open()
        # would, so that a checkpoint or plot is as readable as any other output.
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    _sync_directory(directory)


def _umask() -> int:
    # The only portable way to read the umask is to set it and put it back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_directory(directory: Path) -> None:
    # The rename itself is durable only once the directory entry is on disk; POSIX
    # allows opening a directory for this, Windows does not (and needs no such step).
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# -- generator states ------------------------------------------------------------------

_MASK_64 = (1 << 64) - 1


def rng_state_to_array(rng: np.random.Generator) -> NDArray[np.uint64]:
    """A PCG64 generator's full state as 6 uint64 words.

    The 128-bit state and increment as (high, low) word pairs, then has_uint32 and
    uinteger (a cached half of a 64-bit draw).
    """
    state = rng.bit_generator.state
    if state["bit_generator"] != "PCG64":
        raise TypeError(
            f"only PCG64 generators can be checkpointed, got {state['bit_generator']}"
        )
    inner = state["state"]
    words = [
        inner["state"] >> 64,
        inner["state"] & _MASK_64,
        inner["inc"] >> 64,
        inner["inc"] & _MASK_64,
        state["has_uint32"],
        state["uinteger"],
    ]
    return np.array(words, dtype=np.uint64)


def rng_state_from_array(rng: np.random.Generator, words: NDArray[np.uint64]) -> None:
    """Restore a PCG64 generator from `rng_state_to_array`'s 6 words."""
    w = [int(x) for x in words]
    if w[4] not in (0, 1) or w[5] >> 32:
        raise ValueError(
            f"the generator state words must end with has_uint32 in (0, 1) and a "
            f"32-bit uinteger, got {w[4]} and {w[5]}"
        )
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
        "has_uint32": w[4],
        "uinteger": w[5],
    }


# -- checkpoints -----------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's arrays, read and verified against its stored SHA-256.

    Use `load_checkpoint` to read one and `Trainer.resume` to continue its run; the
    `config` tells which data and configuration the run needs.

    Attributes
    ----------
    path : Path
    config : dict
        ``train`` (the `TrainConfig` fields), ``widths`` (n_in, n_hidden, n_shared,
        n_classes), ``data`` (name and fingerprint of the split).
    arrays : dict of str to ndarray
    """

    path: Path
    config: dict[str, Any]
    arrays: dict[str, NDArray[Any]]

    @property
    def train_config(self) -> TrainConfig:
        """The run's `TrainConfig`."""
        return TrainConfig.from_dict(self.config["train"])

    @property
    def epoch(self) -> int:
        """The number of epochs the checkpointed run had completed."""
        return int(self.arrays["epoch"])


def _checksum(arrays: Mapping[str, NDArray[Any]]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(repr((name, array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint and verify its format, version and SHA-256.

    Raises CheckpointError (a ValueError) with a sentence for a missing, truncated or
    corrupt file, a file of another kind, or one whose content does not match its
    checksum. The names and shapes of the arrays are checked against the run by
    `Trainer.resume`.
    """
    path = Path(path)
    arrays: dict[str, NDArray[Any]] = {}
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path}: not a checkpoint (a single .npy array)")
        with loaded as npz:
            for name in npz.files:
                arrays[name] = npz[name]
    except FileNotFoundError as error:
        raise CheckpointError(f"{path}: no such checkpoint file") from error
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise CheckpointError(
            f"{path}: not a readable checkpoint, the file is truncated or corrupt "
            f"({error})"
        ) from error

    for name, dtype_kind in (("format", "U"), ("version", "i"), ("checksum", "U")):
        if (
            name not in arrays
            or arrays[name].shape != ()
            or arrays[name].dtype.kind != dtype_kind
        ):
            raise CheckpointError(
                f"{path}: not a multitask_bp checkpoint (no valid {name!r} entry)"
            )
    if str(arrays["format"]) != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a multitask_bp checkpoint (format {str(arrays['format'])!r})"
        )
    if int(arrays["version"]) != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {int(arrays['version'])}, this version of "
            f"multitask_bp reads version {CHECKPOINT_VERSION}"
        )
    stored = str(arrays.pop("checksum"))
    if _checksum(arrays) != stored:
        raise CheckpointError(
            f"{path}: the checkpoint is corrupt, its content does not match its "
            "SHA-256 checksum"
        )
    if "config" not in arrays or arrays["config"].dtype.kind != "U":
        raise CheckpointError(f"{path}: the checkpoint has no 'config' entry")
    try:
        config = json.loads(str(arrays["config"]))
        TrainConfig.from_dict(config["train"])
        for key in ("n_in", "n_hidden", "n_shared", "n_classes"):
            positive_int(config["widths"][key], key)
        str(config["data"]["name"]), str(config["data"]["fingerprint"])
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(
            f"{path}: the checkpoint's configuration is invalid ({error})"
        ) from error
    if (
        "epoch" not in arrays
        or arrays["epoch"].shape != ()
        or arrays["epoch"].dtype != np.int64
    ):
        raise CheckpointError(f"{path}: the checkpoint has no valid 'epoch' entry")
    return Checkpoint(path=path, config=config, arrays=arrays)


# -- the trainer -----------------------------------------------------------------------


class Trainer:
    """One training run of a MultiTaskNet on a `Split`.

    Parameters
    ----------
    data : Split
        Training and validation sets. The network's widths come from the data
        (n_in, n_shared, n_classes) and the config (n_hidden).
    config : TrainConfig

    Attributes
    ----------
    net : MultiTaskNet
    optimizer : SGD, Adam, or None for L-BFGS
    epoch : int
        The number of epochs completed.
    history : History
        One record per epoch, from epoch 0 (the initial network).
    baselines : Baselines
    """

    def __init__(self, data: Split, config: TrainConfig | None = None) -> None:
        if not isinstance(data, Split):
            raise TypeError(f"`data` must be a Split, got {type(data).__name__}")
        config = TrainConfig() if config is None else config
        if not isinstance(config, TrainConfig):
            raise TypeError(
                f"`config` must be a TrainConfig, got {type(config).__name__}"
            )
        self.data = data
        self.config = config
        net_seed, shuffle_seed = np.random.SeedSequence(config.seed).generate_state(2)
        self.net = MultiTaskNet(
            n_in=data.train.n_in,
            n_hidden=config.n_hidden,
            n_shared=data.train.n_shared,
            n_classes=data.train.n_classes,
            p_drop=config.p_drop,
            loss_weights=config.loss_weights,
            seed=int(net_seed),
        )
        self.optimizer = _make_optimizer(self.net, config)
        self.shuffle_rng = np.random.default_rng(int(shuffle_seed))
        self.epoch = 0
        self.baselines = Baselines.of(data)
        self._data_fingerprint = data.fingerprint()
        self._checkpoint_epoch: int | None = None
        #: scipy's message when L-BFGS stopped, None before (and for SGD and Adam).
        self.lbfgs_message: str | None = None
        self.history = History([self.evaluate(0)])

    @property
    def checkpoint_epoch(self) -> int | None:
        """The epoch of the last checkpoint this run wrote or resumed from, if any."""
        return self._checkpoint_epoch

    # -- evaluation ----------------------------------------------------------------

    def evaluate(self, epoch: int | None = None) -> EpochRecord:
        """The metrics of the network as it is now, in eval mode, on both sets.

        Leaves the network in training mode and changes no state of the run.
        """
        net = self.net
        with np.errstate(over="ignore", invalid="ignore"):
            net.eval()
            try:
                net.forward(self.data.train.X)
                train = net.loss(self.data.train.y_a, self.data.train.y_b)
                y_a, y_b = net.forward(self.data.validation.X)
                val = net.loss(self.data.validation.y_a, self.data.validation.y_b)
            finally:
                net.train()
            mse = float(np.mean((y_a - self.data.validation.y_a) ** 2))
        accuracy = float(np.mean(np.argmax(y_b, axis=1) == self.data.validation.y_b))
        return EpochRecord(
            epoch=self.epoch if epoch is None else epoch,
            train_loss_a=train.a,
            train_loss_b=train.b,
            val_loss_a=val.a,
            val_loss_b=val.b,
            val_mse_a=mse,
            val_accuracy_b=accuracy,
        )

    # -- training --------------------------------------------------------------------

    def fit(
        self,
        epochs: int,
        checkpoint: str | Path | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None,
    ) -> History:
        """Train until `epochs` epochs are complete in total (a resumed run counts
        the epochs it had done), recording and, if asked, checkpointing each one.

        Parameters
        ----------
        epochs : int >= 0
            The total number of epochs; nothing is done if the run already has them.
            For L-BFGS, the maximum number of iterations; it may stop earlier when it
            converges.
        checkpoint : path, optional
            Saved (atomically) after every epoch.
        on_epoch : callable, optional
            Called with each new `EpochRecord`, after the checkpoint is written.

        Raises
        ------
        TrainingDiverged
            When a loss turns NaN or infinite. The update that produced it may already
            be applied to the network in memory, but the checkpoint on disk is the last
            good epoch's; resume from it.
        """
        if _is_int(epochs) and epochs == 0:
            return self.history
        epochs = positive_int(epochs, "epochs")
        if self.config.optimizer == "lbfgs":
            self._fit_lbfgs(epochs, checkpoint, on_epoch)
            return self.history
        while self.epoch < epochs:
            self._train_one_epoch(checkpoint)
            self._end_epoch(checkpoint, on_epoch)
        return self.history

    def batches(self) -> list[NDArray[np.intp]]:
        """Draw the next epoch's batches: shuffled indices into the training set."""
        m = len(self.data.train)
        order = self.shuffle_rng.permutation(m)
        size = self.config.batch_size
        batches = [order[start : start + size] for start in range(0, m, size)]
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches[-2] = np.concatenate(batches[-2:])
            batches.pop()
        return batches

    def _train_one_epoch(self, checkpoint: str | Path | None) -> None:
        train = self.data.train
        net, optimizer = self.net, self.optimizer
        assert optimizer is not None  # for mypy: fit sends L-BFGS elsewhere
        net.train()
        with np.errstate(over="ignore", invalid="ignore"):
            for number, index in enumerate(self.batches(), start=1):
                net.forward(train.X[index])
                losses = net.loss(train.y_a[index], train.y_b[index])
                if not math.isfinite(losses.total):
                    self._diverged(
                        f"batch {number} of epoch {self.epoch + 1}: L_A = {losses.a}, "
                        f"L_B = {losses.b}",
                        checkpoint,
                    )
                optimizer.step(net.backward())

    def _end_epoch(
        self,
        checkpoint: str | Path | None,
        on_epoch: Callable[[EpochRecord], None] | None,
    ) -> None:
        record = self.evaluate(self.epoch + 1)
        if not record.is_finite():
            self._diverged(
                f"the end of epoch {self.epoch + 1}: training L_A = "
                f"{record.train_loss_a}, L_B = {record.train_loss_b}",
                checkpoint,
            )
        self.epoch += 1
        self.history.records.append(record)
        logger.info(
            "epoch %d: train L_A %.6g L_B %.6g, validation L_A %.6g L_B %.6g, "
            "MSE %.6g, accuracy %.4f",
            record.epoch,
            record.train_loss_a,
            record.train_loss_b,
            record.val_loss_a,
            record.val_loss_b,
            record.val_mse_a,
            record.val_accuracy_b,
        )
        if checkpoint is not None:
            self.save(checkpoint)
        if on_epoch is not None:
            on_epoch(record)

    def _diverged(self, where: str, checkpoint: str | Path | None) -> None:
        kept = (
            f"; the last good checkpoint, epoch {self._checkpoint_epoch}, is kept at "
            f"{checkpoint}"
            if checkpoint is not None and self._checkpoint_epoch is not None
            else ""
        )
        message = (
            f"training diverged: the loss is no longer finite at {where}. "
            f"Try a smaller learning rate (lr = {self.config.lr}){kept}"
        )
        raise TrainingDiverged(message, self.epoch + 1, self._checkpoint_epoch)

    def _fit_lbfgs(
        self,
        epochs: int,
        checkpoint: str | Path | None,
        on_epoch: Callable[[EpochRecord], None] | None,
    ) -> None:
        if self.epoch >= epochs:
            return
        if self.epoch > 0:
            logger.warning(
                "resuming L-BFGS at iteration %d: scipy does not export its curvature "
                "memory, so the resumed run starts a fresh memory and does not repeat "
                "an uninterrupted run exactly",
                self.epoch,
            )
        train = self.data.train

        def each_iteration(params: FloatArray) -> None:
            self.net.set_flat_params(params)
            _set_full_batch_mean(self.net, train.X)
            self._end_epoch(checkpoint, on_epoch)

        result = minimize_lbfgs(
            self.net,
            train.X,
            train.y_a,
            train.y_b,
            max_iter=epochs - self.epoch,
            callback=each_iteration,
        )
        if not math.isfinite(result.fun):
            self._diverged(f"L-BFGS iteration {self.epoch + 1}", checkpoint)
        self.net.set_flat_params(result.x)
        _set_full_batch_mean(self.net, train.X)
        logger.info(
            "L-BFGS stopped after %d iterations: %s", result.nit, result.message
        )
        self.lbfgs_message = str(result.message)

    # -- checkpoints ---------------------------------------------------------------

    def state_arrays(self) -> dict[str, NDArray[Any]]:
        """Every array of a checkpoint of this run, without the checksum."""
        net = self.net
        config = {
            "train": self.config.to_dict(),
            "widths": {
                "n_in": net.n_in,
                "n_hidden": net.n_hidden,
                "n_shared": net.n_shared,
                "n_classes": net.n_classes,
            },
            "data": {
                "name": self.data.train.name,
                "fingerprint": self._data_fingerprint,
            },
        }
        arrays: dict[str, NDArray[Any]] = {
            "format": np.array(CHECKPOINT_FORMAT),
            "version": np.array(CHECKPOINT_VERSION, dtype=np.int64),
            "config": np.array(json.dumps(config, sort_keys=True)),
            "epoch": np.array(self.epoch, dtype=np.int64),
            "rng.shuffle": rng_state_to_array(self.shuffle_rng),
            "rng.dropout": rng_state_to_array(net.dropout.rng),
            "buffer.running_mean": net.bn.running_mean.copy(),
        }
        for name, value in net.params.items():
            arrays[f"param.{name}"] = value.copy()
        if self.optimizer is not None:
            for key, value in self.optimizer.state_dict().items():
                arrays[f"optim.{key}"] = value
        for key, value in self.history.to_arrays().items():
            arrays[f"history.{key}"] = value
        return arrays

    def save(self, path: str | Path) -> None:
        """Write a checkpoint of the run to `path` atomically (see `atomic_write`)."""
        arrays = self.state_arrays()
        arrays["checksum"] = np.array(_checksum(arrays))

        def write(handle: IO[bytes]) -> None:
            np.savez(handle, **cast(dict[str, Any], arrays))

        atomic_write(path, write)
        self._checkpoint_epoch = self.epoch
        logger.debug("checkpoint of epoch %d written to %s", self.epoch, path)

    @classmethod
    def resume(cls, checkpoint: Checkpoint | str | Path, data: Split) -> Trainer:
        """Continue the run saved in `checkpoint` on the same `data`.

        Every name, shape and dtype in the checkpoint is checked against the run its
        configuration describes, and the data against the fingerprint it was trained
        on; a mismatch raises CheckpointError and nothing is restored.
        """
        if not isinstance(checkpoint, Checkpoint):
            checkpoint = load_checkpoint(checkpoint)
        path = checkpoint.path
        config = checkpoint.config
        if data.fingerprint() != config["data"]["fingerprint"]:
            raise CheckpointError(
                f"{path}: the checkpoint was trained on other data "
                f"({config['data']['name']}); resume it on the same data"
            )
        widths = config["widths"]
        actual = {
            "n_in": data.train.n_in,
            "n_shared": data.train.n_shared,
            "n_classes": data.train.n_classes,
        }
        for key, value in actual.items():
            if widths[key] != value:
                raise CheckpointError(
                    f"{path}: the checkpoint's {key} is {widths[key]}, "
                    f"the data's {value}"
                )
        trainer = cls(data, checkpoint.train_config)
        expected = trainer.state_arrays()
        epoch = checkpoint.epoch
        if epoch < 0:
            raise CheckpointError(f"{path}: the epoch must be >= 0, got {epoch}")
        for key in HISTORY_COLUMNS:
            expected[f"history.{key}"] = np.zeros(
                epoch + 1, dtype=np.int64 if key == "epoch" else np.float64
            )
        arrays = checkpoint.arrays
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        if missing or extra:
            raise CheckpointError(
                f"{path}: the checkpoint does not match its run: missing {missing}, "
                f"unexpected {extra}"
            )
        for key, reference in expected.items():
            if key in ("format", "config"):
                continue
            array = arrays[key]
            if array.shape != reference.shape or array.dtype != reference.dtype:
                raise CheckpointError(
                    f"{path}: the entry {key!r} must have shape {reference.shape} and "
                    f"dtype {reference.dtype}, got shape {array.shape} and dtype "
                    f"{array.dtype}"
                )
            if array.dtype.kind == "f" and not key.startswith("history."):
                if not np.isfinite(array).all():
                    raise CheckpointError(f"{path}: the entry {key!r} is not finite")

        try:
            history = History.from_arrays(
                {key: arrays[f"history.{key}"] for key in HISTORY_COLUMNS}
            )
            if [r.epoch for r in history] != list(range(epoch + 1)):
                raise ValueError("the history's epochs must run 0, 1, ..., epoch")
            shuffle_rng = np.random.default_rng()
            rng_state_from_array(shuffle_rng, arrays["rng.shuffle"])
            dropout_rng = np.random.default_rng()
            rng_state_from_array(dropout_rng, arrays["rng.dropout"])
            if trainer.optimizer is not None:
                trainer.optimizer.load_state_dict(
                    {
                        key[len("optim.") :]: value
                        for key, value in arrays.items()
                        if key.startswith("optim.")
                    }
                )
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from error

        for name, param in trainer.net.params.items():
            param[...] = arrays[f"param.{name}"]
        trainer.net.bn.running_mean[...] = arrays["buffer.running_mean"]
        trainer.shuffle_rng = shuffle_rng
        trainer.net.dropout.rng = dropout_rng
        trainer.epoch = epoch
        trainer.history = history
        trainer._checkpoint_epoch = epoch
        logger.info("resumed %s at epoch %d", path, epoch)
        return trainer


def _make_optimizer(net: MultiTaskNet, config: TrainConfig) -> Optimizer | None:
    if config.optimizer == "sgd":
        return SGD(
            net.params,
            lr=float(config.lr),  # type: ignore[arg-type]
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adam":
        return Adam(
            net.params,
            lr=float(config.lr),  # type: ignore[arg-type]
            weight_decay=config.weight_decay,
        )
    return None


def _set_full_batch_mean(net: MultiTaskNet, X: FloatArray) -> None:
    # With the full batch in every evaluation, the batch mean of x_1B is the statistic
    # the network was trained with; eval mode should use exactly it, not the lagging
    # momentum average of the line search's trial points.
    theta_1b = net.params["theta_1B"]
    net.bn.running_mean[...] = (X @ theta_1b.T).mean(axis=0)


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """Limit BLAS to one thread, where threadpoolctl is installed.

    L-BFGS-B's own step works on vectors of n_params entries, far too small to share
    among threads: on a busy machine, OpenBLAS threads waiting for one another made it
    several times slower (measured: 3.5 s against 0.46 s for the same 397
    evaluations). threadpoolctl comes with scikit-learn; without it, nothing changes.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return cast(
        contextlib.AbstractContextManager[Any],
        threadpool_limits(limits=1, user_api="blas"),
    )


# -- L-BFGS --------------------------------------------------


def minimize_lbfgs(
    net: MultiTaskNet,
    X: FloatArray,
    y_a_true: FloatArray,
    y_b_true: NDArray[Any],
    max_iter: int = 200,
    gtol: float = 1e-6,
    ftol: float = 1e-12,
    callback: Callable[[FloatArray], None] | None = None,
) -> scipy.optimize.OptimizeResult:
    """Minimise the total loss on one full batch with scipy's L-BFGS-B.

    Drives ``net.objective`` through the flat parameter vector (``jac=True``: one
    forward and backward per evaluation). The network must have p_drop = 0 (see
    `TrainConfig`); it is trained in training mode, so MeanCenterBN uses the batch
    mean of X.

    Parameters
    ----------
    net : MultiTaskNet
    X : ndarray, shape (m, n_in)
    y_a_true : ndarray, shape (m, n_shared)
    y_b_true : integer labels (m,) or probability rows (m, n_classes)
    max_iter : int
        The maximum number of iterations.
    gtol, ftol : float
        scipy's tolerances: stop when the largest gradient entry is below gtol, or the
        relative decrease of the loss below ftol.
    callback : callable, optional
        Called with a copy of the parameters after each iteration.

    Returns
    -------
    scipy.optimize.OptimizeResult
        ``x`` holds the final parameters, which are also written into the network.
    """
    # Imported here: scipy.optimize takes about a second to import, which every
    # command-line call would otherwise pay.
    import scipy.optimize

    if net.dropout.p != 0:
        raise ValueError(
            "`net` must have p_drop = 0 for L-BFGS: a fresh dropout mask per "
            f"evaluation breaks its line search; got p_drop = {net.dropout.p}"
        )
    max_iter = positive_int(max_iter, "max_iter")
    net.train()
    objective = net.objective(X, y_a_true, y_b_true)

    def f(vector: FloatArray) -> tuple[float, FloatArray]:
        loss, grad = objective(vector)
        return loss, grad.astype(np.float64)

    def each(params: FloatArray) -> None:
        if callback is not None:
            callback(np.array(params, copy=True))

    with np.errstate(over="ignore", invalid="ignore"), _one_blas_thread():
        result = scipy.optimize.minimize(
            f,
            net.flat_params.astype(np.float64),
            jac=True,
            method="L-BFGS-B",
            callback=each,
            options={"maxiter": max_iter, "gtol": gtol, "ftol": ftol},
        )
    if np.isfinite(result.x).all():
        net.set_flat_params(result.x)
    return result
