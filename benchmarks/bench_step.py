"""Time one training step of MultiTaskNet against its floor, PyTorch and JAX.

One step is ``net.forward(X)``, ``net.loss(y_a_true, y_b_true)`` and ``net.backward()``
on one batch. In the same run, with the same arrays, the script times

- floor: the step's necessary matrix products alone, into preallocated outputs
  (forward X theta_1A^T, x_DP theta_2A^T, X theta_1B^T, h theta_2B^T; backward
  dtheta_2B, dh, dtheta_1B, dtheta_2A, dx_DP, dtheta_1A; the first layers' input
  gradients are not needed and not counted);
- torch: the same network in PyTorch eager autograd (if torch is installed);
- jax: the same network under ``jax.jit(jax.value_and_grad(...))`` (if jax is
  installed), in float64 with ``jax_enable_x64``.

All of them get identical parameters, inputs and dropout mask M: ours holds its mask
(``net.dropout.held_mask()``), the others take M as an input, so all compute the same
function. Before any timing, torch's and jax's loss and gradients are checked against
ours (relative tolerance 1e-9 in float64, 2e-4 in float32). "ours, fresh M" is ours
drawing a new mask every step, as plain training does.

Timing: warm-up calls, then rounds; in each round every contender runs one block of
calls, in an order rotated from round to round, so that drift on a shared machine
reaches all of them alike. A contender's time is the median over rounds of the block
time divided by the calls in the block; a ratio is the median over rounds of the two
contenders' times in the same round. Ratios are what to read: they hold when the
machine is noisy, absolute times do not.

Memory: each framework runs in a fresh subprocess with ``MALLOC_MMAP_THRESHOLD_=65536``
(so that glibc maps every allocation of 64 KiB or more on its own and unmaps it on
free, and the resident set follows the live arrays). After a warm-up on a tiny batch
and building the problem, the resident set is read ("rest"); two steps run, the peak
resident set (VmHWM) is reset through /proc/self/clear_refs, a third step runs, and
its peak minus rest is reported. That counts everything a step needs above its inputs
and parameters, including what a framework keeps from the previous step (our
gradients, each until the new one replaces it; our layer caches are dropped as the
next forward starts; torch's .grad tensors are set to None first). For ours the same
peak is also taken with tracemalloc (numpy reports its allocations to it), which
counts array bytes exactly and checks the resident-set figure.

Run from the repository root::

    python benchmarks/bench_step.py                       # everything, ~10 minutes
    python benchmarks/bench_step.py --sizes small,medium --dtypes float64
    python benchmarks/bench_step.py --json out/bench.json
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from multitask_bp import MultiTaskNet

SIZES: dict[str, dict[str, int]] = {
    "small": dict(m=32, n_in=64, n_hidden=64, n_shared=32, n_classes=10),
    "medium": dict(m=256, n_in=784, n_hidden=512, n_shared=256, n_classes=10),
    "large": dict(m=4096, n_in=1024, n_hidden=2048, n_shared=1024, n_classes=100),
}
#: (rounds, seconds one block should last at least, warm-up calls) per size.
SCHEDULE: dict[str, tuple[int, float, int]] = {
    "small": (31, 0.02, 100),
    "medium": (15, 0.05, 3),
    "large": (3, 0.0, 1),
}
DTYPES = {"float64": np.float64, "float32": np.float32}
#: Relative tolerance of the gradient agreement with ours, per dtype.
TOLERANCE = {"float64": 1e-9, "float32": 2e-4}
NAMES = ("theta_1A", "b_1A", "theta_2A", "b_2A", "theta_1B", "b_1B", "theta_2B", "b_2B")
P_DROP = 0.5
LOSS_WEIGHTS = (1.0, 1.0)
MiB = 2.0**20


@dataclass
class Problem:
    """One batch, the network and the mask every contender uses."""

    size: str
    dtype: str
    net: MultiTaskNet
    X: np.ndarray  # (m, n_in)
    y_a_true: np.ndarray  # (m, n_shared)
    labels: np.ndarray  # (m,) integers in [0, n_classes)
    mask: np.ndarray  # (m, n_hidden), M of equation (36)
    params: dict[str, np.ndarray]  # copies, by the names of NAMES


def make_problem(size: str, dtype: str, seed: int = 0) -> Problem:
    dims = SIZES[size]
    dt = DTYPES[dtype]
    rng = np.random.default_rng(seed)
    m = dims["m"]
    X = rng.standard_normal((m, dims["n_in"])).astype(dt)
    y_a_true = rng.standard_normal((m, dims["n_shared"])).astype(dt)
    labels = rng.integers(0, dims["n_classes"], size=m)
    net = MultiTaskNet(
        dims["n_in"],
        dims["n_hidden"],
        dims["n_shared"],
        dims["n_classes"],
        p_drop=P_DROP,
        loss_weights=LOSS_WEIGHTS,
        seed=seed,
        dtype=dt,
    )
    net.train()
    net.forward(X)  # draws the mask that every contender then uses
    _away_from_kink(net, X)
    mask = np.array(net.dropout.mask, dtype=dt)
    params = {name: np.array(value) for name, value in net.params.items()}
    return Problem(size, dtype, net, X, y_a_true, labels, mask, params)


def _away_from_kink(net: MultiTaskNet, X: np.ndarray) -> None:
    """Set b_1B so that no input of the ReLU (40) lies within rounding of its kink.

    At x_BN = 0 the gradient jumps; an entry within float32 rounding of 0 may fall on
    either side in another framework, and one such entry moves a column of dtheta_1B
    by about 1/sqrt(m) of its size. Per feature, b_1B puts 0 midway between the two
    entries of x_BN nearest to it, half a gap (about 1e-4 for m = 4096) from either.
    """
    x_1b = X.astype(np.float64) @ net.params["theta_1B"].astype(np.float64).T
    x_bn = x_1b - x_1b.mean(axis=0)
    below = np.where(x_bn < 0, x_bn, -np.inf).max(axis=0)
    above = np.where(x_bn >= 0, x_bn, np.inf).min(axis=0)
    net.params["b_1B"][...] = -(below + above) / 2


# -- contenders ---------------------------------------------------------------------


def ours_step(problem: Problem) -> Callable[[], Any]:
    """One step of ours; call it inside ``net.dropout.held_mask()`` to fix M."""
    net, X, y_a_true, labels = problem.net, problem.X, problem.y_a_true, problem.labels

    def step() -> Any:
        net.forward(X)
        net.loss(y_a_true, labels)
        return net.backward()

    return step


def ours_gradients(problem: Problem) -> tuple[float, dict[str, np.ndarray]]:
    net = problem.net
    with net.dropout.held_mask():
        net.forward(problem.X)
        losses = net.loss(problem.y_a_true, problem.labels)
        grads = net.backward()
    return losses.total, {name: np.array(grads[name]) for name in NAMES}


def reference_arrays(problem: Problem) -> dict[str, np.ndarray]:
    """The operands of the floor's products, from a plain numpy pass of the step."""
    p, X, M = problem.params, problem.X, problem.mask
    m = X.shape[0]
    w_a, w_b = LOSS_WEIGHTS
    z_1a = X @ p["theta_1A"].T + p["b_1A"]
    x_dp = np.sin(z_1a) * M
    y_a = x_dp @ p["theta_2A"].T + p["b_2A"]
    x_1b = X @ p["theta_1B"].T
    x_bn = x_1b - x_1b.mean(axis=0) + p["b_1B"]
    h = y_a + np.maximum(x_bn, 0)
    z_2b = h @ p["theta_2B"].T + p["b_2B"]
    e = np.exp(z_2b - z_2b.max(axis=1, keepdims=True))
    y_b = e / e.sum(axis=1, keepdims=True)
    onehot = np.zeros_like(y_b)
    onehot[np.arange(m), problem.labels] = 1
    dz_2b = w_b * (y_b - onehot) / m
    dh = dz_2b @ p["theta_2B"]
    dy_a = w_a * (y_a - problem.y_a_true) / m + dh
    dx_bn = dh * (x_bn > 0)
    dx_1b = dx_bn - dx_bn.mean(axis=0)
    dz_1a = (dy_a @ p["theta_2A"]) * M * np.cos(z_1a)
    return dict(x_dp=x_dp, h=h, dz_2b=dz_2b, dy_a=dy_a, dx_1b=dx_1b, dz_1a=dz_1a)


