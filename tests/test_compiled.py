"""value_and_grad(..., compile=True) held to eager (compile=False) where users leave the tape.

Each test here once failed silently: a value computed off the tape, an index
or an argument's identity baked into the closed form at the first call.
Eager is the reference throughout.
"""

from __future__ import annotations

import copy
import re
import threading
import time

import numpy as np
import pytest

import microtape as mt


def _both(f, argnums=0):
    return mt.value_and_grad(f, argnums, compile=True), mt.value_and_grad(f, argnums)


def _same(got, want):
    """(value, gradients) pairs equal to 1e-12, types and shapes included."""
    (v1, g1), (v2, g2) = got, want
    assert type(v1) is np.ndarray and v1.shape == np.shape(v2)
    np.testing.assert_allclose(v1, v2, rtol=1e-12, atol=1e-12)
    g1, g2 = (g1, g2) if isinstance(g2, tuple) else ((g1,), (g2,))
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2):
        assert type(a) is np.ndarray and a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def _agree(f, calls, argnums=0):
    """Compiled and eager give the same answers on every call in turn."""
    compiled, eager = _both(f, argnums)
    for args in calls:
        _same(compiled(*args), eager(*args))
    return compiled


_rng = np.random.default_rng(0)
W, W2 = _rng.normal(size=3), _rng.normal(size=3)
X, X2 = _rng.normal(size=(4, 3)), _rng.normal(size=(4, 3))


# -- values computed off the tape ---------------------------------------------------------

def test_an_op_on_data_alone_is_computed_from_each_call():
    _agree(lambda w, x: mt.sum(w * mt.mean(x)), [(W, X), (W, X2), (W2, X2)])
    _agree(lambda w, x: mt.sum(mt.tanh(x) @ w), [(W, X), (W, X2)])


@pytest.mark.parametrize("stop", [mt.stop_gradient, lambda t: t.detach()], ids=["stop_gradient", "detach"])
def test_stop_gradient_and_detach_of_a_traced_value_are_not_frozen(stop):
    _agree(lambda w, x: mt.sum(w * stop(mt.mean(x, axis=0) * w)), [(W, X), (W2, X), (W2, X2)])
    _agree(lambda w: mt.sum(w * stop(w)), [(W,), (W2,)])


def test_closed_form_computes_data_only_ops_from_its_arguments():
    w = mt.Tensor(W, name="W")
    x = X.copy()
    with mt.Tape() as tape:
        y = mt.sum(mt.tanh(x) @ w)
    cf = tape.closed_form(y, w)
    assert cf.inputs == ("x", "W") and "np.tanh(x)" in cf.source
    value, grad = cf(x=X2)
    np.testing.assert_allclose(value, np.tanh(X2).sum(axis=0) @ W)
    np.testing.assert_allclose(grad, np.tanh(X2).sum(axis=0))


def test_closed_form_of_w_times_its_stopped_self_takes_one_w():
    w = mt.Tensor(W, name="w")
    with mt.Tape() as tape:
        y = mt.sum(w * mt.stop_gradient(w))
    cf = tape.closed_form(y, w)
    assert cf.inputs == ("w",)
    value, grad = cf(w=W2)
    np.testing.assert_allclose(value, W2 @ W2)
    np.testing.assert_allclose(grad, W2)  # the stopped factor: no gradient through it


@pytest.mark.parametrize("leave", [
    np.asarray, np.array, np.float64, np.float32, copy.deepcopy, copy.copy,
    lambda t: np.exp(np.asarray(t))], ids=["asarray", "array", "float64", "float32", "deepcopy",
                                          "copy", "asarray inside numpy"])
def test_taking_a_traced_value_off_the_tape_raises_trace_error(leave):
    def f(w):
        s = mt.sum(w * w)
        return s * leave(s)

    with pytest.raises(mt.TraceError, match="leaves the tape.*mt.stop_gradient"):
        mt.grad(f, compile=True)(W)
    t = mt.Tensor(W, name="w")  # outside a trace: as before
    assert np.asarray(t) is t.value and float(np.float64(mt.Tensor(2.0))) == 2.0
    assert copy.deepcopy(t).value is not t.value and copy.deepcopy(t).name == "w"
    assert copy.copy(t).value is t.value


def test_no_grad_inside_a_compiled_function_raises_trace_error():
    def f(w):
        with mt.no_grad():
            scale = mt.sum(w)
        return mt.sum(w * scale)

    with pytest.raises(mt.TraceError, match="no_grad.*mt.stop_gradient"):
        mt.grad(f, compile=True)(W)
    _same(mt.value_and_grad(f)(W), mt.value_and_grad(lambda w: mt.sum(w * W.sum()))(W))


@pytest.mark.parametrize("compile_inner", [False, True])
def test_a_gradient_inside_a_compiled_function_raises_trace_error(compile_inner):
    inner = mt.grad(lambda w: mt.sum(w * w), compile=compile_inner)
    inner(W)  # a compiled inner one has its closed form ready: it would not even record

    def f(w):
        return mt.sum(w * inner(w))

    with pytest.raises(mt.TraceError, match="grad.*derivatives of derivatives"):
        mt.grad(f, compile=True)(W)
    if compile_inner:  # its arrays would be constants to the outer tape: refused, not wrong
        with pytest.raises(mt.TraceError, match="tape records.*derivatives of derivatives"):
            mt.grad(f)(W)
    else:  # eager: the inner gradient 2w is recorded, so d/dw Σ w ∘ 2w = 4w
        np.testing.assert_allclose(mt.grad(f)(W), 4 * W)


