"""``multitask-bp train``: train the two-task network and report it against baselines.

With no options it trains on the embedded dataset with Adam for 100 epochs, shows a
progress bar (tqdm, when installed) and prints the validation MSE of task A and the
accuracy of task B beside the baselines they must beat. Exit status: 0 on success,
1 when training diverged, 2 for bad options or files, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multitask_bp.cli import _arguments
from multitask_bp.data import DataError, Dataset, load_digits, load_file, make_embedded
from multitask_bp.data import split as split_data
from multitask_bp.training import (
    DEFAULT_LR,
    OPTIMIZERS,
    Checkpoint,
    CheckpointError,
    EpochRecord,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    load_checkpoint,
    plot_history,
)

PROG = "multitask-bp train"
#: The default number of epochs (L-BFGS: iterations).
DEFAULT_EPOCHS = {"sgd": 100, "adam": 100, "lbfgs": 200}
#: The share of the data held out for validation, and the seed of that split. Fixed,
#: so that runs with different --seed values are scored on the same samples.
VALIDATION_FRACTION = 0.2
SPLIT_SEED = 0

#: Options that define a run, with the TrainConfig field each sets. On --resume they
#: come from the checkpoint, and a different value on the command line is refused.
RUN_OPTIONS = {
    "optimizer": "optimizer",
    "lr": "lr",
    "batch_size": "batch_size",
    "seed": "seed",
    "hidden": "n_hidden",
    "p_drop": "p_drop",
    "momentum": "momentum",
    "nesterov": "nesterov",
    "weight_decay": "weight_decay",
}


class UsageError(Exception):
    """A bad option or file: reported in one line, exit status 2."""


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add the ``train`` sub-command to `subparsers`."""
    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train",
        help="train the two-task network (the main job)",
        description=(
            "Train MultiTaskNet on the embedded dataset (default), scikit-learn's "
            "digits, or your own .npz/.csv file, then print the validation MSE of "
            "task A and the accuracy of task B beside their baselines."
        ),
    )
    run_group = parser.add_argument_group("the run")
    run_group.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help=f"default {defaults.optimizer}; lbfgs trains on the full batch",
    )
    run_group.add_argument(
        "--epochs",
        type=int,
        help="total number of epochs (L-BFGS: iterations); default "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_EPOCHS.items()),
    )
    run_group.add_argument(
        "--lr",
        type=float,
        help="learning rate; default "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_LR.items())
        + "; not for lbfgs",
    )
    run_group.add_argument(
        "--batch-size", type=int, help=f"default {defaults.batch_size}, at least 2"
    )
    run_group.add_argument(
        "--seed",
        type=_arguments.seed,
        help=f"seeds initialisation, dropout and shuffling; default {defaults.seed}",
    )
    run_group.add_argument(
        "--hidden",
        type=int,
        metavar="N",
        help=f"width of task A's hidden layer (n_hidden); default {defaults.n_hidden}",
    )
    run_group.add_argument(
        "--p-drop",
        type=float,
        help=f"dropout on task A's hidden layer; default {defaults.p_drop}; "
        "lbfgs needs 0",
    )
    run_group.add_argument(
        "--momentum", type=float, help=f"SGD momentum; default {defaults.momentum}"
    )
    run_group.add_argument(
        "--nesterov",
        action="store_true",
        default=None,
        help="Nesterov momentum for SGD",
    )
    run_group.add_argument(
        "--weight-decay",
        type=float,
        help=f"L2 weight decay for sgd and adam; default {defaults.weight_decay}",
    )

    data_group = parser.add_argument_group("data")
    data_group.add_argument(
        "--dataset",
        choices=("embedded", "digits"),
        help="embedded (default): generated, no download; digits: scikit-learn's "
        "handwritten digits, top half in, bottom half (task A) and digit (task B) out",
    )
    data_group.add_argument(
        "--data",
        metavar="PATH",
        help="your own .npz with arrays X, y_a, y_b, or .csv with columns x..., "
        "y_a..., y_b",
    )

    output_group = parser.add_argument_group("output")
    output_group.add_argument(
        "--plot", metavar="PATH", help="PNG of the curves of L_A and L_B (matplotlib)"
    )
    output_group.add_argument(
        "--history", metavar="PATH", help="per-epoch metrics as CSV"
    )
    output_group.add_argument(
        "--save", metavar="PATH", help="checkpoint (.npz) written after every epoch"
    )
    output_group.add_argument(
        "--resume",
        metavar="PATH",
        help="continue the run saved in this checkpoint (saving back to it unless "
        "--save is given)",
    )
    verbosity = output_group.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-q", "--quiet", action="store_true", help="no progress, only the result"
    )
    verbosity.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log each epoch (-vv: also each checkpoint)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train as `args` say; print the result; return the exit status."""
    logger = logging.getLogger("multitask_bp")
    # Called in-process (a notebook, a test), the command must not leave the package's
    # logger changed behind it.
    saved = (logger.level, list(logger.handlers), logger.propagate)
    _configure_logging(args)
    try:
        return _run(args)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
        logger.propagate = saved[2]


def _run(args: argparse.Namespace) -> int:
    if args.plot is not None:
        _require_matplotlib()
    for option in ("plot", "history", "save"):
        _require_directory(getattr(args, option), option)

    checkpoint = _load_checkpoint(args.resume) if args.resume is not None else None
    config = _config(args, checkpoint)
    dataset = _dataset(args, checkpoint)
    try:
        data = split_data(dataset, VALIDATION_FRACTION, seed=SPLIT_SEED)
        if checkpoint is not None:
            trainer = Trainer.resume(checkpoint, data)
        else:
            trainer = Trainer(data, config)
    except (DataError, CheckpointError) as error:
        raise UsageError(str(error)) from error
    except (ValueError, TypeError) as error:
        raise UsageError(f"the network refused the data: {error}") from error

    epochs = DEFAULT_EPOCHS[config.optimizer] if args.epochs is None else args.epochs
    if epochs < 0:
        raise UsageError(f"--epochs must be >= 0, got {epochs}")
    save = args.save if args.save is not None else args.resume
    if checkpoint is not None and trainer.epoch >= epochs:
        _say(
            args,
            f"the checkpoint is already at epoch {trainer.epoch}; give --epochs above "
            f"{trainer.epoch} to train further",
        )

    start = time.perf_counter()
    done_before = trainer.epoch
    try:
        with _Progress(args, total=epochs, initial=trainer.epoch) as progress:
            trainer.fit(epochs, checkpoint=save, on_epoch=progress.update)
    except KeyboardInterrupt:
        where = (
            f"; the checkpoint at {save} holds epoch {trainer.checkpoint_epoch}, "
            f"continue with --resume {save}"
            if save is not None and trainer.checkpoint_epoch is not None
            else ""
        )
        print(f"\n{PROG}: interrupted at epoch {trainer.epoch}{where}", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - start

    if save is not None and trainer.checkpoint_epoch != trainer.epoch:
        trainer.save(save)
    _write_outputs(args, trainer)
    _print_result(
        args, trainer, epochs_run=trainer.epoch - done_before, elapsed=elapsed
    )
    if save is not None:
        print(f"checkpoint (epoch {trainer.epoch}): {save}")
    return 0


# -- options, data, checkpoint ---------------------------------------------------------


def _config(args: argparse.Namespace, checkpoint: Checkpoint | None) -> TrainConfig:
    if checkpoint is not None:
        config = checkpoint.train_config
        for option, field_name in RUN_OPTIONS.items():
            given = getattr(args, option)
            if given is not None and given != getattr(config, field_name):
                flag = "--" + option.replace("_", "-")
                raise UsageError(
                    f"{flag} {given} differs from the checkpoint's "
                    f"{getattr(config, field_name)}: a resumed run keeps its "
                    f"configuration; drop {flag} or start a new run without --resume"
                )
        return config
    values: dict[str, Any] = {
        field_name: getattr(args, option)
        for option, field_name in RUN_OPTIONS.items()
        if getattr(args, option) is not None
    }
    try:
        return TrainConfig(**values)
    except (ValueError, TypeError) as error:
        raise UsageError(_as_option_message(str(error))) from error


def _as_option_message(message: str) -> str:
    # TrainConfig names its fields; the user typed options.
    for option, field_name in RUN_OPTIONS.items():
        flag = "--" + option.replace("_", "-")
        message = message.replace(f"`{field_name}`", flag)
    return message


def _dataset(args: argparse.Namespace, checkpoint: Checkpoint | None) -> Dataset:
    if args.data is not None and args.dataset is not None:
        raise UsageError("give --data or --dataset, not both")
    source = args.data if args.data is not None else args.dataset
    if source is None and checkpoint is not None:
        # Resume on the data the checkpoint names; its fingerprint is checked later.
        source = checkpoint.config["data"]["name"]
    try:
        if source is None or source == "embedded" and args.data is None:
            return make_embedded()
        if source == "digits" and args.data is None:
            return load_digits()
        return load_file(source)
    except DataError as error:
        raise UsageError(str(error)) from error
    except ImportError as error:
        raise UsageError(str(error)) from error


def _load_checkpoint(path: str) -> Checkpoint:
    try:
        return load_checkpoint(path)
    except CheckpointError as error:
        raise UsageError(str(error)) from error


def _require_directory(path: str | None, option: str) -> None:
    if path is None:
        return
    directory = Path(path).parent
    if not directory.is_dir():
        raise UsageError(f"--{option} {path}: the directory {directory} does not exist")


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise UsageError(
            "--plot needs matplotlib, which is not installed: "
            "pip install 'multitask_bp[plot]' (or drop --plot)"
        ) from error


def _write_outputs(args: argparse.Namespace, trainer: Trainer) -> None:
    try:
        if args.history is not None:
            trainer.history.to_csv(args.history)
        if args.plot is not None:
            plot_history(trainer.history, args.plot, trainer.baselines)
    except OSError as error:
        raise UsageError(f"cannot write {error.filename}: {error.strerror}") from error


# -- what the user sees ------------------------------------------------------------


def _configure_logging(args: argparse.Namespace) -> None:
    if args.quiet:
        level = logging.ERROR
    else:
        level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logger = logging.getLogger("multitask_bp")
    logger.setLevel(level)
    if not any(isinstance(h, _ProgressAwareHandler) for h in logger.handlers):
        handler = _ProgressAwareHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


class _ProgressAwareHandler(logging.Handler):
    """Writes log lines to stderr above the progress bar rather than through it."""

    write: Callable[[str], None] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if _ProgressAwareHandler.write is not None:
            _ProgressAwareHandler.write(message)
        else:
            print(message, file=sys.stderr)


class _Progress:
    """A tqdm bar over epochs with the current losses; plain lines without tqdm."""

    def __init__(self, args: argparse.Namespace, total: int, initial: int) -> None:
        self.quiet = bool(args.quiet)
        self.total = total
        self.bar: Any = None
        if self.quiet or initial >= total:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(
            total=total, initial=initial, desc="train", unit="epoch", file=sys.stderr
        )
        _ProgressAwareHandler.write = lambda message: tqdm.write(
            message, file=sys.stderr
        )

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
        _ProgressAwareHandler.write = None

    def update(self, record: EpochRecord) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix(
                L_A=f"{record.train_loss_a:.4g}",
                L_B=f"{record.train_loss_b:.4g}",
                val_acc=f"{record.val_accuracy_b:.1%}",
                refresh=False,
            )
            self.bar.update(1)
            return
        print(
            f"epoch {record.epoch:>{len(str(self.total))}}/{self.total}  "
            f"train L_A {record.train_loss_a:.4g}  L_B {record.train_loss_b:.4g}  "
            f"validation L_A {record.val_loss_a:.4g}  L_B {record.val_loss_b:.4g}  "
            f"accuracy {record.val_accuracy_b:.1%}",
            file=sys.stderr,
        )


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _print_result(
    args: argparse.Namespace, trainer: Trainer, epochs_run: int, elapsed: float
) -> None:
    config = trainer.config
    data = trainer.data
    last = trainer.history[-1]
    base = trainer.baselines
    settings = (
        "full batch"
        if config.optimizer == "lbfgs"
        else f"lr {config.lr:g}, batch {config.batch_size}"
    )
    unit = "iterations" if config.optimizer == "lbfgs" else "epochs"
    if epochs_run == 0:
        done = f"0 {unit} (the run is at {unit[:-1]} {trainer.epoch})"
    elif trainer.epoch > epochs_run:
        done = f"{unit} {trainer.epoch - epochs_run + 1} to {trainer.epoch}"
    else:
        done = f"{epochs_run} {unit}"
    print(
        f"trained {done} with {config.optimizer} ({settings}, seed {config.seed}) "
        f"on {data.train.name}: {len(data.train)} training, "
        f"{len(data.validation)} validation samples, {elapsed:.1f} s"
    )
    if trainer.lbfgs_message is not None:
        print(f"L-BFGS: {trainer.lbfgs_message}")
    verdict_a = "beats" if last.val_mse_a < base.mse_a else "does NOT beat"
    verdict_b = "beats" if last.val_accuracy_b > base.accuracy_b else "does NOT beat"
    print(
        f"validation  task A MSE       {last.val_mse_a:<10.4g} "
        f"baseline {base.mse_a:<10.4g} (predict the training mean)   {verdict_a} it"
    )
    print(
        f"validation  task B accuracy  {last.val_accuracy_b:<10.1%} "
        f"baseline {base.accuracy_b:<10.1%} (predict the majority class) "
        f"{verdict_b} it"
    )
    for option, label in (("history", "history"), ("plot", "plot")):
        if getattr(args, option) is not None:
            print(f"{label}: {getattr(args, option)}")
