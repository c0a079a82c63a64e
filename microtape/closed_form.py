"""The tape writes its own closed form: numpy source and equations for a recorded computation.

A tape holds the whole derivation: every op that ran and, for each, the VJP
it applies. ``Tape.closed_form(target, sources)`` writes that down as a plain
numpy function, the forward pass then the backward pass, one assignment a
line, named after the tensors (``W1``, ``t``, ``h``; gradients ``d_W1``),
and as equations in the derivation's notation. Each op says how it is
spelled in ``ops.py`` (``@primitive(..., code=Code(...))``); an op without
that is called as it was recorded.

The writer walks the record twice, like the backward pass does: forward over
the nodes the target depends on, backward over those that also depend on a
source, so no work is written for a gradient nobody asked for.
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import re
import weakref
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ShapeError
from .ops import IN_PLACE_MIN_SIZE, broadcast_axes
from .primitive import _PROMOTES_0D  # on numpy 1.x results are cast back to the traced dtypes
from .tape import Tape
from .tensor import Tensor

__all__ = ["ClosedForm"]

# Results numpy may hand back as a view of an operand: such a gradient is
# copied before it is returned, as the tape does (see tape._distinct).
_MAYBE_VIEW = ("np.broadcast_to(", "np.reshape(", "np.transpose(", "np.einsum(")


class ClosedForm:
    """A recorded computation as generated numpy code, its equations, and a callable.

    ``source`` is the generated function, ``equations`` its backward pass in
    the derivation's notation (Markdown, one equation a line), ``inputs`` its
    argument names in order. ``cf(**arrays)`` runs it and returns ``(value,
    gradients)``, the gradients shaped like the ``sources`` it was built for;
    an argument left out reads the recorded Tensor's current value (a plain
    array recorded as data is read as it is now). ``cf.sgd_step(lr,
    **arrays)`` runs the fused training step ``p ← p − lr·g`` on every source
    in place and returns the value (``step_source`` is its code).

    ``function`` and ``step_function`` are the generated functions
    themselves, for a training loop that wants no per-call checks: they take
    the arrays positionally in ``inputs`` order (``step_function`` then
    ``lr``) and ``function`` returns the gradients as a tuple in the order of
    the sources.
    """

    def __init__(self, value_fn: "_Written", step_fn: "_Written", shape: Any,
                 leaves: dict[str, Any], dtypes: tuple) -> None:
        self.source: str = value_fn.source
        self.step_source: str = step_fn.source
        self.equations: str = value_fn.equations
        self.inputs: tuple[str, ...] = value_fn.inputs
        # The generated functions themselves, for hot loops: positional
        # arguments in ``inputs`` order (``step_function`` then ``lr``), no
        # checks, gradients as a tuple in the order of ``sources``.
        self.function = self._fn = value_fn.function
        self.step_function = self._step = step_fn.function
        self._shape = shape          # ("one",) / ("list", n) / ("dict", keys)
        self._dtypes = dtypes        # (the target's, (each source's, ...))
        self._leaves = leaves        # argument name -> the recorded Tensor or array
        self._traced = value_fn.traced
        self._node_equations = value_fn.node_equations

    def __repr__(self) -> str:
        return f"<ClosedForm ({', '.join(self.inputs)}): {len(self.source.splitlines())} lines>"

    def __call__(self, **arrays: Any) -> tuple[np.ndarray, Any]:
        value, grads = self._fn(*self._arguments(arrays))
        if _PROMOTES_0D:
            value, grads = self.as_traced(value, grads)
        return np.asarray(value), self._shaped(grads)  # a 0-d array, as the tape's .value

    def as_traced(self, value: Any, grads: tuple) -> tuple[np.ndarray, tuple]:
        """``function``'s results in the dtypes of the target and the sources."""
        target_dtype, source_dtypes = self._dtypes
        value = np.asarray(value, dtype=target_dtype)
        return value, tuple(g if g.dtype == d else g.astype(d) for g, d in zip(grads, source_dtypes))

    def sgd_step(self, lr: float, **arrays: Any) -> np.ndarray:
        """One SGD step in the generated code: every source ``p -= lr * dJ/dp``, in place.

        The backward pass starts from the seed ``−lr`` instead of 1; everything
        after the seed is linear in it, so each gradient arrives already
        scaled by ``−lr`` and the update is one in-place ``p += d_p`` per
        source, with no ``lr · g`` temporaries. Sources must be arrays the
        computation read (parameters), not values it computed.
        """
        if self._step is None:
            raise ValueError("sgd_step: a source is computed on the tape, not a leaf array, so "
                             "there is nothing to update; pass the parameters as sources")
        return self._step(*self._arguments(arrays), float(lr))

    def equation_for(self, node: Any) -> str | None:
        """The equation(s) this node's VJPs apply, in the derivation's notation.

        ``None`` for a node the closed form's backward pass does not run
        (it does not lead from a source to the target).
        """
        return self._node_equations.get(id(node))

    def _arguments(self, arrays: Mapping[str, Any]) -> list:
        unknown = set(arrays).difference(self.inputs)
        if unknown:
            raise TypeError(f"closed form: unknown argument(s) {sorted(unknown)}; it takes "
                            f"{', '.join(self.inputs)}")
        args = []
        for name in self.inputs:
            if name in arrays:
                value = arrays[name]
                value = value.value if isinstance(value, Tensor) else np.asarray(value)
                shape, dtype = self._traced[name]
                if value.shape != shape or value.dtype != dtype:
                    raise ShapeError(
                        f"closed form: argument {name!r} has shape {value.shape} and dtype "
                        f"{value.dtype}, but it was traced with shape {shape} and dtype {dtype}; "
                        f"record the computation again for new shapes")
            else:
                leaf = self._leaves[name]
                value = leaf.value if isinstance(leaf, Tensor) else leaf
            args.append(value)
        return args

    def _shaped(self, grads: tuple) -> Any:
        kind = self._shape[0]
        if kind == "one":
            return grads[0]
        if kind == "list":
            return list(grads)
        return dict(zip(self._shape[1], grads))


