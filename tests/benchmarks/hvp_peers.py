"""The Hessian-vector product's peers: PyTorch (two eager ways) and JAX (eager and jit).

Each computes H·v of the same loss as ``hvp.Microtape``, on copies of the same
float64 arrays: ``run()`` is what is timed, ``hvp()`` gives numpy arrays for the
check. They import their library when built, so this module imports without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from .hvp import HvpProblem


class _Torch:
    """The loss in PyTorch, on the same arrays, with as many threads as numpy's BLAS."""

    def __init__(self, p: HvpProblem, threads: int) -> None:
        import torch
        torch.set_num_threads(threads)
        self.torch = torch
        self.x, self.b1, self.b2 = (torch.from_numpy(a.copy()) for a in (p.x, p.b1, p.b2))
        self.labels = torch.from_numpy(p.labels.copy())
        self.v = (torch.from_numpy(p.v1.copy()), torch.from_numpy(p.v2.copy()))
        self.W = (torch.tensor(p.W1, requires_grad=True), torch.tensor(p.W2, requires_grad=True))

    def f(self, W1, W2):
        h = self.torch.sigmoid(self.x @ W1 + self.b1)
        return self.torch.nn.functional.cross_entropy(h @ W2 + self.b2, self.labels)

    def hvp(self) -> tuple[np.ndarray, np.ndarray]:
        return tuple(h.detach().numpy() for h in self.run())


class TorchDoubleBackward(_Torch):
    """Eager reverse-over-reverse: the gradient with ``create_graph=True``, then its VJP at v."""

    def run(self):
        grads = self.torch.autograd.grad(self.f(*self.W), self.W, create_graph=True)
        return self.torch.autograd.grad(grads, self.W, grad_outputs=self.v)


class TorchFunc(_Torch):
    """Eager forward-over-reverse: ``torch.func.jvp(torch.func.grad(f))``."""

    def run(self):
        func = self.torch.func
        W = tuple(w.detach() for w in self.W)
        return func.jvp(func.grad(self.f, argnums=(0, 1)), W, self.v)[1]


class Jax:
    """``jax.jvp(jax.grad(f))``: forward-over-reverse, op by op or under one ``jax.jit``."""

    def __init__(self, p: HvpProblem, jit: bool) -> None:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)  # or float64 arrays become float32
        x, b1, b2, labels = (jnp.asarray(a) for a in (p.x, p.b1, p.b2, p.labels))

        def f(W1, W2):
            logits = jax.nn.sigmoid(x @ W1 + b1) @ W2 + b2
            logp = jax.nn.log_softmax(logits, axis=1)
            return -jnp.take_along_axis(logp, labels[:, None], axis=1).mean()

        def hvp(W, v):
            return jax.jvp(jax.grad(f, argnums=(0, 1)), W, v)[1]

        self.jax = jax
        self._hvp = jax.jit(hvp) if jit else hvp
        self.W = (jnp.asarray(p.W1), jnp.asarray(p.W2))
        self.v = (jnp.asarray(p.v1), jnp.asarray(p.v2))

    def run(self):
        return self.jax.block_until_ready(self._hvp(self.W, self.v))

    def hvp(self) -> tuple[np.ndarray, np.ndarray]:
        return tuple(np.asarray(h) for h in self.run())


# name: (label, the library it needs, how to build it)
PEERS: dict[str, tuple[str, str, Callable]] = {
    "torch": ("PyTorch double backward", "torch", TorchDoubleBackward),
    "torch.func": ("PyTorch torch.func jvp(grad)", "torch", TorchFunc),
    "jax": ("JAX jvp(grad)", "jax", lambda p, threads: Jax(p, jit=False)),
    "jax-jit": ("JAX jvp(grad), jit", "jax", lambda p, threads: Jax(p, jit=True)),
}
TORCH_EAGER = ("torch", "torch.func")  # PyTorch's eager H·v: the faster of these is the goal's


def numpy_threads() -> int:
    """The threads numpy's BLAS runs (threadpoolctl), so PyTorch is given as many."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return 1
    for pool in threadpool_info():
        if pool["user_api"] == "blas" and "numpy" in pool["filepath"]:
            return int(pool["num_threads"])
    return 1