# -- what the signature holds, and what is bound at each call ----------------------------------

def test_index_arguments_are_not_baked():
    f = lambda w, idx: mt.sum(w[idx] * w[idx])  # noqa: E731
    _agree(f, [(W, [0, 1]), (W, [2, 1]), (W, np.array([0, 1])), (W, np.array([2, 2])),
               (W, np.array(0)), (W, np.array(2)), (W2, np.array(2)), (W, 1), (W, 2),
               (W, np.array([True, False, True])), (W, np.array([False, True, True]))])
    _agree(lambda w, i, j: mt.sum(w[i, j]), [(X, np.array([0, 2]), np.array([1, 1])),
                                             (X, np.array([3, 3]), np.array([1, 1])),
                                             (X, np.array([3, 3]), np.array([0, 2]))])


_FEW, _MORE = np.array([False, True, False]), np.array([True, False, True])


@pytest.mark.parametrize("f, mask_at", [
    (lambda w, mask: mt.mean(w[mask] * w[mask]), lambda m: m),
    (lambda w, mask: mt.sum(mt.tanh(w[mask, None] * w[None, mask])), lambda m: m),
    (lambda w, m: mt.sum(mt.scatter_add(w[m["mask"]], m["mask"], (3,)) ** 2), lambda m: {"mask": m}),
], ids=["getitem", "in a tuple index", "scatter_add, in a dict"])
def test_a_boolean_index_of_another_count_is_traced_again(f, mask_at):
    # A mask was keyed by shape alone: another count of True values reused the code written
    # for the first count's shapes, silently wrong or a broadcast error
    compiled, eager = _both(f)
    for mask in (_FEW, _MORE, _FEW, np.array([True, True, False]), np.ones(3, bool)):
        _same(compiled(W, mask_at(mask)), eager(W, mask_at(mask)))
    assert compiled.cache_info().misses == 3  # one trace per count of True values


def test_sgd_steps_with_boolean_indexes_of_other_counts_land_as_eager():
    ends = []
    for compile in (True, False):
        w = mt.Tensor(np.arange(1.0, 6.0))
        opt, vg = mt.optim.SGD([w], lr=0.1), mt.value_and_grad(lambda w, m: mt.mean(w[m] * w[m]),
                                                                  compile=compile)
        for mask in ([0, 0, 1, 0, 0], [1, 1, 0, 0, 1], [0, 0, 1, 0, 0], [1, 1, 1, 1, 1]):
            opt.step(vg, w, np.array(mask, dtype=bool))
        ends.append(w.value)
    np.testing.assert_allclose(*ends, rtol=1e-12)


def test_a_boolean_array_used_as_data_is_not_keyed_by_its_count():
    compiled = _agree(lambda w, c: mt.sum(mt.where(c, w, w * w)), [(W, _FEW), (W, _MORE)])
    assert compiled.cache_info().misses == 1


def test_the_closed_form_refuses_a_boolean_index_of_another_count():
    w = mt.Tensor(W, name="w")
    with mt.Tape() as tape:
        y = mt.mean(w[_FEW] * w[_FEW])
    cf = tape.closed_form(y, w, names={"mask": _FEW})
    value, grad = cf(w=W2, mask=np.array([True, False, False]))
    _same((value, grad), mt.value_and_grad(lambda w: mt.mean(w[0:1] * w[0:1]))(W2))
    with pytest.raises(mt.ShapeError, match=r"'mask' is a boolean index \(getitem\) with 2 True "
                                            r"values, but it was traced with 1"):
        cf(w=W2, mask=_MORE)


@pytest.mark.parametrize("f, at", [(lambda w, i: mt.sum(w[i] * w[i]), lambda i: i),
                                   (lambda w, d: mt.sum(w[d["i"]] * w[d["i"]]), lambda i: {"i": i})],
                         ids=["checked call", "general call"])
def test_an_index_past_the_end_is_named_as_eager_names_it(f, at):
    # The generated code's IndexError was numpy's alone, without the op or the shapes
    compiled, eager = _both(f)
    compiled(W, at(np.array([0, 1])))
    with pytest.raises(IndexError) as eagerly:
        eager(W, at(np.array([0, 5])))
    assert str(eagerly.value).startswith("getitem: index 5 is out of bounds")
    with pytest.raises(IndexError, match=f"^{re.escape(str(eagerly.value))}$"):
        compiled(W, at(np.array([0, 5])))
    w = mt.Tensor(W.copy())
    opt = mt.optim.SGD([w], lr=0.1)
    with pytest.raises(IndexError, match=f"^{re.escape(str(eagerly.value))}$"):
        opt.step(compiled, w, at(np.array([0, 5])))
    np.testing.assert_array_equal(w.value, W)


