"""Optimizers: turn the gradients a tape returns into in-place parameter updates.

An optimizer holds the parameter Tensors: a dict (``net.params``), or a list
or tuple (``net.parameters()``). On ``step(grads)`` it changes each
``Tensor.value`` in place, so every reference to the parameters sees the new
values. ``grads`` is what ``tape.gradient(loss, params)`` returns for the
same ``params``: a dict with the same keys, or a list in the same order::

    opt = mt.optim.SGD(net.params, lr=0.1, momentum=0.9)
    with mt.Tape(persistent=False) as tape:
        loss = net.loss(x, labels)
    opt.step(tape.gradient(loss, net.params))

or, in PyTorch's order, ``tape.backward(loss)`` then ``opt.step()``, which
reads each parameter's ``.grad``. A tape never adds to ``.grad``: each
``backward`` overwrites it, so there is nothing to zero between steps.

Updates of large parameters run in buffers allocated once, at construction,
so a step makes no big temporary arrays; small ones allocate, which numpy does
faster than it writes into a given buffer (see ``ops.IN_PLACE_MIN_SIZE``).
The gradients passed in are read, never written. Each update is marked on the
parameter (``Tensor.mark_modified``), so a tape recorded before the step
refuses to answer rather than mix old and new values.

``opt.state_dict()`` gives the optimizer's progress (its step count, Adam's
moments, SGD's velocity) as named arrays, and ``opt.load_state_dict(state)``
puts it back, so a run saved with its parameters resumes where it stopped.
"""

from __future__ import annotations

import math
import operator
import os
from itertools import repeat
from typing import AbstractSet, Any, Callable, Iterable, Mapping, Union

import numpy as np

from .compiled import Compiled
from .errors import InputError, ShapeError
from .ops import IN_PLACE_MIN_SIZE
from .tensor import Tensor, mark_all_modified
from .validation import check_setting

__all__ = ["Optimizer", "SGD", "Adam"]

_ndarray = np.ndarray  # the type the step's gradients are checked against, each step

#: What an optimizer takes: named Tensors, or Tensors in an order.
Params = Union[Mapping[str, Tensor], Iterable[Tensor]]


class _Setting:
    """A number an optimizer takes, kept in ``_<name>`` (where its update reads it) and
    checked on every assignment, the constructor's included: set it between steps to
    change it. ``then`` names a method that remakes what the optimizer derives from it."""

    def __init__(self, low: float, high: float = math.inf, low_open: bool = False,
                 high_open: bool = False, doc: str = "", then: str | None = None) -> None:
        self.bounds = (low, high, low_open, high_open)
        self.then = then
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.field = name, "_" + name

    def __get__(self, opt: Any, owner: type | None = None) -> Any:
        return self if opt is None else getattr(opt, self.field)

    def __set__(self, opt: Any, value: float) -> None:
        low, high, low_open, high_open = self.bounds
        setattr(opt, self.field, check_setting(type(opt).__name__, self.name, value, low, high,
                                              low_open=low_open, high_open=high_open))
        if self.then:
            getattr(opt, self.then)()


