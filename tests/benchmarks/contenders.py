"""The contenders: one SGD step of the two-layer net, written for each framework.

Each contender is built from a ``Problem`` (its own copy of the starting
parameters) and offers:

- ``step()``: forward with the summed loss, the four parameter gradients,
  ``p ← p − lr · g``. This is what is timed.
- ``gradients()``: the loss and the gradients at the current parameters, as
  numpy arrays, computed by the same code, with no update (for the check).
- ``params()``: the current parameters as numpy arrays.

numpy (the baseline) and microtape are always there; PyTorch, JAX and HIPS
autograd join when they can be imported, and are never required.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import time
from typing import Callable

import numpy as np

import microtape as mt
from models import TwoLayerNet
from models import by_hand as cf

from . import textbook
from .problem import PARAM_NAMES, Problem

_clock = time.perf_counter


class NumpyStep:
    """The textbook closed form of models/DERIVATION.md (``models.by_hand``'s ``forward``,
    ``loss`` and ``backward``), labels one-hot once outside the step."""

    name = "numpy"

    def __init__(self, problem: Problem) -> None:
        self.x, self.y, self.lr = problem.x, problem.onehot, problem.lr
        self.p = {name: a.copy() for name, a in problem.params0.items()}

    def step(self) -> None:
        p, lr = self.p, self.lr
        h, yhat = cf.forward(self.x, p["W1"], p["b1"], p["W2"], p["b2"])
        cf.loss(self.y, yhat)  # computed and dropped: every contender's step computes the loss
        grads = cf.backward(self.x, self.y, p["W2"], h, yhat)[0]  # delta1 freed at once, as a textbook step frees it
        for name in PARAM_NAMES:
            p[name] -= lr * grads[name]

    def phases(self) -> tuple[float, float, float]:
        """One step, timed as forward with loss / gradients / update (seconds)."""
        p, lr = self.p, self.lr
        t0 = _clock()
        h, yhat = cf.forward(self.x, p["W1"], p["b1"], p["W2"], p["b2"])
        cf.loss(self.y, yhat)
        t1 = _clock()
        grads = cf.backward(self.x, self.y, p["W2"], h, yhat)[0]  # delta1 freed at once, as a textbook step frees it
        t2 = _clock()
        for name in PARAM_NAMES:
            p[name] -= lr * grads[name]
        t3 = _clock()
        return t1 - t0, t2 - t1, t3 - t2

    def gradients(self) -> tuple[float, dict[str, np.ndarray]]:
        loss, grads = textbook.loss_and_gradients(self.x, self.y, self.p)
        return float(loss), grads

    def params(self) -> dict[str, np.ndarray]:
        return self.p


class TapeStep:
    """microtape as a user writes it: ``models.TwoLayerNet``, a tape, ``mt.optim.SGD``.

    The tape answers once (``persistent=False``), as in ``models/fit.py``;
    ``persistent=True`` measures the tape that keeps every value for drawing.
    """

    name = "microtape"

    def __init__(self, problem: Problem, persistent: bool = False) -> None:
        self.persistent = persistent
        _, n_in, n_hidden, n_out = problem.shape
        self.net = TwoLayerNet(n_in, n_hidden, n_out, seed=0, dtype=problem.dtype)
        for name, p in self.net.params.items():
            np.copyto(p.value, problem.params0[name])
        self.opt = mt.optim.SGD(self.net.params, problem.lr)
        self.x, self.labels = problem.x, problem.labels

    def step(self) -> None:
        with mt.Tape(persistent=self.persistent) as tape:
            loss = self.net.loss(self.x, self.labels, reduction="sum")
        self.opt.step(tape.gradient(loss, self.net.params))

    def phases(self) -> tuple[float, float, float]:
        """One step, timed as forward with loss / tape.gradient / update (seconds)."""
        t0 = _clock()
        with mt.Tape(persistent=self.persistent) as tape:
            loss = self.net.loss(self.x, self.labels, reduction="sum")
        t1 = _clock()
        grads = tape.gradient(loss, self.net.params)
        t2 = _clock()
        self.opt.step(grads)
        t3 = _clock()
        return t1 - t0, t2 - t1, t3 - t2

    def gradients(self) -> tuple[float, dict[str, np.ndarray]]:
        with mt.Tape() as tape:
            loss = self.net.loss(self.x, self.labels, reduction="sum")
        return float(loss), tape.gradient(loss, self.net.params)

    def params(self) -> dict[str, np.ndarray]:
        return {name: p.value for name, p in self.net.params.items()}


class AnomalyStep(TapeStep):
    """microtape's eager step inside ``mt.detect_anomaly()``: every op and VJP checked."""

    name = "microtape anomaly"

    def step(self) -> None:
        with mt.detect_anomaly():
            TapeStep.step(self)

    def gradients(self) -> tuple[float, dict[str, np.ndarray]]:
        with mt.detect_anomaly():
            return TapeStep.gradients(self)


