"""A VJP of the closed form works in the buffers that die there, and nowhere else.

At large sizes the sigmoid's VJP may compute dJ/dt in the buffers of G and
S (``d_h *= h``), tanh's in T's and exp's in C's, but only when a pass found
nothing reads, holds or returns them afterwards. Each refusal below has a
wrong-answer check: had the buffer been overwritten, the result would differ.
"""

from __future__ import annotations

import numpy as np
import pytest

import microtape as mt
from models import TwoLayerNet

N, M = 64, 80  # 5,120 elements: "large", where the closed form works in place


def _close(a, b, tol=1e-12) -> None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    assert np.abs(a - b).max(initial=0.0) <= tol * max(np.abs(b).max(initial=0.0), 1.0)


def _agrees(build, sources, tol=1e-12):
    """The closed form of ``build()`` gives the tape's value, gradients and SGD step."""
    with mt.Tape() as tape:
        target = build()
    cf = tape.closed_form(target, sources)
    refs = _listed(tape.gradient(target, sources))
    for _ in range(2):  # twice: the first call changed nothing it reads
        value, grads = cf()
        _close(value, target.value, tol)
        for g, ref in zip(_listed(grads), refs, strict=True):
            assert g.dtype == ref.dtype
            _close(g, ref, tol)
    return cf, target, refs


def _listed(grads):
    return list(grads.values()) if isinstance(grads, dict) else list(grads)


def _two_layer(rng, dtype=np.float64):
    net = TwoLayerNet(30, M, 4, seed=int(rng.integers(100)), dtype=dtype)
    x, labels = rng.normal(size=(N, 30)).astype(dtype), rng.integers(0, 4, N)
    return net, x, labels


def test_the_sigmoid_vjp_of_a_large_two_layer_step_works_in_d_h_and_h():
    rng = np.random.default_rng(0)
    net, x, labels = _two_layer(rng)
    cf, _, _ = _agrees(lambda: net.loss(x, labels), net.params)
    spared = ("    d_t = d_h  # in place: d_h and h are not read again\n    d_t *= h\n"
              "    np.subtract(1.0, h, out=h)\n    d_t *= h\n")
    assert spared in cf.fast_source and spared in cf.step_source
    assert "out=h" not in cf.source and "in place" not in cf.source  # the textbook stays plain
    assert "d_t = d_h * h * (1 - h)" in cf.source
    # Fresh values, and the fused step against the tape's own step.
    for p in net.params.values():
        p.value = rng.normal(size=p.shape)
    x, labels = rng.normal(size=(N, 30)), rng.integers(0, 4, N)
    with mt.Tape() as tape:
        J = net.loss(x, labels)
    refs = tape.gradient(J, net.params)
    arrays = {"x": x, "labels": labels, **{k: p.value.copy() for k, p in net.params.items()}}
    value, grads = cf(**arrays)
    _close(value, J.value)
    for g, ref in zip(_listed(grads), refs.values(), strict=True):
        _close(g, ref)
    step = [arrays[n] for n in cf.inputs]
    _close(cf.step_function(*step, 0.1), J.value)
    for k, p in net.params.items():
        _close(arrays[k], p.value - 0.1 * refs[k])


def test_float32_keeps_its_dtype_when_worked_in_place():
    rng = np.random.default_rng(1)
    net, x, labels = _two_layer(rng, np.float32)
    cf, _, _ = _agrees(lambda: net.loss(x, labels), net.params, tol=1e-5)
    assert "np.subtract(1.0, h, out=h)" in cf.fast_source


def test_tanh_and_exp_work_in_their_outputs_buffers():
    rng = np.random.default_rng(2)
    a = mt.Tensor(rng.uniform(-1, 1, (N, M)), name="a")
    w = mt.Tensor(rng.normal(size=(N, M)), name="w")
    cf, _, _ = _agrees(lambda: mt.sum(mt.exp(mt.tanh(a)) * w), [a, w])
    assert "    d_tanh = exp  # in place: exp is not read again\n    d_tanh *= d_exp\n" in cf.fast_source
    assert ("    d_a = tanh  # in place: tanh is not read again\n"
            "    np.multiply(d_a, d_a, out=d_a)\n") in cf.fast_source


def test_a_gradient_two_sigmoids_share_is_not_overwritten_by_the_first():
    # s = sigmoid(a) + sigmoid(b) hands the same d_s to both VJPs: the first
    # must not work in it, or the second reads its own result.
    rng = np.random.default_rng(3)
    a, b, w = (mt.Tensor(rng.normal(size=(N, M)), name=n) for n in "abw")
    cf, _, _ = _agrees(lambda: mt.sum((mt.sigmoid(a) + mt.sigmoid(b)) * w), [a, b, w])
    assert cf.fast_source.count("in place: ") == 1  # only the last reader of d_s