def closed_form(nodes: Sequence[Any], target: Tensor, sources: Any) -> ClosedForm:
    """Write the closed form of ``target`` over ``sources`` from a tape's ``nodes``."""
    if isinstance(sources, Tensor):
        shape, listed = ("one",), [sources]
    elif isinstance(sources, Mapping):
        shape, listed = ("dict", list(sources)), list(sources.values())
    elif isinstance(sources, (list, tuple)):
        shape, listed = ("list", len(sources)), list(sources)
    else:
        raise TypeError(f"closed_form: sources must be a Tensor, a list/tuple of Tensors or a "
                        f"dict of Tensors, not {type(sources).__name__}")
    for s in listed:
        if not isinstance(s, Tensor):
            raise TypeError(f"closed_form: every source must be a Tensor, got {type(s).__name__}")
    value_fn = _Writer(nodes, target, listed, step=False).write()
    step_fn = _Writer(nodes, target, listed, step=True).write()
    dtypes = (target.dtype, tuple(s.dtype for s in listed))
    return ClosedForm(value_fn, step_fn, shape, value_fn.leaves, dtypes)


class _Written:
    __slots__ = ("source", "equations", "inputs", "function", "traced", "leaves", "node_equations")


class _Context:
    """What a template sees: names (code or maths) of the operands, traced facts, helpers.

    ``A``, ``B`` are the first two inputs, ``C`` the output, ``G`` its
    gradient, ``target`` the name a list of statements must assign; the op's
    keyword parameters read as Python literals (``c.axis``).
    """

    def __init__(self, writer: "_Writer", node: Any, names: list[str], out: str,
                 saved: dict) -> None:
        self.writer = writer
        self.names = names
        self.A = names[0] if names else None
        self.B = names[1] if len(names) > 1 else None
        self.C = self.target = out
        self.G = None
        self.i = 0
        self.one = False
        self.values = [x.value if isinstance(x, Tensor) else x for x in node.inputs]
        self.shapes = [np.shape(v) for v in self.values]
        self.ndims = [len(s) for s in self.shapes]
        self.dtypes = [np.asarray(v).dtype if not isinstance(v, str) else None for v in self.values]
        self.out_shape = node.output.shape
        self.dtype = node.output.dtype
        self.big = node.output.size >= IN_PLACE_MIN_SIZE
        self.params = {**_defaults(node.op), **node.params}
        self.saved = saved

    def __getattr__(self, name: str) -> str:
        try:
            return repr(self.params[name])
        except KeyError:
            raise AttributeError(name) from None

    def const(self, value: Any, base: str = "const") -> str:
        return self.writer.const(value, base)

    def tmp(self, base: str) -> str:
        return self.writer.fresh(base)

    def fields(self) -> dict[str, Any]:
        return {**{k: repr(v) for k, v in self.params.items()},
                "A": self.A, "B": self.B, "C": self.C, "G": self.G}


