"""Assertions for your own tests: the tape against your formula, or your VJP against slopes.

    from microtape.testing import assert_gradients_close, assert_vjp_matches

    def test_my_loss_gradient():
        assert_gradients_close(my_loss, {"W": W, "b": b}, {"W": my_dW, "b": my_db})

    def test_my_op():
        assert_vjp_matches(my_op, [x, y])

Both raise AssertionError (pytest shows it as a failed test) with one block
naming the input, its worst element's index, the two values there and their
relative error.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .gradient_checking import (DEFAULT_MAX_ELEMENTS, compare_elements, compare_with_differences,
                                float64_copy, mismatch_message)
from .tape import Tape, no_grad
from .tensor import Tensor
from .validation import check_setting

__all__ = ["assert_gradients_close", "assert_vjp_matches"]


def assert_gradients_close(f: Callable[..., Tensor], inputs: Sequence[Any] | Mapping[str, Any],
                           expected: Sequence[Any] | Mapping[str, Any], rtol: float = 1e-7,
                           atol: float = 1e-10) -> list[np.ndarray] | dict[str, np.ndarray]:
    """Assert that the tape's gradients of ``f`` at ``inputs`` equal ``expected``.

    ``f(*inputs)`` (or ``f(**inputs)`` for a dict) returns a 0-d Tensor, a
    loss. ``expected`` holds your gradients, one array per input, as a list
    in the same order or a dict with the same keys. An element passes when
    ``|tape − expected| <= atol + rtol·|expected|``. Returns the tape's
    gradients (a list or a dict, like ``inputs``) for further checks.
    """
    rtol = check_setting("assert_gradients_close", "rtol", rtol, 0.0)
    atol = check_setting("assert_gradients_close", "atol", atol, 0.0)
    keyed = isinstance(inputs, Mapping)
    names, values, wanted = _paired(inputs, expected)
    tensors = [v if isinstance(v, Tensor) else Tensor(np.asarray(v, dtype=np.float64), name=n)
               for v, n in zip(values, names)]
    with Tape(persistent=False) as tape:
        out = f(**dict(zip(inputs.keys(), tensors))) if keyed else f(*tensors)
    if not isinstance(out, Tensor) or out.size != 1:
        raise TypeError("assert_gradients_close: f must return a Tensor with a single element "
                        "(the loss)")
    grads = tape.gradient(out, tensors)

    for name, g, e in zip(names, grads, wanted):
        if g.shape != e.shape:
            raise AssertionError(
                f"the gradient of {name} has shape {g.shape} but the expected array has shape "
                f"{e.shape}")
        check = compare_elements(name, g.shape, np.arange(g.size),
                                 np.asarray(g, np.float64).reshape(-1),
                                 np.asarray(e, np.float64).reshape(-1), rtol, atol)
        if not check.passed:
            raise AssertionError(mismatch_message(
                f"the tape's gradient of {name} differs from the expected one", check,
                expected="expected", rtol=rtol, atol=atol))
    return dict(zip(inputs.keys(), grads)) if keyed else grads


def _paired(inputs: Sequence[Any] | Mapping[str, Any], expected: Sequence[Any] | Mapping[str, Any]
            ) -> tuple[list[str], list[Any], list[np.ndarray]]:
    """Each input's name, its value and the expected gradient, in the inputs' order."""
    keyed = isinstance(inputs, Mapping)
    names = [str(k) for k in inputs] if keyed else [
        getattr(v, "name", None) or f"input {i}" for i, v in enumerate(inputs)]
    values = list(inputs.values()) if keyed else list(inputs)
    if keyed != isinstance(expected, Mapping) or len(expected) != len(values) or (
            keyed and set(map(str, expected)) != set(names)):
        want = f"a dict with keys {names}" if keyed else f"a list of {len(values)} arrays"
        got = (f"a dict with keys {[str(k) for k in expected]}" if isinstance(expected, Mapping)
               else f"{len(expected)} arrays")
        raise TypeError(f"assert_gradients_close: expected must match inputs, {want}; got {got}")
    wanted = [np.asarray(e) for e in (map(expected.__getitem__, inputs) if keyed else expected)]
    return names, values, wanted


def assert_vjp_matches(op: Callable[..., Tensor], inputs: Sequence[Any], rtol: float = 1e-5,
                       atol: float = 1e-8, eps: float = 1e-6, seed: int = 0,
                       max_elements: int | None = DEFAULT_MAX_ELEMENTS) -> None:
    """Assert that ``op``'s VJP agrees with central finite differences at ``inputs``.

    ``op(*tensors)`` returns a Tensor of any shape; every input is
    differentiated (wrap extra arguments in a lambda:
    ``lambda v: my_loss(v, labels)``). The VJP is applied to a random output
    gradient ``G`` (drawn with ``seed``), so every element of the Jacobian
    counts, and compared with the slope of ``Σ G ∘ op(inputs)``, in float64,
    at up to ``max_elements`` elements of each input.
    """
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"assert_vjp_matches: inputs must be a list of op's operands, e.g. [x], "
                        f"not {type(inputs).__name__}")
    arrays = [float64_copy(v) for v in inputs]
    names = [getattr(v, "name", None) or f"input {i}" for i, v in enumerate(inputs)]
    tensors = [Tensor(a.copy(), name=n) for a, n in zip(arrays, names)]
    with Tape(persistent=False) as tape:
        out = op(*tensors)
    if not isinstance(out, Tensor):
        raise TypeError(f"assert_vjp_matches: op must return a Tensor, not {type(out).__name__}")
    cotangent = np.random.default_rng(seed).normal(size=out.shape)
    analytic = tape.gradient(out, tensors, seed=cotangent)

    def value(xs: list[np.ndarray]) -> float:
        with no_grad():
            return float(np.sum(cotangent * op(*[Tensor(x) for x in xs]).value))

    name = getattr(op, "name", None) or getattr(op, "__name__", "op")
    name = "op" if name == "<lambda>" else name
    # Raises GradcheckError, an AssertionError, with the one-block message.
    compare_with_differences(f"assert_vjp_matches({name})", value, names, arrays, analytic,
                             eps=eps, rtol=rtol, atol=atol, max_elements=max_elements,
                             seed=seed, progress=None)
