"""A kept tape never answers from values that changed after it recorded them."""

from __future__ import annotations

import numpy as np
import pytest

import microtape as mt
from models import TwoLayerNet


def _recorded(seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, size=8)
    net = TwoLayerNet(5, 4, 3, seed=seed)
    with mt.Tape() as tape:
        loss = net.loss(x, y)
    return net, tape, loss, x, y


@pytest.mark.parametrize("make", [lambda p: mt.optim.SGD(p, lr=0.5, momentum=0.9),
                                  lambda p: mt.optim.Adam(p, lr=0.1)], ids=["SGD", "Adam"])
def test_asking_a_tape_again_after_a_step_is_an_error_naming_the_tensor(make):
    net, tape, loss, _, _ = _recorded()
    opt = make(net.params)
    g1 = tape.gradient(loss, net.params)
    opt.step(g1)
    with pytest.raises(RuntimeError, match=r"gradient: the tensor '(W1|b1|W2|b2)' was changed in "
                                           r"place .* take the gradients before the step, or "
                                           r"record the computation again"):
        tape.gradient(loss, net.params)
    with pytest.raises(RuntimeError, match="backward: the tensor '(W1|b1|W2|b2)' was changed"):
        tape.backward(loss)


def test_gradients_taken_before_the_step_and_a_fresh_record_are_right():
    net, tape, loss, x, y = _recorded()
    g1 = tape.gradient(loss, net.params)
    again = tape.gradient(loss, net.params)  # asked twice before any step: the same
    for k in g1:
        np.testing.assert_array_equal(g1[k], again[k])
    mt.optim.SGD(net.params, lr=0.5).step(g1)
    with mt.Tape() as fresh:
        loss2 = net.loss(x, y)
    g2 = fresh.gradient(loss2, net.params)
    assert not np.allclose(g2["W1"], g1["W1"])


def test_a_drawing_after_the_step_is_refused():
    pytest.importorskip("graphviz")
    import viz
    net, tape, loss, _, _ = _recorded()
    viz.draw_graph(tape, loss)  # before the step: fine
    mt.optim.SGD(net.params, lr=0.5).step(tape.gradient(loss, net.params))
    with pytest.raises(RuntimeError, match="viz: the tensor '(W1|b1|W2|b2)' was changed in place"):
        viz.draw_graph(tape, loss)


def test_a_step_after_the_answer_does_not_spoil_later_records_on_the_same_tape():
    # One long tape across steps: each loss depends only on the ops after the
    # last step, so their gradients are still right.
    rng = np.random.default_rng(1)
    w = mt.Tensor(rng.normal(size=3), name="w")
    opt = mt.optim.SGD({"w": w}, lr=0.1)
    with mt.Tape() as tape:
        for _ in range(3):
            loss = (w * w).sum()
            g = tape.gradient(loss, {"w": w})
            np.testing.assert_allclose(g["w"], 2 * w.value)
            opt.step(g)
    with pytest.raises(RuntimeError, match="'w' was changed in place"):
        tape.check_unchanged("draw")


def test_mark_modified_declares_a_direct_write():
    w = mt.Tensor(np.ones(3), name="w")
    with mt.Tape() as tape:
        loss = mt.sigmoid(w).sum()
    tape.gradient(loss, w)
    w.value[:] = 5.0
    w.mark_modified()
    with pytest.raises(RuntimeError, match="'w' was changed in place"):
        tape.gradient(loss, w)


def test_a_changed_tensor_the_target_does_not_depend_on_is_no_error():
    w, v = mt.Tensor(np.ones(2), name="w"), mt.Tensor(np.ones(2), name="v")
    with mt.Tape() as tape:
        loss = (w * 3.0).sum()
        other = (v * 2.0).sum()
    v.mark_modified()
    np.testing.assert_array_equal(tape.gradient(loss, w), [3.0, 3.0])
    with pytest.raises(RuntimeError, match="'v' was changed"):
        tape.gradient(other, v)


@pytest.mark.parametrize("view", [lambda W: W.T, lambda W: mt.reshape(W, (3, 3)), lambda W: W[:],
                                  mt.stop_gradient, lambda W: mt.reshape(W.T, (9,)).reshape(3, 3)],
                         ids=["transpose", "reshape", "slice", "stop_gradient", "a chain of views"])
@pytest.mark.parametrize("create_graph", [False, True])
def test_a_change_reaching_the_tape_through_a_view_is_an_error_too(view, create_graph):
    # Only x's gradient is asked for, so W and the op that made its view are off the
    # path from x; the view shares W's memory, so x @ W.T's VJP would read the new W:
    # the tape gave [6, 6, 6] for [3, 3, 3], silently, where it must refuse.
    x, W = mt.Tensor(np.ones(3)), mt.Tensor(np.ones((3, 3)), name="W")
    with mt.Tape() as tape:
        loss = mt.sum(x @ view(W))
    np.testing.assert_array_equal(tape.gradient(loss, x), [3.0, 3.0, 3.0])
    W.value += 1.0
    W.mark_modified()
    with pytest.raises(RuntimeError, match="the tensor 'W' was changed in place"):
        tape.gradient(loss, x, create_graph=create_graph)