def test_arrays_used_as_data_are_keyed_by_shape_not_value():
    compiled = _agree(lambda w, x, labels: mt.softmax_cross_entropy(x * w, labels),
                      [(W, X[:, :3], np.array([0, 1, 2, 0])), (W, X2[:, :3], np.array([2, 2, 1, 0]))])
    assert compiled.cache_info().misses == 1 and compiled.cache_info().hits == 1


def test_arguments_are_bound_by_position_whatever_aliases_the_first_call_had():
    f = lambda w, x, y: mt.sum(w * x - y)  # noqa: E731
    _agree(f, [(W, W2, W2), (W, W2, W), (W, W, W), (W2, X[0], X[1])])
    g = lambda a, b: mt.sum(a * b)  # noqa: E731
    _agree(g, [(W, W), (W, W2), (W2, W2)])
    _agree(g, [(W, W), (W, W2)], argnums=(0, 1))
    _agree(g, [(W, W), (W, W2)], argnums=(0, 0))


def test_tensor_arguments_are_read_for_their_values_at_each_call():
    # Parameters passed as the Tensors an optimizer holds: bound by position, read afresh.
    w, v = mt.Tensor(W.copy(), name="w"), mt.Tensor(W2.copy())
    f = lambda a, x, b: mt.sum(a * x + b * b)  # noqa: E731
    compiled = _agree(f, [(w, X[0], v), (v, X[1], w), (w, X[3], W2)], argnums=(0, 2))
    assert compiled.cache_info().misses == 2  # an array where a Tensor was: a new signature
    w.value = W2 * 3  # replaced, not written into: the next call reads the new array
    _same(compiled(w, X[0], v), mt.value_and_grad(f, (0, 2))(w, X[0], v))
    w.value = np.ones(5)  # a new shape: a new signature, traced again
    _same(compiled(w, np.ones(5), v.value[0]), mt.value_and_grad(f, (0, 2))(w, np.ones(5), v.value[0]))
    one = mt.grad(lambda a: mt.sum(a * a), compile=True)
    for t in (w, v, mt.Tensor(X[0])):
        np.testing.assert_array_equal(one(t), 2 * t.value)


def test_argnums_twice_gives_the_gradient_twice():
    dw, dw2 = mt.grad(lambda a, b: mt.sum(a * b), (0, 0), compile=True)(W, W2)
    np.testing.assert_array_equal(dw, W2)
    np.testing.assert_array_equal(dw2, W2)
    assert dw is not dw2


def test_arguments_are_converted_as_eager_converts_them():
    big = np.array([2 ** 62, 3], dtype=np.int64)
    f = lambda w, x: mt.sum(w * w * x)  # noqa: E731
    _agree(f, [(big, 2.0), (big * 2, 3.0)])
    _agree(f, [([1.0, 2.0], 3.0), ([3.0, 4.0], 3.0), ([3, 4], 3.0)])
    _agree(f, [(W, [1.0, 2.0, 3.0]), (W, [4.0, 5.0, 6.0])], argnums=(0, 1))
    _agree(lambda w, x: mt.sum(w * x), [(W, [1.0, 2.0, 3.0]), (W, [4.0, 5.0, 6.0])])
    value, grad = mt.value_and_grad(f, compile=True)(big, 2.0)
    assert value > 0 and grad.dtype == np.float64


def test_containers_are_bound_by_place_and_keyed_by_shape():
    def f(w, data):
        return mt.sum(w * data["x"][0] + mt.mul(data["x"][1], data["scale"]))

    calls = [(W, {"x": [X[0], X[1]], "scale": 2.0}), (W, {"x": [X[2], X[3]], "scale": 2.0}),
             (W2, {"x": [X[1], X[1]], "scale": 3.0})]
    compiled = _agree(f, calls)
    assert compiled.cache_info().misses == 2  # the scale is a number: a new one is a new signature


def test_unhashable_arguments_are_not_keyed_by_their_repr():
    a, b = np.zeros(2000), np.zeros(2000)
    b[1000] = 1e6
    f = lambda w, xs: mt.sum(w * xs[0])  # noqa: E731
    _agree(f, [(np.ones(1), [a]), (np.ones(1), [b])])
    _agree(lambda w, xs: mt.sum(w[xs[0]]), [(W, [np.array([0])]), (W, [np.array([2])])])


def test_a_tensor_read_from_outside_is_read_at_each_call_and_checked():
    shift = mt.Tensor(W2, name="shift")
    compiled = mt.value_and_grad(lambda w: mt.sum(w * shift), compile=True)
    _same(compiled(W), (W @ W2, W2))
    shift.value = 2 * W2
    _same(compiled(W), (2 * W @ W2, 2 * W2))
    shift.value = np.ones(5)
    with pytest.raises(mt.ShapeError, match="'shift'.*pass it as an argument"):
        compiled(W)