def _render(template: Any, c: _Context) -> Any:
    return template(c) if callable(template) else template.format(**c.fields())


_SYMBOL_CHARS = re.compile(r"[^0-9A-Za-z_]")


def _identifier(text: str) -> str:
    name = _SYMBOL_CHARS.sub("_", text) or "x"
    if name[0].isdigit():
        name = "x" + name
    shadows = keyword.iskeyword(name) or name == "np" or hasattr(builtins, name)
    return name + "_" if shadows else name


def _wrap(expr: str) -> str:
    """Parenthesised for use inside a larger maths expression, unless it is one symbol."""
    return f"({expr})" if " " in expr and not (expr.startswith("(") and expr.endswith(")")) else expr


class _Writer:
    def __init__(self, nodes: Sequence[Any], target: Tensor, sources: list[Tensor], step: bool) -> None:
        self.target, self.sources, self.step = target, sources, step
        self.used: set[str] = {"np", "lr"} if step else {"np"}
        self.next_suffix: dict[str, int] = {}
        self.consts: dict[str, Any] = {}
        self.code: dict[int, str] = {}     # id(tensor or array) -> its name in the code
        self.math: dict[int, str] = {}     # id(tensor) -> its name in the equations
        self.lines: list[str] = []
        self.fresh_values: dict[str, tuple] = {}  # forward name -> (shape, dtype): its own buffer
        self.sizes: dict[str, int] = {}           # every name the code computes -> elements
        end = _end_of(nodes, target, sources)
        # Forward: only the nodes the target depends on.
        needed, forward = {id(target)}, []
        for node in reversed(nodes[:end]):
            if id(node.output) in needed:
                forward.append(node)
                needed.update(id(x) for x in node.inputs if isinstance(x, Tensor))
        forward.reverse()
        self.forward = forward
        self.producer = {id(node.output): node for node in forward}
        # Backward: of those, only the ones on a path of VJPs from a source to
        # the target (a stop_gradient has none, so nothing before it is asked).
        live, plan = set(map(id, sources)), []
        for node in forward:
            if any(id(x) in live for x, vjp in zip(node.inputs, node.vjps) if vjp is not None):
                live.add(id(node.output))
                plan.append(node)
        reached, self.plan = {id(target)}, []
        for node in reversed(plan):
            if id(node.output) in reached:
                reached.update(id(x) for x, vjp in zip(node.inputs, node.vjps) if vjp is not None)
                self.plan.append(node)
        self.plan.reverse()
        self.live = live

    # -- names -------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """An unused name: ``base``, else ``base2``, ``base3``, ..."""
        base = _identifier(base)
        name, k = base, self.next_suffix.get(base, 2)
        while name in self.used:
            name, k = f"{base}{k}", k + 1
        self.next_suffix[base] = k  # so a thousand adds do not probe a thousand names each
        self.used.add(name)
        return name

    def const(self, value: Any, base: str = "const") -> str:
        name = self.fresh(f"_{base}")
        self.consts[name] = value
        return name

    def operand(self, x: Any, node: Any, pos: int, args: list) -> str:
        """The code for one input: a name (tensors, arrays), a literal or a held constant."""
        if isinstance(x, Tensor) or isinstance(x, np.ndarray):
            key = id(x)
            if key not in self.code:  # a leaf: it becomes an argument
                name = x.name if isinstance(x, Tensor) and x.name else _param_name(node.op, pos)
                self.code[key] = self.fresh(name)
                self.math[key] = self.code[key]
                args.append((self.code[key], x))
            return self.code[key]
        return self.literal(x)

    def literal(self, x: Any) -> str:
        """Numbers, strings and tuples of ints written into the code; anything else held."""
        if isinstance(x, (bool, int, float, str, np.number, type(None))) or (
                isinstance(x, tuple) and all(isinstance(v, int) for v in x)):
            text = repr(x)
            return f"({text})" if text.startswith("-") else text
        return self.const(x)

    # -- writing ---------------------------------------------------------------------
    def write(self) -> _Written:
        args: list[tuple[str, Any]] = []
        contexts = {}
        delta = 0
        for node in self.forward:
            names = [self.operand(x, node, pos, args) for pos, x in enumerate(node.inputs)]
            code = node.op.code
            out = node.output
            if out.name:
                base = out.name
            elif code is not None and code.name and all(n.isidentifier() for n in names[:2]):
                base = code.name.format(A=names[0], B=names[1] if len(names) > 1 else "")
            else:
                base = node.op.name
            self.code[id(out)] = self.fresh(base)
            self.math[id(out)] = out.name or self.code[id(out)]
            self.sizes[self.code[id(out)]] = out.size
            c = _Context(self, node, names, self.code[id(out)], {})
            if code is not None and (code.when is None or code.when(c)):
                rendered = _render(code.forward, c)
                self.emit(self.code[id(out)], rendered)
                if not code.view and not (isinstance(rendered, str) and rendered.startswith(_MAYBE_VIEW)):
                    self.fresh_values[self.code[id(out)]] = (out.shape, out.dtype)
            else:
                c.saved["vjps"] = self._call_forward(node, names, c)
            contexts[id(node)] = c
            # The derivation's deltas: the gradient of each layer's x W + b.
            first = self.producer.get(id(node.inputs[0])) if isinstance(node.inputs[0], Tensor) else None
            if node.op.name == "add" and first is not None and first.op.name == "matmul":
                delta += 1
                c.saved["delta"] = f"delta{delta}"
        forward_lines, self.lines = self.lines, []
        equations, node_equations = self._backward(contexts)
        return self._assemble(args, forward_lines, equations, node_equations)

    def emit(self, target: str, rendered: Any) -> None:
        if isinstance(rendered, str):
            self.lines.append(f"{target} = {rendered}")
        else:
            self.lines.extend(rendered)

    def _call_forward(self, node: Any, names: list[str], c: _Context) -> str:
        op = self.const(node.op.forward, node.op.name)
        vjps = self.fresh(f"{node.op.name}_vjps")
        params = "".join(f", {k}={self.literal(v)}" for k, v in node.params.items())
        self.lines.append(f"# {node.op.name} has no code template: call its forward and its VJPs")
        self.lines.append(f"{c.C}, {vjps} = {op}({', '.join(names)}{params})")
        return vjps

    def _in_place(self, forward_lines: list[str], later: list[str]) -> list[str]:
        return _in_place_forward(forward_lines, later, self.fresh_values)

    def _backward(self, contexts: dict) -> tuple[list[str], dict[int, str]]:
        target = self.target
        expected = self._expected_terms(contexts)
        self.terms: dict[int, list[tuple[str, bool, str, np.dtype]]] = {}
        self.grad: dict[int, tuple[str, bool, np.dtype]] = {}   # id -> (name, fresh, dtype)
        self.gmath: dict[int, str] = {}                          # id -> symbol or inlined maths
        self.symbols: dict[int, str] = {}
        self.equations: list[str] = []
        node_equations: dict[int, str] = {}
        source_ids = set(map(id, self.sources))
        seed, seed_line = self._seed()
        seed_used = False
        for node in reversed(self.plan):
            if id(node.output) not in self.grad:
                continue
            start = len(self.lines)
            node_equations[id(node)] = self._backward_step(node, contexts, expected, source_ids)
            if any(re.search(rf"\b{seed}\b", line) for line in self.lines[start:]):
                seed_used = True
        if seed_used or id(target) in source_ids:
            self.lines.insert(0, seed_line)
        return self.equations, node_equations

    def _expected_terms(self, contexts: dict) -> dict[int, int]:
        """How many VJPs will hand each tensor a gradient.

        One gets a plain name, several get numbered terms and an explicit sum.
        """
        expected: dict[int, int] = {}
        for node in self.plan:
            c = contexts[id(node)]
            for i, x in enumerate(node.inputs):
                if self._gets_gradient(node, c, i, x):
                    expected[id(x)] = expected.get(id(x), 0) + 1
        return expected

    def _seed(self) -> tuple[str, str]:
        """The target's gradient: its name and the line that sets it (−lr for a step)."""
        target, step = self.target, self.step
        seed = self.fresh(f"d_{self.code.get(id(target), target.name or 'target')}")
        seed_line = f"{seed} = -lr" if step else (
            f"{seed} = np.ones({target.shape}, dtype=np.{target.dtype.name})")
        self.grad[id(target)] = (seed, False, target.dtype)
        self.gmath[id(target)] = "G" if step else "1"
        self.symbols[id(target)] = "dJ"
        return seed, seed_line

    def _backward_step(self, node: Any, contexts: dict, expected: dict[int, int],
                       source_ids: set[int]) -> str:
        """Write the VJP lines of one node; return its equation for the step page."""
        out = node.output
        c = contexts[id(node)]
        g, _, g_dtype = self.grad[id(out)]
        c.G, c.one = g, (id(out) == id(self.target) and not self.step)
        m = _Context(self, node, [self.math.get(id(x), n) for x, n in zip(node.inputs, c.names)],
                     self.math[id(out)], c.saved)
        m.G, m.one = _wrap(self.gmath[id(out)]), c.one
        local = []
        for i, x in enumerate(node.inputs):
            if not self._gets_gradient(node, c, i, x):
                continue
            c.i = m.i = i
            name = self._term_name(x, expected)
            self._write_vjp(node, c, m, i, x, name, g_dtype)
            m.G = self._symbol(out, contexts)  # this step alone, its G by name
            local.append(f"{self._symbol(x, contexts)} = {self.terms[id(x)][-1][2]}"
                         if "vjps" in c.saved else
                         f"{self._symbol(x, contexts)} = {self._maths(node, m, i, x)}")
            m.G = _wrap(self.gmath[id(out)])
            self._receive(x, expected, source_ids, contexts)
        return ";  ".join(local)

    def _gets_gradient(self, node: Any, c: _Context, i: int, x: Any) -> bool:
        if not isinstance(x, Tensor) or id(x) not in self.live:
            return False
        code = node.op.code
        if "vjps" in c.saved:  # called as recorded: the VJPs it returned then say
            return i < len(node.vjps) and node.vjps[i] is not None
        return i < len(code.vjps) and code.vjps[i] is not None

    def _term_name(self, x: Tensor, expected: dict) -> str:
        base = f"d_{self.code[id(x)]}"
        if expected[id(x)] == 1:
            return self.fresh(base)
        return self.fresh(f"{base}_{len(self.terms.get(id(x), [])) + 1}")

    def _write_vjp(self, node, c, m, i, x, name, g_dtype) -> str:
        """Write input i's gradient term into the code; return it as maths."""
        code = node.op.code
        dtype = np.result_type(g_dtype, node.output.dtype)
        if "vjps" in c.saved:
            self.lines.append(f"{name} = {c.saved['vjps']}[{i}]({c.G})")
            maths = f"VJP of {node.op.name}({m.G})"  # no template: no maths to write out
            self.terms.setdefault(id(x), []).append((name, False, maths, dtype))
            return maths
        template = code.vjps[i]
        c.target = name
        passthrough = template == "{G}"
        rendered = c.G if passthrough else _render(template, c)
        maths = self._maths(node, m, i, x)
        axes = ()
        if node.op.broadcasts and x.shape != node.output.shape:
            axes = broadcast_axes(x.shape, node.output.shape)
        fresh = not passthrough
        if isinstance(rendered, str):
            fresh = fresh and not rendered.startswith(_MAYBE_VIEW) and not rendered.endswith(".T")
            if axes:
                rendered = _reduce(rendered, axes, x.shape, node.output.shape)
                fresh = True
            if passthrough and not axes:
                name = rendered  # a rename: the same array under the name of the term
            else:
                self.lines.append(f"{name} = {rendered}")
        else:
            self.lines.extend(rendered)
            if axes:
                self.lines.append(f"{name} = {_reduce(name, axes, x.shape, node.output.shape)}")
        self.terms.setdefault(id(x), []).append((name, fresh, maths, dtype))
        self.sizes[name] = x.size
        return maths

    def _maths(self, node: Any, m: _Context, i: int, x: Tensor) -> str:
        code = node.op.code
        maths = _render(code.math[i], m) if i < len(code.math) and code.math[i] else "?"
        if node.op.broadcasts and x.shape != node.output.shape:
            axes = broadcast_axes(x.shape, node.output.shape)
            maths = _sum_math(maths, axes, x.shape, node.output.shape)
        return maths

    def _symbol(self, x: Tensor, contexts: dict) -> str:
        key = id(x)
        if key not in self.symbols:
            node = self.producer.get(key)
            delta = contexts[id(node)].saved.get("delta") if node is not None else None
            self.symbols[key] = delta or f"d{self.math[key]}"
        return self.symbols[key]

    def _receive(self, x: Tensor, expected: dict, source_ids: set, contexts: dict) -> None:
        """Once every term of x's gradient is in, sum them and name the result."""
        terms = self.terms[id(x)]
        if len(terms) < expected[id(x)]:
            return
        if len(terms) == 1:
            name, fresh, maths, dtype = terms[0]
        else:
            name = self.fresh(f"d_{self.code[id(x)]}")
            self.lines.append(f"{name} = {' + '.join(t[0] for t in terms)}  # {len(terms)} uses of "
                              f"{self.code[id(x)]}: their gradients add up")
            fresh, dtype = True, np.result_type(*[t[3] for t in terms])
            maths = " + ".join(t[2] for t in terms)
        self.grad[id(x)] = (name, fresh, dtype)
        symbol = self._symbol(x, contexts)
        shown = (id(x) in source_ids or len(terms) > 1 or len(maths) > 48
                 or symbol.startswith("delta") or "VJP of" in maths)
        if shown:
            self.equations.append(f"{symbol} = {maths}")
            self.gmath[id(x)] = symbol
        else:
            self.gmath[id(x)] = maths

    def _compile(self, source: str, name: str):
        """The written function, run from its source with numpy and the traced constants."""
        namespace = {"np": np, **self.consts}
        exec(compile(source, f"<closed form {name}>", "exec"), namespace)
        return namespace[name]

    def _results(self) -> tuple[list[str], list[str]]:
        """What the function returns per source, and (for a step) the updates that end it."""
        returned: set[str] = set()
        results, tail = [], []
        for s in self.sources:
            if id(s) in self.grad:
                name, fresh, dtype = self.grad[id(s)]
                if self.step:
                    tail.append(f"{self.code[id(s)]} += {name}")
                    continue
                if dtype != s.dtype:
                    name = f"{name}.astype(np.{s.dtype.name})"
                elif not fresh or name in returned:
                    name = f"{name}.copy()"  # a view or a name already returned: its own array
                returned.add(name)
                results.append(name)
            elif not self.step:
                results.append(f"np.zeros({s.shape}, dtype=np.{s.dtype.name})")
        return results, tail

    def _assemble(self, args, forward_lines, equations, node_equations) -> _Written:
        out = _Written()
        results, tail = self._results()
        arg_ids = {id(a) for _, a in args}
        if self.step and any(id(s) not in arg_ids for s in self.sources if id(s) in self.grad):
            out.source, out.function = "", None  # an intermediate source has no array to update
            return out
        value = self.code.get(id(self.target))
        if value is None:  # the target is itself a leaf the computation never read
            raise ValueError("closed_form: the target was not recorded on this tape")
        params = [n for n, _ in args] + (["lr"] if self.step else [])
        name = "sgd_step" if self.step else "value_and_gradients"
        if self.step:
            ending = ["", "# the update: each gradient above already carries the factor -lr", *tail,
                      f"return {value}"]
        else:
            result = f"({results[0]},)" if len(results) == 1 else f"({', '.join(results)})"
            ending = [f"return {value}, {result}"]
        forward_lines = self._in_place(forward_lines, self.lines + ending)
        big = {n for n, size in self.sizes.items() if size >= IN_PLACE_MIN_SIZE}
        forward_lines, backward_lines = _free_when_dead([forward_lines, self.lines], ending, big)
        body = ["# forward pass", *forward_lines, "", "# backward pass", *backward_lines, *ending]
        out.source = f"def {name}({', '.join(params)}):\n" + "".join(
            f"    {line}\n" if line else "\n" for line in body)
        out.function = self._compile(out.source, name)
        out.equations = "\n".join(f"- `{e}`" for e in equations) + "\n"
        out.inputs = tuple(n for n, _ in args)
        out.traced = {n: (np.shape(a.value if isinstance(a, Tensor) else a),
                          np.asarray(a.value if isinstance(a, Tensor) else a).dtype) for n, a in args}
        out.leaves = dict(args)
        out.node_equations = node_equations
        return out