def floor_step(problem: Problem) -> Callable[[], Any]:
    """The ten matrix products of one step, each into a preallocated output."""
    p, X = problem.params, problem.X
    r = reference_arrays(problem)
    t_1a, t_2a, t_1b, t_2b = (
        p[k] for k in ("theta_1A", "theta_2A", "theta_1B", "theta_2B")
    )
    x_dp, h, dz_2b, dy_a, dx_1b, dz_1a = (
        r[k] for k in ("x_dp", "h", "dz_2b", "dy_a", "dx_1b", "dz_1a")
    )
    products = [
        (X, t_1a.T),  # (34)
        (x_dp, t_2a.T),  # (37)
        (X, t_1b.T),  # (38)
        (h, t_2b.T),  # (42)
        (dz_2b.T, h),  # (48)
        (dz_2b, t_2b),  # (50)
        (dx_1b.T, X),  # (55)
        (dy_a.T, x_dp),  # (56)
        (dy_a, t_2a),  # (58)
        (dz_1a.T, X),  # (61)
    ]
    outs = [np.empty((a.shape[0], b.shape[1]), dtype=X.dtype) for a, b in products]
    work = [(a, b, out) for (a, b), out in zip(products, outs, strict=True)]
    matmul = np.matmul

    def step() -> Any:
        for a, b, out in work:
            matmul(a, b, out=out)
        return outs

    return step