def test_a_source_also_read_from_outside_is_one_variable_as_eager_sees_it():
    # A penalty on a model's own Tensor, read from the model while the same Tensor is
    # passed to be differentiated: the trace ran on a copy of the argument, so the
    # read from outside was another variable and its share of the gradient was lost.
    T = mt.Tensor(np.array([1.0, 2.0]))
    other = mt.Tensor(np.array([3.0, -1.0]))

    def f(w, x):
        return mt.sum(w * x) + mt.sum(T * T)

    for order in [(T, other, T, other), (other, T, other, T)]:  # either traced first
        vg, eager = _both(f)
        for w in order:
            _same(vg(w, X[0, :2]), eager(w, X[0, :2]))
        assert vg.cache_info().currsize == 2  # one closed form for each
    np.testing.assert_allclose(mt.grad(f, compile=True)(T, X[0, :2]), X[0, :2] + 2 * T.value)
    assert T.name is None  # the caller's Tensor, traced as itself, is not renamed

    # Read from outside and passed where no gradient is taken: values only, one trace
    vg = mt.value_and_grad(lambda w, t: mt.sum(w * t) + mt.sum(T * w), compile=True)
    for w in (W[:2], W2[:2]):
        _same(vg(w, T), mt.value_and_grad(lambda w, t: mt.sum(w * t) + mt.sum(T * w))(w, T))

    # Trained by SGD (the fused step) and by Adam, as eager trains it
    for make in (lambda ps: mt.optim.SGD(ps, 0.1), lambda ps: mt.optim.Adam(ps, 0.1)):
        ends = []
        for compile in (True, False):
            W3 = mt.Tensor(np.array([1.0, 2.0, 3.0]))
            opt = make([W3])
            vg = mt.value_and_grad(lambda w: mt.sum(w) + mt.sum(W3 * W3), compile=compile)
            for _ in range(3):
                opt.step(vg, W3)
            ends.append(W3.value)
        np.testing.assert_allclose(*ends, rtol=1e-12)


@pytest.mark.parametrize("view, x", [
    (lambda x: x.T.T, X[:3]), (lambda x: x.reshape(9).reshape(3, 3), X[:3]), (lambda x: x[::-1], X[:3]),
    (lambda x: x[0], X[:3]), (lambda x: x.value[0], mt.Tensor(X[:3])), (lambda x: x[0][1:], [X[:3]])],
    ids=["T", "reshape", "slice", "row", "value of a Tensor", "in a list"])
def test_a_numpy_view_of_an_argument_raises_trace_error(view, x):
    def f(w, x):
        return mt.sum(w * view(x))

    with pytest.raises(mt.TraceError, match=r"view of argument 1(\[0\])? with numpy.*mt.transpose"):
        mt.grad(f, compile=True)(W, x)
    mt.grad(f)(W, x)  # eager: a constant of each call


_X3 = np.arange(3.0) + 0.5


@pytest.mark.parametrize("f, first, second", [
    (lambda w, x: mt.sum(w * mt.Tensor(x)), (W, np.ones(3)), (W, _X3)),
    (lambda w, x: mt.sum(w * mt.Tensor(x)), (W, np.ones(3, dtype=int)), (W, np.array([4, -2, 7]))),
    (lambda w, x: mt.sum(w * mt.Tensor(x)), (W, np.ones(3, dtype=np.float32)),
     (W, _X3.astype(np.float32))),
    (lambda w, x: mt.sum(w * mt.Tensor(x)), (W, mt.Tensor(np.ones(3))), (W, mt.Tensor(_X3))),
    (lambda w, x: mt.sum(w * mt.Tensor(x.value)), (W, mt.Tensor(np.ones(3))), (W, mt.Tensor(_X3))),
    (lambda w, x: mt.sum(w * mt.Tensor(w) * x), (W, np.ones(3)), (W + 2.0, _X3)),
    (lambda w, x: mt.sum(w * mt.Tensor(w) * x), (np.ones(3, dtype=int), np.ones(3)),
     (np.array([4, -2, 7]), _X3)),
    (lambda w, x: mt.sum(w * mt.Tensor(w) * x), (mt.Tensor(W), np.ones(3)), (mt.Tensor(W + 2), _X3)),
    (lambda w, d: mt.sum(w * mt.Tensor(d["x"])), (W, {"x": np.ones(3, dtype=int)}),
     (W, {"x": np.array([4, -2, 7])})),
    (lambda w, x, y: mt.sum(w * mt.Tensor([x, y])), (W, np.ones(3), np.ones(3)), (W, _X3, 2 * _X3)),
    (lambda w, x, y: mt.softmax_cross_entropy(x @ w, mt.Tensor(y)),
     (np.zeros((3, 4)), np.ones((2, 3)), np.eye(4)[[0, 3]]), (np.ones((3, 4)), X[:2, :3], np.eye(4)[[1, 2]])),
], ids=["array", "ints", "float32", "Tensor", "Tensor's value", "the source", "the int source",
        "the source Tensor", "in a dict", "a list of them", "labels"])
def test_a_tensor_made_of_an_argument_is_read_from_each_call(f, first, second):
    # mt.Tensor(x) made while traced was read as a Tensor from outside: the first call's x
    compiled, eager = _both(f)
    compiled(*first)
    _same(compiled(*second), eager(*second))


@pytest.mark.parametrize("make", [lambda w, x: mt.Tensor(w * x), lambda w, x: mt.Tensor((w * x).value),
                                  lambda w, x: mt.Tensor([(w * x).value])],
                         ids=["Tensor", "its value", "in a list"])
