"""First-order optimizers: SGD (momentum, Nesterov) and Adam, with weight decay.

Each optimizer holds the parameter arrays it was given (for a network, the views of
``net.params``) and `step(grads)` updates them in place, so the network, and its flat
vector, see every update. `state_dict` exports everything the next step depends on as
plain arrays, and `load_state_dict` restores it exactly, so that a checkpoint resumes
the same sequence of updates bit for bit.

Conventions, chosen to match what most libraries do so that results compare:

- Weight decay is an L2 term added to the gradient, g = grad + weight_decay * theta,
  for SGD and for Adam; ``Adam(decoupled_weight_decay=True)`` instead shrinks the
  parameters directly, theta <- theta - lr * weight_decay * theta (AdamW).
- SGD's velocity starts at zero and accumulates v <- momentum * v + g, without
  dampening; the step is lr * v, or lr * (g + momentum * v) with Nesterov.
- Adam's moments start at zero and are bias-corrected by 1 - beta^t at step t.

Weight decay applies to every parameter, biases included; give ``weight_decay=0`` (the
default) to train without it.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from multitask_bp._checks import FloatArray, fraction, positive_float


def _non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value}")
    return value


def _tiled_vector(params: Mapping[str, FloatArray]) -> FloatArray | None:
    """The 1-D array that `params` tile in order without gaps, or None."""
    arrays = list(params.values())
    base = arrays[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 1:
        return None
    if not base.flags.c_contiguous or not base.flags.writeable:
        return None
    start = base.__array_interface__["data"][0]
    offset = 0
    for array in arrays:
        if array.base is not base or array.dtype != base.dtype:
            return None
        if not array.flags.c_contiguous:
            return None
        address = array.__array_interface__["data"][0]
        if address != start + offset * base.itemsize:
            return None
        offset += array.size
    return base if offset == base.size else None


def _views_like(
    flat: FloatArray, params: Mapping[str, FloatArray]
) -> dict[str, FloatArray]:
    """Views into `flat` with the names and shapes of `params`, in order."""
    views, offset = {}, 0
    for name, p in params.items():
        views[name] = flat[offset : offset + p.size].reshape(p.shape)
        offset += p.size
    return views


class Optimizer(ABC):
    """What SGD and Adam share: the parameters, the step count, the state arrays.

    Parameters
    ----------
    params : mapping of str to ndarray
        The arrays to update in place, for example ``net.params``. Each must be a
        writeable floating array.
    lr : float > 0
        The learning rate.
    weight_decay : float >= 0
        The weight of the L2 term added to each gradient.

    Attributes
    ----------
    t : int
        The number of steps taken.
    """

    #: The names of the per-parameter buffers, e.g. ("velocity",) for SGD.
    buffers: tuple[str, ...] = ()
    #: Whether weight decay enters the gradient (L2) rather than the update.
    _coupled_decay = True

    def __init__(
        self, params: Mapping[str, FloatArray], lr: float, weight_decay: float = 0.0
    ) -> None:
        if not isinstance(params, Mapping) or not params:
            raise TypeError(
                "`params` must be a non-empty mapping of name to array, such as "
                f"net.params; got {type(params).__name__}"
            )
        for name, value in params.items():
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                kind = type(value).__name__
                if isinstance(value, np.ndarray):
                    kind += f" of dtype {value.dtype}"
                raise TypeError(
                    f"`params[{name!r}]` must be a floating numpy array, got {kind}"
                )
            if not value.flags.writeable:
                raise ValueError(
                    f"`params[{name!r}]` must be writeable: it is updated in place"
                )
        self.params = dict(params)
        self.lr = positive_float(lr, "lr")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        self.t = 0
        # When the parameters tile one flat vector in order (as net.params tile
        # net.flat_params), one update of the whole vector replaces one per parameter:
        # the same arithmetic element by element, so the same bits, at a fraction of
        # numpy's per-call overhead. The buffers then tile flat buffers the same way.
        self._flat = _tiled_vector(self.params)
        self._flat_state: dict[str, FloatArray] = {}
        self.state: dict[str, dict[str, FloatArray]] = {}
        for buffer in self.buffers:
            if self._flat is not None:
                self._flat_state[buffer] = np.zeros_like(self._flat)
                self.state[buffer] = _views_like(self._flat_state[buffer], self.params)
            else:
                self.state[buffer] = {
                    name: np.zeros_like(p) for name, p in self.params.items()
                }

    def step(self, grads: Mapping[str, FloatArray]) -> None:
        """Update every parameter in place from its gradient.

        Parameters
        ----------
        grads : mapping of str to ndarray
            The keys of `params`, each with the shape of its parameter, e.g. the dict
            returned by ``net.backward()``.
        """
        missing = sorted(set(self.params) - set(grads))
        if missing:
            raise ValueError(
                f"`grads` must hold a gradient for every parameter; missing {missing}"
            )
        for name, p in self.params.items():
            if np.shape(grads[name]) != p.shape:
                raise ValueError(
                    f"`grads[{name!r}]` must have the shape of its parameter "
                    f"{p.shape}, got {np.shape(grads[name])}"
                )
        self.t += 1
        if self._flat is not None:
            g = np.concatenate(
                [
                    np.asarray(grads[name], self._flat.dtype).ravel()
                    for name in self.params
                ]
            )
            self._step_one(self._flat, g, self._flat_state)
            return
        for name, p in self.params.items():
            buffers = {buffer: self.state[buffer][name] for buffer in self.buffers}
            self._step_one(p, np.asarray(grads[name], dtype=p.dtype), buffers)

    def _step_one(
        self, p: FloatArray, g: FloatArray, buffers: dict[str, FloatArray]
    ) -> None:
        if self.weight_decay and self._coupled_decay:
            g = g + self.weight_decay * p
        self._update(p, g, buffers)

    @abstractmethod
    def _update(
        self, p: FloatArray, g: FloatArray, buffers: dict[str, FloatArray]
    ) -> None:
        """Apply one step to `p` in place from `g` (weight decay already added to it
        when coupled), updating this parameter's `buffers` in place."""

    # -- state for checkpoints ------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything the next step depends on, as arrays.

        Returns
        -------
        dict of str to ndarray
            ``"t"`` (0-d int64) and ``"<buffer>.<param>"`` for every buffer (SGD:
            velocity; Adam: m, v) and parameter, copies with the parameter's shape.
            Hyperparameters are not included: they belong to the run's configuration.
        """
        state: dict[str, np.ndarray] = {"t": np.array(self.t, dtype=np.int64)}
        for buffer, arrays in self.state.items():
            for name, array in arrays.items():
                state[f"{buffer}.{name}"] = array.copy()
        return state

    def expected_state(self) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
        """The name, shape and dtype of every array of `state_dict`."""
        expected: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {
            "t": ((), np.dtype(np.int64))
        }
        for buffer in self.buffers:
            for name, p in self.params.items():
                expected[f"{buffer}.{name}"] = (p.shape, p.dtype)
        return expected

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore the state exported by `state_dict`, checking every name and shape.

        Nothing is changed unless every array is present with the right shape and
        dtype and finite, and the step count is a non-negative integer.
        """
        expected = self.expected_state()
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise ValueError(
                f"the {type(self).__name__} state must hold exactly "
                f"{sorted(expected)}; missing {missing}, unexpected {extra}"
            )
        for key, (shape, dtype) in expected.items():
            array = np.asarray(state[key])
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(
                    f"the {type(self).__name__} state array {key!r} must have shape "
                    f"{shape} and dtype {dtype}, got shape {array.shape} and dtype "
                    f"{array.dtype}"
                )
            if dtype.kind == "f" and not np.isfinite(array).all():
                raise ValueError(
                    f"the {type(self).__name__} state array {key!r} must be finite"
                )
        t = int(state["t"])
        if t < 0:
            raise ValueError(f"the step count `t` must be >= 0, got {t}")
        self.t = t
        for buffer, arrays in self.state.items():
            for name, array in arrays.items():
                array[...] = state[f"{buffer}.{name}"]


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and Nesterov momentum.

    With g = grad + weight_decay * theta at each step:

    - momentum 0: theta <- theta - lr * g;
    - momentum mu > 0: v <- mu * v + g, then theta <- theta - lr * v, or with
      Nesterov theta <- theta - lr * (g + mu * v) (the look-ahead written in terms of
      the current gradient, as in Sutskever et al. 2013 and most libraries).

    Parameters
    ----------
    params : mapping of str to ndarray
        Updated in place.
    lr : float > 0
    momentum : float in [0, 1)
    nesterov : bool
        Requires momentum > 0.
    weight_decay : float >= 0
    """

    buffers: tuple[str, ...] = ("velocity",)

    def __init__(
        self,
        params: Mapping[str, FloatArray],
        lr: float = 0.05,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        self.momentum = fraction(momentum, "momentum")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError(
                "`nesterov` needs `momentum` above 0: Nesterov momentum with "
                "momentum 0 is plain SGD"
            )
        if self.momentum == 0:
            self.buffers = ()
        super().__init__(params, lr, weight_decay)

    def _update(
        self, p: FloatArray, g: FloatArray, buffers: dict[str, FloatArray]
    ) -> None:
        if self.momentum == 0:
            p -= self.lr * g
            return

        v = buffers["velocity"]
        v *= self.momentum
        v += g
        if self.nesterov:
            p -= self.lr * (g + self.momentum * v)
        else:
            p -= self.lr * v

    def __repr__(self) -> str:
        return (
            f"SGD(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
            f"weight_decay={self.weight_decay})"
        )


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with L2 or decoupled weight decay.

    At step t, with g = grad (+ weight_decay * theta unless decoupled):

        m <- beta_1 m + (1 - beta_1) g
        v <- beta_2 v + (1 - beta_2) g^2
        m_hat = m / (1 - beta_1^t),  v_hat = v / (1 - beta_2^t)
        theta <- theta - lr * m_hat / (sqrt(v_hat) + eps)

    and with ``decoupled_weight_decay=True`` first theta <- theta - lr * weight_decay
    * theta (AdamW, Loshchilov and Hutter, 2019).

    Parameters
    ----------
    params : mapping of str to ndarray
        Updated in place.
    lr : float > 0
    betas : (float, float), each in [0, 1)
    eps : float > 0
        Added to sqrt(v_hat); keeps the step finite where a gradient has been 0.
    weight_decay : float >= 0
    decoupled_weight_decay : bool
    """

    buffers = ("m", "v")

    def __init__(
        self,
        params: Mapping[str, FloatArray],
        lr: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
    ) -> None:
        try:
            beta_1, beta_2 = betas
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"`betas` must be a pair (beta_1, beta_2), got {betas!r}"
            ) from error
        self.betas = (fraction(beta_1, "betas[0]"), fraction(beta_2, "betas[1]"))
        self.eps = positive_float(eps, "eps")
        self.decoupled_weight_decay = bool(decoupled_weight_decay)
        self._coupled_decay = not self.decoupled_weight_decay
        super().__init__(params, lr, weight_decay)

    def _update(
        self, p: FloatArray, g: FloatArray, buffers: dict[str, FloatArray]
    ) -> None:
        beta_1, beta_2 = self.betas
        m = buffers["m"]
        v = buffers["v"]

        if self.decoupled_weight_decay and self.weight_decay:
            p -= (self.lr * self.weight_decay) * p
        m *= beta_1
        m += (1.0 - beta_1) * g
        v *= beta_2
        v += (1.0 - beta_2) * (g * g)

        m_hat = m / (1.0 - beta_1**self.t)
        v_hat = v / (1.0 - beta_2**self.t)
        p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def __repr__(self) -> str:
        return (
            f"Adam(lr={self.lr}, betas={self.betas}, eps={self.eps}, "
            f"weight_decay={self.weight_decay}, "
            f"decoupled_weight_decay={self.decoupled_weight_decay})"
        )
