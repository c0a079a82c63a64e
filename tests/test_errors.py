"""Bad input gets a clear error at the call the user wrote, and nothing is half-recorded."""

from __future__ import annotations

import sys
import tracemalloc
import warnings
import weakref

import numpy as np
import pytest

import microtape as mt


def _tensor(*shape, seed=0):
    return mt.Tensor(np.random.default_rng(seed).normal(size=shape))


# -- shape errors --------------------------------------------------------------------

def test_error_classes_are_value_errors():
    assert issubclass(mt.ShapeError, ValueError)
    assert issubclass(mt.InputError, ValueError)


_A = mt.Tensor(np.ones((3, 4)), name="A")


@pytest.mark.parametrize("call, error, start", [
    (lambda: _A[5], IndexError, "getitem: index 5 is out of bounds"),
    (lambda: _A[np.array([0.0, 1.0])], IndexError, "getitem: arrays used as indices"),
    (lambda: _A[0, 0, 0], IndexError, "getitem: too many indices"),
    (lambda: _A + None, TypeError, "add: unsupported operand"),
    (lambda: _A * "a", TypeError, "mul: ufunc 'multiply'"),
    (lambda: mt.sum(_A, axis=1.5), TypeError, "sum: 'float' object cannot be interpreted"),
    (lambda: mt.sigmoid(_A, _A), TypeError, "sigmoid: sigmoid() takes 1 positional argument"),
    (lambda: mt.einsum(_A, _A), TypeError, "einsum: the first argument is the subscripts"),
], ids=["index past the end", "float index", "too many indices", "None", "str", "float axis",
        "two operands", "einsum without subscripts"])
def test_a_wrong_type_or_index_names_the_op_and_what_it_was_given(call, error, start):
    # They surfaced as numpy's or Python's own errors, naming neither the op nor the shapes
    with pytest.raises(error) as info:
        call()
    assert str(info.value).startswith(start)
    assert "shape (3, 4)" in str(info.value) or "einsum" in start


def test_matmul_shape_error_names_the_op_and_both_shapes():
    with pytest.raises(mt.ShapeError) as info:
        mt.matmul(_tensor(4, 3), _tensor(2, 5))
    message = str(info.value)
    assert "matmul" in message and "(4, 3)" in message and "(2, 5)" in message
    assert "transpose" not in message  # no transpose would fit here


def test_matmul_suggests_the_transpose_when_it_would_fit():
    with pytest.raises(mt.ShapeError, match=r"transpose of the second operand") as info:
        _tensor(4, 3) @ _tensor(5, 3)
    assert "(4, 3)" in str(info.value) and "(5, 3)" in str(info.value)
    assert "inner dimensions differ" in str(info.value)
    # and the hint is right: the transpose does fit
    assert (_tensor(4, 3) @ _tensor(5, 3).T).shape == (4, 5)


def test_matmul_suggests_transposing_the_first_operand():
    with pytest.raises(mt.ShapeError, match=r"transpose of the first operand"):
        _tensor(3, 4) @ _tensor(3, 5)


def test_matmul_with_a_plain_array_operand_names_its_shape():
    with pytest.raises(mt.ShapeError, match=r"\(4, 3\).*\(2, 5\)"):
        np.ones((4, 3)) @ _tensor(2, 5)


def test_matmul_of_a_0d_operand():
    with pytest.raises(mt.ShapeError, match="matmul"):
        mt.matmul(mt.Tensor(2.0), _tensor(3))


@pytest.mark.parametrize("op", [mt.add, mt.sub, mt.mul, mt.div])
def test_broadcasting_failure_names_the_op_and_both_shapes(op):
    with pytest.raises(mt.ShapeError) as info:
        op(_tensor(3, 4), _tensor(3))
    message = str(info.value)
    assert op.name in message and "(3, 4)" in message and "(3,)" in message


def test_operator_broadcasting_failure_is_a_shape_error():
    with pytest.raises(mt.ShapeError, match=r"add.*\(2, 3\).*\(4,\)"):
        _tensor(2, 3) + np.ones(4)


@pytest.mark.parametrize("call", [lambda t: t.reshape(5, 3), lambda t: t.reshape((5, 3)),
                                  lambda t: mt.reshape(t, [5, 3])], ids=["numbers", "tuple", "list"])