def test_a_tensor_made_of_a_computed_one_raises_trace_error(make):
    def f(w, x):
        return mt.sum(w * make(w, x))

    with pytest.raises(mt.TraceError, match=r"mt.Tensor\(t\) of a Tensor it computed.*mt.stop_gradient"):
        mt.grad(f, compile=True)(W, _X3)
    mt.grad(f)(W, _X3)  # eager: a constant of each call


def test_a_tensor_made_of_a_view_of_an_argument_raises_trace_error():
    with pytest.raises(mt.TraceError, match=r"mt.Tensor\(...\) of a view of argument 1 with numpy"):
        mt.grad(lambda w, x: mt.sum(w * mt.Tensor(x.T)[0]), compile=True)(W, X[:3, :2])


def test_a_tensor_made_of_outside_data_reads_it_at_each_call():
    ints, kept = np.ones(3, dtype=int), mt.Tensor(np.ones(3))
    for data in (ints, kept):
        compiled, eager = _both(lambda w: mt.sum(w * mt.Tensor(data)))
        compiled(W)
        ints[:] = 5
        kept.value = np.full(3, 7.0)
        _same(compiled(W), eager(W))


# -- targets ----------------------------------------------------------------------------------

def test_a_target_that_is_not_a_scalar_is_refused_as_eagerly():
    for c in (False, True):
        with pytest.raises(ValueError, match=r"gradient: the target has shape \(3,\), not a scalar"):
            mt.grad(lambda w: w * 2.0, compile=c)(W)


def test_a_source_returned_as_it_is():
    _agree(lambda w: w, [(np.array(2.0),), (np.array(3.0),)])
    _agree(lambda w, v: w, [(np.array([2.0]), W), (np.array([3.0]), W)], argnums=(0, 1))
    with pytest.raises(ValueError, match="not recorded"):
        mt.grad(lambda w, c: c, compile=True)(W, mt.Tensor(1.0))


def test_gradients_of_0d_sources_are_arrays():
    compiled = mt.value_and_grad(lambda a, b: a * b + a, (0, 1), compile=True)
    for b in (3.0, 5.0):  # traced, then the signature's checked call
        value, (da, db) = compiled(2.0, np.array(b))
        assert all(type(g) is np.ndarray and g.shape == () for g in (value, da, db))
        assert float(da) == b + 1 and float(db) == 2.0
    assert compiled.cache_info().hits == 1



# -- the last signature's call, checked in place of the key -----------------------------------
# A call with the last call's signature skips the key: code written for that
# signature checks the arguments in place. Each case below follows a call that
# set up that check, and must be told apart from it as the key tells it apart.

def _after(f, first, then, argnums=0):
    """Compiled and eager agree on ``then`` right after ``first`` (whose check is then the last)."""
    compiled = _agree(f, [first, first, then, then, first], argnums)
    return compiled.cache_info()


def test_the_checked_call_tells_a_tensor_passed_twice_from_two_tensors():
    w, other = mt.Tensor(W.copy()), mt.Tensor(W2.copy())
    f = lambda a, x, b: mt.sum(a * x + b * b)  # noqa: E731
    assert _after(f, (w, X[0], other), (w, X[0], w)).misses == 2
    assert _after(f, (w, X[0], other), (w, X[0], w), argnums=(0, 2)).misses == 2
    np.testing.assert_allclose(mt.grad(f, compile=True)(w, X[0], w), X[0] + 2 * w.value)
    many = [mt.Tensor(np.full(3, k + 1.0)) for k in range(8)]  # past the pairwise checks
    g = lambda *ts: mt.sum(mt.stack(ts) ** 2)  # noqa: E731
    assert _after(g, tuple(many), (*many[:7], many[0]), argnums=tuple(range(8))).misses == 2


def test_the_checked_call_tells_new_shapes_dtypes_and_types_apart():
    f = lambda w, x, labels: mt.softmax_cross_entropy(x * w, labels)  # noqa: E731
    labels = np.array([0, 1, 2, 0])
    assert _after(f, (W, X[:, :3], labels), (W, X[:3, :3], labels[:3])).misses == 2
    assert _after(f, (W, X[:, :3], labels), (W.astype(np.float32), X[:, :3], labels)).misses == 2
    assert _after(f, (W, X[:, :3], labels), (mt.Tensor(W), X[:, :3], labels)).misses == 2
    g = lambda w, x: mt.sum(w * x)  # noqa: E731
    assert _after(g, (W, np.arange(3)), (W, np.arange(3.0) + 0.5)).misses == 2  # int turns float
    assert _after(g, (np.arange(3), X[0]), (np.arange(3.0) + 0.5, X[0])).misses == 2


def test_the_checked_call_tells_numbers_and_strings_apart_by_value_and_type():
    f = lambda w, k, how: mt.sum(w * k) if how == "sum" else mt.mean(w * k)  # noqa: E731
    assert _after(f, (W, 2, "sum"), (W, 3, "sum")).misses == 2
    assert _after(f, (W, 1, "sum"), (W, True, "sum")).misses == 2
    assert _after(f, (W, 2, "sum"), (W, 2, "mean")).misses == 2
    assert _after(f, (W, 2, None), (W, 2, "sum")).misses == 2
    assert _after(f, (W, 2, "sum"), (W, 2.0, "sum")).misses == 2


