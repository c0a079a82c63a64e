"""How an op is declared: a forward, its VJPs written once, and the formula they apply.

An op's VJPs are written once, in microtape's own ops, one per positional
input (``grads=``); the forward returns its output::

    @primitive("dA = G ∘ σ(A)", code=Code("np.logaddexp(0, {A})", math="softplus({A})"),
               grads=(lambda g, c, a: mul(g, sigmoid(a)),))
    def softplus(a):
        return np.logaddexp(0, a)

Each grad is called as ``grad(G, C, *inputs, **params)``: ``G`` the output's
gradient (a Tensor), ``C`` the recorded output (a Tensor: use it, not a value
saved by the forward, so that its own dependence on the inputs is
differentiated too), then the inputs and keyword parameters as the op was
called (Tensors, arrays or numbers). The inputs are the forward's parameters
without defaults, always by position: one passed by name (``mt.sub(x, b=w)``)
is recorded in its place. ``None`` marks an input without a gradient. An op
taking any number of inputs (einsum) may give one function
``grads(i, G, C, *inputs, **params)`` instead.

Everything else comes from that one spelling. The tape's backward pass runs
the grads on arrays, recording nothing; ``tape.gradient(...,
create_graph=True)`` and nested ``mt.grad`` run them on Tensors, so the
backward pass is itself recorded and can be differentiated again; and the
closed form prints them with the templates of the ops they use (``Code``,
closed_form/derive.py), code and equation alike.

A forward may also return ``(output, vjps)``, one numpy VJP per input that
closes over what the forward computed: the built-in ops do, as their eager
fast path, and a test holds each to its grads. An op declared with numpy
VJPs and no ``grads`` is once-differentiable: its first derivatives work as
always, and a second derivative through it raises an error naming it.
``Primitive.__call__`` unwraps Tensors, runs the forward, wraps the result and
appends one node to every active tape; adding an op is one block in ``ops.py``.
"""

from __future__ import annotations

import inspect
from functools import partial, wraps
from typing import Any, Callable, Sequence

import numpy as np

from .errors import InputError, ShapeError
from .state import _EDITS
from .tape import Node, _active
from .tensor import Tensor, holds_tensor, wrap

_new = object.__new__

_FLOAT64, _FLOAT32 = np.dtype(np.float64), np.dtype(np.float32)
_CONTAINERS = frozenset((list, tuple))  # what may hide a Tensor from an op

# numpy's AxisError moved to numpy.exceptions in 1.25; both are ValueErrors.
_AxisError = getattr(getattr(np, "exceptions", np), "AxisError")