class KeptTapeStep(TapeStep):
    """The eager step on ``mt.Tape()``, which keeps every value for drawing and asking again."""

    name = "microtape kept tape"

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem, persistent=True)


class ValueAndGradStep:
    """microtape's closed form as a user reaches it: ``value_and_grad(compile=True)`` and SGD.

    The loss takes the four parameters and the batch; the first call records
    it and writes its closed form, and every later step is
    ``opt.step(vg, *args)`` on the parameters (the Tensors ``mt.optim.SGD``
    holds), which runs the closed form's fused step for plain SGD. What this
    costs over the fused step below is the compiled function's per-call work
    (checking the arguments, binding them) and the optimizer's (finding its
    parameters among the arguments). ``two_calls`` is the other spelling,
    ``vg(*args)`` then ``opt.step(grads)``: the gradients handed out, then the
    update as separate numpy calls.
    """

    name = "microtape compiled"

    def __init__(self, problem: Problem) -> None:
        _, n_in, n_hidden, n_out = problem.shape
        net = TwoLayerNet(n_in, n_hidden, n_out, seed=0, dtype=problem.dtype)
        for name, p in net.params.items():
            np.copyto(p.value, problem.params0[name])

        def loss(W1, b1, W2, b2, x, labels):
            params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
            return mt.softmax_cross_entropy(net.forward(x, params), labels, reduction="sum")

        self.net = net
        self._value_and_grad = mt.value_and_grad(loss, argnums=(0, 1, 2, 3), compile=True)
        self.opt = mt.optim.SGD(net.parameters(), problem.lr)
        self.args = (*net.parameters(), problem.x, problem.labels)

    def step(self) -> None:
        self.opt.step(self._value_and_grad, *self.args)

    def two_calls(self) -> None:
        self.opt.step(self._value_and_grad(*self.args)[1])

    def gradients(self) -> tuple[float, dict[str, np.ndarray]]:
        value, grads = self._value_and_grad(*self.args)
        return float(value), dict(zip(PARAM_NAMES, grads))

    def params(self) -> dict[str, np.ndarray]:
        return {name: p.value for name, p in self.net.params.items()}


