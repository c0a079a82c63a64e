"""What a tape records, what it gives back, and for how long."""

from __future__ import annotations

import threading
import weakref

import numpy as np
import pytest

import microtape as mt


# -- recording ------------------------------------------------------------------

def test_a_tape_records_each_op_once_in_order():
    x = mt.Tensor(np.ones(3), name="x")
    with mt.Tape() as tape:
        y = mt.exp(x)
        z = y * 2.0
        loss = z.sum()
    assert [n.op.name for n in tape.nodes] == ["exp", "mul", "sum"]
    assert len(tape) == 3
    assert tape.nodes[0].inputs[0] is x and tape.nodes[0].output is y
    assert tape.nodes[1].inputs == (y, 2.0) and tape.nodes[1].output is z
    assert tape.nodes[2].output is loss
    assert all(isinstance(n, mt.Node) for n in tape.nodes)


def test_an_input_passed_by_name_is_recorded_in_its_place_and_gets_its_gradient():
    # Kept among the keyword parameters, a Tensor passed by name was no input of the
    # node: mt.softmax_cross_entropy(logits=v, ...) gave v a gradient of zeros, silently.
    rng = np.random.default_rng(0)
    x, w = mt.Tensor(rng.normal(size=(2, 3))), mt.Tensor(rng.normal(size=(3, 2)))
    v, labels = mt.Tensor(rng.normal(size=(2, 3))), np.array([0, 2])
    calls = [(lambda: mt.sub(x, w.T), lambda: mt.sub(x, b=w.T), [x, w]),
             (lambda: mt.matmul(x, w), lambda: mt.matmul(a=x, b=w), [x, w]),
             (lambda: mt.softmax_cross_entropy(v, labels, reduction="sum"),
              lambda: mt.softmax_cross_entropy(logits=v, labels=labels, reduction="sum"), [v]),
             (lambda: mt.getitem(x, np.array([1, 1])), lambda: mt.getitem(x, index=np.array([1, 1])),
              [x])]
    for by_position, by_name, sources in calls:
        answers = []
        for call in (by_position, by_name):
            with mt.Tape() as tape:
                target = mt.sum(call() * 3.0)
            node = tape.nodes[-3]
            answers.append((target.value, tape.gradient(target, sources), node))
        (want, want_grads, first), (got, grads, second) = answers
        assert got == want and second.params == first.params
        assert [type(a) for a in second.inputs] == [type(a) for a in first.inputs]
        for g, ref in zip(grads, want_grads):
            assert np.abs(ref).sum() > 0
            np.testing.assert_array_equal(g, ref)
    # Derivatives of derivatives take the inputs by position too.
    hessian = mt.jacobian(mt.grad(lambda t: mt.sum(mt.mul(t, b=t) * t)))(mt.Tensor(np.ones(2)))
    np.testing.assert_array_equal(hessian, 6 * np.eye(2))


def test_an_input_named_twice_or_left_out_is_the_forwards_error():
    x = mt.Tensor(np.ones(2))
    with pytest.raises(TypeError, match="sub.*multiple values for argument 'a'"):
        mt.sub(x, a=x)
    with pytest.raises(TypeError, match="sub.*missing 1 required positional argument: 'a'"):
        mt.sub(b=x)


def test_node_exposes_op_formula_and_params():
    x = mt.Tensor(np.ones((2, 3)))
    with mt.Tape() as tape:
        x.sum(axis=1, keepdims=True)
        x + np.ones(3)
    node = tape.nodes[0]
    assert isinstance(node.op, mt.Primitive) and node.op.name == "sum"
    assert node.params == {"axis": 1, "keepdims": True}
    assert isinstance(node.op.formula, str) and node.op.formula
    assert tape.nodes[1].op.broadcasts and not node.op.broadcasts


def test_a_recorded_node_has_every_field_node_init_sets():
    # Primitive.__call__ fills a Node's slots itself rather than calling Node();
    # a field added to Node.__init__ alone would be missing from every recorded node.
    x = mt.Tensor(np.ones(3))
    with mt.Tape() as tape:
        mt.exp(x)
    recorded = tape.nodes[0]
    made = mt.Node(recorded.op, recorded.inputs, recorded.output, recorded.vjps,
                   recorded.params, recorded.clock)
    for field in mt.Node.__slots__:
        assert hasattr(recorded, field) == hasattr(made, field), field
        if hasattr(made, field):
            assert getattr(recorded, field) is getattr(made, field), field


