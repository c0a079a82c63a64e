"""Tensor: dtype rules, attributes, repr, operators and numpy interop."""

from __future__ import annotations

import numpy as np
import pytest

import microtape as mt


# -- construction and dtype --------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_arrays_keep_their_dtype(dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    t = mt.Tensor(a)
    assert t.dtype == dtype and t.value.dtype == dtype
    assert t.value is a  # wrapped, not copied


@pytest.mark.parametrize("data, shape", [
    (np.arange(4), (4,)),                        # int array
    (np.arange(4, dtype=np.int32), (4,)),
    (np.arange(4, dtype=np.uint8), (4,)),
    (np.array([True, False]), (2,)),             # bools
    ([1, 2, 3], (3,)),                           # list of ints
    ([[1.5, 2.0], [3.0, 4.0]], (2, 2)),          # nested list of floats
    (3, ()),                                     # Python int
    (2.5, ()),                                   # Python float
    (True, ()),                                  # Python bool
    (np.int64(7), ()),                           # numpy int scalar
])
def test_everything_else_becomes_float64(data, shape):
    t = mt.Tensor(data)
    assert t.dtype == np.float64 and t.shape == shape
    np.testing.assert_array_equal(t.value, np.asarray(data, dtype=np.float64))


def test_a_tensor_of_a_tensor_shares_the_value():
    a = mt.Tensor(np.ones(3), name="a")
    b = mt.Tensor(a, name="b")
    assert b.value is a.value and b.name == "b"


def test_a_list_holding_tensors_is_refused_naming_the_ops_that_combine_them():
    # numpy read the values, and the new Tensor was a constant: the gradient of the
    # Tensors in the list came back 0, silently
    x, y = mt.Tensor(2.0), mt.Tensor(3.0)
    for data in ([x, y], (x, 1.0), [[1.0, y]]):
        with pytest.raises(TypeError, match=r"the list holds Tensors.*mt\.stack"):
            mt.Tensor(data)
    np.testing.assert_array_equal(mt.Tensor([x.value, y.value]).value, [2.0, 3.0])


@pytest.mark.parametrize("data", [None, [1.0, None], "3.0", {"w": 1.0}], ids=repr)
def test_data_that_is_not_numbers_is_refused_not_turned_into_nan(data):
    # numpy's astype(float) turned None into NaN, silently
    with pytest.raises(TypeError, match="the data must be numbers"):
        mt.Tensor(data)
    with pytest.raises(TypeError, match="the data must be numbers"):
        mt.grad(lambda x: mt.sum(x * x))(data)


def test_a_masked_array_is_refused_rather_than_unmasked():
    # np.asarray drops the mask: the masked 2.0 was summed as if it were data
    data = np.ma.array([1.0, 2.0], mask=[False, True])
    with pytest.raises(TypeError, match=r"masked array's mask would be dropped.*data.filled"):
        mt.Tensor(data)
    assert float(mt.sum(mt.Tensor(data.filled(0.0))).value) == 1.0


def test_ragged_rows_are_refused_naming_the_tensor():
    with pytest.raises(ValueError, match=r"Tensor: the data is not a rectangular array of numbers "
                                         r"\(\[\[1, 2\], \[3\]\]\)"):
        mt.Tensor([[1, 2], [3]])


def test_complex_data_is_refused():
    with pytest.raises(TypeError, match="complex"):
        mt.Tensor(np.array([1 + 2j]))


def test_attributes():
    t = mt.Tensor(np.zeros((2, 3, 4)), name="W")
    assert (t.shape, t.ndim, t.size, t.dtype, t.name, t.grad) == ((2, 3, 4), 3, 24, np.float64, "W", None)
    assert len(t) == 2
    assert mt.Tensor(5.0).item() == 5.0 and float(mt.Tensor(2.5)) == 2.5
    assert mt.Tensor(3.0).name is None


def test_repr_shows_name_shape_and_values():
    t = mt.Tensor(np.array([[1.5, -2.25], [3.0, 4.0]]), name="W1")
    text = repr(t)
    assert "W1" in text and "(2, 2)" in text
    for number in ("1.5", "-2.25", "3.", "4."):
        assert number in text
    plain = repr(mt.Tensor(np.array([7.0, 8.0])))
    assert "name" not in plain and "(2,)" in plain and "7." in plain and "8." in plain


def test_repr_of_a_large_tensor_is_summarised():
    text = repr(mt.Tensor(np.arange(10_000.0), name="big"))
    assert "big" in text and "(10000,)" in text and "..." in text and len(text) < 400


