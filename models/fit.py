"""The training loop: shuffled mini-batches, one tape per step, an optimizer update.

The data are checked once, before the first step (shapes, label range, no
NaN or inf). Each step then records the loss on a fresh tape, checks that the
loss is finite (before the update, so a diverging learning rate stops
training with the parameters of the last good step), asks the tape for the
parameter gradients and hands them to the optimizer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import microtape as mt

from microtape.validation import check_count

from .labels import check_labels
from .mlp import MLP

__all__ = ["fit", "History", "TrainingError"]


class TrainingError(FloatingPointError):
    """The loss stopped being a finite number or ran away; the message says where and why.

    ``what`` says what happened and where; ``lr`` is the optimizer's learning
    rate, since a smaller one is what to try (the training command names its
    ``--lr`` flag instead of the word).
    """

    def __init__(self, what: str, lr: float | None = None) -> None:
        self.what, self.lr = what, lr
        now = f" (now lr={lr:g})" if lr is not None else ""
        super().__init__(f"{what}; lower the learning rate{now}")


# An epoch whose mean loss is this many times the loss training started from
# has run away: no schedule recovers from that, so training stops and says so.
DIVERGED = 1000


@dataclass
class History:
    """Per-epoch records of a run: mean training loss and accuracies."""

    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


def fit(net: MLP, optimizer: mt.optim.Optimizer, x: np.ndarray, y: np.ndarray, *,
        epochs: int, batch_size: int, seed: int = 0,
        test: tuple[np.ndarray, np.ndarray] | None = None,
        on_epoch: Callable[[int, History], Any] | None = None, compile: bool = False,
        detect_anomaly: bool = False) -> History:
    """Train ``net`` in place for ``epochs`` passes over (x, y); return the History.

    Each epoch visits the examples in a new order drawn from
    ``np.random.default_rng(seed)``, in batches of ``batch_size`` (the last
    one may be smaller), so a seed fixes the run exactly. After each epoch
    the accuracies on the training set and on ``test`` (if given) are
    recorded and ``on_epoch(epoch, history)`` is called (epochs count from 1).

    ``compile=True`` computes each step's gradients with the closed form the
    tape writes for the network (``mt.value_and_grad(..., compile=True)``:
    recorded once per batch shape, then plain generated numpy).
    ``detect_anomaly=True`` records and differentiates each step under
    ``mt.detect_anomaly()``: the first op to make a NaN or Inf raises
    ``mt.AnomalyError``, whose ``tape`` ``viz.render_anomaly`` draws.

    Raises ValueError before training for data that do not fit the network
    or hold NaN or inf (``mt.InputError`` or ``mt.ShapeError`` for labels,
    as the loss does), and :class:`TrainingError` as soon as a batch's loss
    is NaN or infinite, before that batch's update, or when an epoch's mean
    loss is over ``DIVERGED`` (1000) times the first step's: the run diverged.
    """
    _check_settings(epochs, batch_size, seed, compile, detect_anomaly)
    handed = _handed_to(net, optimizer)
    x, y = _check_data(net, x, y)
    if test is not None:  # checked now: a bad test set found after the first epoch has trained it
        test = _check_test(net, test)
    step = _compiled_step(net) if compile else _tape_step(net, detect_anomaly)
    # Overflow on the way to a non-finite loss is reported by the checks below,
    # with the epoch, the batch and a hint; numpy's warnings would only repeat it.
    with np.errstate(over="ignore", invalid="ignore"):
        return _epochs(net, optimizer, _handing(step, handed, optimizer.keyed), x, y,
                       np.random.default_rng(seed), epochs, batch_size, test, on_epoch)


def _check_settings(epochs: Any, batch_size: Any, seed: Any, compile: bool,
                    detect_anomaly: bool) -> None:
    for name, value, least in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("seed", seed, 0)):
        check_count("fit", name, value, least)
    if compile and detect_anomaly:
        raise ValueError("fit: detect_anomaly checks the tape's ops, and compile=True trains "
                         "without a tape; drop one of them")


def _handed_to(net: MLP, optimizer: Any) -> list | None:
    """How ``optimizer`` takes the gradients, which come keyed as ``net.params``: None for
    that dict itself, else (key, name) for each of its parameters in its order. Refused
    unless it holds exactly the network's parameters: one made for another network,
    whose keys and shapes match, would train that network instead, silently."""
    if not isinstance(optimizer, mt.optim.Optimizer):
        raise TypeError(f"fit: optimizer must be an mt.optim optimizer made on the network's "
                        f"parameters, e.g. mt.optim.SGD(net.params, lr=0.1), not "
                        f"{type(optimizer).__name__}")
    names = {id(p): name for name, p in net.params.items()}
    held = list(optimizer.params.items())
    if len(held) != len(names) or any(id(p) not in names for _, p in held):
        raise mt.InputError("fit: the optimizer does not hold this network's parameters (it was "
                            "made for another network, or for some of them); make it on "
                            "net.params, e.g. mt.optim.SGD(net.params, lr=0.1)")
    if all(net.params.get(key) is p for key, p in held):
        return None
    return [(key, names[id(p)]) for key, p in held]


def _handing(step: Callable, handed: list | None, keyed: bool) -> Callable:
    """``step`` with its gradients in the form the optimizer takes (see ``_handed_to``): a
    dict for one made on a dict (``keyed``), whatever its keys, else a list."""
    if handed is None:
        return step

    def handing(xb: np.ndarray, yb: np.ndarray) -> tuple[float, Callable[[], Any]]:
        value, gradients = step(xb, yb)
        if keyed:
            return value, lambda: {key: g[name] for g in (gradients(),) for key, name in handed}
        return value, lambda: [g[name] for g in (gradients(),) for _, name in handed]
    return handing


def _epochs(net: MLP, optimizer: mt.optim.Optimizer, step: Callable, x: np.ndarray,
            y: np.ndarray, rng: np.random.Generator, epochs: int, batch_size: int,
            test: tuple[np.ndarray, np.ndarray] | None,
            on_epoch: Callable[[int, History], Any] | None) -> History:
    """The training loop of ``fit``, epoch after epoch."""
    history, first_loss = History(), math.nan
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        first = _epoch(net, optimizer, step, x, y, rng, batch_size, epoch, history)
        first_loss = first if epoch == 1 else first_loss
        _check_progress(history, first_loss, epoch, getattr(optimizer, "lr", None))
        history.train_accuracy.append(net.accuracy(x, y))
        if test is not None:
            history.test_accuracy.append(net.accuracy(*test))
        history.seconds = time.perf_counter() - start
        if on_epoch is not None:
            on_epoch(epoch, history)
    return history


def _tape_step(net: MLP, detect_anomaly: bool = False) -> Callable:
    """One batch's loss, and a function giving its gradients, from a fresh tape."""
    if detect_anomaly:
        return _checked_step(net)

    def step(xb: np.ndarray, yb: np.ndarray) -> tuple[float, Callable[[], dict]]:
        with mt.Tape(persistent=False) as tape:  # asked once: frees values as it goes
            loss = net.loss(xb, yb)
        return float(loss.value), lambda: tape.gradient(loss, net.params)
    return step