def torch_contender(
    problem: Problem,
) -> tuple[Callable[[], Any], Callable[[], tuple[float, dict[str, np.ndarray]]]]:
    import torch
    import torch.nn.functional as F

    params = {
        name: torch.from_numpy(value.copy()).requires_grad_()
        for name, value in problem.params.items()
    }
    X = torch.from_numpy(problem.X)
    M = torch.from_numpy(problem.mask)
    y_a_true = torch.from_numpy(problem.y_a_true)
    labels = torch.from_numpy(problem.labels.astype(np.int64))
    m = problem.X.shape[0]
    w_a, w_b = LOSS_WEIGHTS
    p = params

    def step() -> Any:
        for value in params.values():
            value.grad = None
        y_a = F.linear(torch.sin(F.linear(X, p["theta_1A"], p["b_1A"])) * M,
                       p["theta_2A"], p["b_2A"])  # fmt: skip
        x_1b = F.linear(X, p["theta_1B"])
        a_bn = torch.relu(x_1b - x_1b.mean(dim=0) + p["b_1B"])
        z_2b = F.linear(y_a + a_bn, p["theta_2B"], p["b_2B"])
        loss_a = ((y_a - y_a_true) ** 2).sum() / (2 * m)
        loss_b = F.cross_entropy(z_2b, labels)
        loss = w_a * loss_a + w_b * loss_b
        loss.backward()
        return loss

    def gradients() -> tuple[float, dict[str, np.ndarray]]:
        loss = step()
        return float(loss.detach()), {n: params[n].grad.numpy().copy() for n in NAMES}

    return step, gradients