class Optimizer:
    """What SGD and Adam share: the parameters, a step count and the checks."""

    def __init__(self, params: Params) -> None:
        kind = type(self).__name__
        if isinstance(params, Mapping):
            items = list(params.items())
        elif isinstance(params, (Tensor, np.ndarray, str, AbstractSet)) or not isinstance(
                params, Iterable):
            hint = ("; for one Tensor, give [t]" if isinstance(params, Tensor) else
                    "; a set has no order, so a list of gradients would land on the wrong "
                    "Tensors" if isinstance(params, AbstractSet) else "")
            raise TypeError(f"{kind}: params must be a dict, list or tuple of Tensors (net.params "
                            f"or net.parameters()), not {type(params).__name__}{hint}")
        else:
            items = list(enumerate(params))
        self._keyed = isinstance(params, Mapping)
        if not items:
            raise ValueError(f"{kind}: params is empty; there is nothing to optimize")
        seen: dict[int, Any] = {}
        for name, p in items:
            if not isinstance(p, Tensor):
                raise TypeError(f"{kind}: params[{name!r}] is a {type(p).__name__}, not a Tensor")
            if not p.value.flags.writeable:
                raise ValueError(f"{kind}: params[{name!r}] holds a read-only array; the update is "
                                 f"made in place, so give it a writable copy (mt.Tensor(a.copy()))")
            if id(p) in seen:
                raise ValueError(f"{kind}: params[{seen[id(p)]!r}] and params[{name!r}] are the "
                                 f"same Tensor; it would be updated twice per step")
            seen[id(p)] = name
        _refuse_shared_memory(kind, items)
        # Keyed by name, or by position for a list: one update loop serves both.
        self.params: dict[Any, Tensor] = dict(items)
        self._tensors = tuple(self.params.values())  # the step walks them with the gradients
        # (vg, its argument count, its parameters' pick) as step(vg, *args) last checked them
        self._seen: tuple = (None, 0, None)
        self.steps = 0  # how many times step() has run
        self._applied: list = []  # the .grad arrays step() last applied

    def step(self, grads: Mapping[str, np.ndarray] | Iterable[np.ndarray] | Callable | None = None,
             *args: Any) -> np.ndarray | None:
        """Update every parameter in place from ``grads``.

        ``grads`` is keyed like ``params`` (a dict), or in its order (a list
        or tuple). Without it, each parameter's ``.grad`` is used, as
        ``tape.backward(loss)`` sets it.

        ``opt.step(vg, *args)``, with ``vg = mt.value_and_grad(f, argnums)``
        whose ``argnums`` pick out the parameters among ``args``, runs
        ``vg(*args)`` and steps on its gradients; it returns ``f``'s value
        before the update. For plain SGD and ``compile=True`` the two are one
        generated step: the backward pass starts from −lr, so each gradient
        arrives scaled and is added to its parameter as it is made.
        """
        if args or callable(grads):
            if not callable(grads):
                raise TypeError(f"{self._kind}.step: {len(args)} more argument(s) after grads; "
                                f"arguments are for opt.step(vg, *args), where vg is a function "
                                f"mt.value_and_grad made")
            return self._step_on(grads, args)
        if self._keyed and grads is not None:
            grads = self._by_name(grads)
        else:
            grads = self._in_order(grads)
        self.steps += 1
        try:
            self._update(grads)
        finally:  # tapes that recorded the old values now refuse to answer
            mark_all_modified(self._tensors)
        return None

    def _step_on(self, vg: Callable, args: tuple) -> np.ndarray:
        """``opt.step(vg, *args)``: ``vg``'s gradients, in its argnums' order, put in params'."""
        seen = self._seen  # the loop's usual call: the same function, the parameters where they were
        if seen[0] is vg and seen[1] == len(args) and all(map(operator.is_, seen[2](args),
                                                              self._tensors)):
            order = None
        else:
            order = self._argnums_order(vg, args)
        # A step counts once vg has answered: a call that raises (bad labels, say) must not
        # move Adam's bias correction, as a refused opt.step(grads) does not.
        try:
            value = self._fused(vg, args)
            if value is not None:
                self.steps += 1
            else:
                value, grads = vg(*args)
                if value.base is not None or any(value is p.value for p in self._tensors):
                    value = value.copy()  # f returned a parameter, or a view of one: updated next
                grads = (grads,) if vg.single else grads
                self.steps += 1
                self._update(grads if order is None else [grads[k] for k in order])
        finally:
            mark_all_modified(self._tensors)
        return value

    @property
    def keyed(self) -> bool:
        """Whether ``step`` takes gradients as a dict (params were a dict) or as a list."""
        return self._keyed

    def _fused(self, vg: Callable, args: tuple) -> np.ndarray | None:
        """The value of a step made by ``vg``'s generated code itself, or None (no such step)."""
        return None

    def _argnums_order(self, vg: Callable, args: tuple) -> list[int] | None:
        """Where each parameter's gradient sits among ``vg``'s; None when in params' order."""
        tensors = self._tensors
        positions = getattr(vg, "positions", None)
        if positions is None or getattr(vg, "kind", None) != "value_and_grad":
            raise TypeError(f"{self._kind}.step: {_callable_name(vg)} is a function, so it must "
                            f"be one mt.value_and_grad(f, argnums) made, whose argnums pick the "
                            f"parameters among the arguments; or pass grads")
        n = len(args)
        for i in positions:
            if not -n <= i < n:
                raise IndexError(f"{self._kind}.step: argnums {i} is out of range for {n} arguments")
        picked = [args[i] for i in positions]
        index = {id(p): k for k, p in enumerate(picked)}
        names = list(self.params)
        missing = [names[k] for k, p in enumerate(tensors) if id(p) not in index]
        if missing or len(index) != len(picked) or len(picked) != len(tensors):
            raise InputError(
                f"{self._kind}.step: {_callable_name(vg)} differentiates the arguments at "
                f"argnums {positions}, which must be this optimizer's parameters, each once"
                f"{f'; params {missing} are not among them' if missing else ''}; pass "
                f"them in those places, as they are (the Tensors, not their values)")
        order = [index[id(p)] for p in tensors]
        if order == list(range(len(tensors))):
            pick = operator.itemgetter(*(i % n for i in positions))
            self._seen = (vg, n, pick if len(positions) > 1 else lambda args: (pick(args),))
            return None
        return order

    # Both checks give the gradients as a list in params' order, which _update
    # walks beside the parameters and their buffers; one call per step, cheap
    # enough to run every step.

    def _by_name(self, grads) -> list[np.ndarray]:
        """A dict's gradients in params' order, its keys and shapes checked."""
        if type(grads) is not dict and not isinstance(grads, Mapping):  # the ABC check is slow
            raise TypeError(f"{self._kind}.step: grads must be the dict tape.gradient(loss, params) "
                            f"returns, not {type(grads).__name__}")
        # As many keys as params, each of params' found: the same keys, without a set of either.
        if len(grads) != len(self._tensors):
            self._refuse_keys(grads)
        ordered = []
        try:
            for name, p in self.params.items():
                g, v = grads[name], p.value
                if type(g) is not _ndarray or g.shape != v.shape or g.dtype is not v.dtype:
                    g = self._checked(name, g, p)
                ordered.append(g)
        except KeyError:
            self._refuse_keys(grads)
        return ordered

    def _refuse_keys(self, grads: Mapping) -> None:
        missing = [k for k in self.params if k not in grads]
        extra = [k for k in grads if k not in self.params]
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        raise InputError(f"{self._kind}.step: grads must have the same keys as params "
                         f"({list(self.params)}): {', '.join(parts)}")

    def _in_order(self, grads) -> list[np.ndarray]:
        """A list or tuple of gradients (each parameter's .grad if None), count and shapes checked."""
        slots = grads is None
        if slots:
            grads = self._from_grad_slots()
        elif type(grads) is not tuple and type(grads) is not list and (
                isinstance(grads, Mapping) or not isinstance(grads, (list, tuple))):
            raise TypeError(f"{self._kind}.step: params were given as a list, so grads must be the "
                            f"list tape.gradient(loss, params) returns, not {type(grads).__name__}")
        if len(grads) != len(self.params):
            raise InputError(f"{self._kind}.step: {len(grads)} gradients for {len(self.params)} "
                             f"parameters; pass tape.gradient(loss, params) for the same params")
        for p, g in zip(self._tensors, grads):
            v = p.value
            if type(g) is not _ndarray or g.shape != v.shape or g.dtype is not v.dtype:
                for q, h in zip(self._tensors, grads):  # the slow look, at every one
                    self._checked(self._name_of(q), h, q)
                break
        if slots:  # applied next, so never again (see _from_grad_slots)
            self._applied = grads
        return grads

    def _name_of(self, p: Tensor) -> Any:
        return next(k for k, q in self.params.items() if q is p)

    def _from_grad_slots(self) -> list[np.ndarray]:
        missing = [k for k, p in self.params.items() if p.grad is None]
        if missing:
            raise InputError(f"{self._kind}.step: params {missing} have no .grad; call "
                             f"tape.backward(loss) first, or pass tape.gradient(loss, params)")
        grads = [p.grad for p in self.params.values()]
        # A .grad this optimizer applied already: no backward pass has set it since, so
        # the step was called twice, or the last loss does not depend on that parameter
        stale = [k for k, g, was in zip(self.params, grads, self._applied) if g is was]
        if stale:
            raise InputError(f"{self._kind}.step: the .grad of params {stale} is the one the "
                             f"last step applied: no tape.backward(loss) has set it since (the "
                             f"step was called twice, or the loss does not depend on them); "
                             f"call tape.backward(loss) first, or pass tape.gradient(loss, "
                             f"params), which gives zeros where the loss does not depend")
        return grads

    def _checked(self, name: Any, g: Any, p: Tensor) -> np.ndarray:
        """``g`` if it can be ``p``'s gradient (numbers of ``p``'s shape), else an error: for
        what the loops' one cheap test passes on, an array of another dtype, say. Checked
        before any parameter moves, so that a bad gradient leaves no step half made."""
        if isinstance(g, Tensor):
            raise TypeError(f"{self._kind}.step: grads[{name!r}] is a Tensor; pass arrays, as "
                            f"tape.gradient gives them without create_graph=True (or its .value)")
        if not isinstance(g, (np.ndarray, np.generic)) or g.shape != p.value.shape:
            self._refuse_shape(name, g, p)
        if g.dtype.kind not in "fiub":
            raise TypeError(f"{self._kind}.step: grads[{name!r}] has dtype {g.dtype}; a "
                            f"gradient must be real numbers")
        return g

    def _refuse_shape(self, name: Any, g: Any, p: Tensor) -> None:
        if not hasattr(g, "shape"):  # a number or a list: gradients are the arrays the tape gives
            raise TypeError(f"{self._kind}.step: grads[{name!r}] is a {type(g).__name__}, not an "
                            f"array of the parameter's shape {p.value.shape}; pass the arrays "
                            f"tape.gradient(loss, params) returns")
        raise ShapeError(f"{self._kind}.step: grads[{name!r}] has shape {g.shape} "
                         f"but the parameter has shape {p.value.shape}")

    def _update(self, grads: list[np.ndarray]) -> None:
        """Change each parameter in place from its gradient, given in params' order."""
        raise NotImplementedError

    def _state_buffers(self) -> dict[str, dict[Any, np.ndarray]]:
        """The running buffers a resumed run needs, by slot name ("m", "velocity", ...)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer's progress as named arrays (copies), to save and resume from.

        ``optimizer`` (the class's name), ``steps`` (the step count) and one
        entry per running buffer and parameter: Adam's ``m.W1``, ``v.W1``, ...,
        SGD's ``velocity.W1``, ... (with momentum); a list of parameters is
        keyed by position (``m.0``). Plain arrays, so
        ``models.checkpoint.save_arrays(path, opt.state_dict())`` writes them
        and ``opt.load_state_dict(load_arrays(path))`` continues the run.
        """
        state = {"optimizer": np.array(self._kind), "steps": np.array(self.steps, dtype=np.int64)}
        for slot, buffers in self._state_buffers().items():
            for key, buffer in buffers.items():
                state[f"{slot}.{key}"] = buffer.copy()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state_dict()``: the step count and buffers are copied in.

        The whole state is checked first (its optimizer, its entries against
        these parameters and settings, their shapes), so a refused state
        changes nothing. Hyperparameters (``lr``, ...) stay as constructed.
        """
        wanted = {f"{slot}.{key}": buffer for slot, buffers in self._state_buffers().items()
                  for key, buffer in buffers.items()}
        steps = _checked_state(self, state, wanted)
        for name, buffer in wanted.items():
            np.copyto(buffer, state[name], casting="same_kind")
        self.steps = steps

    lr = _Setting(0.0, low_open=True, doc="The step size.", then="_new_lr")

    def _new_lr(self) -> None:
        """Whatever an optimizer keeps derived from ``lr``, made again."""

    @property
    def _kind(self) -> str:
        return type(self).__name__

    def _buffers(self) -> dict[str, np.ndarray]:
        return {name: np.zeros_like(p.value) for name, p in self.params.items()}


def _checked_state(opt: Optimizer, state: Mapping[str, Any], wanted: dict[str, np.ndarray]) -> int:
    """The step count of ``state``, once it proves to fit ``opt`` and its ``wanted`` buffers."""
    kind = opt._kind
    if not isinstance(state, Mapping):
        hint = (" (read the file first: models.checkpoint.load_arrays(path))"
                if isinstance(state, (str, os.PathLike)) else "")
        raise TypeError(f"{kind}.load_state_dict: state must be the dict state_dict() returned, "
                        f"not {type(state).__name__}{hint}")
    saved = str(np.asarray(state.get("optimizer", "")))
    if not saved:
        raise InputError(f"{kind}.load_state_dict: the state has no 'optimizer' entry; pass "
                         f"what state_dict() returned")
    if saved != kind:
        raise InputError(f"{kind}.load_state_dict: the state was saved by {saved}, not by {kind}")
    steps = np.asarray(state.get("steps", -1))
    if steps.shape != () or steps.dtype.kind not in "iu" or steps < 0:
        raise InputError(f"{kind}.load_state_dict: 'steps' must be a count of steps, got {steps!r}")
    given = set(state) - {"optimizer", "steps"}
    if given != set(wanted):
        raise InputError(
            f"{kind}.load_state_dict: the state holds {sorted(given)} but {opt!r} with these "
            f"params keeps {sorted(wanted)}; load it into an optimizer made with the same "
            f"params and settings")
    for name, buffer in wanted.items():
        _check_buffer(kind, name, state[name], buffer)
    return int(steps)


def _check_buffer(kind: str, name: str, given: Any, buffer: np.ndarray) -> None:
    """Refuse the state's entry ``given`` for ``buffer`` unless it can be copied in as it is."""
    if isinstance(given, Tensor):
        raise TypeError(f"{kind}.load_state_dict: {name!r} is a Tensor; the state holds "
                        f"arrays, as state_dict() gives them")
    if np.shape(given) != buffer.shape:
        raise ShapeError(f"{kind}.load_state_dict: {name!r} has shape {np.shape(given)} "
                         f"but the parameter has shape {buffer.shape}")
    value = np.asarray(given)
    if not np.can_cast(value.dtype, buffer.dtype, casting="same_kind"):  # before any is copied
        raise InputError(f"{kind}.load_state_dict: {name!r} holds {value.dtype}, which cannot "
                         f"be read as the parameter's {buffer.dtype}")
    # A NaN, or a negative second moment (its root is taken), makes every later step NaN;
    # so does a float64 number past the float32 range, as it becomes inf when copied in
    with np.errstate(over="ignore"):
        copied = value.astype(buffer.dtype, copy=False)
    if not np.isfinite(value).all() or name.startswith("v.") and (value < 0).any():
        raise InputError(f"{kind}.load_state_dict: {name!r} holds NaN, inf"
                         f"{' or a negative value' if name.startswith('v.') else ''}; a "
                         f"state_dict() never does, so the state is damaged")
    if not np.isfinite(copied).all():
        raise InputError(f"{kind}.load_state_dict: {name!r} holds numbers beyond the range "
                         f"of the parameter's {buffer.dtype}, which would become inf; load "
                         f"it into an optimizer whose parameters are {value.dtype}")