def _checked_step(net: MLP) -> Callable:
    """The tape step under anomaly mode, forward and backward. The tape is persistent,
    so that an anomaly in the backward pass leaves a tape that can still be drawn."""
    def step(xb: np.ndarray, yb: np.ndarray) -> tuple[float, Callable[[], dict]]:
        with mt.detect_anomaly(), mt.Tape() as tape:
            loss = net.loss(xb, yb)

        def gradients() -> dict:
            with mt.detect_anomaly():
                return tape.gradient(loss, net.params)
        return float(loss.value), gradients
    return step


def _check_test(net: MLP, test: Any) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(test, (tuple, list)) or len(test) != 2:
        given = (f"a {type(test).__name__} of {len(test)}" if isinstance(test, (tuple, list))
                 else type(test).__name__)
        raise TypeError(f"fit: test must be a pair (x_test, y_test), not {given}")
    return _check_data(net, *test, "test")


def _compiled_step(net: MLP) -> Callable:
    """The same from the closed form of the network's loss (written once per batch shape)."""
    names = list(net.params)

    def loss(*args: Any) -> mt.Tensor:
        params = dict(zip(names, args))
        return mt.softmax_cross_entropy(net.forward(args[-2], params), args[-1], name="J")

    value_and_grad = mt.value_and_grad(loss, tuple(range(len(names))), compile=True)

    def step(xb: np.ndarray, yb: np.ndarray) -> tuple[float, Callable[[], dict]]:
        value, grads = value_and_grad(*net.params.values(), xb, yb)
        return float(value), lambda: dict(zip(names, grads))
    return step


