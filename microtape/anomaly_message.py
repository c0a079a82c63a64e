"""What an anomaly says: the bad element, the operands' values there, a hint.

``anomaly.py`` finds the op; this module builds its ``mt.AnomalyError``. Each
operand is labelled as the op's VJP formula names it (``A`` and ``p`` for
pow), the output ``C`` (or the formula's ``S`` or ``T``), its gradient ``G``.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import re
from typing import Any

import numpy as np

from .errors import AnomalyError
from .tape import _active
from .tensor import Tensor

DRAW = 'viz.render_anomaly(err, "anomaly.svg")'

# Unary ops whose output element i depends on input element i alone.
_ELEMENTWISE = frozenset({"neg", "exp", "log", "tanh", "sigmoid", "relu", "stop_gradient",
                          "is_positive", "abs", "sqrt", "sign", "heaviside"})


def forward_error(node, mode, tape) -> AnomalyError:
    """The op made a bad output, or (if an input was bad already) was the first to read it."""
    for i, x in enumerate(node.inputs):
        if not clean(x, mode):
            return _input_error(node, i, mode, tape)
    out = node.output.value
    index, kind = _first_bad(out, mode)
    values = _values(node, index)
    where = _shown(values, index, node)
    head = (f"{node.op.name} made {kind} in the forward pass: {_out_label(node)}{_at(index)} = "
            f"{_num(out[index])}, from inputs that hold none")
    return _error(head, where, node, "forward", kind, index, None, mode, tape, None, values)


def _input_error(node, i: int, mode, tape) -> AnomalyError:
    x = node.inputs[i]
    a = np.asarray(x.value if isinstance(x, Tensor) else x)
    index, kind = _first_bad(a, mode)
    name = x.name if isinstance(x, Tensor) else None
    label = input_labels(node)[i]
    called = f"{label}, {name!r}" if name else label
    n = operand_positions(node).index(i)  # einsum's subscripts are no input
    head = (f"{node.op.name} read an input that already holds {kind}: input {n} ({called}) is "
            f"{_num(a[index])} at {list(index)}. No op in anomaly mode made it: it is data, a "
            f"parameter, a constant, or was computed outside the mode; check where it comes from")
    values = {label: float(a[index])}
    return _error(head, "", node, "forward", kind, index, n, mode, tape, None, values,
                  input_name=name)


def backward_error(node, i: int, g, dx, mode, tape, target) -> AnomalyError:
    """The VJP of input ``i`` returned a bad value from a good G and good operands."""
    dx = np.asarray(dx)
    index, kind = _first_bad(dx, mode)
    g = np.broadcast_to(_value(g), node.output.value.shape)
    out_index = _out_index(node, i, index, g, mode)
    values = _values(node, out_index)
    where = _shown(values, out_index, node)
    if out_index is not None:
        values["G"] = float(g[out_index])
        where += f", G{_at(out_index)} = {_num(values['G'])}"
    label = input_labels(node)[i]
    x = node.inputs[i]
    name = x.name if isinstance(x, Tensor) else None
    named = f", {name!r}" if name else ""
    n = operand_positions(node).index(i)  # einsum's subscripts are no input
    head = (f"{node.op.name} made {kind} in the backward pass: its VJP gave d{label}{_at(index)} "
            f"= {_num(dx[index])} (the gradient of input {n}{named}) from a finite G")
    return _error(head, where, node, "backward", kind, index, n, mode, tape, target, values,
                  input_name=name)


def gradient_error(node, g, mode, tape, target, seed: bool = False) -> AnomalyError:
    """A bad gradient no VJP made alone: the seed, or a sum of finite ones that overflowed."""
    g = np.asarray(g)
    index, kind = _first_bad(g, mode)
    if seed:
        head = (f"the seed of the backward pass (the gradient of the output of {node.op.name}) "
                f"holds {kind} at {list(index)}; pass a finite seed")
    else:
        head = (f"the gradients of an input of {node.op.name} and of its other uses, each "
                f"finite, summed to {kind} at {list(index)} in the backward pass: the values "
                f"are too large; lower the learning rate or rescale the inputs")
    return _error(head, "", node, "backward", kind, index, None, mode, tape, target,
                  {"G": float(g[index])})


def _error(head: str, where: str, node, phase: str, kind: str, index: tuple, i, mode, tape,
           target, values: dict, input_name: str | None = None) -> AnomalyError:
    source = _source(node)
    lines = [head]
    if source:
        lines.append(f"  called at {source}")
    lines.append(f"  VJP: {node.op.formula}")
    if where:
        lines.append(f"  values there: {where}")
    hint = _hint(node.op.name, phase, values, kind)
    if hint:
        lines.append(f"  hint: {hint}")
    lines.append(f"  to draw it: {DRAW}")
    return AnomalyError("\n".join(lines), op=node.op.name, phase=phase, kind=kind,
                        index=tuple(int(k) for k in index), input=i, input_name=input_name,
                        source=source, tape=tape, node=node, target=target,
                        formula=node.op.formula, values=values)


def _hint(op: str, phase: str, v: dict, kind: str) -> str:
    a, b, g = v.get("A"), v.get("B"), v.get("G")
    if op == "log" and a is not None and a <= 0:
        what = "0" if a == 0 else "a negative number"
        return (f"log of {what}; keep its argument positive (log(x + eps)), or compute the loss "
                f"from logits with softmax_cross_entropy")
    if op == "div" and b == 0:
        return "division by 0; keep the divisor away from 0 (x / (y + eps))"
    if op == "pow" and a is not None and v.get("p") is not None:
        if a == 0 and v["p"] < 1:
            return ("pow at 0 with p < 1: p A^(p−1) is infinite there; keep A away from 0 "
                    "((x + eps) ** p)")
        # ±inf is no integer, and int() of it raises: test integrality of finite p only
        if a < 0 and math.isfinite(v["p"]) and v["p"] != int(v["p"]):
            return "a negative number to a non-integer power is NaN"
        if a < 0 and phase == "backward":  # even to an integer power: dp holds log A
            return ("a negative base has no log, and the exponent's gradient dp = G ∘ C ∘ log A "
                    "needs it; keep the base positive, or pass the exponent as a number if it "
                    "needs no gradient")
    if op == "exp" and phase == "forward" and kind == "Inf":
        return ("exp overflowed; to turn scores into probabilities and a loss, compute the loss "
                "from logits with softmax_cross_entropy")
    operands = [x for x in (a, b, v.get("p"), g) if x is not None]
    if any(x == 0 for x in operands) and any(np.isinf(x) for x in operands):
        return "0 · inf is NaN: one factor is 0 and another infinite"
    return ""


# -- the bad element and the operands' values there ------------------------------

def clean(a: Any, mode) -> bool:
    """Whether ``a`` holds no value the mode forbids (NaN; and ±Inf unless ``inf=False``)."""
    if type(a) is not np.ndarray:
        if isinstance(a, Tensor):
            a = a.value
        elif isinstance(a, (float, int, list, np.generic)):
            a = np.asarray(a)
        else:
            return True  # an index, an axis, an einsum spec: not a value
    if a.dtype.kind != "f":
        return True  # ints, bools and index arrays cannot hold NaN or Inf
    # A mask, not a sum: summing warns when finite values overflow it (and for +inf
    # with -inf), and the warning would be restated as the user's op's. Under
    # np.errstate a sum costs more than the mask, which is no slower on large arrays.
    if mode.inf:
        return bool(np.isfinite(a).all())
    return not np.isnan(a).any()


def _first_bad(a: np.ndarray, mode) -> tuple[tuple, str]:
    bad = _bad(a, mode)
    index = tuple(int(k) for k in np.unravel_index(int(np.argmax(bad)), a.shape)) if a.ndim else ()
    return index, "NaN" if np.isnan(a[index]) else "Inf"


def _bad(a: np.ndarray, mode) -> np.ndarray:
    return np.isnan(a) if not mode.inf else ~np.isfinite(a)


_GRAD_OF = re.compile(r"\bd([A-Za-z]\w*)\s*=")


def input_labels(node) -> list[str]:
    """What the message and the drawing call each of ``node``'s inputs, by position.

    The formula's name for each input it differentiates, in order (``dA``,
    ``dp``, ``dlo``; ``dA_i`` numbers them ``A_0``, ``A_1``, ...), else the
    parameter's name in the op's signature (``condition``, ``labels``),
    else ``arg k``, k counting operands as ``AnomalyError.input`` does.
    """
    names = _GRAD_OF.findall(node.op.formula)
    named = {}
    for k, i in enumerate(formula_inputs(node)):
        if len(names) == 1 and names[0].endswith("_i"):  # one formula for every operand
            named[i] = f"{names[0][:-2]}_{k}"
        elif k < len(names):
            named[i] = names[k]
    params = parameter_names(node.op)
    operands = operand_positions(node)
    return [named.get(i) or (params[i] if i < len(params) else
                             f"arg {operands.index(i) if i in operands else i}")
            for i in range(len(node.inputs))]


def operand_positions(node) -> list[int]:
    """The positions in ``node.inputs`` of the op's operands, the inputs the message counts:
    all but a spec such as einsum's subscripts string, which is no value."""
    return [i for i, x in enumerate(node.inputs) if not isinstance(x, str)]