def jax_contender(
    problem: Problem,
) -> tuple[Callable[[], Any], Callable[[], tuple[float, dict[str, np.ndarray]]]]:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    m = problem.X.shape[0]
    w_a, w_b = LOSS_WEIGHTS
    onehot = np.zeros((m, SIZES[problem.size]["n_classes"]), dtype=problem.X.dtype)
    onehot[np.arange(m), problem.labels] = 1

    def loss_fn(p: Any, X: Any, M: Any, y_a_true: Any, y_b_true: Any) -> Any:
        y_a = jnp.sin(X @ p["theta_1A"].T + p["b_1A"]) * M @ p["theta_2A"].T
        y_a = y_a + p["b_2A"]
        x_1b = X @ p["theta_1B"].T
        a_bn = jnp.maximum(x_1b - jnp.mean(x_1b, axis=0) + p["b_1B"], 0)
        z_2b = (y_a + a_bn) @ p["theta_2B"].T + p["b_2B"]
        loss_a = jnp.sum((y_a - y_a_true) ** 2) / (2 * m)
        loss_b = -jnp.sum(y_b_true * jax.nn.log_softmax(z_2b, axis=1)) / m
        return w_a * loss_a + w_b * loss_b

    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    args = jax.device_put(
        (problem.params, problem.X, problem.mask, problem.y_a_true, onehot)
    )

    def step() -> Any:
        return jax.block_until_ready(value_and_grad(*args))

    def gradients() -> tuple[float, dict[str, np.ndarray]]:
        loss, grads = step()
        return float(loss), {n: np.asarray(grads[n]) for n in NAMES}

    return step, gradients


def check_gradients(
    name: str,
    problem: Problem,
    reference: tuple[float, dict[str, np.ndarray]],
    other: tuple[float, dict[str, np.ndarray]],
) -> float:
    """Raise if `other` disagrees with ours; return the worst relative error."""
    tol = TOLERANCE[problem.dtype]
    loss_ref, grads_ref = reference
    loss, grads = other
    worst = abs(loss - loss_ref) / max(abs(loss_ref), 1e-30)
    for key in NAMES:
        ref, got = grads_ref[key], grads[key]
        if got.shape != ref.shape or got.dtype != ref.dtype:
            raise RuntimeError(
                f"{name} {problem.size}/{problem.dtype}: {key} has shape/dtype "
                f"{got.shape}/{got.dtype}, ours {ref.shape}/{ref.dtype}"
            )
        scale = max(float(np.max(np.abs(ref))), 1e-30)
        worst = max(worst, float(np.max(np.abs(got - ref))) / scale)
    if worst > tol:
        raise RuntimeError(
            f"{name} {problem.size}/{problem.dtype}: gradients differ from ours by "
            f"{worst:.3g} relative, above {tol:g}; not timed"
        )
    return worst


# -- timing -------------------------------------------------------------------------