def test_ops_on_data_only_are_recorded_but_run_no_vjp():
    # Recorded, so that a closed form computes them from its arguments; the
    # backward pass plans only the nodes a source reaches, so none of theirs run.
    calls = []
    w = mt.Tensor(np.ones(3))
    with mt.Tape() as tape:
        y = mt.exp(np.ones(3))
        z = mt.add(1.0, 2.0)
        loss = mt.sum(w * _counting_square(calls)(y)) * z
    assert isinstance(y, mt.Tensor) and isinstance(z, mt.Tensor)
    np.testing.assert_allclose(y.value, np.e)
    assert [node.op.name for node in tape.nodes[:2]] == ["exp", "add"]
    np.testing.assert_allclose(tape.gradient(loss, w), 3 * np.e ** 2)
    assert calls == []


def test_outside_a_tape_nothing_is_recorded():
    x = mt.Tensor(np.ones(3))
    with mt.Tape() as tape:
        pass
    y = x * 2.0 + 1.0
    np.testing.assert_array_equal(y.value, [3.0, 3.0, 3.0])
    assert tape.nodes == []
    assert mt.tape.active_tapes() == ()


def test_nested_tapes_both_record():
    x = mt.Tensor(np.array([1.0, 2.0]), name="x")
    with mt.Tape() as outer:
        a = x * 2.0
        with mt.Tape() as inner:
            b = a * 3.0
        c = b + x
        loss = c.sum()
    assert [n.op.name for n in outer.nodes] == ["mul", "mul", "add", "sum"]
    assert [n.op.name for n in inner.nodes] == ["mul"]
    np.testing.assert_allclose(outer.gradient(loss, x), [7.0, 7.0])
    np.testing.assert_allclose(inner.gradient(b, a, seed=np.ones(2)), [3.0, 3.0])
    # On the inner tape b does not depend on x: x was consumed before it began.
    np.testing.assert_array_equal(inner.gradient(b, x, seed=np.ones(2)), [0.0, 0.0])


def test_tape_exit_restores_the_previous_tapes_after_an_exception():
    x = mt.Tensor(np.ones(2))
    with mt.Tape() as outer:
        with pytest.raises(RuntimeError):
            with mt.Tape():
                raise RuntimeError("boom")
        x * 2.0
    assert len(outer.nodes) == 1
    assert mt.tape.active_tapes() == ()


def test_an_op_in_another_thread_is_not_recorded_on_this_threads_tape():
    x = mt.Tensor(np.ones(3))
    results = []
    with mt.Tape() as tape:
        worker = threading.Thread(target=lambda: results.append(x * 2.0))
        worker.start()
        worker.join()
        x + 1.0
    assert len(results) == 1 and isinstance(results[0], mt.Tensor)
    assert [n.op.name for n in tape.nodes] == ["add"]


def test_a_tape_in_another_thread_does_not_record_this_threads_ops():
    x = mt.Tensor(np.ones(3))
    opened, done = threading.Event(), threading.Event()
    box = {}

    def worker():
        with mt.Tape() as tape:
            box["tape"] = tape
            opened.set()
            done.wait(timeout=10)
            x * 5.0

    t = threading.Thread(target=worker)
    t.start()
    assert opened.wait(timeout=10)
    y = mt.exp(x)  # the worker's tape is active, but in its own thread
    with mt.Tape() as mine:
        mt.log(y)
    done.set()
    t.join()
    assert [n.op.name for n in box["tape"].nodes] == ["mul"]
    assert [n.op.name for n in mine.nodes] == ["log"]


# -- the kinds gradient() returns ------------------------------------------------------