class CompiledStep:
    """microtape's fused closed form: the tape writes the step once, then the generated code runs.

    Built from public API: one step of ``models.TwoLayerNet`` recorded on a
    tape, ``tape.closed_form(loss, params)``, and its fused SGD step
    (``ClosedForm.step_function``: the backward pass seeded with −lr, each
    gradient added to its parameter in place). ``build_seconds`` is the
    one-off cost of writing (and compiling) its closed form from the recorded
    tape; recording is one eager step, which the tape's own row times.
    """

    name = "microtape fused"

    def __init__(self, problem: Problem) -> None:
        _, n_in, n_hidden, n_out = problem.shape
        self.net = TwoLayerNet(n_in, n_hidden, n_out, seed=0, dtype=problem.dtype)
        for name, p in self.net.params.items():
            np.copyto(p.value, problem.params0[name])
        with mt.Tape() as tape:
            loss = self.net.loss(problem.x, problem.labels, reduction="sum")
        builds = []
        for _ in range(5):  # the build is timed too: the median of a few
            t0 = _clock()
            self.cf = tape.closed_form(loss, self.net.params)
            builds.append(_clock() - t0)
        del tape, loss
        self.build_seconds = sorted(builds)[len(builds) // 2]
        params = self.net.params
        arrays = {"x": problem.x, "labels": problem.labels,
                  **{name: params[name].value for name in PARAM_NAMES}}
        self.args = [arrays[name] for name in self.cf.inputs]
        self.step_args = (*self.args, problem.lr)
        self._step = self.cf.step_function
        self._function = self.cf.function

    def step(self) -> None:
        self._step(*self.step_args)

    def gradients(self) -> tuple[float, dict[str, np.ndarray]]:
        value, grads = self._function(*self.args)
        return float(value), dict(zip(self.net.params, grads))

    def params(self) -> dict[str, np.ndarray]:
        return {name: p.value for name, p in self.net.params.items()}


class TorchStep:
    """PyTorch eager: autograd's backward, then a manual SGD update under no_grad."""

    name = "torch"

    def __init__(self, problem: Problem) -> None:
        import torch
        self.torch = torch
        self.cross_entropy = torch.nn.functional.cross_entropy
        self.lr = problem.lr
        self.x = torch.from_numpy(problem.x.copy())
        self.labels = torch.from_numpy(problem.labels.copy())
        self.p = {name: torch.tensor(a, requires_grad=True) for name, a in problem.params0.items()}

    def _loss(self):
        p = self.p
        h = self.torch.sigmoid(self.x @ p["W1"] + p["b1"])
        v = h @ p["W2"] + p["b2"]
        return self.cross_entropy(v, self.labels, reduction="sum")

    def step(self) -> None:
        self._loss().backward()
        with self.torch.no_grad():
            for p in self.p.values():
                p -= self.lr * p.grad
                p.grad = None

    def gradients(self) -> tuple[float, dict[str, np.ndarray]]:
        loss = self._loss()
        loss.backward()
        grads = {name: p.grad.numpy().copy() for name, p in self.p.items()}
        for p in self.p.values():
            p.grad = None
        return float(loss.item()), grads

    def params(self) -> dict[str, np.ndarray]:
        return {name: p.detach().numpy() for name, p in self.p.items()}


class TorchAnomalyStep(TorchStep):
    """PyTorch's eager step under ``torch.autograd.set_detect_anomaly(True)``: anomaly mode's peer."""

    name = "torch anomaly"

    def step(self) -> None:
        with self.torch.autograd.set_detect_anomaly(True):
            TorchStep.step(self)

    def gradients(self) -> tuple[float, dict[str, np.ndarray]]:
        with self.torch.autograd.set_detect_anomaly(True):
            return TorchStep.gradients(self)


class JaxStep:
    """JAX with the whole step (value, gradients, update) under one jit."""

    name = "jax"

    def __init__(self, problem: Problem) -> None:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)  # or float64 arrays become float32
        self.jax = jax
        lr = problem.lr

        def loss(p, x, labels):
            h = jax.nn.sigmoid(x @ p["W1"] + p["b1"])
            v = h @ p["W2"] + p["b2"]
            logp = jax.nn.log_softmax(v, axis=1)
            return -jnp.take_along_axis(logp, labels[:, None], axis=1).sum()

        value_and_grad = jax.value_and_grad(loss)  # with respect to p only

        def step(p, x, labels):
            value, g = value_and_grad(p, x, labels)
            return {name: p[name] - lr * g[name] for name in p}, value

        self._step = jax.jit(step, donate_argnums=0)
        self._value_and_grad = jax.jit(value_and_grad)
        self.x = jnp.asarray(problem.x)
        self.labels = jnp.asarray(problem.labels)
        self.p = {name: jnp.array(a) for name, a in problem.params0.items()}

    def step(self) -> None:
        self.p, value = self._step(self.p, self.x, self.labels)
        self.jax.block_until_ready((self.p, value))

    def gradients(self) -> tuple[float, dict[str, np.ndarray]]:
        value, g = self._value_and_grad(self.p, self.x, self.labels)
        return float(value), {name: np.asarray(a) for name, a in g.items()}

    def params(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(a) for name, a in self.p.items()}