_ELEMENTWISE = re.compile(r"^(\w+) = (\w+) ([-+*/]) (.+)$")
_SCALED = re.compile(r"^(\w+) = np\.multiply\((\w+), (.+)\)$")


def _in_place_forward(lines: list[str], later: list[str], fresh: dict[str, tuple]) -> list[str]:
    """Large elementwise steps reuse their input's buffer when nothing reads that input again.

    ``t = xW1 + b1`` becomes ``t = xW1`` and ``t += b1`` when x W1 is a
    multi-megabyte array of the code's own that no later line reads: one
    fresh array (and its page faults) fewer. Small arrays are left alone.
    """
    out = []
    for k, line in enumerate(lines):
        match = _ELEMENTWISE.match(line) or _SCALED.match(line)
        if match:
            result, source = match.group(1), match.group(2)
            operator = match.group(3) if match.re is _ELEMENTWISE else "*"
            operand = match.group(4) if match.re is _ELEMENTWISE else match.group(3)
            info = fresh.get(source)
            word = re.compile(rf"\b{source}\b")
            if (info is not None and fresh.get(result) == info
                    and int(np.prod(info[0])) >= IN_PLACE_MIN_SIZE
                    and not word.search(operand)
                    and not any(word.search(rest) for rest in lines[k + 1:] + later)):
                out += [f"{result} = {source}  # in place: {source} is not read again",
                        f"{result} {operator}= {operand}"]
                continue
        out.append(line)
    return out