def test_gradient_returns_the_kind_of_its_sources(two_layer, rng):
    p = two_layer.params(rng, 3, 4, 2, tensors=True)
    x, labels = rng.normal(size=(5, 3)), rng.integers(0, 2, size=5)
    with mt.Tape() as tape:
        loss = two_layer.loss(x, p, labels)
    as_dict = tape.gradient(loss, p)
    assert isinstance(as_dict, dict) and list(as_dict) == ["W1", "b1", "W2", "b2"]
    single = tape.gradient(loss, p["W1"])
    assert isinstance(single, np.ndarray)
    as_list = tape.gradient(loss, [p["W1"], p["b2"]])
    as_tuple = tape.gradient(loss, (p["W1"], p["b2"]))
    for got in (as_list, as_tuple):
        assert isinstance(got, list) and len(got) == 2
        np.testing.assert_array_equal(got[0], as_dict["W1"])
        np.testing.assert_array_equal(got[1], as_dict["b2"])
    np.testing.assert_array_equal(single, as_dict["W1"])
    for name, t in p.items():
        assert as_dict[name].shape == t.shape and as_dict[name].dtype == t.dtype
    assert tape.gradient(loss, []) == [] and tape.gradient(loss, {}) == {}


def test_gradient_dict_keys_need_not_be_names():
    x = mt.Tensor(np.ones(2))
    with mt.Tape() as tape:
        loss = (x * 3.0).sum()
    got = tape.gradient(loss, {0: x, ("a", 1): x})
    np.testing.assert_array_equal(got[0], [3.0, 3.0])
    np.testing.assert_array_equal(got[("a", 1)], [3.0, 3.0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_source_the_target_does_not_depend_on_gets_zeros(dtype):
    x = mt.Tensor(np.ones(3, dtype=dtype))
    unused = mt.Tensor(np.ones((2, 5), dtype=dtype))
    never_on_tape = mt.Tensor(np.ones(4, dtype=dtype))
    with mt.Tape() as tape:
        loss = (x * 2.0).sum()
        unused * 2.0  # recorded, but not on the way to the loss
    gx, gu, gn = tape.gradient(loss, [x, unused, never_on_tape])
    np.testing.assert_array_equal(gx, np.full(3, 2.0))
    for g, t in ((gu, unused), (gn, never_on_tape)):
        assert g.shape == t.shape and g.dtype == t.dtype
        np.testing.assert_array_equal(g, 0.0)


def test_gradient_of_a_source_with_respect_to_itself_is_the_seed():
    x = mt.Tensor(np.float64(2.0))
    with mt.Tape() as tape:
        y = x * 3.0
    gx, gy = tape.gradient(y, [x, y])
    assert float(gx) == 3.0 and float(gy) == 1.0
    assert tape.gradient(x, x) == 1.0  # x is a source and the target


def test_gradient_with_respect_to_an_intermediate():
    x = mt.Tensor(np.array([0.5, -1.0]))
    with mt.Tape() as tape:
        h = mt.exp(x)
        loss = (h * h).sum()
    np.testing.assert_allclose(tape.gradient(loss, h), 2 * np.exp(x.value))
    gh, gx = tape.gradient(loss, [h, x])
    np.testing.assert_allclose(gx, 2 * np.exp(2 * x.value))


def test_seed_gives_the_gradient_of_a_non_scalar_target():
    rng = np.random.default_rng(1)
    A, B, G = rng.normal(size=(3, 4)), rng.normal(size=(4, 2)), rng.normal(size=(3, 2))
    a = mt.Tensor(A)
    with mt.Tape() as tape:
        c = a @ B
    np.testing.assert_allclose(tape.gradient(c, a, seed=G), G @ B.T)
    np.testing.assert_allclose(tape.gradient(c, a, seed=mt.Tensor(G)), G @ B.T)
    np.testing.assert_allclose(tape.gradient(c, a, seed=G.tolist()), G @ B.T)
    # a seed for a scalar target scales the gradient
    with mt.Tape() as tape:
        loss = (a * a).sum()
    np.testing.assert_allclose(tape.gradient(loss, a, seed=np.array(0.5)), A)


def test_a_one_element_target_needs_no_seed():
    x = mt.Tensor(np.array([2.0]))
    with mt.Tape() as tape:
        y = x * x
    np.testing.assert_allclose(tape.gradient(y, x), [4.0])


# -- asking again ------------------------------------------------------------------

def test_the_same_tape_asked_twice_gives_identical_answers(two_layer):
    rng = np.random.default_rng(2)
    p = two_layer.params(rng, 3, 4, 2, tensors=True)
    x, labels = rng.normal(size=(5, 3)), rng.integers(0, 2, size=5)
    with mt.Tape() as tape:
        h = mt.sigmoid(x @ p["W1"] + p["b1"])
        v = h @ p["W2"] + p["b2"]
        loss = mt.softmax_cross_entropy(v, labels)
        other = (mt.tanh(v) ** 2).mean()
    first = tape.gradient(loss, p)
    for g in first.values():
        g += 100.0  # the user edits the answer: the tape must not care
    first = tape.gradient(loss, p)
    other_grads = tape.gradient(other, p)
    tape.backward(other)
    again = tape.gradient(loss, p)
    for name in p:
        np.testing.assert_array_equal(again[name], first[name])
        assert not np.allclose(other_grads[name], first[name])
    np.testing.assert_array_equal(tape.gradient(other, p)["W1"], other_grads["W1"])
    np.testing.assert_allclose(loss.value, mt.softmax_cross_entropy(v.value, labels).value)


# -- a tape that answers once -------------------------------------------------

def test_a_non_persistent_tape_gives_the_same_gradients_once(two_layer):
    rng = np.random.default_rng(3)
    p = two_layer.params(rng, 3, 4, 2, tensors=True)
    x, labels = rng.normal(size=(5, 3)), rng.integers(0, 2, size=5)
    expected = _fresh_gradients(two_layer, p, x, labels)
    with mt.Tape(persistent=False) as tape:
        loss = two_layer.loss(x, p, labels)
    got = tape.gradient(loss, p)
    for name in p:
        np.testing.assert_array_equal(got[name], expected[name])
    assert tape.spent and len(tape) == 0
    with pytest.raises(RuntimeError, match="persistent=False and has already answered"):
        tape.gradient(loss, p)
    with pytest.raises(RuntimeError, match="persistent=False"):
        tape.backward(loss)


def test_a_non_persistent_tape_frees_values_no_vjp_needs(two_layer):
    # x W1 before the bias is kept only by the record; the sigmoid's output
    # is kept by its VJP. Both go once the tape has answered.
    rng = np.random.default_rng(4)
    p = two_layer.params(rng, 3, 4, 2, tensors=True)
    x, labels = rng.normal(size=(5, 3)), rng.integers(0, 2, size=5)
    for persistent in (True, False):
        with mt.Tape(persistent=persistent) as tape:
            loss = two_layer.loss(x, p, labels)
        before_bias = weakref.ref(tape.nodes[0].output.value)
        hidden = weakref.ref(tape.nodes[2].output.value)
        tape.gradient(loss, p)
        assert (before_bias() is None) == (hidden() is None) == (not persistent)


def test_a_non_persistent_tape_frees_before_bias_values_before_the_vjps_run():
    # The memory win comes from freeing during the pass, not after it.
    rng = np.random.default_rng(5)
    w = mt.Tensor(rng.normal(size=(3, 3)))
    seen = []

    @mt.primitive("dA = G")
    def spy(a):
        return a + 0.0, (lambda g: (seen.append(before_bias() is None), g)[1],)

    with mt.Tape(persistent=False) as tape:
        loss = spy(mt.tanh(w @ w)).sum()
    before_bias = weakref.ref(tape.nodes[0].output.value)  # w @ w: tanh keeps its output, not this
    tape.gradient(loss, w)
    assert seen == [True]


def test_a_mistake_in_the_call_does_not_spend_a_non_persistent_tape():
    w = mt.Tensor([1.0, 2.0])
    with mt.Tape(persistent=False) as tape:
        y = mt.exp(w)
        loss = y.sum()
    with pytest.raises(ValueError, match="not a scalar"):
        tape.gradient(y, w)                       # no seed for a vector target
    with pytest.raises(mt.ShapeError, match="seed has shape"):
        tape.gradient(loss, w, seed=np.ones(3))
    with pytest.raises(TypeError, match="seed must be numbers.*not data of dtype <U3"):
        tape.gradient(loss, w, seed="2.5")        # was read as the number 2.5
    with pytest.raises(TypeError, match="not a Tensor"):
        tape.gradient(loss, [w, w.value])
    assert not tape.spent
    np.testing.assert_allclose(tape.gradient(loss, w), np.exp([1.0, 2.0]))


def test_backward_on_a_non_persistent_tape_sets_grads_once(two_layer):
    rng = np.random.default_rng(6)
    p = two_layer.params(rng, 3, 4, 2, tensors=True)
    x, labels = rng.normal(size=(5, 3)), rng.integers(0, 2, size=5)
    with mt.Tape(persistent=False) as tape:
        loss = two_layer.loss(x, p, labels)
    expected = _fresh_gradients(two_layer, p, x, labels)
    tape.backward(loss)
    for name in p:
        np.testing.assert_array_equal(p[name].grad, expected[name])
    assert tape.spent


def _fresh_gradients(two_layer, p, x, labels):
    with mt.Tape() as tape:
        loss = two_layer.loss(x, p, labels)
    return tape.gradient(loss, p)


def test_backward_sets_grad_on_intermediates():
    x = mt.Tensor(np.array([0.3, -0.7]), name="x")
    w = mt.Tensor(np.array([1.5, 2.0]), name="w")
    with mt.Tape() as tape:
        t = x * w
        s = mt.sigmoid(t)
        loss = s.sum()
    tape.backward(loss)
    sv = s.value
    assert float(loss.grad) == 1.0
    np.testing.assert_array_equal(s.grad, [1.0, 1.0])
    np.testing.assert_allclose(t.grad, sv * (1 - sv))
    np.testing.assert_allclose(w.grad, sv * (1 - sv) * x.value)
    np.testing.assert_allclose(x.grad, sv * (1 - sv) * w.value)
    for t_ in (loss, s, t, x, w):
        assert t_.grad.shape == t_.shape


def test_backward_overwrites_rather_than_accumulates():
    x = mt.Tensor(np.array([1.0, 2.0]))
    with mt.Tape() as tape:
        y = x * x
        loss = y.sum()
    tape.backward(loss)
    first = {id(t): t.grad.copy() for t in (x, y, loss)}
    tape.backward(loss)
    for t in (x, y, loss):
        np.testing.assert_array_equal(t.grad, first[id(t)])
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])


