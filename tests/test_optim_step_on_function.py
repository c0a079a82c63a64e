"""opt.step(vg, *args): an optimizer steps on a value_and_grad function's gradients itself.

For plain SGD and compile=True the step runs in the closed form's fused code
(its backward pass seeded with −lr); every other case calls vg and updates
as opt.step(grads) does. Both must land where the two calls land, and the
parameters must be checked against vg's argnums.
"""

import numpy as np
import pytest

import microtape as mt
from models import TwoLayerNet


def _problem(dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    net = TwoLayerNet(6, 5, 4, seed=seed, dtype=dtype)
    x = rng.normal(size=(8, 6)).astype(dtype)
    labels = rng.integers(0, 4, size=8)
    return net, x, labels


def _loss(net):
    def loss(W1, b1, W2, b2, x, labels):
        params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
        return mt.softmax_cross_entropy(net.forward(x, params), labels)
    return loss


def _two_calls(make_opt, compile, dtype, steps=4):
    """The parameters and values after ``steps`` steps as vg(*args), then opt.step(grads)."""
    net, x, labels = _problem(dtype)
    vg = mt.value_and_grad(_loss(net), argnums=(0, 1, 2, 3), compile=compile)
    opt = make_opt(net.parameters())
    values = []
    for _ in range(steps):
        value, grads = vg(*net.parameters(), x, labels)
        opt.step(grads)
        values.append(float(value))
    return [p.value for p in net.parameters()], values


def _one_call(make_opt, compile, dtype, steps=4):
    net, x, labels = _problem(dtype)
    vg = mt.value_and_grad(_loss(net), argnums=(0, 1, 2, 3), compile=compile)
    opt = make_opt(net.parameters())
    values = [float(opt.step(vg, *net.parameters(), x, labels)) for _ in range(steps)]
    assert opt.steps == steps
    return [p.value for p in net.parameters()], values


OPTIMIZERS = {
    "sgd": lambda ps: mt.optim.SGD(ps, lr=0.5),
    "momentum": lambda ps: mt.optim.SGD(ps, lr=0.5, momentum=0.9),
    "decay": lambda ps: mt.optim.SGD(ps, lr=0.5, weight_decay=0.01),
    "adam": lambda ps: mt.optim.Adam(ps, lr=0.05),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("compile", [True, False])
@pytest.mark.parametrize("which", sorted(OPTIMIZERS))
def test_one_call_lands_where_the_two_calls_land(which, compile, dtype):
    make = OPTIMIZERS[which]
    want_params, want_values = _two_calls(make, compile, dtype)
    got_params, got_values = _one_call(make, compile, dtype)
    # The fused step adds (−lr·g) made from the seed −lr, not lr·g subtracted: the same up to
    # rounding; every other path runs the same numpy calls.
    fused = which == "sgd" and compile
    tol = (1e-12 if dtype == "float64" else 2e-5) if fused else 0
    np.testing.assert_allclose(got_values, want_values, rtol=tol, atol=0)
    for got, want in zip(got_params, want_params):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_plain_sgd_on_a_compiled_function_runs_the_fused_step():
    net, x, labels = _problem()
    vg = mt.value_and_grad(_loss(net), argnums=(0, 1, 2, 3), compile=True)
    opt = mt.optim.SGD(net.parameters(), lr=0.5)
    calls = []
    step = vg._sgd_step
    vg._sgd_step = lambda lr, args, params: calls.append(lr) or step(lr, args, params)
    opt.step(vg, *net.parameters(), x, labels)
    assert calls == [0.5]


def test_parameters_in_another_order_get_their_own_gradients():
    net, x, labels = _problem()
    W1, b1, W2, b2 = net.parameters()

    def loss(W2, b1, W1, b2, x, labels):
        return _loss(net)(W1, b1, W2, b2, x, labels)

    before = [p.value.copy() for p in (W1, b1, W2, b2)]
    grads = mt.value_and_grad(loss, argnums=(0, 1, 2, 3))(W2, b1, W1, b2, x, labels)[1]
    want = dict(zip(("W2", "b1", "W1", "b2"), grads))
    for compile in (False, True):
        for p, b in zip((W1, b1, W2, b2), before):
            p.value[...] = b
        vg = mt.value_and_grad(loss, argnums=(0, 1, 2, 3), compile=compile)
        opt = mt.optim.SGD([W1, b1, W2, b2], lr=0.1, momentum=0.5)
        opt.step(vg, W2, b1, W1, b2, x, labels)
        for name, p, b in zip(("W1", "b1", "W2", "b2"), (W1, b1, W2, b2), before):
            np.testing.assert_allclose(p.value, b - 0.1 * want[name], rtol=1e-12, atol=1e-15)


def test_a_tape_recorded_before_the_step_refuses_to_answer():
    net, x, labels = _problem()
    vg = mt.value_and_grad(_loss(net), argnums=(0, 1, 2, 3), compile=True)
    opt = mt.optim.SGD(net.parameters(), lr=0.5)
    with mt.Tape() as tape:
        loss = _loss(net)(*net.parameters(), x, labels)
    opt.step(vg, *net.parameters(), x, labels)
    with pytest.raises(RuntimeError, match="changed in place"):
        tape.gradient(loss, net.parameters())


def test_anomaly_mode_steps_eagerly_and_still_updates():
    net, x, labels = _problem()
    vg = mt.value_and_grad(_loss(net), argnums=(0, 1, 2, 3), compile=True)
    opt = mt.optim.SGD(net.parameters(), lr=0.5)
    want_params, _ = _two_calls(OPTIMIZERS["sgd"], False, "float64", steps=1)
    with mt.detect_anomaly():
        opt.step(vg, *net.parameters(), x, labels)
    for got, want in zip(net.parameters(), want_params):
        np.testing.assert_array_equal(got.value, want)


def test_arguments_the_function_does_not_differentiate_are_refused():
    net, x, labels = _problem()
    opt = mt.optim.SGD(net.parameters(), lr=0.5)
    W1, b1, W2, b2 = net.parameters()
    three = mt.value_and_grad(_loss(net), argnums=(0, 1, 2), compile=True)
    with pytest.raises(mt.InputError, match=r"params \[3\] are not among them"):
        opt.step(three, W1, b1, W2, b2, x, labels)
    copies = [mt.Tensor(p.value.copy()) for p in net.parameters()]
    vg = mt.value_and_grad(_loss(net), argnums=(0, 1, 2, 3), compile=True)
    with pytest.raises(mt.InputError, match="the Tensors, not their values"):
        opt.step(vg, *copies, x, labels)
    with pytest.raises(mt.InputError, match="each once"):
        opt.step(mt.value_and_grad(_loss(net), argnums=(0, 1, 2, 3, 0)), W1, b1, W2, b2, x, labels)
    with pytest.raises(IndexError, match="argnums 3 is out of range for 3 arguments"):
        opt.step(vg, W1, b1, W2)
    for p, q in zip(net.parameters(), _problem()[0].parameters()):
        np.testing.assert_array_equal(p.value, q.value)  # nothing was updated
    assert opt.steps == 0


def test_a_function_that_is_not_a_value_and_grad_is_refused():
    net, x, labels = _problem()
    opt = mt.optim.Adam(net.parameters())
    with pytest.raises(TypeError, match="must be one mt.value_and_grad"):
        opt.step(_loss(net), *net.parameters(), x, labels)
    with pytest.raises(TypeError, match="must be one mt.value_and_grad"):
        opt.step(mt.grad(_loss(net), argnums=(0, 1, 2, 3), compile=True), *net.parameters(), x, labels)
    with pytest.raises(TypeError, match="more argument"):
        opt.step([p.value for p in net.parameters()], x)


def test_the_fused_step_follows_a_new_signature_and_back():
    net, x, labels = _problem()
    vg = mt.value_and_grad(_loss(net), argnums=(0, 1, 2, 3), compile=True)
    opt = mt.optim.SGD(net.parameters(), lr=0.5)
    ref_net, _, _ = _problem()
    ref = mt.value_and_grad(_loss(ref_net), argnums=(0, 1, 2, 3))
    ref_opt = mt.optim.SGD(ref_net.parameters(), lr=0.5)
    for batch in (x, x[:3].copy(), x, x[:3].copy()):
        got = opt.step(vg, *net.parameters(), batch, labels[:len(batch)])
        want = ref_opt.step(ref, *ref_net.parameters(), batch, labels[:len(batch)])
        np.testing.assert_allclose(got, want, rtol=1e-12)
    for p, q in zip(net.parameters(), ref_net.parameters()):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-12, atol=1e-15)
    assert vg.cache_info().misses == 2


def test_after_the_fused_step_ran_once_its_refusals_and_anomaly_mode_still_hold():
    net, x, labels = _problem()
    vg = mt.value_and_grad(_loss(net), argnums=(0, 1, 2, 3), compile=True)
    opt = mt.optim.SGD(net.parameters(), lr=0.5)
    opt.step(vg, *net.parameters(), x, labels)  # the signature's fused step is now ready
    before = [p.value.copy() for p in net.parameters()]
    with pytest.raises(mt.TraceError, match="while a tape records"):
        with mt.Tape():
            opt.step(vg, *net.parameters(), x, labels)
    for p, b in zip(net.parameters(), before):
        np.testing.assert_array_equal(p.value, b)
    eager = mt.value_and_grad(_loss(net), argnums=(0, 1, 2, 3))
    want = [p - 0.5 * g for p, g in zip(before, eager(*net.parameters(), x, labels)[1])]
    calls = []
    with mt.detect_anomaly():
        step = vg.eager
        vg.eager = lambda *args: calls.append(1) or step(*args)
        opt.step(vg, *net.parameters(), x, labels)
    assert calls == [1]  # anomaly mode ran the function op by op, not the cached fused step
    for p, w in zip(net.parameters(), want):
        np.testing.assert_array_equal(p.value, w)


def test_after_the_fused_step_ran_the_parameters_are_still_looked_for():
    # From the second call on, SGD skips its own look for its parameters: the fused step's
    # code checks them by identity. Anything else at the argnums must still be refused.
    net, x, labels = _problem()
    vg = mt.value_and_grad(_loss(net), argnums=(0, 1, 2, 3), compile=True)
    opt = mt.optim.SGD(net.parameters(), lr=0.5)
    opt.step(vg, *net.parameters(), x, labels)
    W1, b1, W2, b2 = net.parameters()
    copies = [mt.Tensor(p.value.copy()) for p in net.parameters()]
    before = [p.value.copy() for p in (*net.parameters(), *copies)]
    with pytest.raises(mt.InputError, match="the Tensors, not their values"):
        opt.step(vg, *copies, x, labels)
    with pytest.raises(mt.InputError, match=r"params \[3\] are not among them"):
        opt.step(vg, W1, b1, W2, copies[3], x, labels)
    with pytest.raises(mt.InputError, match="each once"):
        opt.step(vg, W1, b1, W2, W2, x, labels)
    with pytest.raises(IndexError, match="argnums 3 is out of range for 3 arguments"):
        opt.step(vg, W1, b1, W2)
    bad = labels.copy()
    bad[0] = 99
    with mt.Tape() as tape:
        recorded = _loss(net)(*net.parameters(), x, labels)
    with pytest.raises(mt.InputError, match="out of range"):
        opt.step(vg, *net.parameters(), x, bad)
    for p, b in zip((*net.parameters(), *copies), before):
        np.testing.assert_array_equal(p.value, b)  # nothing was updated
    assert opt.steps == 1
    with pytest.raises(RuntimeError, match="changed in place"):  # a step cut short may have
        tape.gradient(recorded, net.parameters())                # updated some: tapes refuse
    ref_net, _, _ = _problem()
    ref = mt.optim.SGD(ref_net.parameters(), lr=0.5)
    eager = mt.value_and_grad(_loss(ref_net), argnums=(0, 1, 2, 3))
    for _ in range(2):
        ref.step(eager, *ref_net.parameters(), x, labels)
    opt.step(vg, *net.parameters(), x, labels)
    for p, q in zip(net.parameters(), ref_net.parameters()):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("compile", [True, False])
def test_a_call_that_raises_is_no_step(compile):
    net, x, labels = _problem()
    vg = mt.value_and_grad(_loss(net), argnums=(0, 1, 2, 3), compile=compile)
    opt = mt.optim.Adam(net.parameters(), lr=0.05)
    bad = labels.copy()
    bad[0] = 99  # out of range for 4 classes
    with pytest.raises(mt.InputError, match="out of range"):
        opt.step(vg, *net.parameters(), x, bad)
    assert opt.steps == 0
    ref_net, _, _ = _problem()
    ref = mt.optim.Adam(ref_net.parameters(), lr=0.05)
    ref.step(mt.value_and_grad(_loss(ref_net), argnums=(0, 1, 2, 3))(*ref_net.parameters(), x,
                                                                     labels)[1])
    opt.step(vg, *net.parameters(), x, labels)  # the first step: Adam's bias correction at k = 1
    for p, q in zip(net.parameters(), ref_net.parameters()):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-12, atol=1e-15)