def test_reshape_to_an_impossible_shape_names_it(call):
    # The shape's numbers are inputs of the op; the message named their shapes, ()
    with pytest.raises(mt.ShapeError, match=r"reshape: the 12 elements of shape \(3, 4\) cannot be "
                                            r"laid out as shape \(5, 3\)"):
        call(_tensor(3, 4))


@pytest.mark.parametrize("call", [lambda t: mt.where(np.ones(4, bool), t, 0.0),
                                  lambda t: mt.clip(t, np.zeros(4), 1.0),
                                  lambda t: mt.clip(t, None, mt.Tensor(np.ones(4)))],
                         ids=["where", "clip", "clip, Tensor bound"])
def test_three_operands_that_do_not_broadcast_are_a_shape_error_naming_the_axis(call):
    # where and clip have three operands; the hint took two and raised a TypeError
    with pytest.raises(mt.ShapeError, match=r"cannot combine shapes .*\(2, 3\).*axis -1 has"):
        call(_tensor(2, 3))


def test_einsum_operand_shape_mismatch_is_a_shape_error():
    with pytest.raises(mt.ShapeError, match="einsum"):
        mt.einsum("ij,jk->ik", _tensor(2, 3), _tensor(4, 2))


def test_einsum_needs_the_explicit_form():
    with pytest.raises(mt.InputError, match="->"):
        mt.einsum("ij,jk", _tensor(2, 3), _tensor(3, 2))
    with pytest.raises(mt.InputError, match="2 operands but 1"):
        mt.einsum("ij,jk->ik", _tensor(2, 3))


# -- softmax_cross_entropy labels -------------------------------------------------------

def test_class_index_out_of_range():
    with pytest.raises(mt.InputError) as info:
        mt.softmax_cross_entropy(_tensor(3, 4), np.array([0, 4, 1]))
    message = str(info.value)
    assert "class index 4" in message and "4 classes" in message


def test_negative_class_index_is_out_of_range():
    with pytest.raises(mt.InputError, match="class index -1"):
        mt.softmax_cross_entropy(_tensor(3, 4), np.array([0, -1, 1]))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint32, np.uint64])
@pytest.mark.parametrize("end", ["just past the classes", "largest", "most negative"])
def test_a_class_index_out_of_range_is_refused_in_every_integer_dtype(dtype, end):
    # The loss checks indices as it places them; each dtype's extremes (2^64 − 1
    # and 2^63 are negative once read as int64) must still be refused by name.
    info = np.iinfo(dtype)
    bad = {"just past the classes": 4, "largest": info.max, "most negative": info.min or 5}[end]
    labels = np.array([0, bad, 2], dtype=dtype)
    with pytest.raises(mt.InputError, match=f"class index {bad} is out of range for 4 classes"):
        mt.softmax_cross_entropy(_tensor(3, 4), labels)


def test_single_int_label_out_of_range():
    with pytest.raises(mt.InputError, match="class index 7"):
        mt.softmax_cross_entropy(_tensor(4), 7)


def test_negative_label_rows():
    rows = np.array([[0.5, 0.5, 0.0], [1.5, -0.5, 0.0]])
    with pytest.raises(mt.InputError, match="non-negative"):
        mt.softmax_cross_entropy(_tensor(2, 3), rows)


def test_label_rows_not_summing_to_one():
    rows = np.array([[0.5, 0.5, 0.0], [0.2, 0.2, 0.2]])
    with pytest.raises(mt.InputError) as info:
        mt.softmax_cross_entropy(_tensor(2, 3), rows)
    message = str(info.value)
    assert "sum to 1" in message and "row 1" in message and "0.6" in message


def test_a_single_label_row_not_summing_to_one():
    with pytest.raises(mt.InputError, match="sum to 1"):
        mt.softmax_cross_entropy(_tensor(3), np.array([0.3, 0.3, 0.3]))