def _free_when_dead(blocks: list[list[str]], ending: list[str], big: set[str]) -> list[list[str]]:
    """``del`` each large array right after the last line that reads it.

    A function keeps every local alive until it returns; the tape, by
    contrast, lets go of each value once its VJP has run. Deleting the
    multi-megabyte names once dead brings the generated step's peak memory
    below the hand-written one's.
    """
    lines = [line for block in blocks for line in block]
    last: dict[str, int] = {}
    for k, line in enumerate(lines):
        for name in big.intersection(re.findall(r"\b\w+\b", line)):
            last[name] = k
    kept = set(re.findall(r"\b\w+\b", " ".join(ending)))
    dead_after: dict[int, list[str]] = {}
    for name, k in last.items():
        if name not in kept:  # renamed ones too: the old name would keep the buffer alive
            dead_after.setdefault(k, []).append(name)
    out, k = [], 0
    for block in blocks:
        new = []
        for line in block:
            new.append(line)
            if k in dead_after:
                new.append(f"del {', '.join(sorted(dead_after[k]))}  # not read again: free it now")
            k += 1
        out.append(new)
    return out


def _reduce(expr: str, axes: tuple[int, ...], shape: tuple, out_shape: tuple) -> str:
    """The adjoint of a broadcast, with the axes fixed from the traced shapes."""
    axis = axes[0] if len(axes) == 1 else axes
    summed = f"np.add.reduce({expr}, axis={axis})"
    kept = tuple(n for i, n in enumerate(out_shape) if i not in axes)
    return summed if kept == tuple(shape) else f"{summed}.reshape({tuple(shape)})"