def test_repr_says_when_a_gradient_is_set():
    x = mt.Tensor(np.array([1.0, 2.0]), name="x")
    with mt.Tape() as tape:
        loss = (x * x).sum()
    assert "grad" not in repr(x)
    tape.backward(loss)
    assert "grad" in repr(x)


def test_np_asarray_reads_the_value_without_recording():
    x = mt.Tensor(np.array([1.0, 2.0]))
    with mt.Tape() as tape:
        a = np.asarray(x)
        b = np.asarray(x, dtype=np.float32)
    assert a is x.value and b.dtype == np.float32
    assert tape.nodes == []


# -- operators -------------------------------------------------------------------------

_A = np.array([[1.0, -2.0], [0.5, 3.0]])
_T = np.array([[2.0, 0.5], [-1.5, 4.0]])

# (expression, op recorded, d(Σ result)/dt worked out by hand)
OPERATORS = {
    "t + array": (lambda t: t + _A, "add", np.ones((2, 2))),
    "array + t": (lambda t: _A + t, "add", np.ones((2, 2))),
    "t + scalar": (lambda t: t + 2.0, "add", np.ones((2, 2))),
    "scalar + t": (lambda t: 2 + t, "add", np.ones((2, 2))),
    "t - array": (lambda t: t - _A, "sub", np.ones((2, 2))),
    "array - t": (lambda t: _A - t, "sub", -np.ones((2, 2))),
    "scalar - t": (lambda t: 1.0 - t, "sub", -np.ones((2, 2))),
    "t * array": (lambda t: t * _A, "mul", _A),
    "array * t": (lambda t: _A * t, "mul", _A),
    "scalar * t": (lambda t: 3 * t, "mul", np.full((2, 2), 3.0)),
    "numpy scalar * t": (lambda t: np.float64(3.0) * t, "mul", np.full((2, 2), 3.0)),
    "t / array": (lambda t: t / _A, "div", 1 / _A),
    "array / t": (lambda t: _A / t, "div", -_A / _T ** 2),
    "scalar / t": (lambda t: 2.0 / t, "div", -2.0 / _T ** 2),
    "t @ array": (lambda t: t @ _A, "matmul", np.ones((2, 2)) @ _A.T),
    "array @ t": (lambda t: _A @ t, "matmul", _A.T @ np.ones((2, 2))),
    "t ** 2": (lambda t: t ** 2, "pow", 2 * _T),
    "t ** -1": (lambda t: t ** -1, "pow", -1 / _T ** 2),
    "-t": (lambda t: -t, "neg", -np.ones((2, 2))),
    "t.T": (lambda t: t.T, "transpose", np.ones((2, 2))),
    "t.sum()": (lambda t: t.sum(), "sum", np.ones((2, 2))),
    "t.mean()": (lambda t: t.mean(), "mean", np.full((2, 2), 0.25)),
    "t.reshape(4)": (lambda t: t.reshape(4), "reshape", np.ones((2, 2))),
    "t[0]": (lambda t: t[0], "getitem", np.array([[1.0, 1.0], [0.0, 0.0]])),
    "t.transpose(1, 0)": (lambda t: t.transpose(1, 0), "transpose", np.ones((2, 2))),
}


@pytest.mark.parametrize("case", OPERATORS)
def test_operators_are_recorded_on_the_tape(case):
    expression, op_name, expected_grad = OPERATORS[case]
    t = mt.Tensor(_T.copy(), name="t")
    with mt.Tape() as tape:
        out = expression(t)
        loss = mt.sum(out)
    assert isinstance(out, mt.Tensor)
    assert tape.nodes[0].op.name == op_name and tape.nodes[0].output is out
    np.testing.assert_allclose(out.value, expression(_T.copy()))  # same value as numpy's
    np.testing.assert_allclose(tape.gradient(loss, t), expected_grad)


def test_ndarray_on_the_left_hands_the_operation_to_the_tensor():
    t = mt.Tensor(np.ones(3))
    a = np.array([1.0, 2.0, 3.0])
    for result in (a + t, a - t, a * t, a / t, a @ t, a ** t):
        assert isinstance(result, mt.Tensor), type(result)


def test_iterating_gives_recorded_rows_and_a_scalar_refuses():
    t = mt.Tensor(np.arange(6.0).reshape(3, 2))
    with mt.Tape() as tape:
        rows = list(t)
        s = mt.sum(rows[0] * rows[2])
    assert [r.shape for r in rows] == [(2,)] * 3
    np.testing.assert_array_equal(tape.gradient(s, t), [[4.0, 5.0], [0.0, 0.0], [0.0, 1.0]])
    # Iterated by indexing, a 0-d Tensor raised IndexError at once: a loop ran no times
    with pytest.raises(TypeError, match="iteration over a 0-d Tensor"):
        for _ in mt.Tensor(3.0):
            pass


