"""MLP: a stack of affine layers with a nonlinearity between them, on the tape.

Row-vector convention, as in models/DERIVATION.md: an example is a row, a batch
stacks rows, and layer i computes ``t_i = h_(i-1) W_i + b_i`` and
``h_i = act(t_i)`` with ``h_0 = x``. The last layer has no activation: it
returns the logits ``v``, which ``softmax_cross_entropy`` turns into the
loss ``J``. The tensors carry those names (``t1, h1, t2, h2, ..., v, J``), as
``TwoLayerNet``'s carry ``t, h, v, J``, so every drawing and the closed form
call them the same.
"""

from __future__ import annotations

import operator
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

import microtape as mt
from microtape import ShapeError, Tensor

from .checkpoint import CheckpointError, load_arrays, save_arrays
from .labels import check_labels

__all__ = ["MLP", "ACTIVATIONS"]

ACTIVATIONS = {"sigmoid": mt.sigmoid, "tanh": mt.tanh, "relu": mt.relu}

_PARAM_NAME = re.compile(r"[Wb][1-9][0-9]*")


class MLP:
    """A fully connected network: ``sizes = (n_in, hidden..., n_out)``.

    ``params`` is a dict of named Tensors ``W1, b1, W2, b2, ...`` with
    ``W_i`` of shape ``(sizes[i-1], sizes[i])`` and ``b_i`` of ``(sizes[i],)``.
    Weights are drawn Glorot-uniform, ``U(−a, a)`` with
    ``a = √(6 / (fan_in + fan_out))``, from ``np.random.default_rng(seed)``;
    biases start at zero. The same seed gives the same network.

    ``net(x)`` returns the logits Tensor, ``net.loss(x, labels)`` the 0-d
    loss Tensor (record it on a tape to get gradients), ``net.predict(x)``
    the class indices.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "sigmoid", seed: Any = None,
                 dtype: Any = np.float64) -> None:
        kind = type(self).__name__
        sizes = _check_sizes(kind, sizes)
        _check_activation(kind, activation)
        dtype = _check_dtype(kind, dtype)
        if seed is not None and (isinstance(seed, (bool, str, float)) or not isinstance(
                seed, (int, np.integer, np.random.Generator, np.random.SeedSequence))):
            raise TypeError(f"{kind}: seed must be an int (or None for a fresh one), not "
                            f"{type(seed).__name__} ({seed!r})")
        rng = np.random.default_rng(seed)
        arrays = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            arrays[f"W{i}"] = rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(dtype)
            arrays[f"b{i}"] = np.zeros(fan_out, dtype=dtype)
        self._setup(sizes, activation, arrays)

    def _setup(self, sizes: tuple[int, ...], activation: str, arrays: Mapping[str, np.ndarray]) -> None:
        self.sizes: tuple[int, ...] = sizes
        self.activation: str = activation
        self._layers = [(f"W{i}", f"b{i}") for i in range(1, len(sizes))]
        self.params: dict[str, Tensor] = {
            name: Tensor(arrays[name], name=name) for layer in self._layers for name in layer
        }

    def parameters(self) -> list[Tensor]:
        """The parameter Tensors W1, b1, W2, b2, ... in that order (``params``' values).

        For optimizers and ``tape.gradient``, which take a list as well as
        the dict: ``mt.optim.SGD(net.parameters(), lr=0.1)``.
        """
        return list(self.params.values())

    # -- facts -----------------------------------------------------------------
    @property
    def n_in(self) -> int:
        return self.sizes[0]

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    @property
    def dtype(self) -> np.dtype:
        return self.params["W1"].value.dtype

    def __repr__(self) -> str:
        return f"MLP(sizes={self.sizes}, activation={self.activation!r}, dtype={self.dtype})"

    # -- the network -------------------------------------------------------------
    def forward(self, x: Any, params: Mapping[str, Any]) -> Tensor:
        """The logits for ``x`` computed from ``params``, a dict of Tensors or arrays.

        ``net(x)`` is ``net.forward(x, net.params)``; passing other values
        (``mt.gradcheck``'s inputs, finite-difference probes) runs the same
        code on them. No input checks: ``net(x)`` does those.
        """
        act = ACTIVATIONS[self.activation]
        h = x
        for i, (W, b) in enumerate(self._layers[:-1], start=1):
            t = mt.add(mt.matmul(h, params[W]), params[b], name=f"t{i}")  # t_i = h_(i-1) W_i + b_i
            h = act(t, name=f"h{i}")                                      # h_i = act(t_i)
        W, b = self._layers[-1]
        return mt.add(mt.matmul(h, params[W]), params[b], name="v")      # v = h W_k + b_k

    def __call__(self, x: Any) -> Tensor:
        """The logits Tensor ``v`` for a batch ``x`` of shape (N, n_in), or one example (n_in,)."""
        return self.forward(self._input(x), self.params)

    def loss(self, x: Any, labels: Any, reduction: str = "mean", name: str = "J") -> Tensor:
        """The 0-d cross-entropy loss ``J`` of the logits against ``labels``.

        ``labels`` are class indices or label rows, as for
        ``mt.softmax_cross_entropy``; ``reduction`` is "mean" or "sum" over
        the batch; ``name`` is what drawings, captions and code call the loss.
        """
        return mt.softmax_cross_entropy(self(x), labels, reduction=reduction, name=name)

    def predict(self, x: Any) -> np.ndarray:
        """The most likely class of each example (an int array of shape (N,), or an int).

        Prediction needs no gradient, so nothing is recorded even inside a
        ``with tape:`` block.
        """
        with mt.no_grad():
            return np.argmax(self(x).value, axis=-1)

    def accuracy(self, x: Any, labels: Any) -> float:
        """The fraction of examples whose predicted class is the label.

        The labels are those the loss takes, checked as it checks them: class
        indices, or label rows (probabilities, one-hot bools), whose largest wins.
        """
        predicted = self.predict(x)
        labels = check_labels(labels.value if isinstance(labels, Tensor) else labels,
                              (*predicted.shape, self.sizes[-1]), f"{type(self).__name__}.accuracy")
        if labels.ndim > predicted.ndim:
            labels = np.argmax(labels, axis=-1)
        return float(np.mean(predicted == labels))

    def _input(self, x: Any) -> Any:
        """``x`` as the network's dtype, after the one check that costs nothing: its shape."""
        if not isinstance(x, Tensor):
            x = np.asarray(x, dtype=self.params["W1"].value.dtype)
        shape = x.shape
        if len(shape) not in (1, 2) or shape[-1] != self.sizes[0]:
            n = self.sizes[0]
            raise ShapeError(
                f"{type(self).__name__}: x has shape {shape}, but the network expects n_in={n} "
                f"features per example: a batch of shape (N, {n}) or one example of shape ({n},)"
            )
        return x

    # -- on disk -------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the parameters and the activation to an .npz at ``path``, atomically.

        Missing folders on the way to ``path`` are created.
        """
        arrays = {name: p.value for name, p in self.params.items()}
        return save_arrays(path, {**arrays, "activation": np.array(self.activation)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> MLP:
        """The network saved at ``path`` by ``save``.

        The file is read without pickle; its names, shapes and dtypes must
        describe a consistent network, and it must record the activation. Raises FileNotFoundError, or
        :class:`~models.checkpoint.CheckpointError` naming the file and the problem.
        """
        # The shapes and dtypes are checked from the headers before any data is read.
        arrays = load_arrays(path, check=lambda declared: _architecture(
            {name: a for name, a in declared.items() if name != "activation"}, path))
        activation = _read_activation(arrays, path)
        sizes = _architecture(arrays, path)
        cls._check_loaded(sizes, activation, path)
        net = cls.__new__(cls)
        net._setup(sizes, activation, arrays)
        return net

    @classmethod
    def _check_loaded(cls, sizes: tuple[int, ...], activation: str, path: Any) -> None:
        """Hook for subclasses that only hold some networks (TwoLayerNet)."""


# -- checks --------------------------------------------------------------------

def _check_sizes(kind: str, sizes: Any) -> tuple[int, ...]:
    try:
        sizes = tuple(operator.index(n) for n in sizes)
    except TypeError:
        raise TypeError(f"{kind}: sizes must be a sequence of ints, e.g. (64, 32, 10), "
                        f"got {sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"{kind}: sizes must give at least the input and output sizes, e.g. "
                         f"(64, 10); got {sizes}")
    if min(sizes) < 1:
        raise ValueError(f"{kind}: every layer size must be at least 1, got {sizes}")
    return sizes


def _check_activation(kind: str, activation: Any) -> None:
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"{kind}: activation must be one of {sorted(ACTIVATIONS)}, "
                         f"got {activation!r}")


def _check_dtype(kind: str, dtype: Any) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError:  # not a dtype at all: numpy's message names neither the network nor dtype=
        raise TypeError(f"{kind}: dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{kind}: dtype must be float32 or float64, got {dtype}")
    return dtype


def _read_activation(arrays: dict, path: Any) -> str:
    entry = arrays.pop("activation", None)
    if entry is None:
        # Guessing would load a tanh or relu network as sigmoid without a word.
        raise CheckpointError(
            f"{str(path)!r} holds weights but not the network's configuration (an 'activation' "
            f"entry naming one of {sorted(ACTIVATIONS)}), so it cannot be rebuilt; save with "
            f"net.save(path), or add the entry: np.savez(path, **arrays, activation='sigmoid')")
    if entry.shape != () or entry.dtype.kind != "U" or str(entry) not in ACTIVATIONS:
        raise CheckpointError(f"{str(path)!r}: entry 'activation' must name one of "
                              f"{sorted(ACTIVATIONS)}, got {entry!r}")
    return str(entry)


def _architecture(arrays: Mapping[str, np.ndarray], path: Any) -> tuple[int, ...]:
    """The layer sizes the arrays describe, after checking names, ranks, shapes and dtypes."""
    where = repr(str(path))
    unknown = [name for name in arrays if not _PARAM_NAME.fullmatch(name)]
    if unknown:
        raise CheckpointError(f"{where}: unexpected entries {unknown}; a network checkpoint holds "
                              f"W1, b1, W2, b2, ... and 'activation'")
    n_layers = sum(1 for name in arrays if name.startswith("W"))
    expected = {f"{p}{i}" for i in range(1, n_layers + 1) for p in "Wb"}
    if n_layers == 0:
        raise CheckpointError(f"{where}: holds no weights (W1, b1, W2, b2, ...)")
    if set(arrays) != expected:
        missing = sorted(expected - set(arrays))
        extra = sorted(set(arrays) - expected)
        detail = "; ".join([f"missing {missing}"] * bool(missing) + [f"unexpected {extra}"] * bool(extra))
        raise CheckpointError(f"{where}: the parameter names do not form a network ({detail})")
    dtypes = {a.dtype for a in arrays.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        found = ", ".join(f"{name}: {arrays[name].dtype}" for name in sorted(arrays))
        raise CheckpointError(f"{where}: parameters must all be float32 or all float64; found {found}")
    sizes = []
    for i in range(1, n_layers + 1):
        W, b = arrays[f"W{i}"], arrays[f"b{i}"]
        if W.ndim != 2 or b.ndim != 1 or b.shape[0] != W.shape[1]:
            raise CheckpointError(f"{where}: W{i} has shape {W.shape} and b{i} has shape {b.shape}; "
                                  f"expected (n_in, n_out) and (n_out,)")
        if sizes and W.shape[0] != sizes[-1]:
            raise CheckpointError(f"{where}: W{i} has shape {W.shape} but the layer before it has "
                                  f"{sizes[-1]} outputs (W{i - 1} is {arrays[f'W{i - 1}'].shape})")
        if min(W.shape) < 1:
            raise CheckpointError(f"{where}: W{i} has an empty shape {W.shape}")
        if not sizes:
            sizes.append(W.shape[0])
        sizes.append(W.shape[1])
    return tuple(sizes)