class AutogradStep:
    """HIPS autograd: ``value_and_grad`` of the loss written in autograd.numpy."""

    name = "autograd"

    def __init__(self, problem: Problem) -> None:
        import autograd
        import autograd.numpy as anp
        from autograd.scipy.special import logsumexp
        x, labels, rows = problem.x, problem.labels, np.arange(len(problem.labels))

        def loss(p):
            h = 1 / (1 + anp.exp(-(x @ p["W1"] + p["b1"])))
            v = h @ p["W2"] + p["b2"]
            logp = v - logsumexp(v, axis=1, keepdims=True)
            return -anp.sum(logp[rows, labels])

        self._value_and_grad = autograd.value_and_grad(loss)
        self.lr = problem.lr
        self.p = {name: a.copy() for name, a in problem.params0.items()}

    def step(self) -> None:
        _, grads = self._value_and_grad(self.p)
        for name, p in self.p.items():
            p -= self.lr * grads[name]

    def gradients(self) -> tuple[float, dict[str, np.ndarray]]:
        value, grads = self._value_and_grad(self.p)
        return float(value), dict(grads)

    def params(self) -> dict[str, np.ndarray]:
        return self.p


class BlasFloor:
    """Not a contender: just the two large matrix products every contender computes.

    ``x W1`` (forward) and ``xᵀ delta1`` (the gradient of W1) are the bulk of
    a step at the medium and large sizes, and any numpy program runs them in
    the same BLAS. Their time over the closed form's step is the lowest
    ratio a numpy-based tape can reach there.
    """

    def __init__(self, problem: Problem) -> None:
        self.x, self.W1 = problem.x, problem.params0["W1"]
        self.delta1 = np.ones((len(problem.x), self.W1.shape[1]), dtype=problem.dtype)
        # Results go into buffers made once: the products run at the same
        # speed, and this yardstick must not change the allocator's state
        # for the contenders timed next to it (fresh 4-6 MB arrays would).
        self.t = np.empty_like(self.delta1)
        self.dW1 = np.empty_like(self.W1)

    def step(self) -> None:
        np.matmul(self.x, self.W1, out=self.t)
        np.matmul(self.x.T, self.delta1, out=self.dW1)


REQUIRED = {"numpy": NumpyStep, "microtape": TapeStep, "kept": KeptTapeStep,
            "compiled": ValueAndGradStep, "fused": CompiledStep, "anomaly": AnomalyStep}
LABELS = {"kept": "microtape kept tape", "compiled": "microtape compiled",  # in the tables
          "fused": "microtape fused", "anomaly": "microtape anomaly", "torch-anomaly": "torch anomaly"}
OPTIONAL = {  # contender: (the module it needs, the contender)
    "torch": ("torch", TorchStep),
    "torch-anomaly": ("torch", TorchAnomalyStep),
    "jax": ("jax", JaxStep),
    "autograd": ("autograd", AutogradStep),
}
ALL = tuple(REQUIRED) + tuple(OPTIONAL)


def load(names: list[str]) -> tuple[dict[str, Callable[[Problem], object]], dict[str, str]]:
    """The contenders among ``names`` that can run here, and why each other one cannot."""
    found: dict[str, Callable[[Problem], object]] = {}
    missing: dict[str, str] = {}
    for name in names:
        if name in REQUIRED:
            found[name] = REQUIRED[name]
            continue
        module, cls = OPTIONAL[name]
        try:
            importlib.import_module(module)
        except Exception as e:  # an optional peer that fails to import is skipped, not fatal
            missing[name] = f"{type(e).__name__}: {e}".splitlines()[0]
            continue
        found[name] = cls
    return found, missing


def version_of(name: str) -> str:
    """The contender's library version, for the record."""
    dist = ("numpy" if name == "numpy" else "microtape") if name in REQUIRED else (
        OPTIONAL[name][0])
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"