def test_pos_returns_the_tensor_itself():
    t = mt.Tensor(np.ones(2))
    assert +t is t


def test_operators_between_tensors_record_both_sides():
    a, b = mt.Tensor(_A.copy()), mt.Tensor(_T.copy())
    with mt.Tape() as tape:
        loss = ((a * b) @ (a - b) / 2.0).sum()
    da, db = tape.gradient(loss, [a, b])
    # finite differences of the same expression in numpy
    f = lambda A, B: np.sum((A * B) @ (A - B) / 2.0)  # noqa: E731
    for grad, which in ((da, 0), (db, 1)):
        numeric = np.zeros((2, 2))
        for idx in np.ndindex(2, 2):
            e = np.zeros((2, 2))
            e[idx] = 1e-6
            args_up = [_A + e, _T] if which == 0 else [_A, _T + e]
            args_down = [_A - e, _T] if which == 0 else [_A, _T - e]
            numeric[idx] = (f(*args_up) - f(*args_down)) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=1e-6)


# -- comparisons, t.numpy(), identity -------------------------------------------------------

def test_comparisons_give_numpy_bool_arrays_and_record_nothing():
    t, u = mt.Tensor(np.array([-1.0, 0.0, 2.0])), mt.Tensor(np.array([0.0, 0.0, 1.0]))
    with mt.Tape() as tape:
        results = {
            "<": (t < u, [True, False, False]), "<=": (t <= 0, [True, True, False]),
            ">": (t > u, [False, False, True]), ">=": (0.0 >= t, [True, True, False]),
            "==": (t == u, [False, True, False]), "!=": (t != np.zeros(3), [True, False, True]),
            "ndarray <": (np.zeros(3) < t, [False, False, True]),
            "ndarray ==": (np.zeros(3) == t, [False, True, False]),
        }
    assert tape.nodes == []
    for what, (got, want) in results.items():
        assert type(got) is np.ndarray and got.dtype == bool, what
        np.testing.assert_array_equal(got, want, err_msg=what)
    assert type(mt.Tensor(2.0) > 1) is np.bool_ and (mt.Tensor(2.0) > 1)  # `if loss > 1:` works


def test_a_comparison_with_something_that_is_not_an_array_is_pythons_own():
    t = mt.Tensor(np.ones(2))
    assert (t == None) is False and (t != "a") is True  # noqa: E711
    with pytest.raises(TypeError, match="'<' not supported"):
        t < "a"  # noqa: B015


def test_tensors_keep_hashing_and_membership_by_identity():
    a, b = mt.Tensor(np.ones(3)), mt.Tensor(np.ones(3))  # equal values, two tensors
    assert hash(a) != hash(b) and len({a, b}) == 2 and {a: 1, b: 2}[b] == 2
    assert a in [a] and a in {a}
    with pytest.raises(ValueError, match="ambiguous"):
        a in [b]  # noqa: B015: == is elementwise now, so `in` a list compares values
    grads = mt.grad(lambda x, y: mt.sum(x * y), argnums=(0, 1))(a.value, b.value)
    np.testing.assert_array_equal(grads[0], np.ones(3))


@pytest.mark.parametrize("compare", [
    lambda s: s == 1.0, lambda s: s != 1.0, lambda s: np.zeros(()) < s])
def test_every_comparison_is_refused_while_a_trace_records(compare):
    def f(w):
        s = mt.sum(w)
        return s if compare(s) else -s

    with pytest.raises(mt.TraceError, match=r"a comparison .*mt\.where"):
        mt.grad(f, compile=True)(np.ones(3))


def test_numpy_gives_a_read_only_view_of_the_value():
    t = mt.Tensor(np.arange(3.0))
    view = t.numpy()
    assert np.shares_memory(view, t.value) and not view.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 5.0
    t.value[0] = 7.0  # an in-place update of the tensor shows through the view
    assert view[0] == 7.0 and t.value.flags.writeable
    with pytest.raises(mt.TraceError, match=r"t\.numpy\(\)"):
        mt.grad(lambda w: mt.sum(w) * float(w.numpy()[0]), compile=True)(np.ones(3))


# -- numpy functions are refused, never silently off the tape -----------------------------

@pytest.mark.parametrize("ufunc, pointer", [
    (np.exp, "mt.exp"), (np.log, "mt.log"), (np.tanh, "mt.tanh"),
])
def test_numpy_ufuncs_raise_a_type_error_pointing_to_the_op(ufunc, pointer):
    t = mt.Tensor(np.ones(3))
    with mt.Tape() as tape:
        with pytest.raises(TypeError) as info:
            ufunc(t)
    message = str(info.value)
    assert pointer in message and f"np.{ufunc.__name__}" in message and "tape" in message
    assert tape.nodes == []