def test_the_sign_of_a_zero_and_a_nan_are_told_apart_as_eager_tells_them():
    f = lambda w, k: mt.sum(w / k)  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        for zero, other in [(0.0, -0.0), (np.float64(0.0), np.float64(-0.0))]:
            assert _after(f, (W, zero), (W, other)).misses == 2  # ±inf, each as eager gives it
        nan = float("nan")
        assert _after(f, (W, nan), (W, float("nan"))).misses == 1  # any NaN: one closed form
        assert _after(f, (W, 1.0), (W, nan)).misses == 2


@pytest.mark.parametrize("number", [np.float64(0.1), np.int64(3), np.float16(0.1), np.int8(-3)],
                         ids=["float64", "int64", "float16", "int8"])
def test_a_numpy_number_keeps_its_type_in_the_code_as_numpy_keeps_it(number):
    # numpy 2 computes a float32 array times 0.1 in float32 but times np.float64(0.1) in float64
    w32 = W.astype(np.float32)
    for f in (lambda w, k: mt.sum(w * k), lambda w: mt.sum(w * number)):  # argument, or closure
        args = (w32, number)[:f.__code__.co_argcount]
        compiled, eager = mt.value_and_grad(f, compile=True)(*args), mt.value_and_grad(f)(*args)
        assert compiled[0].dtype == eager[0].dtype and compiled[0] == eager[0]
        assert compiled[1].dtype == eager[1].dtype == np.float32
        np.testing.assert_array_equal(compiled[1], eager[1])


def test_the_checked_call_reads_a_replaced_tensor_value_and_refuses_a_new_shape():
    w = mt.Tensor(W.copy())
    f = lambda a, x: mt.sum(a * x)  # noqa: E731
    compiled = _agree(f, [(w, X[0]), (w, X[1])])
    w.value = W2.copy()
    _same(compiled(w, X[0]), mt.value_and_grad(f)(w, X[0]))
    w.value = np.ones(4)  # a new shape: traced again
    _same(compiled(w, np.ones(4)), mt.value_and_grad(f)(w, np.ones(4)))
    assert compiled.cache_info() == (2, 2, 64, 2)


def test_the_checked_call_keeps_to_the_general_path_for_containers_and_arguments_of_other_sizes():
    f = lambda *a: mt.sum(a[0] * a[-1])  # noqa: E731
    compiled = _agree(f, [(W, W2), (W, W2), (W, X[0], W2), (W, W2)])
    assert compiled.cache_info().misses == 2
    g = lambda w, xs: mt.sum(w * xs[0])  # noqa: E731
    assert _after(g, (W, [X[0]]), (W, [X[1]])).misses == 1


def test_each_compiled_function_runs_its_own_checked_call():
    # The checked call is each compiled function's own __call__: two functions, and the
    # same function's value_and_grad and grad, interleaved, each answer as their eager twin
    f = lambda w, x: mt.sum(w * x)  # noqa: E731
    g = lambda w, x: mt.sum(w * w * x)  # noqa: E731
    compiled = [mt.value_and_grad(f, compile=True), mt.value_and_grad(g, compile=True)]
    grads = [mt.grad(f, compile=True), mt.grad(g, compile=True)]
    for x in (X[0], X[1], X[0, :2], X[2]):
        w = W if x.shape == W.shape else W[:2]
        for h, vg, gr in zip((f, g), compiled, grads):
            _same(vg(w, x), mt.value_and_grad(h)(w, x))
            np.testing.assert_allclose(gr(w, x), mt.grad(h)(w, x), rtol=1e-12)
    assert all(isinstance(c, type(compiled[0]).__base__) for c in compiled + grads)
    assert [c.cache_info()[:2] for c in compiled + grads] == [(2, 2)] * 4


def test_threads_switching_signatures_lose_no_counts():
    compiled = mt.value_and_grad(lambda w: mt.sum(w * w), compile=True)
    arrays = [np.ones(3), np.ones(4), mt.Tensor(np.ones(3))]
    errors = []

    def work(seed):
        for k in np.random.default_rng(seed).integers(0, 3, 300):
            value, grad = compiled(arrays[k])
            if not np.array_equal(grad, 2 * np.ones(len(grad))):
                errors.append(seed)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = compiled.cache_info()
    assert errors == [] and info.hits + info.misses == 6 * 300 and info.currsize == 3


# -- the cache ------------------------------------------------------------------------------

class _Yielding:
    """A number argument whose hash lets other threads run: a race in the cache shows."""

    def __init__(self, k):
        self.k = k

    def __hash__(self):
        time.sleep(0)
        return hash(self.k)

    def __eq__(self, other):
        return isinstance(other, _Yielding) and other.k == self.k


def test_threads_share_the_cache_without_errors_or_lost_counts():
    compiled = mt.value_and_grad(lambda w, k: mt.sum(w * k.k), compile=True)
    errors, calls = [], 200

    def work(seed):
        rng = np.random.default_rng(seed)
        try:
            for k in rng.integers(0, 80, calls):  # 80 signatures: the 64 slots keep evicting
                value, grad = compiled(W, _Yielding(int(k)))
                assert value == pytest.approx(W.sum() * k) and np.all(grad == k)
        except Exception as e:  # noqa: BLE001 (reported below, with the thread's seed)
            errors.append((seed, repr(e)))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    info = compiled.cache_info()
    assert info.hits + info.misses == 8 * calls and info.currsize <= info.maxsize == 64