def time_interleaved(
    contenders: dict[str, Callable[[], Any]],
    rounds: int,
    min_block: float,
    warmup: int,
) -> dict[str, dict[str, float]]:
    """Median seconds per call of each contender, blocks interleaved round by round."""
    inner: dict[str, int] = {}
    for name, fn in contenders.items():
        for _ in range(warmup):
            fn()
        inner[name] = 1
        if min_block > 0:
            start = time.perf_counter()
            fn()
            once = time.perf_counter() - start
            inner[name] = max(1, math.ceil(min_block / max(once, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                fn, n = contenders[name], inner[name]
                start = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[name].append((time.perf_counter() - start) / n)
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    result: dict[str, dict[str, float]] = {}
    for name, times in samples.items():
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        result[name] = dict(
            median=float(median), q1=float(q1), q3=float(q3), calls=inner[name]
        )
        # The ratio to ours within each round, where both met the same load.
        paired = np.divide(samples[names[0]], times)
        result[name]["paired_ratio"] = float(np.median(paired))
    return result


# -- memory -------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(framework: str, size: str, dtype: str) -> dict[str, float | None]:
    """Run in a fresh process: peak memory of one steady-state step, in bytes."""
    # A warm-up on a tiny batch loads kernels and starts thread pools, which are then
    # not counted as the step's memory.
    SIZES["tiny"] = dict(m=4, n_in=3, n_hidden=3, n_shared=3, n_classes=3)
    tiny = make_problem("tiny", dtype)
    with tiny.net.dropout.held_mask():
        warm = ours_step(tiny) if framework == "ours" else torch_contender(tiny)[0]
        warm()
    del tiny, warm
    gc.collect()

    tracemalloc.start()
    problem = make_problem(size, dtype)
    if framework == "ours":
        step = ours_step(problem)
    else:
        step = torch_contender(problem)[0]
    problem.net.dropout.hold = True
    gc.collect()
    traced_rest = tracemalloc.get_traced_memory()[0]
    rss_rest = _status_kib("VmRSS") * 1024
    step()
    step()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident set
    tracemalloc.reset_peak()
    step()
    rss_peak = _status_kib("VmHWM") * 1024
    traced_peak = tracemalloc.get_traced_memory()[1]
    return {
        "rss": float(rss_peak - rss_rest),
        "tracemalloc": float(traced_peak - traced_rest)
        if framework == "ours"
        else None,
    }


def measure_memory(
    framework: str, size: str, dtype: str, threads: int | None
) -> dict[str, Any] | None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    command = [sys.executable, __file__, "--memory-child", framework, size, dtype]
    if threads is not None:
        command += ["--threads", str(threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        print(
            f"memory {framework} {size}/{dtype} failed:\n{done.stderr}", file=sys.stderr
        )
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the run ------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    facts["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info

        facts["blas"] = [
            {k: info.get(k) for k in ("internal_api", "version", "architecture")}
            | {"threads": info.get("num_threads")}
            for info in threadpool_info()
            if info.get("user_api") == "blas"
        ]
    except ImportError:
        facts["blas"] = "threadpoolctl not installed"
    for module in ("torch", "jax"):
        try:
            imported = __import__(module)
            facts[module] = imported.__version__
        except ImportError:
            facts[module] = None
    if facts["torch"]:
        import torch

        facts["torch_threads"] = torch.get_num_threads()
    return facts


def run_one(
    size: str,
    dtype: str,
    frameworks: list[str],
    memory: bool,
    scale: float,
    threads: int | None,
) -> dict[str, Any]:
    problem = make_problem(size, dtype)
    reference = ours_gradients(problem)
    contenders: dict[str, Callable[[], Any]] = {"ours": ours_step(problem)}
    contenders["floor"] = floor_step(problem)
    checks: dict[str, float] = {}
    builders = {"torch": torch_contender, "jax": jax_contender}
    for framework in frameworks:
        step, gradients = builders[framework](problem)
        checks[framework] = check_gradients(framework, problem, reference, gradients())
        contenders[framework] = step

    fresh_net = make_problem(size, dtype).net  # same net, but draws M every step
    fresh_problem = Problem(
        size, dtype, fresh_net, problem.X, problem.y_a_true, problem.labels,
        problem.mask, problem.params,
    )  # fmt: skip
    contenders["ours, fresh M"] = ours_step(fresh_problem)

    rounds, min_block, warmup = SCHEDULE[size]
    rounds = max(3, round(rounds * scale))
    with problem.net.dropout.held_mask():
        times = time_interleaved(contenders, rounds, min_block, warmup)
    row: dict[str, Any] = {
        "size": size,
        "dtype": dtype,
        "dims": SIZES[size],
        "rounds": rounds,
        "times": times,
        "gradient_check_worst_relative_error": checks,
    }
    # The median over rounds of ours' time over the other's in the same round.
    row["ratios"] = {
        f"ours/{name}": t["paired_ratio"] for name, t in times.items() if name != "ours"
    }
    if memory:
        mem = {"ours": measure_memory("ours", size, dtype, threads)}
        if "torch" in frameworks:
            mem["torch"] = measure_memory("torch", size, dtype, threads)
        row["memory"] = mem
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    def ms(row: dict[str, Any], name: str) -> str:
        t = row["times"].get(name)
        return f"{t['median'] * 1e3:.3g}" if t else "-"

    def ratio(row: dict[str, Any], name: str) -> str:
        r = row["ratios"].get(f"ours/{name}")
        return f"{r:.2f}" if r is not None else "-"

    def mib(row: dict[str, Any], name: str, key: str = "rss") -> str:
        mem = row.get("memory", {}).get(name)
        if not mem or mem.get(key) is None:
            return "-"
        return f"{mem[key] / MiB:.3g}"

    header = (
        "| size | dtype | ours ms | floor ms | torch ms | jax ms | ours/floor "
        "| ours/torch | ours/jax | fresh M/held | mem ours MiB (tracemalloc) "
        "| mem torch MiB |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        fresh = 1.0 / row["ratios"]["ours/ours, fresh M"]
        lines.append(
            f"| {row['size']} | {row['dtype']} | {ms(row, 'ours')} | "
            f"{ms(row, 'floor')} | {ms(row, 'torch')} | {ms(row, 'jax')} | "
            f"{ratio(row, 'floor')} | {ratio(row, 'torch')} | {ratio(row, 'jax')} | "
            f"{fresh:.2f} | {mib(row, 'ours')} ({mib(row, 'ours', 'tracemalloc')}) | "
            f"{mib(row, 'torch')} |"
        )
    return "\n".join(lines)


def limit_threads(n: int) -> None:
    """Give numpy's BLAS, torch and XLA the same number of threads."""
    if n < 1:
        raise SystemExit(f"--threads must be at least 1, got {n}")
    # XLA's CPU client (jax 0.10) ignores the flags below and keeps every core busy
    # (CPU time twice the wall time under --threads 1 on 2 cores); pinning the process
    # to n cores holds every framework to them alike.
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cores[:n])
    # XLA reads its flags when jax first starts its CPU client.
    flags = f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'}"
    flags += f" intra_op_parallelism_threads={n}"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    try:
        import torch

        torch.set_num_threads(n)
        torch.set_num_interop_threads(n)
    except ImportError:
        pass
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,medium,large")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    parser.add_argument(
        "--frameworks",
        default="torch,jax",
        help="which of torch,jax to compare with, where installed ('' for none)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip peak memory")
    parser.add_argument(
        "--rounds-scale", type=float, default=1.0, help="multiply the rounds per size"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="limit every framework to this many threads (default: as installed)",
    )
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads is not None:
        limit_threads(args.threads)

    if args.memory_child:
        print(json.dumps(memory_child(*args.memory_child)))
        return 0

    sizes = [s for s in args.sizes.split(",") if s]
    dtypes = [d for d in args.dtypes.split(",") if d]
    for value, known, what in ((sizes, SIZES, "--sizes"), (dtypes, DTYPES, "--dtypes")):
        unknown = [v for v in value if v not in known]
        if unknown:
            parser.error(f"{what}: unknown {unknown}, expected some of {list(known)}")
    frameworks = []
    for framework in (f for f in args.frameworks.split(",") if f):
        try:
            __import__(framework)
            frameworks.append(framework)
        except ImportError:
            print(f"{framework} is not installed: not compared", file=sys.stderr)

    facts = machine_facts()
    facts["threads_limit"] = args.threads
    print(json.dumps(facts))
    rows = []
    for size in sizes:
        for dtype in dtypes:
            start = time.perf_counter()
            rows.append(
                run_one(
                    size,
                    dtype,
                    frameworks,
                    not args.no_memory,
                    args.rounds_scale,
                    args.threads,
                )
            )
            print(
                f"{size}/{dtype} done in {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
            )
    print(format_table(rows))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as out:
            json.dump({"machine": facts, "rows": rows}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
