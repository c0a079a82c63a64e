"""mt.optim: SGD and Adam reach a quadratic's minimum, match their formulas by hand, and check grads."""

import math

import numpy as np
import pytest

import microtape as mt
from microtape.ops import IN_PLACE_MIN_SIZE

# f(w) = ½ Σ a_i (w_i − c_i)²: minimum at c, gradient a ∘ (w − c), curvatures 0.5..2.
CURVATURE = np.array([0.5, 1.0, 2.0, 1.5])
CENTER = np.array([1.0, -2.0, 0.5, 3.0])


def quadratic(w):
    d = w - CENTER
    return 0.5 * (CURVATURE * d * d).sum()


def minimise(make_optimizer, steps):
    w = mt.Tensor(np.zeros(4), name="w")
    params = {"w": w}
    opt = make_optimizer(params)
    for _ in range(steps):
        with mt.Tape() as tape:
            loss = quadratic(w)
        opt.step(tape.gradient(loss, params))
    return w.value


@pytest.mark.parametrize("make, steps", [
    (lambda p: mt.optim.SGD(p, lr=0.4), 200),
    (lambda p: mt.optim.SGD(p, lr=0.1, momentum=0.9), 400),
    (lambda p: mt.optim.Adam(p, lr=0.05), 2000),
])
def test_reaches_the_minimum_of_a_quadratic(make, steps):
    np.testing.assert_allclose(minimise(make, steps), CENTER, atol=1e-6)


def test_weight_decay_moves_the_minimum_as_the_formula_says():
    # minimising f(w) + ½ λ |w|² has its minimum at a c / (a + λ)
    w = minimise(lambda p: mt.optim.SGD(p, lr=0.2, weight_decay=0.5), 300)
    np.testing.assert_allclose(w, CURVATURE * CENTER / (CURVATURE + 0.5), atol=1e-8)


GRADIENTS = [np.array([0.3, -1.2, 2.0]), np.array([-0.5, 0.1, 1.0]), np.array([0.2, 0.2, -3.0])]


def test_adam_first_steps_match_the_formula_by_hand():
    p0 = np.array([1.0, 2.0, -1.0])
    w = mt.Tensor(p0.copy())
    opt = mt.optim.Adam({"w": w}, lr=0.1, betas=(0.8, 0.9), eps=1e-3)
    expected, m, v = p0.copy(), np.zeros(3), np.zeros(3)
    for k, g in enumerate(GRADIENTS, start=1):
        opt.step({"w": g})
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g ** 2
        m_hat, v_hat = m / (1 - 0.8 ** k), v / (1 - 0.9 ** k)
        expected = expected - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-3)
        np.testing.assert_allclose(w.value, expected, rtol=1e-13, atol=1e-15)
    # The first step of Adam moves every coordinate by about lr, against the sign of g.
    w1 = mt.Tensor(p0.copy())
    mt.optim.Adam({"w": w1}, lr=0.1).step({"w": GRADIENTS[0]})
    np.testing.assert_allclose(w1.value - p0, -0.1 * np.sign(GRADIENTS[0]), rtol=1e-6)


def test_sgd_momentum_steps_by_hand():
    p0 = np.array([1.0, 2.0, -1.0])
    w = mt.Tensor(p0.copy())
    opt = mt.optim.SGD({"w": w}, lr=0.1, momentum=0.5, weight_decay=0.01)
    expected, u = p0.copy(), np.zeros(3)
    for g in GRADIENTS:
        opt.step({"w": g})
        u = 0.5 * u + g + 0.01 * expected
        expected = expected - 0.1 * u
        np.testing.assert_allclose(w.value, expected, rtol=1e-14)
    assert opt.steps == 3
    assert repr(opt) == "SGD(lr=0.1, momentum=0.5, weight_decay=0.01)"