def test_a_parameter_passed_again_as_data_takes_the_general_path_and_lands_as_eager():
    # f(W, V, x) differentiates W only; V is data of W's shape. After fused steps on
    # (W, V, x), a call with W in V's place too must not run the code written for two
    # distinct Tensors: W then meets itself, as the eager function computes it.
    def f(W, V, x):
        return mt.sum(mt.sigmoid(x @ W) * (x @ V))

    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 4))
    W, V = (mt.Tensor(rng.normal(size=(4, 3))) for _ in range(2))
    W_ref = mt.Tensor(W.value.copy())
    vg = mt.value_and_grad(f, argnums=0, compile=True)
    opt = mt.optim.SGD([W], lr=0.1)
    eager = mt.value_and_grad(f, argnums=0)
    ref = mt.optim.SGD([W_ref], lr=0.1)
    for aliased in (False, False, True, True, False):
        got = opt.step(vg, W, W if aliased else V, x)
        want = ref.step(eager, W_ref, W_ref if aliased else V, x)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        np.testing.assert_allclose(W.value, W_ref.value, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("which", sorted(OPTIMIZERS))
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("returned", [lambda w: w, lambda w: mt.reshape(w, ()), lambda w: mt.sum(w * 1.0)],
                         ids=["the parameter", "a view of it", "a new value"])
def test_the_value_returned_is_the_one_before_the_update(which, compile, returned):
    # A function that returns its parameter, or a view of it, handed out the very
    # array the update then changed in place: the step returned 1.9, not 2.0.
    w = mt.Tensor(np.array(2.0))
    opt = OPTIMIZERS[which]([w])
    value = opt.step(mt.value_and_grad(returned, compile=compile), w)
    assert value == 2.0 and w.value < 2.0