def test_backward_resets_grads_the_new_target_does_not_reach():
    x = mt.Tensor(np.array([1.0, 2.0]))
    w = mt.Tensor(np.array([3.0, 4.0]))
    with mt.Tape() as tape:
        a = (x * x).sum()
        b = (w * 2.0).sum()
    tape.backward(a)
    assert x.grad is not None and w.grad is None and b.grad is None
    tape.backward(b)
    assert x.grad is None and a.grad is None
    np.testing.assert_array_equal(w.grad, [2.0, 2.0])


def test_backward_with_a_seed():
    x = mt.Tensor(np.array([1.0, 2.0, 3.0]))
    with mt.Tape() as tape:
        y = mt.exp(x)
    G = np.array([1.0, -1.0, 0.5])
    tape.backward(y, seed=G)
    np.testing.assert_allclose(x.grad, G * np.exp(x.value))
    np.testing.assert_array_equal(y.grad, G)


def test_last_backward_names_the_target_only_while_its_grads_are_still_its_own():
    # A drawing of a seeded target shows what the user's pass set; another pass since,
    # on any tape, may have overwritten part of it (W.grad below), so that is refused.
    W = mt.Tensor(np.array([1.0, 2.0]), name="W")
    with mt.Tape() as one:
        a = mt.exp(W)
    with mt.Tape() as two:
        b = mt.sum(W * 3.0)
    assert one.last_backward() is None
    one.backward(a, seed=np.ones(2))
    assert one.last_backward() is a
    one.gradient(a, W, seed=np.ones(2))     # leaves .grad alone
    assert one.last_backward() is a
    two.backward(b)
    assert one.last_backward() is None and one.backward_target is a
    assert two.last_backward() is b
    with pytest.raises(ValueError):
        two.backward(a)                     # a failed pass may have reset some .grad
    assert two.last_backward() is None