def _epoch(net: MLP, optimizer: mt.optim.Optimizer, step: Callable, x: np.ndarray, y: np.ndarray,
           rng: np.random.Generator, batch_size: int, epoch: int, history: History) -> None:
    """One pass over the data in a fresh random order; appends the mean loss and returns
    the first batch's."""
    n = len(x)
    order = rng.permutation(n)
    xs, ys = x[order], y[order]  # one gather per epoch; the batches are then views
    total, first = 0.0, math.nan
    for lo in range(0, n, batch_size):
        xb, yb = xs[lo:lo + batch_size], ys[lo:lo + batch_size]
        value, gradients = step(xb, yb)
        if not math.isfinite(value):
            raise TrainingError(_diagnose(value, net, epoch, lo // batch_size + 1),
                                getattr(optimizer, "lr", None))
        first = value if lo == 0 else first
        optimizer.step(gradients())
        total += value * len(xb)
        history.steps += 1
    history.loss.append(total / n)
    return first


def _check_progress(history: History, start: float, epoch: int, lr: float | None) -> None:
    """Stop when the epoch's mean loss is not finite or ran away from the first step's."""
    mean = history.loss[-1]
    if math.isfinite(mean) and not (start > 0 and mean > DIVERGED * start):
        return
    raise TrainingError(f"diverged at epoch {epoch}: loss {mean:.1e} (first step {start:.2g})", lr)


def _check_data(net: MLP, x: Any, y: Any, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Shapes, finiteness and labels, checked once, so no batch fails halfway through.

    The labels get the loss's own check (``models.labels``), so ``fit``
    refuses exactly what ``mt.softmax_cross_entropy`` would, with the same
    error types.

    A NaN or inf in x does not always show in the loss (a saturated sigmoid
    turns inf into 1), but it makes the gradient NaN (inf · 0), which would
    silently ruin the parameters: hence the whole data set is checked here.
    """
    fit = f"fit: {what} " if what else "fit: "  # which data set, where there are two
    x = net._input(x.value if isinstance(x, mt.Tensor) else x)
    y = np.asarray(y.value if isinstance(y, mt.Tensor) else y)
    if x.ndim != 2:
        raise mt.ShapeError(f"{fit}x must be a batch of shape (N, {net.n_in}), got {x.shape}")
    if y.ndim == 0:
        raise mt.ShapeError(f"{fit}y must hold one label per example, got {y!r}")
    bad = ~np.isfinite(x)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(f"{fit}x holds NaN or inf ({int(bad.sum())} values, the first at row {row}, "
                         f"column {column}); clean the data before training")
    if len(x) == 0:
        raise ValueError(f"{fit}x holds no examples (shape {x.shape}); there is nothing to train on")
    if len(y) != len(x):
        raise ValueError(f"{fit}x has {len(x)} examples but y has {len(y)} labels")
    if y.dtype.kind in "fb" and y.shape == (len(x),):
        # The loss's check says the same; here the fix is known to be about y.
        raise mt.InputError(f"{fit}labels of dtype {y.dtype} given; class labels must be integers "
                            f"0..{net.n_out - 1}: pass y.astype(int) (or label rows of shape "
                            f"({len(x)}, {net.n_out}))")
    y = check_labels(y, (len(x), net.n_out), fit.rstrip(": "))
    return x, y


def _diagnose(value: float, net: MLP, epoch: int, batch: int) -> str:
    """Why the loss is not finite; the data were checked before training, so not them."""
    where = f"the loss is {value} at epoch {epoch}, batch {batch}"
    broken = [name for name, p in net.params.items() if not np.isfinite(p.value).all()]
    if broken:
        return f"{where}: parameters {broken} hold NaN or inf, so an earlier update overflowed"
    return (f"{where}: training diverged (the parameters are left as they were before this "
            f"batch)")