@pytest.mark.parametrize("labels, expected", [
    (np.array([0, 1]), r"class-index labels must have shape \(3,\).*got \(2,\)"),
    (np.array([[0], [1], [2]]), r"class-index labels must have shape \(3,\).*got \(3, 1\)"),
    (np.eye(4)[:3, :3], r"label rows must have the logits' shape \(3, 4\), got \(3, 3\)"),
    (np.eye(4)[:2], r"label rows must have the logits' shape \(3, 4\), got \(2, 4\)"),
    # integer one-hot rows (np.eye(C, dtype=int)[y], pandas' get_dummies) are read as indices
    (np.eye(4, dtype=int)[:3], r"got \(3, 4\) \(integer label rows .*labels.astype\(float\)"),
])
def test_labels_of_the_wrong_shape(labels, expected):
    with pytest.raises(mt.ShapeError, match=expected):
        mt.softmax_cross_entropy(_tensor(3, 4), labels)


def test_class_labels_in_a_tensor_are_told_to_stay_an_array():
    # mt.Tensor made them floats; the message told the user to pass integers, as they had
    with pytest.raises(mt.InputError, match="mt.Tensor turns integers into floats"):
        mt.softmax_cross_entropy(_tensor(3, 4), mt.Tensor(np.array([0, 1, 2])))


def test_labels_of_a_wrong_kind():
    with pytest.raises(mt.InputError, match="dtype"):
        mt.softmax_cross_entropy(_tensor(2, 3), np.array(["a", "b"]))


def test_logits_of_the_wrong_rank():
    with pytest.raises(mt.ShapeError, match=r"logits must be \(N, C\) or \(C,\), got shape \(2, 3, 4\)"):
        mt.softmax_cross_entropy(_tensor(2, 3, 4), np.zeros((2, 3), dtype=int))


@pytest.mark.parametrize("reduction", ["max", "MEAN", None, "NONE", "avg"])
def test_wrong_reduction(reduction):
    with pytest.raises(mt.InputError) as info:
        mt.softmax_cross_entropy(_tensor(2, 3), np.array([0, 1]), reduction=reduction)
    message = str(info.value)
    assert "reduction" in message and "'mean', 'sum' or 'none'" in message
    assert repr(reduction) in message


# -- gradient() misuse -----------------------------------------------------------------

def test_gradient_of_a_non_scalar_target_without_a_seed():
    x = _tensor(2, 3)
    with mt.Tape() as tape:
        y = x * 2.0
    with pytest.raises(ValueError) as info:
        tape.gradient(y, x)
    message = str(info.value)
    assert "(2, 3)" in message and "not a scalar" in message and "seed" in message
    with pytest.raises(ValueError, match="not a scalar"):
        tape.backward(y)


def test_seed_of_the_wrong_shape():
    x = _tensor(2, 3)
    with mt.Tape() as tape:
        y = x * 2.0
    with pytest.raises(mt.ShapeError) as info:
        tape.gradient(y, x, seed=np.ones((3, 2)))
    message = str(info.value)
    assert "seed" in message and "(3, 2)" in message and "(2, 3)" in message
    with pytest.raises(mt.ShapeError, match="seed"):
        tape.backward(y, seed=np.ones(6))


@pytest.mark.parametrize("sources, where", [
    (np.ones(3), "not ndarray"),
    ([None], "source 0"),
    ({"W": np.ones(3)}, "source 'W'"),
])
def test_a_source_that_is_not_a_tensor(sources, where):
    x = _tensor(3)
    with mt.Tape() as tape:
        loss = (x * x).sum()
    with pytest.raises(TypeError) as info:
        tape.gradient(loss, sources)
    assert where in str(info.value) and "Tensor" in str(info.value)


def test_a_target_not_recorded_on_this_tape():
    x = _tensor(3)
    with mt.Tape() as first:
        loss = (x * x).sum()
    with mt.Tape() as second:
        other = (x * 3.0).sum()
    with pytest.raises(ValueError, match="not recorded on this tape"):
        second.gradient(loss, x)
    outside = (x * x).sum()  # computed with no tape at all
    with pytest.raises(ValueError, match="not recorded on this tape"):
        first.gradient(outside, x)
    with pytest.raises(ValueError, match="not recorded on this tape"):
        first.backward(outside)
    np.testing.assert_allclose(second.gradient(other, x), [3.0, 3.0, 3.0])


def test_a_target_that_is_not_a_tensor():
    x = _tensor(3)
    with mt.Tape() as tape:
        (x * x).sum()
    with pytest.raises(TypeError, match="target must be a Tensor"):
        tape.gradient(1.0, x)