class Primitive:
    """An op the tape knows how to differentiate.

    ``formula`` is the VJP in the notation of models/DERIVATION.md; drawings and
    docs show it. ``broadcasts`` marks elementwise binary ops whose VJPs sum
    a broadcast input's gradient back to its shape. ``explain`` turns the
    input shapes into a hint when numpy rejects them.
    """

    def __init__(self, forward: Callable, formula: str, broadcasts: bool = False,
                 explain: Callable[..., str] | None = None, code: Code | None = None,
                 grads: Sequence[Callable | None] | Callable | None = None) -> None:
        self.grads = grads  # the VJPs in ops, for create_graph=True (see the module's docstring)
        self.code = code  # how the closed-form writer spells it (None: it calls forward)
        self.name = forward.__name__
        self.forward = forward
        self.formula = formula
        self.broadcasts = broadcasts
        self.explain = explain
        self.__doc__ = f"{(forward.__doc__ or '').strip()}\n\nVJP: {formula}"
        self.__wrapped__ = forward
        # An op declared outside microtape has its VJPs held to its inputs, at each call: one
        # of another shape would broadcast into a sum of gradients, silently. microtape's
        # own ops are held to theirs by the tests (op_cases.py), at no cost per call.
        self.checks_vjps = not (getattr(forward, "__module__", None) or "").startswith("microtape.")
        if self.checks_vjps:
            self.forward = _vjps_held_to_inputs(self.name, forward)
        # The forward's parameters without defaults, in order: the op's inputs, which the
        # tape records by position however the call named them (see _by_position).
        self._input_order = _input_names(forward)
        self._named_inputs = frozenset(self._input_order)

    def __call__(self, *args, name: str | None = None, **params) -> Tensor:
        """Run the op on ``args`` and record it; ``name`` names the output Tensor."""
        # Long: it runs once per op, so its Python work is a real share of a small
        # step, and a helper's call would cost more than most lines here. One or
        # two operands (most ops) are unwrapped without a comprehension (a frame of
        # its own in Python 3.11), Tensors and arrays without a call, and passed to
        # the forward as plain arguments rather than a list to star-call; the
        # output is wrapped inline.
        if params and not self._named_inputs.isdisjoint(params):
            args = self._by_position(args, params)
        n = len(args)
        try:
            if n == 2:
                a, b = args
                a = a.value if type(a) is Tensor else a if type(a) is np.ndarray else self._operand(a)
                b = b.value if type(b) is Tensor else b if type(b) is np.ndarray else self._operand(b)
                out = self.forward(a, b, **params) if params else self.forward(a, b)
            elif n == 1:
                a = args[0]
                a = a.value if type(a) is Tensor else self._operand(a)
                out = self.forward(a, **params) if params else self.forward(a)
            else:
                out = self.forward(*[self._operand(a) for a in args], **params)
        except (ShapeError, InputError):
            raise
        except ValueError as e:  # numpy's AxisError is one too
            raise self._numpy_error(self._values(args), e) from None
        except (TypeError, IndexError) as e:  # an operand of a wrong type, an index past the end
            raise self._restated(args, e) from None
        if type(out) is tuple:
            out, vjps = out
        else:  # the forward gave its output alone: the VJPs are its grads, run on arrays
            vjps = None
        if type(out) is not np.ndarray:
            out = np.asarray(out)  # numpy reductions return scalars; keep .value an array
        dtype = out.dtype  # two identity tests: cheaper than reading dtype.kind every op
        if dtype is not _FLOAT64 and dtype is not _FLOAT32:
            out = self._as_float(out, args)  # only int, float16 (or complex) results get here
        elif _PROMOTES_0D and dtype is _FLOAT64 and out.ndim == 0:
            out = _as_operands_dtype(self._values(args), out)
        result = _new(Tensor)  # tensor.wrap, inline
        result.value, result.grad, result.name = out, None, name
        tapes = _active.get()
        if tapes:
            # Ops on data alone are recorded too: a closed form computes them
            # from its arguments instead of baking in the first call's value.
            if vjps is None:
                vjps = self._eager_vjps(args, result, params)
            node = _new(Node)  # Node.__init__, inline: its frame cost a fifth of recording
            node.op = self
            node.inputs = args
            node.output = result
            node.vjps = vjps
            node.params = params
            node.clock = _EDITS[0]
            node.origin = None
            for tape in tapes:
                tape._record(node)
        return result

    def _by_position(self, args: tuple, params: dict) -> tuple:
        """``args`` with the inputs named in ``params`` moved into their places (taken out of
        ``params``): mt.sub(x, b=w) is recorded as mt.sub(x, w). Kept among the keywords, a
        Tensor would get no gradient, silently, and the closed form and the grads, which
        take the inputs by position, would not find them."""
        args = list(args)
        for name in self._input_order[len(args):]:
            if name not in params:
                break  # a gap before it: the forward's own TypeError names what is missing
            args.append(params.pop(name))
        return tuple(args)

    def differentiable_vjp(self, i: int) -> Callable:
        """Input i's VJP written in ops: ``grad(G, C, *inputs, **params)`` gives a Tensor."""
        grads = self.grads
        if callable(grads):
            return partial(grads, i)
        grad = None if grads is None or i >= len(grads) else grads[i]
        if grad is None:  # its numpy VJP exists (the tape asks only then), but no spelling in ops
            which = "its VJP is" if grads is None else f"the VJP of its input {i} is"
            raise TypeError(
                f"{self.name}: this op is once-differentiable: {which} plain numpy, so a "
                f"derivative of its derivative (create_graph=True, or a nested mt.grad) cannot "
                f"go through it; declare its VJPs once more in microtape's ops, as "
                f"@mt.primitive(formula, grads=(lambda g, c, *inputs: ...,)) (see mt.primitive)")
        return grad

    def check_vjp_shape(self, i: int, d: Any, x: Any) -> None:
        """Raise if ``d``, input i's gradient, is not of the shape of that input, ``x``."""
        check_vjp_shape(self.name, i, d, np.shape(x.value if isinstance(x, Tensor) else x))

    def _eager_vjps(self, args: tuple, output: Tensor, params: dict) -> tuple:
        """One numpy VJP per input, each running the op's grads on Tensors, recording nothing."""
        if self.grads is None:
            raise TypeError(
                f"{self.name}: the forward returned its output alone, so the op's VJPs must come "
                f"from grads=; declare them, or return (output, vjps) with one numpy VJP per input")

        def vjp(i: int) -> Callable:
            grad = self.differentiable_vjp(i)

            def run(g: np.ndarray) -> np.ndarray:
                token = _active.set(())  # the eager backward pass: no tape records these ops
                try:
                    d = grad(wrap(np.asarray(g)), output, *args, **params)
                finally:
                    _active.reset(token)
                d = d.value if isinstance(d, Tensor) else np.asarray(d)
                if self.checks_vjps:
                    self.check_vjp_shape(i, d, args[i])
                return d
            return run

        grads = self.grads
        return tuple(vjp(i) if callable(grads) or (i < len(grads) and grads[i] is not None)
                     else None for i in range(len(args)))

    def _values(self, args: tuple) -> list:
        """What the forward received for ``args`` (for the rare paths that look at them again)."""
        return [self._operand(a) for a in args]

    def _operand(self, a: Any) -> Any:
        """What the forward receives for the argument ``a``: a Tensor's value, else ``a``."""
        if isinstance(a, Tensor):
            return a.value
        return self._unhidden(a) if type(a) in _CONTAINERS else a

    def _unhidden(self, a: list | tuple) -> list | tuple:
        """``a``, unless a Tensor hides in it (``holds_tensor``)."""
        if holds_tensor(a):
            raise TypeError(
                f"{self.name}: a {type(a).__name__} holding a Tensor was passed; the op would "
                f"read it as a constant and send it no gradient. Pass the Tensor itself, or "
                f"combine Tensors with microtape's ops first")
        return a

    def _as_float(self, out: np.ndarray, args: tuple) -> np.ndarray:
        """Tensor()'s rule for an output: ints and bools become float64, complex is refused.

        An op on numbers alone (elementwise, or of one input) whose result numpy computed
        in a narrow arithmetic is refused: small ints wrap (uint8 0 − 1 is 255), bools add
        as or (True + True is True), and exp of int8 is float16, so casting the result
        would keep a wrong number. (Ops that select, such as getitem, take any dtype.)"""
        dtype = out.dtype
        if dtype.kind == "c":
            raise TypeError(f"{self.name}: microtape differentiates real functions; "
                            f"got a complex result (dtype {dtype})")
        given = [np.asarray(self._operand(a)).dtype for a in args]
        if dtype.kind == "f" and (dtype.itemsize >= 4 or dtype in given):
            return out  # floats as numpy gives them (big-endian, float16 operands): kept
        narrow = dtype.kind in "fb" or dtype.kind in "iu" and dtype.itemsize < 8
        if narrow and (len(args) == 1 or self.broadcasts):
            arrays = ", ".join(sorted({str(d) for d, a in zip(given, args)
                                       if isinstance(a, (np.ndarray, np.generic))}))
            raise TypeError(
                f"{self.name}: numpy computes this on the {arrays} arrays in {dtype} arithmetic "
                f"(small ints wrap around, bools add as or, int exp is float16), so the "
                f"result may be wrong; microtape computes in float64 or float32: convert them "
                f"first, x.astype(np.float64) (or mt.Tensor(x))")
        return out.astype(np.float64)

    def _restated(self, args: tuple, cause: Exception) -> Exception:
        """numpy's or Python's TypeError or IndexError, of the same type, naming the op and
        what it was given; one that names the op already is the op's own, kept as it is."""
        if str(cause).startswith(f"{self.name}:"):
            return cause
        given = ", ".join(
            f"shape {np.shape(a.value if isinstance(a, Tensor) else a)}"
            if isinstance(a, (Tensor, np.ndarray, np.generic, int, float)) else type(a).__name__
            for a in args)
        kind = IndexError if isinstance(cause, IndexError) else TypeError  # numpy's own take more
        return kind(f"{self.name}: {cause} (given {given})")

    def _numpy_error(self, values: list, cause: ValueError) -> ValueError:
        """numpy's complaint about the operands, said in the op's words."""
        if isinstance(cause, _AxisError):
            return self._axis_error(values, cause)
        return self._value_error(values, cause)

    def _value_error(self, values: list, cause: ValueError) -> ValueError:
        # Only the ops that combine operands (they have an explain) meet shapes
        # that do not fit, and an elementwise op only if numpy cannot broadcast
        # them; any other ValueError is about an argument's value.
        shapes = [np.shape(v) for v in values if not isinstance(v, str)]
        text = " and ".join(str(s) for s in shapes)
        if self.explain is None or self.broadcasts and _broadcastable(shapes):
            inputs = "input of shape" if len(shapes) == 1 else "inputs of shapes"
            return InputError(f"{self.name}: {cause} ({inputs} {text})")
        return ShapeError(f"{self.name}: cannot combine shapes {text}{self.explain(*shapes)}")

    def _axis_error(self, values: list, cause) -> InputError:
        shape = np.shape(values[0])
        axis, ndim = getattr(cause, "axis", None), getattr(cause, "ndim", None)
        if axis is None or ndim is None:  # an AxisError made without them
            return InputError(f"{self.name}: {cause} (shape {shape})")
        if ndim == 0:
            return InputError(f"{self.name}: axis {axis} is out of range: the input is a scalar "
                              f"(shape ()), which has no axes")
        dims = "dimension" if ndim == 1 else "dimensions"
        return InputError(f"{self.name}: axis {axis} is out of range for an array of {ndim} {dims} "
                          f"(shape {shape}); valid axes are {-ndim} to {ndim - 1}")

    def __repr__(self) -> str:
        return f"<primitive {self.name}: {self.formula}>"