def _sum_math(maths: str, axes: tuple[int, ...], shape: tuple, out_shape: tuple) -> str:
    if axes == (0,) and len(out_shape) == 2 and len(shape) == 1:
        return f"column sums of {maths}"
    return f"Σ over axes {axes} of {_wrap(maths)}"


def _end_of(nodes: Sequence[Any], target: Tensor, sources: list) -> int:
    for k in range(len(nodes) - 1, -1, -1):
        if nodes[k].output is target:
            return k + 1
    raise ValueError("closed_form: the target was not recorded on this tape; compute it inside "
                     "'with tape:' (and from Tensors, not plain arrays)")


# Per op, read once from its forward's signature (weakly held: user primitives come and go).
_PARAMS: "weakref.WeakKeyDictionary[Any, list[str]]" = weakref.WeakKeyDictionary()


def _param_name(op: Any, pos: int) -> str:
    """A name for an unnamed leaf: the op's parameter name when it says something, else x."""
    names = _PARAMS.get(op)
    if names is None:
        names = _PARAMS[op] = [p.name for p in inspect.signature(op.forward).parameters.values()
                                   if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    name = names[min(pos, len(names) - 1)] if names else "x"
    return name if len(name) > 1 and name not in ("operands", "axes", "shape") else "x"


_DEFAULTS: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def _defaults(op: Any) -> dict[str, Any]:
    """The op's keyword parameters left at their defaults, which a template also needs."""
    found = _DEFAULTS.get(op)
    if found is None:
        found = _DEFAULTS[op] = {
            p.name: p.default for p in inspect.signature(op.forward).parameters.values()
            if p.default is not p.empty}
    return found


def _tape_closed_form(self: Tape, target: Tensor, sources: Any) -> ClosedForm:
    """The recorded computation written out as numpy code and equations.

    Returns an ``mt.ClosedForm``: ``.source`` (a plain numpy function, the
    forward then the backward pass), ``.equations`` (the backward pass in
    the derivation's notation) and a callable that reruns it on new arrays
    of the same shapes: ``value, grads = cf(x=new_x)``.
    """
    if self.spent:
        raise RuntimeError("closed_form: this tape was made with persistent=False and has "
                           "already answered, so its record is gone; record with mt.Tape()")
    return closed_form(self.nodes, target, sources)


# Set here, above the ops the writer reads, so that tape.py imports nothing above it.
Tape.closed_form = _tape_closed_form