def test_ufuncs_without_a_microtape_op_still_refuse():
    t = mt.Tensor(np.ones(3))
    with pytest.raises(TypeError, match="np.sin"):
        np.sin(t)


@pytest.mark.parametrize("call, pointer", [
    (lambda t: np.maximum(t, 0), "mt.maximum"), (lambda t: np.minimum(0, t), "mt.minimum"),
    (lambda t: np.abs(t), "mt.abs"), (lambda t: np.sqrt(t), "mt.sqrt"),
    (lambda t: np.max(t, axis=0), "mt.max"), (lambda t: np.where(True, t, 0), "mt.where"),
    (lambda t: np.concatenate([t, t]), "mt.concatenate"), (lambda t: np.stack([t]), "mt.stack"),
])
def test_numpy_calls_of_ops_microtape_has_point_to_them_and_keep_every_argument(call, pointer):
    with pytest.raises(TypeError) as info:
        call(mt.Tensor(np.ones(3)))
    assert pointer in str(info.value)
    assert "on t.value for a constant" in str(info.value)  # not np.maximum(t.value), one argument


def test_ufunc_with_keyword_arguments_is_refused():
    t = mt.Tensor(np.ones(3))
    with pytest.raises(TypeError, match="np.add"):
        np.add(t, 1.0, out=np.empty(3))


@pytest.mark.parametrize("func, pointer", [(np.sum, "mt.sum"), (np.mean, "mt.mean"),
                                            (np.reshape, "mt.reshape"), (np.transpose, "mt.transpose")])
def test_numpy_functions_raise_a_type_error(func, pointer):
    t = mt.Tensor(np.ones((2, 3)))
    args = ((6,),) if func is np.reshape else ()
    with pytest.raises(TypeError) as info:
        func(t, *args)
    assert pointer in str(info.value) and f"np.{func.__name__}" in str(info.value)


def test_np_dot_is_refused():
    with pytest.raises(TypeError, match="np.dot"):
        np.dot(mt.Tensor(np.ones(3)), np.ones(3))


# -- float32 end to end --------------------------------------------------------------------

def test_float32_stays_float32_through_a_network():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=6)
    params = {
        "W1": rng.normal(size=(4, 5)).astype(np.float32), "b1": np.zeros(5, np.float32),
        "W2": rng.normal(size=(5, 3)).astype(np.float32), "b2": np.zeros(3, np.float32),
    }

    def loss_and_grads(dtype):
        p = {k: mt.Tensor(v.astype(dtype), name=k) for k, v in params.items()}
        x = X.astype(dtype)
        with mt.Tape() as tape:
            h = mt.sigmoid(x @ p["W1"] + p["b1"])
            v = mt.tanh(h @ p["W2"] + p["b2"]) * 2.0 - 0.5
            z = mt.relu(v) + mt.exp(-v) / 3.0 + mt.log_softmax(v, axis=0) + mt.softmax(v) ** 2
            loss = mt.softmax_cross_entropy(z, labels) + mt.mean(mt.einsum("ij,ij->i", h, h))
        return tape, loss, p, tape.gradient(loss, p)

    tape, loss, p, grads = loss_and_grads(np.float32)
    assert loss.dtype == np.float32
    assert all(node.output.dtype == np.float32 for node in tape.nodes), \
        [node.op.name for node in tape.nodes if node.output.dtype != np.float32]
    assert all(g.dtype == np.float32 for g in grads.values())
    tape.backward(loss)
    assert all(t.grad.dtype == np.float32 for t in p.values())
    _, loss64, _, grads64 = loss_and_grads(np.float64)
    np.testing.assert_allclose(loss.value, loss64.value, rtol=1e-5)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads64[k], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("label_kind", ["int", "rows"])
def test_float32_softmax_cross_entropy(label_kind):
    v = mt.Tensor(np.array([[1.0, 2.0, 0.5]], dtype=np.float32))
    labels = np.array([1]) if label_kind == "int" else np.array([[0.0, 1.0, 0.0]])
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(v, labels)
    g = tape.gradient(loss, v)
    assert loss.dtype == np.float32 and g.dtype == np.float32


def test_float32_unreached_source_and_seed_keep_the_dtype():
    x = mt.Tensor(np.ones(3, np.float32))
    y = mt.Tensor(np.ones(3, np.float32))
    with mt.Tape() as tape:
        out = x * 2.0
    gx, gy = tape.gradient(out, [x, y], seed=np.ones(3))  # a float64 seed
    assert gx.dtype == np.float32 and gy.dtype == np.float32