# numpy 1.x treats 0-d arrays as Python scalars when it picks a result dtype, so
# a 0-d float32 value met with a Python number comes out float64; numpy 2
# (NEP 50) keeps float32. Only there, such a result is cast back.
_PROMOTES_0D = np.lib.NumpyVersion(np.__version__) < "2.0.0"


def _as_operands_dtype(values: list, out: np.ndarray) -> np.ndarray:
    """``out`` in the dtype the array operands alone give (float32 for float32 arrays)."""
    dtypes = [v.dtype for v in values if isinstance(v, np.ndarray)]
    if dtypes and np.result_type(*dtypes) == np.float32:
        return out.astype(np.float32)
    return out


def _vjps_held_to_inputs(name: str, forward: Callable) -> Callable:
    """``forward``, its numpy VJPs checked: one per input (or None), each giving a gradient of
    its input's shape. For ops declared outside microtape, whose VJPs no test of ours holds."""
    @wraps(forward)
    def checked_forward(*inputs: Any, **params: Any) -> Any:
        out = forward(*inputs, **params)
        if type(out) is not tuple:  # the output alone: its grads give the VJPs (_eager_vjps)
            return out
        vjps = out[1] if len(out) == 2 else None
        if (not isinstance(vjps, (tuple, list)) or len(vjps) != len(inputs)
                or not all(v is None or callable(v) for v in vjps)):
            given = (f"{len(vjps)} VJP(s)" if isinstance(vjps, (tuple, list)) else
                     f"a {type(vjps).__name__}" if len(out) == 2 else f"a tuple of {len(out)}")
            raise TypeError(
                f"{name}: the forward returned {given} for {len(inputs)} input(s); return "
                f"(output, (vjp_0, ...)), one function of G per input, None for an input that "
                f"takes no gradient")
        # Only the shapes are kept: a non-persistent tape frees each input once its VJPs ran.
        return out[0], tuple(v if v is None else _shape_checked(name, k, v, np.shape(x))
                             for k, (v, x) in enumerate(zip(vjps, inputs)))
    return checked_forward