# -- a failing op leaves the tape as it was -----------------------------------------------

@pytest.mark.parametrize("bad_op", [
    lambda a, b: a @ b,
    lambda a, b: a + np.ones(5),
    lambda a, b: a.reshape(7),
    lambda a, b: mt.softmax_cross_entropy(a, np.array([0, 9])),
    lambda a, b: mt.softmax_cross_entropy(a, np.array([0, 1]), reduction="avg"),
    lambda a, b: mt.einsum("ij,jk->ik", a, a),
    lambda a, b: np.exp(a),
])
def test_a_failing_op_leaves_the_tape_unchanged(bad_op):
    a, b = _tensor(2, 3), _tensor(2, 3, seed=1)
    with mt.Tape() as outer:
        with mt.Tape() as tape:
            loss = (a * b).sum()
            before = list(tape.nodes)
            with pytest.raises((ValueError, TypeError)):
                bad_op(a, b)
    assert tape.nodes == before and outer.nodes == before
    np.testing.assert_allclose(tape.gradient(loss, a), b.value)


# -- long chains and memory --------------------------------------------------------------

def test_a_100000_op_chain_has_a_gradient_without_recursion_error():
    x = mt.Tensor(np.ones(3), name="x")
    step = np.full(3, 1e-3)
    with mt.Tape() as tape:
        y = x
        for _ in range(100_000):
            y = y + step
        loss = y.sum()
    assert len(tape.nodes) == 100_001
    np.testing.assert_array_equal(tape.gradient(loss, x), np.ones(3))
    np.testing.assert_allclose(loss.value, 3 * (1 + 100.0))


def test_a_dropped_tape_frees_its_intermediates():
    x = mt.Tensor(np.ones((200, 200)))
    with mt.Tape() as tape:
        hidden = mt.tanh(x * 2.0)
        loss = hidden.sum()
    tape.gradient(loss, x)
    # Tensor has no __weakref__ slot, but its ndarray value does.
    freed = weakref.ref(hidden.value)
    assert freed() is not None
    del hidden
    assert freed() is not None, "the tape keeps its intermediates while it lives"
    del tape, loss
    # No reference cycles: plain reference counting frees it, no gc needed.
    assert freed() is None


def test_10000_training_steps_do_not_grow_memory():
    rng = np.random.default_rng(0)
    X, labels = rng.normal(size=(8, 4)), rng.integers(0, 3, size=8)
    params = [rng.normal(size=(4, 5)), np.zeros(5), rng.normal(size=(5, 3)), np.zeros(3)]

    def step(params):
        W1, b1, W2, b2 = ps = [mt.Tensor(p) for p in params]
        with mt.Tape() as tape:
            h = mt.sigmoid(X @ W1 + b1)
            loss = mt.softmax_cross_entropy(h @ W2 + b2, labels)
        grads = tape.gradient(loss, ps)
        return [p.value - 0.1 * g for p, g in zip(ps, grads)], float(loss)

    for _ in range(200):  # warm-up: caches, first allocations
        params, first_loss = step(params)
    # Every leaked Tensor, Node, closure or ndarray is at least one Python
    # allocator block; one leak per step would add 10,000 of them.
    blocks = sys.getallocatedblocks()
    for _ in range(10_000):
        params, last_loss = step(params)
    grown_blocks = sys.getallocatedblocks() - blocks
    assert grown_blocks < 1_000, f"{grown_blocks} allocator blocks more after 10,000 steps"
    # And in bytes, data buffers included (tracemalloc is slow: fewer steps).
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(1_000):
            params, last_loss = step(params)
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert grown < 32 * 1024, f"memory grew by {grown} bytes over 1,000 steps"
    assert last_loss < first_loss  # the steps did train


# -- numerical stability -----------------------------------------------------------------

