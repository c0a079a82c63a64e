"""The grads run on an abstract G (its shape and dtype only) write the same code as on a seed of ones.

derive.py records each VJP by running the op's grads once; G is
``closed_form.abstract.Abstract``, so the full-size arithmetic on it is
never done. These tests hold that run to the run on a seed of ones, which
the closed form made before, on every op case of the one table: the same
ops on the same shapes, dtypes, params and constants, and closed forms whose
code, equations and held constants are the same.
"""

from __future__ import annotations

import numpy as np
import pytest

import microtape as mt
from microtape.closed_form import closed_form
from microtape.closed_form import derive as derive_module
from microtape.closed_form.abstract import Abstract, SHAPES_DECIDE
from microtape.tensor import Tensor
from tests.op_cases import op_cases

pytestmark = pytest.mark.skipif(not SHAPES_DECIDE, reason="numpy 1.x: the grads run on ones")


def _recorded(call, rng, dtype):
    with mt.Tape() as tape:
        out, sources = call()
        weights = rng.normal(size=out.shape).astype(dtype)
        target = out if out.ndim == 0 else mt.sum(mt.mul(out, weights))
    return tape, target, sources


def _vjps(tape):
    """Every (node, input index) whose VJP the closed form may derive from the op's grads."""
    for node in tape.nodes:
        grads = node.op.grads
        for i, x in enumerate(node.inputs):
            if isinstance(x, Tensor) and node.vjps[i] is not None and grads is not None and (
                    callable(grads) or i < len(grads) and grads[i] is not None):
                yield node, i


def _described(node, run):
    """What the printers read of a run: each op, its params, and each operand as a role,
    a shape and a dtype (and the numbers, for an array the grads made themselves)."""
    g, result, nodes = run
    roles = {id(g): "G", id(node.output): "C"}
    roles.update((id(x), f"input {k}") for k, x in enumerate(node.inputs))
    lines = []
    for j, sub in enumerate(nodes):
        operands = []
        for x in sub.inputs:
            if id(x) in roles:
                operands.append(roles[id(x)])
            elif isinstance(x, (Tensor, np.ndarray)):
                v = x.value if isinstance(x, Tensor) else x
                assert not isinstance(v, Abstract), (sub.op.name, "a constant made from G's numbers")
                operands.append(("made", v.shape, v.dtype.str, v.tobytes(), getattr(x, "name", None)))
            else:
                operands.append(repr(x))
        out = sub.output
        lines.append((sub.op.name, repr(sorted(sub.params.items())), operands, out.shape,
                      out.dtype.str, out.name))
        roles[id(out)] = f"op {j}"
    return lines, roles[id(result)] if id(result) in roles else type(result).__name__


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_op_cases_grads_record_the_same_ops_on_an_abstract_g_as_on_ones(dtype):
    rng = np.random.default_rng(5)
    for name, call in op_cases(rng, dtype):
        tape, _, _ = _recorded(call, rng, dtype)
        for node, i in _vjps(tape):
            shape, out_dtype = node.output.shape, node.output.dtype
            abstract = derive_module._abstract_run(node, i)
            assert abstract is not None, (name, node.op.name, i)  # no case needs G's numbers
            assert isinstance(abstract[0].value, Abstract)
            ones = derive_module._run(node, i, np.ones(shape, out_dtype), mt.Tape)
            assert _described(node, abstract) == _described(node, ones), (name, node.op.name, i)


def _printed(cf):
    """Everything a closed form prints or holds: its sources, equations and constants."""
    held = {k: v for k, v in cf.function.__globals__.items()
            if k.startswith("_") and not callable(v) and k != "__builtins__"}
    return cf.source, cf.fast_source, cf.step_source, cf.equations, held


def _same(a, b, name):
    assert a[:4] == b[:4], name
    assert a[4].keys() == b[4].keys(), name
    for key, value in a[4].items():
        other = b[4][key]
        if isinstance(value, np.ndarray):
            assert value.dtype == other.dtype and np.array_equal(value, other), (name, key)
        else:
            assert repr(value) == repr(other), (name, key)