def _callable_name(f: Any) -> str:
    return getattr(f, "__name__", type(f).__name__)


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and weight decay.

    With ``g' = g + weight_decay · p`` and the velocity ``u`` (zero at first)::

        u ← momentum · u + g'
        p ← p − lr · u

    With ``momentum=0`` this is plain ``p ← p − lr · g'``.
    """

    def __init__(self, params: Params, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params)
        self.lr = lr
        self._velocity: dict[Any, np.ndarray] | None = None  # made when momentum is first set
        self.momentum = momentum
        self.weight_decay = weight_decay
        self._scratch = self._buffers()
        self._last_fused: tuple = (None, ())  # (vg, its argnums' Tensors) of the last fused step

    def _new_lr(self) -> None:
        self._rates = [_rate(self._lr, p.value) for p in self._tensors]

    momentum = _Setting(0.0, 1.0, high_open=True, doc="u ← momentum · u + g'.",
                        then="_new_momentum")
    weight_decay = _Setting(0.0, doc="g' = g + weight_decay · p.")

    def _new_momentum(self) -> None:
        if not self._momentum:  # switched off: the velocity is gone, from the state too
            self._velocity = None
        elif self._velocity is None:  # switched on: the velocity starts at 0
            self._velocity = self._buffers()

    def __repr__(self) -> str:
        return f"SGD(lr={self.lr:g}, momentum={self.momentum:g}, weight_decay={self.weight_decay:g})"

    def _state_buffers(self) -> dict[str, dict[Any, np.ndarray]]:
        return {"velocity": self._velocity} if self._velocity is not None else {}

    def _step_on(self, vg: Callable, args: tuple) -> np.ndarray:
        # The loop's usual call: plain SGD on the function whose fused step ran last time.
        # That step's own code checks that these parameters sit at vg's argnums (with the
        # arguments' types, shapes and dtypes), so Optimizer._step_on's look need not run;
        # a call it refuses returns None there, with nothing run, and takes the long way.
        last = self._last_fused
        if last[0] is vg and not (self._momentum or self._weight_decay):
            try:
                value = vg._sgd_step(self._lr, args, last[1])
            except BaseException:
                mark_all_modified(self._tensors)  # cut short, it may have updated some already
                raise
            if value is not None:
                self.steps += 1
                mark_all_modified(self._tensors)
                return value
        return super()._step_on(vg, args)

    def _fused(self, vg: Callable, args: tuple) -> np.ndarray | None:
        # Plain SGD is what a closed form's fused step computes: p ← p − lr·g, in place.
        if self._momentum or self._weight_decay or not isinstance(vg, Compiled):
            return None
        n = len(args)
        params = tuple(args[i % n] for i in vg.positions)  # this optimizer's, as _step_on found
        value = vg._sgd_step(self._lr, args, params)
        if value is not None:
            self._last_fused = (vg, params)
        return value

    def _update(self, grads) -> None:
        lr, momentum, decay = self._lr, self._momentum, self._weight_decay
        if not (momentum or decay):  # plain p ← p − lr · g, the usual step: one test per step
            for p, g, buf, rate in zip(self._tensors, grads, self._scratch.values(), self._rates):
                if g.dtype is not rate.dtype:  # a gradient of another dtype: lr as given,
                    p.value -= lr * g          # the product not rounded to the parameter's
                elif g.size < IN_PLACE_MIN_SIZE:
                    p.value -= g * rate
                else:
                    p.value -= np.multiply(g, rate, out=buf)
            return
        velocity = self._velocity.values() if momentum else repeat(None)
        for p, g, buf, u, rate in zip(self._tensors, grads, self._scratch.values(), velocity,
                                      self._rates):
            if decay:
                np.multiply(p.value, decay, out=buf)  # g' = g + weight_decay · p
                buf += g
                g = buf
            if momentum:
                u *= momentum                         # u = momentum · u + g'
                u += g
                g = u
            if g.dtype is not rate.dtype:             # p = p − lr · u
                p.value -= lr * g
            elif g.size < IN_PLACE_MIN_SIZE:
                p.value -= g * rate
            else:
                p.value -= np.multiply(g, rate, out=buf)


def _refuse_shared_memory(kind: str, items: list) -> None:
    """Refuse two parameters whose arrays overlap (``mt.Tensor(a)`` twice on one array, or a
    view of another parameter's): each step would move the shared numbers twice, and a tape
    that recorded one would not see that the other's update changed it."""
    for k, (name, p) in enumerate(items):
        for other, q in items[:k]:
            # the bounds test first: exact overlap of strided views can take a while
            if np.may_share_memory(p.value, q.value) and np.shares_memory(p.value, q.value):
                raise ValueError(
                    f"{kind}: params[{other!r}] and params[{name!r}] share memory (one wraps "
                    f"the same array as the other, or a view of it), so each step would update "
                    f"those numbers twice; give each parameter its own array, e.g. "
                    f"mt.Tensor(a.copy())")


def _rate(lr: float, value: np.ndarray) -> np.ndarray:
    """``lr`` as a 0-d array in the dtype of the parameter ``value``, for its update's product.

    numpy converts a Python float anew on every product (about a quarter of a
    microsecond beside a small array); a 0-d array of the same dtype it takes
    as it is, and rounds the product as it rounds ``lr · g``. A 0-d parameter
    keeps float64: numpy 1.x computes a product of 0-d float32 arrays in
    float32, but of one and a float in float64, so only then would the bits move.
    """
    dtype = value.dtype if value.ndim and value.dtype.kind == "f" else np.float64
    return np.asarray(lr, dtype=dtype)


class Adam(Optimizer):
    """Adam (Kingma & Ba): per-element steps scaled by running gradient moments.

    With step count ``k`` and ``m``, ``v`` starting at zero::

        m ← β1 · m + (1 − β1) · g
        v ← β2 · v + (1 − β2) · g²
        m̂ = m / (1 − β1^k),   v̂ = v / (1 − β2^k)      (bias correction)
        p ← p − lr · m̂ / (√v̂ + eps)
    """

    def __init__(self, params: Params, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params)
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self._m = self._buffers()
        self._v = self._buffers()
        self._scratch = self._buffers()

    def __repr__(self) -> str:
        return f"Adam(lr={self.lr:g}, betas=({self.betas[0]:g}, {self.betas[1]:g}), eps={self.eps:g})"

    def _state_buffers(self) -> dict[str, dict[Any, np.ndarray]]:
        return {"m": self._m, "v": self._v}

    @property
    def betas(self) -> tuple[float, float]:
        """(β1, β2), the moments' decay rates; set them between steps to change them
        (checked as the constructor checks them)."""
        return self._betas

    @betas.setter
    def betas(self, value: tuple[float, float]) -> None:
        try:
            beta1, beta2 = value
        except (TypeError, ValueError):
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {value!r}") from None
        self._betas = (check_setting("Adam", "betas[0]", beta1, 0.0, 1.0, high_open=True),
                       check_setting("Adam", "betas[1]", beta2, 0.0, 1.0, high_open=True))

    eps = _Setting(0.0, low_open=True, doc="What keeps the step finite where √v̂ is 0.")

    def _update(self, grads) -> None:
        beta1, beta2 = self._betas
        k = self.steps
        # lr · m̂ / (√v̂ + eps) = (lr / c1) · m / (√v / √c2 + eps), c = 1 − β^k
        numbers = (beta1, 1.0 - beta1, beta2, 1.0 - beta2, self._eps,
                   self._lr / (1.0 - beta1 ** k), math.sqrt(1.0 - beta2 ** k))
        # Seven products per parameter, each of which would convert a Python float: the
        # numbers once per step as 0-d arrays of each dtype met. The floats stay where the
        # bits would move: a gradient of another dtype than its buffers, or 0-d buffers
        # (numpy 1.x computes with 0-d float32 in float32, but with a float in float64).
        as_arrays: dict[np.dtype, list[np.ndarray]] = {}
        for p, g, m, v, buf in zip(self._tensors, grads, self._m.values(), self._v.values(),
                                   self._scratch.values()):
            constants = numbers
            if g.dtype is m.dtype and m.ndim:
                constants = as_arrays.get(m.dtype)
                if constants is None:
                    constants = as_arrays[m.dtype] = [np.asarray(x, m.dtype) for x in numbers]
            beta1, keep1, beta2, keep2, eps, step_size, root_c2 = constants
            m *= beta1                                # m = β1 m + (1 − β1) g
            np.multiply(g, keep1, out=buf)
            m += buf
            v *= beta2                                # v = β2 v + (1 − β2) g²
            np.multiply(g, keep2, out=buf)  # (1 − β2) g first: g² alone overflows float16 at
            buf *= g                        # 256, and wraps in a gradient's int dtype
            v += buf
            np.sqrt(v, out=buf)                       # buf = √v̂ + eps
            buf /= root_c2
            buf += eps
            np.divide(m, buf, out=buf)                # p = p − lr · m̂ / (√v̂ + eps)
            buf *= step_size
            p.value -= buf