def _shape_checked(name: str, i: int, vjp: Callable, shape: tuple) -> Callable:
    def checked_vjp(g: np.ndarray) -> np.ndarray:
        d = vjp(g)
        check_vjp_shape(name, i, d, shape)
        return d
    return checked_vjp


def check_vjp_shape(name: str, i: int, d: Any, shape: tuple) -> None:
    """Raise the ShapeError that names the op if ``d``, the gradient its VJP gave input ``i``,
    is not of that input's ``shape``."""
    got = d.shape if isinstance(d, Tensor) else np.shape(d)
    if got != shape:
        raise ShapeError(
            f"{name}: the VJP of input {i} gave a gradient of shape {got}, but input {i} has "
            f"shape {shape}; a VJP gives its input's gradient, of that input's shape (sum a "
            f"broadcast input's gradient back over the axes it was broadcast along)")


def _input_names(forward: Callable) -> tuple[str, ...]:
    """The names of ``forward``'s parameters that a call may pass by position or by name
    and that have no default: the op's inputs."""
    try:
        parameters = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: inputs by position only
        return ()
    return tuple(p.name for p in parameters
                 if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty)


def _broadcastable(shapes: list) -> bool:
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        return False
    return True


def primitive(formula: str, *, broadcasts: bool = False, explain: Callable[..., str] | None = None,
              code: Code | None = None, grads: Sequence[Callable | None] | Callable | None = None
              ) -> Callable[[Callable], Primitive]:
    """Declare ``forward`` as an op whose VJP applies ``formula``.

    ``grads`` spells the VJPs in microtape's ops, one per input, each called
    as ``grad(G, C, *inputs, **params)`` with the output ``C`` as a Tensor;
    the forward may then return its output alone. Without ``grads`` the
    forward returns ``(output, numpy VJPs)`` and the op is once-differentiable
    (see the module's docstring). ``code`` spells the forward as numpy source
    and maths for ``Tape.closed_form``, which derives the VJPs' code from
    ``grads``; without it the closed form calls ``forward``.
    """
    return lambda forward: Primitive(forward, formula, broadcasts, explain, code, grads)