def _on_abstract_and_on_ones(build, monkeypatch):
    """What ``build()`` prints with every VJP derived on an abstract G, and on a seed of ones."""
    monkeypatch.setattr(derive_module, "ABSTRACT_MIN_SIZE", 0)  # small arrays too
    abstract = _printed(build())
    monkeypatch.setattr(derive_module, "SHAPES_DECIDE", False)
    ones = _printed(build())
    monkeypatch.undo()
    return abstract, ones


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_op_cases_closed_form_prints_the_same_as_when_the_grads_ran_on_ones(dtype, monkeypatch):
    rng = np.random.default_rng(6)
    for name, call in op_cases(rng, dtype):
        tape, target, sources = _recorded(call, rng, dtype)
        for fast in (True, False):
            _same(*_on_abstract_and_on_ones(
                lambda: closed_form(tape.nodes, target, sources, fast_vjps=fast), monkeypatch), name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_two_layer_step_and_its_recorded_second_pass_print_the_same_as_on_ones(dtype, monkeypatch):
    from models import TwoLayerNet
    net = TwoLayerNet(30, 20, 4, seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(16, 30)).astype(dtype), rng.integers(0, 4, 16)
    for reduction in ("mean", "sum"):
        with mt.Tape() as tape:
            J = net.loss(x, labels, reduction=reduction)
            grads = tape.gradient(J, net.params, create_graph=True)
            K = mt.sum(mt.mul(grads["W1"], grads["W1"]))
        for target in (J, K):
            _same(*_on_abstract_and_on_ones(lambda: tape.closed_form(target, net.params),
                                            monkeypatch), reduction)


def test_only_the_vjps_of_large_arrays_run_on_an_abstract_g():
    rng = np.random.default_rng(1)
    small, large = (mt.Tensor(rng.normal(size=(n, n))) for n in (10, 70))
    with mt.Tape() as tape:
        J = mt.add(mt.sum(mt.matmul(small, small)), mt.sum(mt.matmul(large, large)))
    ran_on = {node.inputs[0].shape: type(derive_module.derive(node, 0).g.value)
              for node in tape.nodes if node.op.name == "matmul"}
    assert ran_on == {(10, 10): np.ndarray, (70, 70): Abstract}


@mt.primitive("dA = G · (the number of G's elements)",
              code=mt.Code("{A} * 1.0", math="{A}"),
              grads=(lambda g, c, a: mt.mul(g, float(np.sum(g.value))),))
def _counted(a):
    """An op whose grads read a number of G (which grads should not): they run on ones instead."""
    return a * 1.0


def test_grads_that_read_gs_numbers_run_on_ones_and_print_what_they_read_there(monkeypatch):
    a = mt.Tensor(np.arange(6.0).reshape(2, 3), name="a")
    with mt.Tape() as tape:
        J = mt.sum(mt.mul(_counted(a), a))
    node = tape.nodes[0]
    assert derive_module._abstract_run(node, 0) is None  # the sum of an abstract G has no number
    abstract, ones = _on_abstract_and_on_ones(lambda: tape.closed_form(J, a), monkeypatch)
    assert "* 6.0" in abstract[0]
    _same(abstract, ones, "counted")


def test_an_abstract_array_answers_shapes_and_dtypes_by_numpys_rules_without_numbers():
    a = Abstract.of((2, 1, 3), np.dtype(np.float32))
    stack, b = Abstract.of((2, 1, 4, 3), np.dtype(np.float32)), np.ones((5, 3, 2), np.float64)
    assert isinstance(stack @ b, Abstract) and (stack @ b).shape == (2, 5, 4, 2)
    assert (stack @ b).dtype == np.float64
    assert (a * 2.0).dtype == np.float32 and (a * 2.0).shape == (2, 1, 3)
    assert (a + np.ones(4)[:, None, None, None]).shape == (4, 2, 1, 3)
    for axis, keepdims, shape in ((None, False, ()), (0, False, (1, 3)), ((0, 2), True, (1, 1, 1)),
                                  (-1, False, (2, 1))):
        summed = np.sum(a, axis=axis, keepdims=keepdims)
        assert summed.shape == shape and summed.dtype == np.float32
    assert np.sum(np.equal(a, 0.0)).dtype == np.sum(np.zeros(3, bool)).dtype
    for vector, matrix in (((3,), (3, 4)), ((4, 3), (3,)), ((3,), (3,)), ((3,), (2, 3, 4))):
        assert (Abstract.of(vector, np.dtype(np.float64)) @ np.ones(matrix)).shape == (
            np.ones(vector) @ np.ones(matrix)).shape
    with pytest.raises(ValueError):
        Abstract.of((2, 3), np.dtype(np.float64)) @ np.ones((2, 3))
    for read in (float, bool, lambda x: x.item(), lambda x: x[0, 0, 0], list):
        with pytest.raises(TypeError):
            read(np.sum(a, axis=1, keepdims=True)) if read is not list else read(a)