def test_the_cache_drops_the_least_recently_used_signature():
    compiled = mt.grad(lambda w, k: mt.sum(w * k), compile=True)
    for k in range(64):
        compiled(W, k)
    compiled(W, 0)   # used again: now the most recent
    compiled(W, 64)  # a 65th signature: k=1, the least recently used, goes
    before = compiled.cache_info()
    compiled(W, 0)
    assert compiled.cache_info().hits == before.hits + 1
    compiled(W, 1)
    assert compiled.cache_info().misses == before.misses + 1


def test_a_compiled_function_shows_what_it_holds_and_hands_out_its_closed_form():
    def loss(w, x):
        return mt.sum(mt.tanh(x @ w))

    compiled = mt.value_and_grad(loss, argnums=(0, 1), compile=True)
    assert repr(compiled) == "<value_and_grad(loss, argnums=(0, 1), compile=True): 0 closed forms cached>"
    cf = compiled.closed_form(W, X)
    assert isinstance(cf, mt.ClosedForm) and cf.inputs == ("x", "w")
    assert compiled.closed_form(W2, X2) is cf
    value, (dw, dx) = cf(w=W2, x=X2)
    _same(compiled(W2, X2), (value, (dw, dx)))
    compiled(W, X[:2])
    assert repr(compiled).endswith(": 2 closed forms cached>")
    g = mt.grad(loss, compile=True)
    assert repr(g) == "<grad(loss, argnums=0, compile=True): 0 closed forms cached>"
    assert g.closed_form(W, X).source == mt.value_and_grad(loss, compile=True).closed_form(W, X).source
    np.testing.assert_array_equal(g(W, X), mt.grad(loss)(W, X))


# -- compiled against eager on random programs ------------------------------------------------
# Each program mixes Tensor ops with what users write beside them: ops on data
# alone, stop_gradient and detach, index arrays as arguments, views (.T,
# reshape, basic slices), named outputs; each is called several times with
# fresh values and with arguments that alias one another.

_UNARY = [mt.tanh, mt.sigmoid, mt.neg, lambda a: mt.exp(mt.tanh(a))]
_BINARY = [mt.add, mt.sub, mt.mul]


def _step(rng, k):
    """One random step: its kind and the random choices it needs."""
    kind = rng.choice(["unary", "binary", "data", "stop", "view", "named"])
    return kind, int(rng.integers(0, 1 << 30)), k


def _apply(step, pool, x, y, idx, k0):
    kind, seed, k = step
    rng = np.random.default_rng(seed)
    a, b = pool[rng.integers(len(pool))], pool[rng.integers(len(pool))]
    if kind == "unary":
        return _UNARY[rng.integers(len(_UNARY))](a)
    if kind in ("binary", "named"):
        return _BINARY[rng.integers(len(_BINARY))](a, b, name=f"n{k}" if kind == "named" else None)
    if kind == "data":
        data = [lambda: mt.tanh(x), lambda: mt.mean(y, axis=0), lambda: mt.mul(x, y),
                lambda: mt.sum(mt.getitem(x, idx), axis=0)]
        return mt.mul(a, data[rng.integers(len(data))]())
    if kind == "stop":
        return mt.mul(b, mt.stop_gradient(a) if rng.integers(2) else a.detach())
    if a.shape == (4,):
        return mt.add(a, b[k0] if b.shape == (3, 4) else mt.reshape(b, 2, 2).T.reshape(4))
    views = [lambda: mt.reshape(a.T, 3, 4), lambda: a[::-1], lambda: a[idx],
             lambda: mt.sum(a[1:], axis=0), lambda: a[k0]]
    return views[rng.integers(len(views))]()