# How tightly a template's expression binds, as Python and the maths read it:
# an operand that binds more loosely than the template it goes into is written
# in parentheses (see closed_form/derive.py).
SUM_BINDS, PRODUCT_BINDS, NEGATION_BINDS, POWER_BINDS, ATOM = 1, 2, 3, 4, 9
_OPERATOR_BINDS = {"+": SUM_BINDS, "-": SUM_BINDS, "*": PRODUCT_BINDS, "/": PRODUCT_BINDS}


class Code:
    """An op's forward as numpy source and as maths; the closed form derives its VJPs.

    ``forward`` and ``math`` are templates over the op's operands: ``{A}``,
    ``{B}``, ... the inputs in order, ``{C}`` the output, and the op's
    keyword parameters by name (written as Python literals). A template may
    instead be a function of the closed form's ``Context`` ``c``
    (closed_form/context.py: the same names as attributes, the raw params in
    ``c.params``, traced shapes and dtypes); it returns one expression, or a
    list of statements that assign ``c.target``, and writes the readable form
    when ``c.textbook``. ``when(c)`` says whether the template covers a traced
    call; where it does not, the closed form calls the op itself.

    The VJPs are not spelled here: the closed form runs the op's ``grads`` on
    the traced values and prints the few ops they record with those ops' own
    templates (closed_form/derive.py), so the code and the equation of each VJP
    come from its one spelling. ``binds`` says how tightly the forward
    expression binds (``operator`` sets it for ``A op B``; calls and names
    bind tightest, ``ATOM``), and ``math_binds`` how tightly its maths does
    where that differs (σ(A) is one symbol, its code a quotient); ``tight`` names the printings ("fast",
    "textbook", "maths") in which an operand sits next to ``.``, ``[``, a
    unary minus or words, so that a compound one needs parentheses.

    ``fast_vjps`` are hand-tuned VJP templates (over ``{G}`` too, the output's
    gradient; None where the derived one serves), kept only where they beat
    the derived code: the sigmoid's work in spare buffers, the loss's row
    kernel. A test holds them to the derived ones on every op case.

    ``name`` suggests a name for an unnamed output (``"{A}{B}"`` gives
    ``xW1``). ``view`` says the forward may return a view of an input: the
    closed form then never changes it in place. ``saved`` lists the names the
    forward makes for a fast VJP (``c.saved["yhat"]``), ``temps`` the forward's
    scratch names (``c.temps["z"]``): the closed form allocates both and frees
    them after their last use. ``operator`` marks an elementwise ``A op B``,
    which may then run in ``A``'s buffer. A fast VJP template may ask
    ``c.spare(c.G, c.C)`` and, if told yes, write its form in those buffers;
    the closed form says yes only where nothing reads, holds or returns them
    afterwards.
    """

    __slots__ = ("forward", "math", "binds", "math_binds", "tight", "fast_vjps", "name", "when",
                 "view", "saved", "temps", "operator")

    def __init__(self, forward: str | Callable, *vjps: Any, math: str | Callable | None = None,
                 binds: int | None = None, math_binds: int | None = None,
                 tight: tuple[str, ...] = (),
                 fast_vjps: tuple[str | Callable | None, ...] = (), name: str | None = None,
                 when: Callable | None = None, view: bool = False, saved: tuple[str, ...] = (),
                 temps: tuple[str, ...] = (), operator: str | None = None) -> None:
        if vjps:
            raise TypeError(
                "Code: VJP templates are no longer passed after the forward; the closed form "
                "derives each VJP from the op's grads=. Give the forward's maths as math=, and "
                "a hand-tuned VJP template, if one is faster, as fast_vjps=(...)")
        self.forward = forward
        self.math = math
        self.binds = binds if binds is not None else _OPERATOR_BINDS.get(operator, ATOM)
        self.math_binds = self.binds if math_binds is None else math_binds
        self.tight = tight
        self.fast_vjps = fast_vjps
        self.name = name
        self.when = when
        self.view = view
        self.saved = saved
        self.temps = temps
        self.operator = operator