@pytest.fixture
def no_float_warnings():
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("index, per_row", [
    ([0, 1, 2], [0.0, 0.0, 5e4 + np.log(2)]),
    ([2, 0, 1], [1e4, 2e4, np.log(2)]),
])
@pytest.mark.parametrize("as_rows", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_softmax_cross_entropy_is_stable_for_huge_logits(no_float_warnings, index, per_row, as_rows,
                                                        reduction):
    logits = mt.Tensor(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [3e4, 3e4, -2e4]]))
    rows = np.eye(3)[index]
    labels = rows if as_rows else np.array(index)
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(logits, labels, reduction=reduction)
    g = tape.gradient(loss, logits)
    assert np.isfinite(loss.value) and np.isfinite(g).all()
    # per row: log Σ exp v − v_label, exactly; ŷ is one-hot or an even split
    scale = 1 / 3 if reduction == "mean" else 1.0
    np.testing.assert_allclose(loss.value, np.sum(per_row) * scale, rtol=1e-12)
    yhat = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(g, (yhat - rows) * scale, atol=1e-12)


def test_one_example_with_huge_logits(no_float_warnings):
    v = mt.Tensor(np.array([-1e4, 1e4]))
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(v, 0)
    np.testing.assert_allclose(loss.value, 2e4)
    np.testing.assert_allclose(tape.gradient(loss, v), [-1.0, 1.0])