def formula_inputs(node) -> list[int]:
    """The positions of the inputs the formula's ``dX =`` parts belong to, in order: the
    operands the op differentiates (where's condition gets no gradient, so ``da`` is the
    gradient of input 1)."""
    grads = node.op.grads
    declared = isinstance(grads, (tuple, list))  # else one grads for all, or numpy VJPs only
    return [i for i in operand_positions(node)
            if not declared or (i < len(grads) and grads[i] is not None)]


@functools.lru_cache(maxsize=256)
def parameter_names(op: Any) -> tuple[str, ...]:
    """The positional parameter names of an op's forward (``logits``, ``labels``)."""
    try:
        return tuple(p.name for p in inspect.signature(op).parameters.values()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    except (TypeError, ValueError):
        return ()


def _out_label(node) -> str:
    saved = re.search(r"saved output (\w)", node.op.formula)
    return saved.group(1) if saved else "C"


def _elementwise(node) -> bool:
    return node.op.broadcasts or node.op.name in _ELEMENTWISE


def _out_index(node, i: int, index: tuple, g: np.ndarray, mode) -> tuple | None:
    """An output element that input ``i``'s element ``index`` fed, and whose own term of
    the VJP is bad: along the axes the input was broadcast along, its gradient sums many
    output elements' terms, and most of them may be fine."""
    if not _elementwise(node):
        return None
    out_shape = node.output.value.shape
    lead = len(out_shape) - len(index)
    shape = np.shape(_value(node.inputs[i]))
    spread = [k < lead or (shape[k - lead] == 1 and n != 1) for k, n in enumerate(out_shape)]
    at = [slice(None) if s else index[k - lead] for k, s in enumerate(spread)]
    terms = _terms(node, i, g) if any(spread) else None
    bad = np.zeros(1, bool) if terms is None else _bad(terms[tuple(at)], mode)
    found = iter(np.unravel_index(int(np.argmax(bad)), bad.shape) if bad.any() else ())
    return tuple(int(next(found, 0)) if s else k for s, k in zip(spread, at))


def _terms(node, i: int, g: np.ndarray) -> np.ndarray | None:
    """Input ``i``'s VJP with one term per output element, not yet summed over the axes
    it was broadcast along: the op's grads, run on that input stretched to the output's
    shape. None for an op without grads in ops (its numpy VJPs sum as they go)."""
    try:
        grad = node.op.differentiable_vjp(i)
    except (TypeError, IndexError):
        return None
    inputs = list(node.inputs)
    inputs[i] = np.broadcast_to(_value(inputs[i]), g.shape).copy()
    token = _active.set(())  # neither recorded nor checked: the mode is telling what it found
    try:
        with np.errstate(all="ignore"):
            d = grad(Tensor(np.array(g)), node.output, *inputs, **node.params)
    except Exception:  # a grads that cannot take the stretched input: say less, not fail
        return None
    finally:
        _active.reset(token)
    d = _value(d)
    return d if np.shape(d) == g.shape else None


def _values(node, out_index: tuple | None) -> dict:
    """Each operand's value at the output element ``out_index`` (scalars always)."""
    values = {}
    for label, x in zip(input_labels(node), node.inputs):
        a = _value(x)
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiub":
            continue
        if a.size == 1:
            values[label] = float(a.reshape(()))
        elif out_index is not None and _elementwise(node):
            values[label] = float(a[_operand_index(a.shape, out_index)])
    if out_index is not None and node.output.value.ndim == len(out_index):
        values[_out_label(node)] = float(node.output.value[out_index])
    return values


def _shown(values: dict, out_index: tuple | None, node) -> str:
    shapes = {label: np.shape(_value(x)) for label, x in zip(input_labels(node), node.inputs)}
    shapes[_out_label(node)] = node.output.value.shape
    parts = []
    for label, v in values.items():
        shape = shapes.get(label, ())
        at = _at(_operand_index(shape, out_index)) if out_index is not None and shape else ""
        parts.append(f"{label}{at} = {_num(v)}")
    return ", ".join(parts)


def _operand_index(shape: tuple, out_index: tuple) -> tuple:
    """``out_index`` brought to an operand of ``shape`` that numpy broadcast to the output."""
    tail = out_index[len(out_index) - len(shape):] if shape else ()
    return tuple(0 if n == 1 else k for k, n in zip(tail, shape))


def _value(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.value
    return np.asarray(x) if isinstance(x, (int, float, list, np.generic)) else x


def _at(index: tuple) -> str:
    return f"[{', '.join(map(str, index))}]" if index else ""


def _num(x: Any) -> str:
    return f"{float(x):.6g}"


def _source(node) -> str | None:
    where = getattr(node, "source", None)
    if where is None:
        return None
    path, line = where
    try:
        shown = os.path.relpath(path)
        path = path if shown.startswith("..") else shown
    except ValueError:  # another drive, on Windows
        pass
    return f"{path}:{line}"