def _program(rng):
    steps = [_step(rng, k) for k in range(int(rng.integers(2, 8)))]

    def f(w, v, x, y, idx, k0):
        pool = [w, v, mt.mul(w, v)]
        for step in steps:
            pool.append(_apply(step, pool, x, y, idx, k0))
        return mt.sum(pool[-1] * pool[-1]) + mt.sum(pool[len(pool) // 2])
    return f


def _calls(rng):
    """Arguments for several calls: fresh values, new indices, and aliases among them."""
    calls = []
    for c in range(4):
        w, x = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
        y = x if c == 1 else (w if c == 2 else rng.normal(size=(3, 4)))
        idx = rng.integers(0, 3, 3)
        calls.append((w, rng.normal(size=4), x, y, idx, np.array(rng.integers(0, 3))))
    return calls


def test_compiled_equals_eager_on_random_programs():
    rng = np.random.default_rng(15)
    for n in range(300):
        f = _program(rng)
        compiled, eager = _both(f, (0, 1))
        for args in _calls(rng):
            try:
                _same(compiled(*args), eager(*args))
            except AssertionError as e:
                raise AssertionError(f"program {n}: {e}") from None


def test_sgd_stepping_a_compiled_function_lands_as_eager_on_random_programs():
    # opt.step(vg, ...) runs the fused step's own code after its first call, which finds
    # the parameters by identity: held to eager SGD on the same random programs, with
    # data that is fresh, the same array twice, or a parameter's own array.
    rng = np.random.default_rng(16)
    for n in range(100):
        f = _program(rng)
        start = rng.normal(size=(3, 4)), rng.normal(size=4)
        runs = []
        for compile in (True, False):
            w, v = (mt.Tensor(a.copy()) for a in start)
            vg, opt = mt.value_and_grad(f, (0, 1), compile=compile), mt.optim.SGD([w, v], lr=1e-3)
            values = []
            for c, (_, _, x, y, idx, k0) in enumerate(_calls(np.random.default_rng(n))):
                y = x if c == 1 else (w.value if c == 2 else y)
                values.append(opt.step(vg, w, v, x, y, idx, k0))
            runs.append((values, w.value, v.value))
        (got, w1, v1), (want, w2, v2) = runs
        try:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(w1, w2, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(v1, v2, rtol=1e-12, atol=1e-12)
        except AssertionError as e:
            raise AssertionError(f"program {n}: {e}") from None


def test_a_tensor_passed_at_two_places_is_one_variable_as_eager_sees_it():
    # Eager differentiates the object: a Tensor passed twice is one variable, used
    # twice. The trace used to copy each place apart, so compile=True left out
    # the uses through the second place: f(w, x, w) gave x, not x + 2w.
    def f(a, x, b):
        return mt.sum(a * x + b * b)

    def g(a, pair):
        return mt.sum(a * pair[0] * pair[1])

    w = mt.Tensor(np.array([1.0, 2.0]))
    other = mt.Tensor(np.array([1.0, 2.0]))
    x = np.array([3.0, 4.0])
    cases = [(f, 0, (w, x, w)), (f, (0, 2), (w, x, w)), (f, (0, 1), (w, w, w)),
             (f, 0, (w, x, other)), (g, 0, (w, [w, other])), (g, 0, (w, (other, w)))]
    compiled = {}
    for fn, argnums, args in cases:   # aliased and not, in turn, through one cache per f
        vg = compiled.setdefault((fn, argnums), mt.value_and_grad(fn, argnums, compile=True))
        eager = mt.value_and_grad(fn, argnums)(*args)
        got = vg(*args)
        np.testing.assert_allclose(got[0], eager[0])
        for a, b in zip(*(r if isinstance(argnums, tuple) else (r,) for r in (got[1], eager[1]))):
            np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(mt.grad(f, compile=True)(w, x, w), x + 2 * w.value)
    np.testing.assert_allclose(mt.grad(f, compile=True)(w, x, other), x)


def test_a_call_racing_the_trace_that_finds_an_outside_read_gets_its_own_entry():
    # Thread B's key was made before taking the lock, while thread A's trace found that f reads
    # W from outside; B then hit A's entry, for W not passed, and got X∘W where eager gives 2X∘W
    rng = np.random.default_rng(0)
    W, X, Z = (mt.Tensor(rng.standard_normal(3)) for _ in range(3))
    f = lambda x, w: mt.sum(x * W * w)  # noqa: E731
    vg = mt.value_and_grad(f, argnums=(0, 1), compile=True)

    class PausingB:  # the lock, with thread B paused once just before it takes it
        def __init__(self):
            self.lock, self.paused = threading.Lock(), False

        def __enter__(self):
            if threading.current_thread().name == "B" and not self.paused:
                self.paused = True
                time.sleep(0.2)
            return self.lock.__enter__()

        def __exit__(self, *exc):
            return self.lock.__exit__(*exc)

    vg._lock = PausingB()
    out = {}
    b = threading.Thread(target=lambda: out.setdefault("b", vg(X, W)), name="B")
    a = threading.Thread(target=lambda: out.setdefault("a", vg(X, Z)), name="A")
    b.start()
    time.sleep(0.02)
    a.start()
    a.join()
    b.join()
    np.testing.assert_allclose(out["b"][1][1], 2 * X.value * W.value, rtol=1e-15)
    np.testing.assert_allclose(out["a"][1][1], X.value * W.value, rtol=1e-15)


@pytest.mark.parametrize("exponent", [np.array([[True], [False]]), np.array([[1], [0]])],
                         ids=["bool", "int"])
def test_a_float32_source_keeps_its_dtype_where_the_generated_code_widens_it(exponent):
    # pow's VJP with an array exponent of whole numbers computes p − 1 in int64, which made
    # the float32 base's gradient float64 in the generated code; eager's is float32
    x = np.array([[1.5, 2.0, 0.7]], np.float32)
    f = lambda x, e: mt.sum(mt.pow(x, e))  # noqa: E731
    eager = mt.value_and_grad(f)(x, exponent)
    compiled = mt.value_and_grad(f, compile=True)
    for _ in range(2):  # the traced call, then the written-out one
        value, grad = compiled(x, exponent)
        assert grad.dtype == eager[1].dtype == np.float32 and value.dtype == eager[0].dtype
        np.testing.assert_array_equal(grad, eager[1])