def test_sigmoid_is_stable_for_huge_inputs(no_float_warnings):
    x = mt.Tensor(np.array([-1e4, -800.0, 0.0, 800.0, 1e4]))
    with mt.Tape() as tape:
        s = mt.sigmoid(x)
        loss = s.sum()
    g = tape.gradient(loss, x)
    np.testing.assert_allclose(s.value, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-300)
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g, [0.0, 0.0, 0.25, 0.0, 0.0], atol=1e-300)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_and_log_softmax_are_stable_for_huge_inputs(no_float_warnings, name):
    x = mt.Tensor(np.array([[1e4, -1e4, 0.0], [2e4, 2e4, 2e4]]))
    with mt.Tape() as tape:
        y = getattr(mt, name)(x, axis=-1)
        loss = (y * np.arange(6.0).reshape(2, 3)).sum()
    g = tape.gradient(loss, x)
    assert np.isfinite(y.value).all() and np.isfinite(g).all()
    s = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    expected = s if name == "softmax" else np.array([[0.0, -2e4, -1e4], [-np.log(3)] * 3])
    np.testing.assert_allclose(y.value, expected, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("a, b, says", [
    ((4, 3), (2,), "axis -1 has 3 against 2"),
    ((2, 3, 4), (5, 4), "axis -2 has 3 against 5"),
    ((4, 3), (3, 4), "transpose of one operand"),
    ((4, 3), (4,), "give the second operand shape (4, 1)"),
])
def test_broadcasting_failure_says_which_axis_and_how_to_fix_it(a, b, says):
    with pytest.raises(mt.ShapeError, match="numpy lines shapes up from the last axis") as info:
        mt.mul(mt.Tensor(np.ones(a)), np.ones(b))
    assert says in str(info.value)


@pytest.mark.parametrize("labels", [[0.0, 1.0, 2.0], [0.5, 1.0, 2.0]])
def test_float_class_indices_are_a_dtype_problem_not_a_shape_one(labels):
    with pytest.raises(mt.InputError) as info:
        mt.softmax_cross_entropy(mt.Tensor(np.eye(3)), mt.Tensor(labels))
    message = str(info.value)
    assert not isinstance(info.value, mt.ShapeError)
    assert "only if they are integers, but their dtype is float64" in message
    assert "dtype=int" in message and " ;" not in message


@pytest.mark.parametrize("hidden", [lambda t: (t,), lambda t: [[t]], lambda t: [t, 1.0]])
def test_a_tensor_hidden_in_a_list_or_tuple_is_refused_not_read_as_a_constant(hidden):
    # numpy would turn it into an array and the tape would send it no gradient.
    t = mt.Tensor(np.ones(3), name="t")
    with mt.Tape(), pytest.raises(TypeError, match=r"sum: a (tuple|list) holding a Tensor"):
        mt.sum(hidden(t))


def test_lists_of_numbers_and_tuple_indices_of_arrays_still_pass():
    w = mt.Tensor(np.arange(12.0).reshape(4, 3))
    assert mt.sum(w[np.array([0, 1]), 1:]).value == 12.0
    assert mt.sum(mt.mul(mt.Tensor(np.ones(2)), [1.0, 2.0])).value == 3.0


# -- an op declared outside microtape ------------------------------------------------

@mt.primitive("dA = G")
def _summing_vjp(a):
    """C = A, with a VJP that forgets the shape: it sums G."""
    return a * 1.0, (lambda g: g.sum(),)


@mt.primitive("dA = G", grads=(lambda g, c, a: mt.sum(g),))
def _summing_grads(a):
    """C = A, its grads in ops summing G too."""
    return a * 1.0


@pytest.mark.parametrize("op", [_summing_vjp, _summing_grads])
def test_a_user_ops_vjp_of_the_wrong_shape_is_refused_naming_the_op_and_the_shapes(op):
    # A scalar gradient for a (3,) input broadcast into the fan-out's sum, silently: (5, 5, 5)
    w = mt.Tensor(np.array([1.0, 2.0, 3.0]))
    message = rf"{op.name}: the VJP of input 0 gave a gradient of shape \(\), but input 0 has shape \(3,\)"
    for create_graph in (False, True) if op.grads else (False,):
        with mt.Tape() as tape:
            loss = mt.sum(op(w)) + mt.sum(w * 2.0)
        with pytest.raises(mt.ShapeError, match=message):
            tape.gradient(loss, w, create_graph=create_graph)
    from microtape.testing import assert_vjp_matches  # crashed on the scalar with an IndexError
    with pytest.raises(mt.ShapeError, match=message):
        assert_vjp_matches(op, [np.array([1.0, 2.0, 3.0])])


def test_a_user_ops_forward_must_return_one_vjp_per_input():
    @mt.primitive("dA = G, dB = G")
    def one_for_two(a, b):
        return a + b, (lambda g: g,)

    @mt.primitive("dA = G")
    def untupled(a):
        return a * 1.0, lambda g: g

    @mt.primitive("dA = G")
    def not_callable(a):
        return a * 1.0, (1.0,)

    w = mt.Tensor(np.ones(2))
    with pytest.raises(TypeError, match=r"one_for_two: the forward returned 1 VJP\(s\) for 2 "
                                        r"input\(s\); return \(output, \(vjp_0, \.\.\.\)\)"):
        one_for_two(w, w)
    with pytest.raises(TypeError, match="untupled: the forward returned a function for 1 input"):
        untupled(w)
    with pytest.raises(TypeError, match="not_callable: the forward returned 1 VJP"):
        not_callable(w)


def test_microtapes_own_ops_pay_nothing_for_the_check_of_user_ops():
    for op in (mt.matmul, mt.add, mt.sigmoid, mt.softmax_cross_entropy):
        assert not op.checks_vjps and op.forward is op.__wrapped__


@pytest.mark.parametrize("call, given, arithmetic", [
    (lambda: mt.sub(np.array([0, 128, 255], np.uint8), 128), "uint8", "uint8"),   # 0 − 128 wrapped to 128
    (lambda: mt.neg(np.array([1], np.uint8)), "uint8", "uint8"),
    (lambda: mt.add(np.array([100], np.int8), np.array([100], np.int8)), "int8", "int8"),
    (lambda: mt.add(np.array([True]), np.array([True])), "bool", "bool"),          # True + True = True
    (lambda: mt.exp(np.array([12], np.int8)), "int8", "float16"),                   # inf in float16
    (lambda: mt.softmax(np.array([[0, 128, 255]], np.uint8)), "uint8", "float16"),  # NaN
])
def test_numbers_numpy_would_compute_in_a_narrow_arithmetic_are_refused(call, given, arithmetic):
    # The result was cast to float64 afterwards, keeping the wrapped or overflowed numbers
    with pytest.raises(TypeError, match=rf"numpy computes this on the {given} arrays in "
                                        rf"{arithmetic} arithmetic.*x.astype\(np.float64\)"):
        with np.errstate(all="ignore"):
            call()


def test_whole_numbers_that_cannot_go_wrong_still_become_float64():
    assert mt.sum(np.array([True, False, True])).value == 2.0              # numpy sums in int64
    assert mt.add(2, 3).value == 5.0 and mt.mul(np.arange(3), 2).value.tolist() == [0.0, 2.0, 4.0]
    picked = mt.getitem(np.arange(5, dtype=np.int32), np.array([1, 2]))    # selects, computes nothing
    assert picked.value.tolist() == [1.0, 2.0] and picked.dtype == np.float64
    half = mt.exp(np.array([1.0], np.float16))                             # float16 asked for: kept
    assert half.dtype == np.float16