def test_a_view_of_g_read_later_keeps_g():
    # The transpose's VJP hands on a view of d_s, read by tanh's VJP after
    # the sigmoid's: d_s must stay as it is.
    rng = np.random.default_rng(4)
    a, q, w = (mt.Tensor(rng.normal(size=shape), name=n)
               for n, shape in (("a", (N, M)), ("q", (M, N)), ("w", (N, M))))

    def build():
        m = mt.tanh(q)
        h = mt.sigmoid(a)
        return mt.sum((h + mt.transpose(m)) * w)
    cf, _, _ = _agrees(build, [a, q, w])
    assert "d_a = 1.0 - sigmoid\n" in cf.fast_source and "out=sigmoid)\n    d_a" not in cf.fast_source


def test_a_returned_gradient_is_not_overwritten():
    # h is a source: d_h is returned, so the sigmoid's VJP works in a fresh buffer.
    rng = np.random.default_rng(5)
    net, x, labels = _two_layer(rng)
    with mt.Tape() as tape:
        t = x @ net.params["W1"] + net.params["b1"]
        h = mt.sigmoid(t)
        J = mt.softmax_cross_entropy(h @ net.params["W2"] + net.params["b2"], labels)
    cf = tape.closed_form(J, [h, net.params["W1"]])
    value, (d_h, d_W1) = cf()
    ref_h, ref_W1 = tape.gradient(J, [h, net.params["W1"]])
    _close(d_h, ref_h)
    _close(d_W1, ref_W1)
    assert "np.subtract(1.0" not in cf.fast_source


def test_a_gradient_that_views_another_array_is_not_overwritten():
    # d_sigmoid is d_u.T, and d_u is also b's gradient, returned: working in
    # d_sigmoid would change d_b. And d of a sum is a read-only broadcast.
    rng = np.random.default_rng(7)
    a, b, w = (mt.Tensor(rng.normal(size=shape), name=n)
               for n, shape in (("a", (M, N)), ("b", (N, M)), ("w", (N, M))))
    cf, _, _ = _agrees(lambda: mt.sum((mt.transpose(mt.sigmoid(a)) + b) * w), [a, b, w])
    assert "in place" not in cf.fast_source
    cf, _, _ = _agrees(lambda: mt.sum(mt.sigmoid(a)), [a])
    assert "in place" not in cf.fast_source


def test_a_wider_gradient_is_not_narrowed_into_a_float32_buffer():
    rng = np.random.default_rng(8)
    a = mt.Tensor(rng.normal(size=(N, M)).astype(np.float32), name="a")
    w = mt.Tensor(rng.normal(size=(N, M)), name="w")  # float64: tanh's G is float64
    cf, _, _ = _agrees(lambda: mt.sum(mt.tanh(a) * w), [a, w], tol=1e-6)
    assert "in place" not in cf.fast_source


@mt.primitive("d(w) = G h, d(h) = G w")
def _dot(w, h):
    """sum(w * h), handing back h itself for a unit G (a view of what it saved)."""
    return np.sum(w * h), (lambda g: h if g == 1 else g * h, lambda g: g * w)


def test_a_called_ops_vjp_that_holds_h_keeps_h():
    # The user's op has no code template: the closed form calls it and keeps its
    # VJPs, which hand back h itself as d_w. Overwriting h would change d_w.
    rng = np.random.default_rng(6)
    a, w, c = (mt.Tensor(rng.normal(size=(N, M)), name=n) for n in "awc")

    def build():
        h = mt.sigmoid(a)
        return _dot(w, h) + mt.sum(h * c)
    cf, _, _ = _agrees(build, [a, w, c])
    assert "np.subtract(1.0" not in cf.fast_source


@pytest.mark.parametrize("seed", range(40))
def test_random_large_programs_equal_the_tape(seed):
    """Chains of sigmoid, tanh and exp with fan-out, views and sums: in place or not, always right."""
    rng = np.random.default_rng(100 + seed)
    a, b = (mt.Tensor(rng.uniform(-1, 1, (N, M)), name=n) for n in "ab")

    steps = [lambda x, y: mt.sigmoid(x), lambda x, y: mt.tanh(x), lambda x, y: mt.exp(x * 0.1),
             lambda x, y: x + y, lambda x, y: x * y,
             lambda x, y: mt.transpose(mt.transpose(x) * 0.5),
             lambda x, y: mt.sigmoid(x) + mt.tanh(y)]
    plan = [(int(k), int(rng.integers(2 + i))) for i, k in enumerate(rng.integers(0, 7, 8))]

    def build():
        pool = [a, b]
        for k, other in plan:
            pool.append(steps[k](pool[-1], pool[other]))
        return mt.sum(pool[-1] * pool[len(pool) // 2])
    _agrees(build, [a, b])