@pytest.mark.parametrize("make", [
    lambda p: mt.optim.SGD(p, lr=0.1),
    lambda p: mt.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda p: mt.optim.Adam(p),
])
def test_updates_in_place_and_never_touch_the_gradients(make):
    a, b = mt.Tensor(np.ones((2, 3)), name="a"), mt.Tensor(np.ones(3, dtype=np.float32), name="b")
    arrays = (a.value, b.value)
    opt = make({"a": a, "b": b})
    grads = {"a": np.full((2, 3), 0.5), "b": np.full(3, -0.5, dtype=np.float32)}
    copies = {k: g.copy() for k, g in grads.items()}
    opt.step(grads)
    assert a.value is arrays[0] and b.value is arrays[1]  # same arrays, new values
    assert (a.value < 1).all() and (b.value > 1).all()
    assert b.value.dtype == np.float32
    for k in grads:
        np.testing.assert_array_equal(grads[k], copies[k])


def test_step_checks_keys_and_shapes():
    params = {"W": mt.Tensor(np.zeros((2, 2))), "b": mt.Tensor(np.zeros(2))}
    opt = mt.optim.SGD(params, lr=0.1)
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        opt.step({"W": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"unexpected \['c'\]"):
        opt.step({"W": np.zeros((2, 2)), "b": np.zeros(2), "c": np.zeros(1)})
    with pytest.raises(ValueError, match=r"missing \['b'\], unexpected \['c'\]"):
        opt.step({"W": np.zeros((2, 2)), "c": np.zeros(2)})  # as many keys, one of them wrong
    with pytest.raises(mt.ShapeError, match=r"grads\['b'\] has shape \(3,\).*\(2,\)"):
        opt.step({"W": np.zeros((2, 2)), "b": np.zeros(3)})
    with pytest.raises(TypeError, match=r"grads\['b'\] is a list, not an array of the parameter's shape \(2,\)"):
        opt.step({"W": np.zeros((2, 2)), "b": [0.0, 0.0]})  # a list has no shape
    with pytest.raises(TypeError, match="dict"):
        opt.step([np.zeros((2, 2)), np.zeros(2)])
    assert opt.steps == 0  # nothing was applied
    np.testing.assert_array_equal(params["W"].value, 0)


@pytest.mark.parametrize("make", [lambda ps: mt.optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: mt.optim.Adam(ps, lr=0.1)], ids=["SGD", "Adam"])
def test_a_bad_gradient_is_refused_before_any_parameter_moves(make):
    # The first parameter was updated, the step counted and Adam's moments moved, before
    # numpy refused the second's gradient with its own casting error
    bad = [(mt.Tensor(np.ones(2)), TypeError, "is a Tensor; pass arrays"),
           (np.ones(2, dtype=complex), TypeError, "dtype complex128; a gradient must be real"),
           (np.array(["a", "b"]), TypeError, "dtype <U1"),
           (np.array([1.0, None]), TypeError, "dtype object"),
           ([1.0, 2.0], TypeError, "is a list, not an array of the parameter's shape"),
           (1.0, TypeError, "is a float, not an array")]
    for g, error, match in bad:
        for keyed in (True, False):
            w, b = mt.Tensor(np.ones(3)), mt.Tensor(np.ones(2))
            opt = make({"w": w, "b": b} if keyed else [w, b])
            grads = {"w": np.ones(3), "b": g} if keyed else [np.ones(3), g]
            state = opt.state_dict()
            with pytest.raises(error, match=match):
                opt.step(grads)
            np.testing.assert_array_equal(w.value, np.ones(3))
            assert opt.steps == 0
            for k, v in opt.state_dict().items():
                np.testing.assert_array_equal(v, state[k])
    s = mt.Tensor(np.array(1.0))  # a numpy number for a 0-d parameter, and other real dtypes
    opt = make([s, w])
    opt.step([np.float64(2.0), np.ones(3, dtype=np.float32)])
    opt.step([np.array(1), np.ones(3, dtype=int)])
    assert opt.steps == 2 and s.value < 1.0


def test_constructor_checks():
    w = {"w": mt.Tensor(np.zeros(2))}
    with pytest.raises(TypeError, match=r"dict, list or tuple of Tensors .*give \[t\]"):
        mt.optim.SGD(mt.Tensor(np.zeros(2)), lr=0.1)
    with pytest.raises(TypeError, match="dict, list or tuple of Tensors"):
        mt.optim.SGD(np.zeros(2), lr=0.1)
    for unordered in ({mt.Tensor(np.zeros(2)), mt.Tensor(np.ones(2))}, frozenset()):
        # its order is the hashes': list gradients landed on the wrong Tensors, silently
        with pytest.raises(TypeError, match="not (set|frozenset); a set has no order"):
            mt.optim.SGD(unordered, lr=0.1)
    with pytest.raises(TypeError, match=r"params\[1\] is a ndarray"):
        mt.optim.SGD([mt.Tensor(np.zeros(2)), np.zeros(2)], lr=0.1)
    same = mt.Tensor(np.zeros(2))
    with pytest.raises(ValueError, match=r"params\[0\] and params\[1\] are the same Tensor"):
        mt.optim.SGD([same, same], lr=0.1)
    # Two Tensors on one array, or on a view of it: a step moved the shared numbers twice
    init = np.zeros((2, 3))
    for a, b in ((init, init), (init, init.T), (init, init[1, ::2])):
        for opt in (mt.optim.SGD, mt.optim.Adam):
            with pytest.raises(ValueError, match=r"params\['a'\] and params\['b'\] share memory"):
                opt({"a": mt.Tensor(a), "b": mt.Tensor(b)}, lr=0.1)
    parts = np.zeros(4)  # two halves of one buffer are two parameters: no number is shared
    mt.optim.SGD([mt.Tensor(parts[:2]), mt.Tensor(parts[2:]), mt.Tensor(init[:, 0]),
                  mt.Tensor(init[:, 1])], lr=0.1)
    with pytest.raises(TypeError, match=r"params\['w'\] is a ndarray"):
        mt.optim.Adam({"w": np.zeros(2)})
    with pytest.raises(ValueError, match="empty"):
        mt.optim.Adam({})
    with pytest.raises(ValueError, match="lr"):
        mt.optim.SGD(w, lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        mt.optim.SGD(w, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        mt.optim.SGD(w, lr=0.1, weight_decay=-1)
    with pytest.raises(ValueError, match="betas"):
        mt.optim.Adam(w, betas=(0.9,))
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        mt.optim.Adam(w, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="eps"):
        mt.optim.Adam(w, eps=float("nan"))
    read_only = np.zeros(2)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        mt.optim.SGD({"w": mt.Tensor(read_only)}, lr=0.1)


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_setting_lr_changes_the_next_step_and_is_checked_as_the_constructor_checks_it(kind):
    w, g = mt.Tensor(np.ones(3), name="w"), np.array([2.0, -1.0, 0.5])
    opt = getattr(mt.optim, kind)({"w": w}, lr=0.1)
    opt.lr = 0.5
    assert opt.lr == 0.5 and "lr=0.5" in repr(opt)
    opt.step({"w": g})
    # SGD moves by lr · g; Adam's first step by lr · g / (|g| + eps)
    moved = 0.5 * g if kind == "SGD" else 0.5 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(w.value, np.ones(3) - moved, rtol=1e-15)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"{kind}: lr must be a finite number above 0.0"):
            opt.lr = bad
    for bad in ("0.1", True, None, [0.1]):  # a slip, not a number: not parsed, not read as 1
        with pytest.raises(TypeError, match=rf"{kind}: lr must be a real number, not"):
            opt.lr = bad
    assert opt.lr == 0.5


def test_setting_sgd_momentum_or_weight_decay_changes_the_next_step_and_is_checked():
    # Momentum switched on mid-run starts its velocity at zero, as a new optimizer would;
    # it used to crash at the next step (no velocity had been made for momentum=0).
    g = np.array([2.0, -1.0, 0.5])
    w = mt.Tensor(np.ones(3))
    opt = mt.optim.SGD([w], lr=0.1)
    opt.step([g])
    opt.momentum, opt.weight_decay = 0.9, 0.01
    assert "momentum=0.9, weight_decay=0.01" in repr(opt)
    w_ref = mt.Tensor(w.value.copy())
    ref = mt.optim.SGD([w_ref], lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(3):
        opt.step([g])
        ref.step([g])
    np.testing.assert_array_equal(w.value, w_ref.value)
    for name, bad, why in [("momentum", 1.0, r"\[0.0, 1.0\)"), ("momentum", -0.1, r"\[0.0, 1.0\)"),
                           ("momentum", float("nan"), "nan"), ("weight_decay", -1.0, "at least 0.0"), ("weight_decay", float("inf"), "at least 0.0")]:
        with pytest.raises(ValueError, match=rf"SGD: {name} must be a finite number (in )?{why}|got {why}"):
            setattr(opt, name, bad)
    assert (opt.momentum, opt.weight_decay) == (0.9, 0.01)


def test_setting_adam_betas_or_eps_changes_the_next_step_and_is_checked():
    g = np.array([2.0, -1.0, 0.5])
    w = mt.Tensor(np.ones(3))
    opt = mt.optim.Adam([w], lr=0.05)
    opt.step([g])
    w_ref = mt.Tensor(w.value.copy())
    ref = mt.optim.Adam([w_ref], lr=0.05, betas=(0.5, 0.9), eps=1e-6)
    ref.load_state_dict(opt.state_dict())  # the same step count and moments
    opt.betas, opt.eps = (0.5, 0.9), 1e-6
    assert "betas=(0.5, 0.9), eps=1e-06" in repr(opt)
    for _ in range(2):
        opt.step([g])
        ref.step([g])
    np.testing.assert_array_equal(w.value, w_ref.value)
    with pytest.raises(ValueError, match=r"betas\[1\] must be a finite number in \[0.0, 1.0\)"):
        opt.betas = (0.9, 1.0)
    with pytest.raises(ValueError, match="a pair"):
        opt.betas = 0.9
    with pytest.raises(ValueError, match=r"Adam: eps must be a finite number above 0.0"):
        opt.eps = 0.0
    with pytest.raises(ValueError, match=r"Adam: eps must be a finite number above 0.0"):
        opt.eps = float("inf")  # Adam would never move
    with pytest.raises(TypeError, match=r"Adam: betas\[0\] must be a real number, not str"):
        opt.betas = "ab"
    assert (opt.betas, opt.eps) == ((0.5, 0.9), 1e-6)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("param_dtype, grad_dtype", [(np.float64, np.float64), (np.float32, np.float32),
                                                     (np.float32, np.float64), (np.float64, np.float32)])
@pytest.mark.parametrize("shape", [(), (3, 4), (IN_PLACE_MIN_SIZE + 5,)], ids=["0-d", "small", "in place"])
def test_sgd_gives_the_bits_of_p_minus_lr_times_g(shape, param_dtype, grad_dtype, momentum):
    # the step multiplies by lr held as an array of the parameter's dtype: the
    # rounding must be that of the formula with lr as the float it was given
    rng = np.random.default_rng(1)
    start = rng.normal(size=shape).astype(param_dtype)
    grads = [rng.normal(size=shape).astype(grad_dtype) for _ in range(3)]
    lr = 0.0123
    w = mt.Tensor(start.copy(), name="w")
    opt = mt.optim.SGD([w], lr=lr, momentum=momentum)
    expect, u = start.copy(), np.zeros_like(start)
    for g in grads:
        opt.step([g])
        if momentum:
            u *= momentum
            u += g
            expect -= lr * u
        else:
            expect -= lr * g
    assert w.value.dtype == param_dtype
    np.testing.assert_array_equal(w.value, expect)


@pytest.mark.parametrize("param_dtype, grad_dtype", [(np.float64, np.float64), (np.float32, np.float32),
                                                     (np.float32, np.float64), (np.float64, np.float32)])
@pytest.mark.parametrize("shape", [(), (3, 4)], ids=["0-d", "array"])
def test_adam_gives_the_bits_of_its_formula_with_the_hyperparameters_as_given(shape, param_dtype,
                                                                               grad_dtype):
    # the step multiplies by its constants held as arrays of the buffers' dtype:
    # the rounding must be that of the formula with each constant a Python float
    rng = np.random.default_rng(2)
    start = rng.normal(size=shape).astype(param_dtype)
    grads = [rng.normal(size=shape).astype(grad_dtype) for _ in range(3)]
    lr, (beta1, beta2), eps = 0.01, (0.85, 0.995), 1e-7
    w = mt.Tensor(start.copy(), name="w")
    opt = mt.optim.Adam([w], lr=lr, betas=(beta1, beta2), eps=eps)
    p, m, v, buf = start.copy(), *(np.zeros_like(start) for _ in range(3))
    for k, g in enumerate(grads, start=1):
        opt.step([g])
        m *= beta1
        m += np.multiply(g, 1.0 - beta1, out=buf)
        v *= beta2
        np.multiply(g, 1.0 - beta2, out=buf)  # (1 − β2) g, then times g: as PyTorch's addcmul
        buf *= g
        v += buf
        np.sqrt(v, out=buf)
        buf /= math.sqrt(1.0 - beta2 ** k)
        buf += eps
        np.divide(m, buf, out=buf)
        buf *= lr / (1.0 - beta1 ** k)
        p -= buf
        np.testing.assert_array_equal(w.value, p)


@pytest.mark.parametrize("param_dtype, grad", [
    (np.float16, np.full(2, 300.0, np.float16)),   # 300² overflows float16: v was inf, w stuck
    (np.float64, np.full(2, 300, np.int16)),       # squared in int16: wrapped
    (np.float64, np.full(2, 20, np.int8)),         # squared in int8: v negative, w NaN
], ids=["float16", "int16", "int8"])
def test_adam_squares_a_narrow_gradient_without_overflow(param_dtype, grad):
    w = mt.Tensor(np.zeros(2, dtype=param_dtype))
    opt = mt.optim.Adam([w], lr=0.1)
    for _ in range(3):
        opt.step([grad])
    # a constant gradient moves every step by lr: m̂ / √v̂ = 1
    np.testing.assert_allclose(w.value, [-0.3, -0.3], rtol=2e-3)


def test_trains_a_network_from_tape_gradients():
    from models import TwoLayerNet
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(30, 4)), rng.integers(0, 3, size=30)
    net = TwoLayerNet(4, 8, 3, seed=0)
    opt = mt.optim.Adam(net.params, lr=0.05)
    first = None
    for _ in range(100):
        with mt.Tape() as tape:
            loss = net.loss(x, labels)
        first = float(loss) if first is None else first
        opt.step(tape.gradient(loss, net.params))
    assert float(net.loss(x, labels)) < 0.5 * first


# -- lists, tuples, net.parameters() and .grad ---------------------------------------------

@pytest.mark.parametrize("make", [lambda p: mt.optim.SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: mt.optim.Adam(p, lr=0.01)])
@pytest.mark.parametrize("container", [list, tuple])
def test_a_list_or_tuple_of_tensors_steps_exactly_as_the_dict(make, container):
    rng = np.random.default_rng(0)
    start = {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    named = {k: mt.Tensor(v.copy()) for k, v in start.items()}
    ordered = container(mt.Tensor(v.copy()) for v in start.values())
    by_name, by_position = make(named), make(ordered)
    for _ in range(3):
        g = {k: rng.normal(size=v.shape) for k, v in start.items()}
        by_name.step(g)
        by_position.step(container(g.values()))
    for a, b in zip(named.values(), ordered):
        np.testing.assert_array_equal(a.value, b.value)


def test_list_params_take_list_grads_in_the_same_order():
    opt = mt.optim.SGD([mt.Tensor(np.zeros((2, 2))), mt.Tensor(np.zeros(2))], lr=0.1)
    with pytest.raises(TypeError, match="grads must be the list"):
        opt.step({"W": np.zeros((2, 2)), "b": np.zeros(2)})
    with pytest.raises(ValueError, match="1 gradients for 2 parameters"):
        opt.step([np.zeros((2, 2))])
    with pytest.raises(mt.ShapeError, match=r"grads\[1\] has shape \(3,\)"):
        opt.step([np.zeros((2, 2)), np.zeros(3)])
    with pytest.raises(TypeError, match=r"grads\[1\] is a list"):
        opt.step([np.zeros((2, 2)), [0.0, 0.0]])  # a list has no shape
    assert opt.steps == 0


@pytest.mark.parametrize("make", [lambda ps: mt.optim.SGD(ps, lr=0.1),
                                  lambda ps: mt.optim.Adam(ps, lr=0.1)], ids=["SGD", "Adam"])
def test_step_without_grads_refuses_a_grad_it_applied_already(make):
    # B.grad from the first backward was applied again at the second step, whose loss
    # does not depend on B, and a step called twice applied the same .grad twice
    a, b = mt.Tensor(np.ones(2), name="A"), mt.Tensor(np.full(2, 0.9), name="B")
    opt = make({"A": a, "B": b})
    with mt.Tape() as tape:
        loss = mt.sum(a * b)
    tape.backward(loss)
    opt.step()
    moved = a.value.copy(), b.value.copy()
    with pytest.raises(mt.InputError, match=r"params \['A', 'B'\] is the one the last step"):
        opt.step()
    with mt.Tape() as tape:
        loss = mt.sum(a * a)
    tape.backward(loss)
    with pytest.raises(mt.InputError, match=r"params \['B'\] is the one the last step applied"):
        opt.step()
    np.testing.assert_array_equal(a.value, moved[0])
    np.testing.assert_array_equal(b.value, moved[1])
    with mt.Tape() as tape:
        loss = mt.sum(a * a * b)
    tape.backward(loss)
    opt.step()
    assert opt.steps == 2


def test_net_parameters_trains_with_tape_gradient_or_with_backward_and_grad():
    from models import MLP, TwoLayerNet
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(20, 4)), rng.integers(0, 3, size=20)
    net = TwoLayerNet(4, 6, 3, seed=0)
    assert net.parameters() == [net.params[k] for k in ("W1", "b1", "W2", "b2")]
    assert [p.name for p in MLP((4, 5, 5, 3)).parameters()] == ["W1", "b1", "W2", "b2", "W3", "b3"]

    twin = TwoLayerNet(4, 6, 3, seed=0)
    opt, twin_opt = mt.optim.SGD(net.parameters(), lr=0.5), mt.optim.SGD(twin.params, lr=0.5)
    for _ in range(5):
        with mt.Tape() as tape:
            loss = net.loss(x, labels)
        tape.backward(loss)       # sets .grad, overwriting the last step's: nothing accumulates
        opt.step()
        with mt.Tape() as tape:
            twin_loss = twin.loss(x, labels)
        twin_opt.step(tape.gradient(twin_loss, twin.params))
    for a, b in zip(net.parameters(), twin.parameters()):
        np.testing.assert_array_equal(a.value, b.value)


def test_step_without_grads_needs_backward_first():
    opt = mt.optim.Adam([mt.Tensor(np.zeros(2), name="w")])
    with pytest.raises(ValueError, match=r"params \[0\] have no .grad; call tape.backward"):
        opt.step()


# -- resuming -------------------------------------------------------------------------------

def _run(opt, params, steps):
    for _ in range(steps):
        with mt.Tape() as tape:
            loss = quadratic(params["w"]) + mt.sum(params["u"] * params["u"])
        opt.step(tape.gradient(loss, params))


@pytest.mark.parametrize("make", [
    lambda p: mt.optim.Adam(p, lr=0.05),
    lambda p: mt.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: mt.optim.SGD(p, lr=0.1),
])
def test_a_run_saved_and_resumed_takes_the_same_steps_as_one_run(make, tmp_path):
    from models.checkpoint import load_arrays, save_arrays

    def fresh():
        return {"w": mt.Tensor(np.zeros(4)), "u": mt.Tensor(np.ones((2, 3)))}

    straight = fresh()
    _run(make(straight), straight, 10)

    first = fresh()
    opt = make(first)
    _run(opt, first, 4)
    save_arrays(tmp_path / "opt.npz", opt.state_dict())
    resumed = {k: mt.Tensor(v.value.copy()) for k, v in first.items()}
    again = make(resumed)
    again.load_state_dict(load_arrays(tmp_path / "opt.npz"))
    assert again.steps == 4
    _run(again, resumed, 6)
    for k in straight:
        np.testing.assert_array_equal(resumed[k].value, straight[k].value)


def test_state_dict_names_its_entries_and_copies():
    params = [mt.Tensor(np.zeros(2)), mt.Tensor(np.zeros((2, 2)))]
    opt = mt.optim.Adam(params, lr=0.1)
    opt.step([np.ones(2), np.ones((2, 2))])
    state = opt.state_dict()
    assert sorted(state) == ["m.0", "m.1", "optimizer", "steps", "v.0", "v.1"]
    assert str(state["optimizer"]) == "Adam" and int(state["steps"]) == 1
    np.testing.assert_allclose(state["m.0"], 0.1)          # (1 − β1) g
    state["m.0"][:] = 5                                     # a copy: the optimizer keeps its own
    assert opt.state_dict()["m.0"][0] == pytest.approx(0.1)
    sgd = mt.optim.SGD({"w": mt.Tensor(np.zeros(3))}, lr=0.1, momentum=0.5)
    assert sorted(sgd.state_dict()) == ["optimizer", "steps", "velocity.w"]


def test_a_state_that_does_not_fit_is_refused_and_changes_nothing():
    w = {"w": mt.Tensor(np.zeros(3))}
    adam = mt.optim.Adam(w, lr=0.1)
    adam.step({"w": np.ones(3)})
    before = adam.state_dict()
    sgd_state = mt.optim.SGD(w, lr=0.1, momentum=0.9).state_dict()
    with pytest.raises(mt.InputError, match="saved by SGD, not by Adam"):
        adam.load_state_dict(sgd_state)
    with pytest.raises(mt.InputError, match="no 'optimizer' entry"):
        adam.load_state_dict({"m.w": np.zeros(3)})
    plain = mt.optim.SGD(w, lr=0.1)   # no momentum: no velocity to take
    with pytest.raises(mt.InputError, match=r"holds \['velocity.w'\] but .* keeps \[\]"):
        plain.load_state_dict(sgd_state)
    wrong = {**before, "v.w": np.zeros(4), "m.w": np.full(3, 7.0)}
    with pytest.raises(mt.ShapeError, match=r"'v.w' has shape \(4,\)"):
        adam.load_state_dict(wrong)
    # A dtype it cannot read was found while copying, after m.w had been overwritten
    complex_v = {**before, "m.w": np.full(3, 7.0), "v.w": np.zeros(3, dtype=complex)}
    with pytest.raises(mt.InputError, match=r"'v.w' holds complex128, which cannot be read"):
        adam.load_state_dict(complex_v)
    for name, value in adam.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_a_state_of_the_wrong_kind_is_refused_naming_what_to_pass():
    # A path, None or a list raised AttributeError: 'str' object has no attribute 'get'
    opt = mt.optim.Adam({"w": mt.Tensor(np.ones(2))}, lr=0.1)
    for state, hint in (("opt.npz", r"not str \(read the file first"), (None, "not NoneType"),
                        ([1, 2], "not list")):
        with pytest.raises(TypeError, match=rf"Adam.load_state_dict: state must be the dict "
                                            rf"state_dict\(\) returned, {hint}"):
            opt.load_state_dict(state)
    state = opt.state_dict()
    state["m.w"] = mt.Tensor(state["m.w"])
    with pytest.raises(TypeError, match="'m.w' is a Tensor"):
        opt.load_state_dict(state)


def test_a_damaged_state_is_refused_before_it_makes_every_step_nan():
    w = mt.Tensor(np.ones(2))
    opt = mt.optim.Adam({"w": w}, lr=0.1)
    opt.step({"w": np.ones(2)})
    for name, bad in (("v.w", -1.0), ("m.w", np.nan), ("v.w", np.inf)):
        state = opt.state_dict()
        state[name] = np.full(2, bad)
        with pytest.raises(mt.InputError, match=rf"'{name}' holds NaN, inf"):
            opt.load_state_dict(state)
    opt.step({"w": np.ones(2)})
    assert np.isfinite(w.value).all() and opt.steps == 2
    # A float64 second moment past float32's range became inf in a float32 Adam's buffer
    narrow = mt.optim.Adam({"w": mt.Tensor(np.ones(2, dtype=np.float32))})
    state = narrow.state_dict()
    state["v.w"] = np.full(2, 1e300)
    with pytest.raises(mt.InputError, match="'v.w' holds numbers beyond the range of the "
                                            "parameter's float32"):
        narrow.load_state_dict(state)
    assert not narrow.state_dict()["v.w"].any()


def test_momentum_switched_off_and_on_again_starts_from_a_zero_velocity():
    # Switched off, the velocity was kept, and switched on again the old one was used
    rng = np.random.default_rng(0)
    v0, gs = rng.normal(size=3), [rng.normal(size=3) for _ in range(4)]
    w = mt.Tensor(v0.copy())
    opt = mt.optim.SGD([w], lr=0.1, momentum=0.9)
    opt.step([gs[0]])
    opt.step([gs[1]])
    opt.momentum = 0.0
    assert list(opt.state_dict()) == ["optimizer", "steps"]  # as an SGD made without momentum
    opt.step([gs[2]])
    opt.momentum = 0.9
    opt.step([gs[3]])
    u = 0.9 * gs[0] + gs[1]
    want = v0 - 0.1 * gs[0] - 0.1 * u - 0.1 * gs[2] - 0.1 * gs[3]  # the last velocity: g3 alone
    np.testing.assert_allclose(w.value, want, rtol=1e-15)


@pytest.mark.parametrize("make", [lambda p: mt.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
                                  lambda p: mt.optim.Adam(p, lr=0.01)])
def test_a_step_on_compiled_gradients_ticks_the_edit_clock_once_and_matches_eager(make):
    # The user's compiled loop: value_and_grad(compile=True) on the Tensors the optimizer holds.
    from microtape.state import _EDITS
    rng = np.random.default_rng(2)
    x, labels = rng.normal(size=(8, 3)), rng.integers(0, 2, size=8)
    start = [rng.normal(size=(3, 2)), rng.normal(size=2)]

    def loss(W, b, x, labels):
        return mt.softmax_cross_entropy(x @ W + b, labels)

    runs = []
    for compile in (True, False):
        params = [mt.Tensor(a.copy()) for a in start]
        opt, vg = make(params), mt.value_and_grad(loss, (0, 1), compile=compile)
        for _ in range(3):
            before = _EDITS[0]
            opt.step(vg(*params, x, labels)[1])
            assert _EDITS[0] == before + 1 and all(p._version == _EDITS[0] for p in params)
        runs.append([p.value for p in params])
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