# -- fan-out and aliasing -----------------------------------------------------------

def test_fan_out_sums_the_gradients():
    v = np.array([0.5, -1.0, 2.0])
    x = mt.Tensor(v)
    with mt.Tape() as tape:
        sq = (x * x).sum()
        twice = (x + x).sum()
        several = (mt.exp(x) + x * 3.0 - mt.tanh(x)).sum()
    np.testing.assert_allclose(tape.gradient(sq, x), 2 * v)
    np.testing.assert_allclose(tape.gradient(twice, x), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(tape.gradient(several, x), np.exp(v) + 3.0 - (1 - np.tanh(v) ** 2))


def _assert_independent(arrays, others=()):
    for i, a in enumerate(arrays):
        for b in list(arrays[i + 1:]) + list(others):
            assert a is not b and not np.shares_memory(a, b)


def test_returned_gradients_never_alias_each_other():
    rng = np.random.default_rng(3)
    a, b = mt.Tensor(rng.normal(size=(2, 3))), mt.Tensor(rng.normal(size=(2, 3)))
    with mt.Tape() as tape:
        c = a + b  # add hands the same G to both sides
        loss = (c * c).sum()
    ga, gb, gc = tape.gradient(loss, [a, b, c])
    _assert_independent([ga, gb, gc])
    expected = 2 * c.value
    ga[...] = 0.0
    np.testing.assert_allclose(gb, expected)
    np.testing.assert_allclose(gc, expected)


@pytest.mark.parametrize("view", [
    lambda t: t.reshape(-1),
    lambda t: t.T,
    lambda t: mt.transpose(t, (1, 0)),
    lambda t: mt.einsum("ij->ji", t),
    lambda t: t[:, :],
])
def test_gradients_that_are_views_of_each_other_are_copied(view):
    # reshape, transpose and einsum pass G back as a view: the source below
    # and the intermediate it feeds would share memory unless copied.
    x = mt.Tensor(np.arange(6.0).reshape(2, 3))
    with mt.Tape() as tape:
        y = view(x)
        loss = (y * y).sum()
    gx, gy = tape.gradient(loss, [x, y])
    _assert_independent([gx, gy])
    gx[...] = -1.0
    np.testing.assert_allclose(gy, 2 * y.value)
    tape.backward(loss)
    _assert_independent([x.grad, y.grad, loss.grad])


def test_returned_gradients_do_not_alias_the_seed():
    x = mt.Tensor(np.arange(6.0).reshape(2, 3))
    with mt.Tape() as tape:
        y = x.T
        z = x + 0.0
    for target in (y, z):
        seed = np.ones(target.shape)
        for seed_arg in (seed, mt.Tensor(seed)):
            gx, gt = tape.gradient(target, [x, target], seed=seed_arg)
            _assert_independent([gx, gt], others=[seed])
            tape.backward(target, seed=seed_arg)
            _assert_independent([x.grad, target.grad], others=[seed])
            np.testing.assert_array_equal(seed, 1.0)


def test_a_scalar_loss_gradient_is_writable_and_fresh():
    x = mt.Tensor(np.array(3.0))
    with mt.Tape() as tape:
        y = x + 1.0
    g1 = tape.gradient(y, x)
    g1 += 5.0  # must not change the next answer
    assert float(tape.gradient(y, x)) == 1.0


# -- what does not get a gradient, and what does not run -----------------------------------

def test_detach_and_stop_gradient_block_the_gradient():
    v = np.array([1.0, -2.0])
    x = mt.Tensor(v)
    with mt.Tape() as tape:
        a = (x * x.detach()).sum()
        b = (x * mt.stop_gradient(x)).sum()
        c = mt.stop_gradient(x * x).sum()
    np.testing.assert_allclose(tape.gradient(a, x), v)
    np.testing.assert_allclose(tape.gradient(b, x), v)
    np.testing.assert_array_equal(tape.gradient(c, x), [0.0, 0.0])


def _counting_square(calls):
    @mt.primitive("dA = 2 G ∘ A")
    def counted_square(a):
        """C = A ∘ A, counting VJP calls."""
        def vjp(g):
            calls.append(np.shape(a))
            return 2 * g * a
        return a * a, (vjp,)
    return counted_square


def test_only_vjps_on_paths_from_the_sources_run():
    calls = []
    square = _counting_square(calls)
    rng = np.random.default_rng(4)
    x = mt.Tensor(rng.normal(size=(5, 3)), name="x")  # data
    W = mt.Tensor(rng.normal(size=(3, 2)), name="W")  # parameter
    with mt.Tape() as tape:
        features = square(x)          # depends on the data only
        loss = (features @ W).sum()
    dW = tape.gradient(loss, W)
    np.testing.assert_allclose(dW, np.tile(features.value.sum(axis=0)[:, None], (1, 2)))
    assert calls == []                # the data's gradient was never computed
    dx = tape.gradient(loss, x)
    assert calls == [(5, 3)]
    np.testing.assert_allclose(dx, 2 * x.value * W.value.sum(axis=1))
    tape.gradient(loss, features)     # stops at the intermediate
    assert calls == [(5, 3)]


def test_a_vjp_that_would_raise_is_not_called_off_the_path():
    @mt.primitive("never used")
    def data_only(a):
        """C = 2A with a VJP that must never be needed."""
        def vjp(g):
            raise AssertionError("the gradient of the input data was computed")
        return 2 * a, (vjp,)

    x = mt.Tensor(np.ones(3))
    w = mt.Tensor(np.array([1.0, 2.0, 3.0]))
    with mt.Tape() as tape:
        loss = (data_only(x) * w).sum()
    np.testing.assert_array_equal(tape.gradient(loss, w), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(tape.gradient(loss, {"w": w})["w"], [2.0, 2.0, 2.0])
    with pytest.raises(AssertionError, match="input data"):
        tape.gradient(loss, x)


def test_vjps_after_the_target_do_not_run():
    calls = []
    square = _counting_square(calls)
    x = mt.Tensor(np.array([1.0, 2.0]))
    with mt.Tape() as tape:
        loss = (x * 3.0).sum()
        (square(x)).sum()             # recorded after the target
    np.testing.assert_array_equal(tape.gradient(loss, x), [3.0, 3.0])
    tape.backward(loss)
    assert calls == []


def test_no_grad_pauses_every_active_tape_and_restores_them():
    x = mt.Tensor([1.0, 2.0])
    with mt.Tape() as outer, mt.Tape() as inner:
        with mt.no_grad():
            y = x * 3.0
            with mt.Tape() as fresh:  # a tape entered inside the block records
                z = y + 1.0
        w = (x * y).sum()
    assert len(outer) == len(inner) == 2 and outer.nodes[-1].output is w  # mul, sum
    assert len(fresh) == 1 and fresh.nodes[0].output is z
    np.testing.assert_array_equal(y.value, [3.0, 6.0])
    # y was computed unrecorded, so the tape treats it as a constant.
    np.testing.assert_array_equal(outer.gradient(w, x), [3.0, 6.0])


def test_a_tape_cannot_be_entered_while_it_records_but_can_resume_after():
    x = mt.Tensor([1.0, 2.0])
    tape = mt.Tape()
    with tape:
        y = x * 2.0
        with pytest.raises(RuntimeError, match="already recording"):
            with tape:
                pass
        z = y * 3.0                     # still recording, once per op
    assert [n.output for n in tape.nodes] == [y, z]
    with tape:                          # resumes after it stopped
        w = z.sum()
    np.testing.assert_array_equal(tape.gradient(w, x), [6.0, 6.0])
    assert mt.tape.active_tapes() == ()


def test_persistent_must_be_a_bool():
    # persistent="no" is true, so the tape kept every value, silently
    with pytest.raises(TypeError, match="persistent must be True or False, not 'no'"):
        mt.Tape(persistent="no")
    assert mt.Tape(persistent=np.bool_(False)).persistent == np.False_


def test_last_backward_does_not_vouch_for_grads_a_pass_in_another_thread_wrote_after_it():
    # The other thread's pass began before this one and set W.grad after it ended
    W = mt.Tensor(np.ones(2))
    entered, go = threading.Event(), threading.Event()

    @mt.primitive("dA = G")
    def waits(a):
        def vjp(g):
            entered.set()
            go.wait(5)
            return g
        return a * 1.0, (vjp,)

    with mt.Tape() as slow:
        slow_loss = mt.sum(waits(W) * 2.0)
    other = threading.Thread(target=slow.backward, args=(slow_loss,))
    other.start()
    assert entered.wait(5)
    with mt.Tape() as tape:
        loss = mt.sum(W * 3.0)
    tape.backward(loss)
    go.set()
    other.join()
    np.testing.assert_array_equal(W.grad, [2.0, 2.0])  # the other pass's
    assert tape.last_backward() is None and slow.last_backward() is None
    tape.backward(loss)  # alone again: its own
    assert tape.last_backward() is loss
