"""microtape against HIPS autograd, an independent reverse-mode implementation.

Random programs of 3-12 ops drawn from every op (broadcasting shapes, fan-out,
one value used twice in one op, numpy constants on either side, float32 and
float64) are run by both; values and gradients must agree. Every op is also
compared on its edge values: zeros, negative bases, ±1e4, length-1 axes.

A program is a list of steps over a pool of values. Every shape in it has at
most two axes of length 1 or 3, so any two values broadcast and most ops
apply. A value that grows past 20 is scaled back to 1 by a constant factor (a
step like any other), so exp and pow never overflow. The autograd side computes in float64 from the
same inputs: for float32 programs it is the more precise reference.
The same programs' Hessian-vector products (the recorded backward pass
differentiated again) are held to autograd's in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import microtape as mt

autograd = pytest.importorskip("autograd")
anp = pytest.importorskip("autograd.numpy")

SHAPES = [(3, 3), (1, 3), (3, 1), (3,), (1, 1), (1,), ()]
LIMIT = 20.0  # larger values are scaled down before the next op


# -- the two implementations of every op ---------------------------------------

def _ag_softmax(x, axis):
    e = anp.exp(x - anp.max(x, axis=axis, keepdims=True))
    return e / anp.sum(e, axis=axis, keepdims=True)


def _ag_log_softmax(x, axis):
    z = x - anp.max(x, axis=axis, keepdims=True)
    return z - anp.log(anp.sum(anp.exp(z), axis=axis, keepdims=True))


def _ag_cross_entropy(logits, labels, reduction="mean"):
    logp = _ag_log_softmax(logits, -1)
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        per_row = -(logp[np.arange(len(labels)), labels] if logits.ndim == 2 else logp[labels])
    else:
        per_row = -anp.sum(labels * logp, axis=-1)
    if reduction == "none":
        return per_row
    total = anp.sum(per_row)
    n = len(logits) if logits.ndim == 2 else 1
    return total / n if reduction == "mean" else total


def _ag_einsum(spec, *xs):
    # autograd's einsum VJP cannot place a gradient on a diagonal (diagonal can),
    # and hands a length-1 axis that numpy broadcast a gradient of the wrong
    # shape: the broadcast is made explicit, so broadcast_to's VJP sums it back.
    if spec == "ii->i":
        return anp.diagonal(xs[0], axis1=-1, axis2=-2)
    terms = spec.split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for term, x in zip(terms, xs):
        for letter, n in zip(term, x.shape):
            sizes[letter] = max(n, sizes.get(letter, 1))
    wide = [anp.broadcast_to(x, tuple(sizes[c] for c in term)) for term, x in zip(terms, xs)]
    return anp.einsum(spec, *wide)


def _ag_clip(a, lo=None, hi=None):
    # clip as maximum then minimum, whose ties autograd splits in half, as microtape's clip
    # does on a bound (autograd's own clip gives 0 there)
    a = a if lo is None else anp.maximum(a, lo)
    return a if hi is None else anp.minimum(a, hi)


def _ag_where(condition, a, b):
    # autograd's where hands a broadcast operand a gradient of the result's shape: the
    # broadcast is made explicit, as an add of zeros whose VJP sums it back
    zeros = np.zeros(np.broadcast_shapes(np.shape(condition), anp.shape(a), anp.shape(b)))
    return anp.where(condition, a + zeros, b + zeros)


def _reduced(x, reduction):
    return x if reduction == "none" else anp.mean(x) if reduction == "mean" else anp.sum(x)


AUTOGRAD = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: anp.power(a, b),
    "neg": lambda a: -a,
    "exp": lambda a: anp.exp(a),
    "log": lambda a: anp.log(a),
    "tanh": lambda a: anp.tanh(a),
    "sigmoid": lambda a: 0.5 * (anp.tanh(0.5 * a) + 1.0),
    "relu": lambda a: anp.where(a > 0, a, 0.0),  # gradient 0 at 0, as microtape's
    "matmul": lambda a, b: anp.matmul(a, b),
    "sum": lambda a, axis=None, keepdims=False: anp.sum(a, axis=axis, keepdims=keepdims),
    "mean": lambda a, axis=None, keepdims=False: anp.mean(a, axis=axis, keepdims=keepdims),
    # autograd's transpose VJP argsorts the axes as given, so -1 must be spelled out
    "transpose": lambda a, axes=None: anp.transpose(
        a, None if axes is None else tuple(ax % anp.ndim(a) for ax in axes)),
    "reshape": lambda a, shape: anp.reshape(a, shape),
    "getitem": lambda a, index: a[index],
    "softmax": lambda a, axis=-1: _ag_softmax(a, axis),
    "log_softmax": lambda a, axis=-1: _ag_log_softmax(a, axis),
    "einsum": lambda spec, *xs: _ag_einsum(spec, *xs),
    "softmax_cross_entropy": _ag_cross_entropy,
    "abs": lambda a: anp.abs(a),  # gradient 0 at 0, as microtape's
    "sqrt": lambda a: anp.sqrt(a),
    "maximum": lambda a, b: anp.maximum(a, b),  # a tie: half of G each way, as microtape's
    "minimum": lambda a, b: anp.minimum(a, b),
    "clip": _ag_clip,
    "where": lambda condition, a, b: _ag_where(condition, a, b),
    "max": lambda a, axis=None, keepdims=False: anp.max(a, axis=axis, keepdims=keepdims),
    "min": lambda a, axis=None, keepdims=False: anp.min(a, axis=axis, keepdims=keepdims),
    "concatenate": lambda *xs, axis=0: anp.concatenate(list(xs), axis=axis),
    "stack": lambda *xs, axis=0: anp.stack(list(xs), axis=axis),
    "mse": lambda p, t, reduction="mean": _reduced((p - t) ** 2, reduction),
    "binary_cross_entropy_with_logits": lambda z, y, reduction="mean": _reduced(
        anp.logaddexp(0.0, z) - z * y, reduction),
}

MICROTAPE = {
    "add": mt.add, "sub": mt.sub, "mul": mt.mul, "div": mt.div, "pow": mt.pow, "neg": mt.neg,
    "exp": mt.exp, "log": mt.log, "tanh": mt.tanh, "sigmoid": mt.sigmoid, "relu": mt.relu,
    "matmul": mt.matmul, "sum": mt.sum, "mean": mt.mean,
    "transpose": lambda a, axes=None: mt.transpose(a, axes) if axes else mt.transpose(a),
    "reshape": lambda a, shape: mt.reshape(a, shape), "getitem": mt.getitem,
    "softmax": mt.softmax, "log_softmax": mt.log_softmax, "einsum": mt.einsum,
    "softmax_cross_entropy": mt.softmax_cross_entropy,
    "abs": mt.abs, "sqrt": mt.sqrt, "maximum": mt.maximum, "minimum": mt.minimum,
    "clip": lambda a, lo=None, hi=None: mt.clip(a, lo, hi), "where": mt.where,
    "max": mt.max, "min": mt.min,
    "concatenate": lambda *xs, axis=0: mt.concatenate(list(xs), axis=axis),
    "stack": lambda *xs, axis=0: mt.stack(list(xs), axis=axis),
    "mse": lambda p, t, reduction="mean": mt.mse(p, t, reduction=reduction),
    "binary_cross_entropy_with_logits": lambda z, y, reduction="mean":
        mt.binary_cross_entropy_with_logits(z, y, reduction=reduction),
}


def run(program, inputs, ops):
    """Replay ``program`` on ``inputs`` with ``ops``; return the pool of values."""
    pool = list(inputs)
    for name, args, params in program:
        values = [pool[a] if isinstance(a, int) else a[1] for a in args]  # ("c", array): a constant
        pool.append(ops[name](*values, **params))
    return pool


# -- random programs --------------------------------------------------------------

def _einsum_specs(a, b):
    specs = {(2, 2): ["ij,jk->ik", "ij,ij->ij", "ij,ij->i", "ij,kj->ik", "ij,ij->"],
             (2, 1): ["ij,j->i", "ij,i->j"], (1, 2): ["i,ij->j"], (1, 1): ["i,i->", "i,j->ij"]}
    return specs.get((len(a), len(b)), [])


class Builder:
    """Draws steps with hypothesis and runs them on microtape as it goes."""

    def __init__(self, data, dtype, inputs):
        self.data, self.dtype, self.program = data, dtype, []
        self.pool = list(inputs)
        self.usable = list(range(len(inputs)))  # not the values that had to be scaled down

    def draw(self, strategy):
        return self.data.draw(strategy)

    def step(self, name, args, **params):
        values = [self.pool[a] if isinstance(a, int) else a[1] for a in args]
        out = MICROTAPE[name](*values, **params)
        self.program.append((name, args, params))
        self.pool.append(out)
        largest = float(np.abs(out.value).max(initial=0.0))
        if largest > LIMIT:  # scaled back to 1 by a constant, which both sides then use
            return self.step("mul", [len(self.pool) - 1, ("c", 1.0 / largest)])
        self.usable.append(len(self.pool) - 1)
        return len(self.pool) - 1

    def operand(self):
        """A value of the pool (any, so values fan out), or now and then a constant."""
        if self.draw(st.integers(0, 4)) == 0:
            shape = self.draw(st.sampled_from(SHAPES))
            seed = self.draw(st.integers(0, 2**16))
            value = np.random.default_rng(seed).uniform(-2, 2, size=shape).astype(self.dtype)
            return ("c", value)
        return self.draw(st.sampled_from(self.usable))

    def shape_of(self, ref):
        return np.shape(self.pool[ref].value if isinstance(ref, int) else ref[1])

    def positive(self, ref):
        """x² + 0.5: a base log, div and pow may take."""
        square = self.step("mul", [ref, ref])  # one value used twice in one op
        return self.step("add", [square, ("c", np.asarray(0.5, self.dtype))])

    def one(self):
        kind = self.draw(st.sampled_from(
            ["add", "sub", "mul", "div", "pow", "pow_const", "neg", "exp", "log", "tanh",
             "sigmoid", "relu", "matmul", "sum", "mean", "transpose", "reshape", "getitem",
             "softmax", "log_softmax", "einsum", "einsum_unary", "cross_entropy",
             "abs", "sqrt", "maximum", "minimum", "clip", "where", "max", "min", "concatenate",
             "stack", "mse", "bce"]))
        a, b = self.operand(), self.operand()
        if not isinstance(a, int) and not isinstance(b, int):
            a = self.usable[-1]  # at least one operand from the pool
        sa, sb = self.shape_of(a), self.shape_of(b)
        if kind in ("add", "sub", "mul"):
            self.step(kind, [a, b])
        elif kind == "div":
            self.step("div", [a, self.positive(b)])
        elif kind == "pow":  # exponents in (−1, 1), so that A^p stays in range
            self.step("pow", [self.positive(a), self.step("tanh", [b])])
        elif kind == "pow_const":
            self.step("pow", [a, self.draw(st.sampled_from([("c", 2), ("c", 3), ("c", 0)]))])
        elif kind in ("neg", "exp", "tanh", "sigmoid", "relu"):
            self.step(kind, [a])
        elif kind == "log":
            self.step("log", [self.positive(a)])
        elif kind == "matmul" and len(sa) >= 1 and len(sb) >= 1:
            inner_b = sb[0] if len(sb) == 1 else sb[-2]
            if sa[-1] != inner_b:  # a constant vector whose length fits
                b = ("c", np.linspace(-1, 1, sa[-1]).astype(self.dtype))
            self.step("matmul", [a, b])
        elif kind in ("sum", "mean"):
            axis = self.draw(st.sampled_from([None] + list(range(-len(sa), len(sa)))))
            self.step(kind, [a], axis=axis, keepdims=self.draw(st.booleans()))
        elif kind == "transpose" and len(sa) == 2:
            self.step("transpose", [a], axes=self.draw(st.sampled_from([None, (1, 0), (0, -1)])))
        elif kind == "reshape":
            size = int(np.prod(sa))
            targets = {1: [(), (1,), (1, 1)], 3: [(3,), (1, 3), (3, 1)], 9: [(3, 3)]}[size]
            self.step("reshape", [a], shape=self.draw(st.sampled_from(targets)))
        elif kind == "getitem" and len(sa) >= 1 and sa[0] == 3:
            index = self.draw(st.sampled_from([slice(None, None, -1), 1, np.array([2, 0, 2])]))
            self.step("getitem", [a], index=index)
        elif kind in ("softmax", "log_softmax") and len(sa) >= 1:
            self.step(kind, [a], axis=self.draw(st.sampled_from(list(range(-len(sa), len(sa))))))
        elif kind == "einsum" and _einsum_specs(sa, sb):
            spec = self.draw(st.sampled_from(_einsum_specs(sa, sb)))
            if np.einsum(spec, np.ones(sa), np.ones(sb)).size:  # the letters' sizes agree
                self.step("einsum", [("c", spec), a, b])
        elif kind == "einsum_unary" and len(sa) == 2:
            diagonal = ["ii->i"] if sa[0] == sa[1] else []
            spec = self.draw(st.sampled_from(["ij->ji", "ij->", "ij->j"] + diagonal))
            self.step("einsum", [("c", spec), a])
        elif kind == "cross_entropy" and len(sa) in (1, 2):
            rng = np.random.default_rng(self.draw(st.integers(0, 99)))
            labels = rng.integers(0, sa[-1], size=sa[:-1])
            self.step("softmax_cross_entropy", [a, ("c", labels)],
                      reduction=self.draw(st.sampled_from(["mean", "sum", "none"])))
        elif not self.choosing_joining_or_loss(kind, a, b, sa, sb):
            self.step("add", [a, b])

    def choosing_joining_or_loss(self, kind, a, b, sa, sb) -> bool:
        """selection.py's, joining.py's and losses.py's ops; False where ``kind`` is another's."""
        if kind == "abs":
            self.step("abs", [a])
        elif kind == "sqrt":
            self.step("sqrt", [self.positive(a)])
        elif kind in ("maximum", "minimum"):  # b may be a itself: a tie everywhere
            self.step(kind, [a, self.draw(st.sampled_from([b, a, ("c", 0.0)]))])
        elif kind == "clip":
            # No bound at ±1: a value scaled down (LIMIT) has its largest at 1, on the bound
            # in float32 and just off it in the float64 reference, where the kink's half-G
            # and a whole G or none differ by design.
            lo, hi = self.draw(st.sampled_from([(-0.5, 0.5), (None, 0.0), (0.0, None), (-0.8, 0.8)]))
            self.step("clip", [a], lo=lo, hi=hi)
        elif kind == "where":
            seed = self.draw(st.integers(0, 2**16))
            condition = np.random.default_rng(seed).random(np.broadcast_shapes(sa, sb)) > 0.5
            self.step("where", [("c", condition), a, b])
        elif kind in ("max", "min"):
            axis = self.draw(st.sampled_from([None] + list(range(-len(sa), len(sa)))))
            self.step(kind, [a], axis=axis, keepdims=self.draw(st.booleans()))
        elif kind == "concatenate" and len(sa) >= 1 and sa[1:] == sb[1:] and len(sb) == len(sa):
            # lengths stay 1 or 3: three of length 1, or the middle three of 3 + 3
            if sa[0] == sb[0] == 1:
                self.step("concatenate", [a, b, a], axis=0)
            elif sa[0] == sb[0]:
                joined = self.step("concatenate", [a, b], axis=0)
                self.usable.remove(joined)  # length 6 broadcasts with nothing: not an operand
                self.step("getitem", [joined], index=slice(1, 4))
        elif kind == "stack" and len(sa) <= 1:  # at most two axes after it
            self.step("stack", [a, b if sa == sb else a, a], axis=self.draw(st.sampled_from([0, -1])))
        elif kind == "mse":
            self.step("mse", [a, b if sa == sb else a],
                      reduction=self.draw(st.sampled_from(["mean", "sum", "none"])))
        elif kind == "bce":
            seed = self.draw(st.integers(0, 2**16))
            targets = np.random.default_rng(seed).random(sa).astype(self.dtype)
            self.step("binary_cross_entropy_with_logits", [a, ("c", targets)],
                      reduction=self.draw(st.sampled_from(["mean", "sum", "none"])))
        else:
            return False
        return True


TOLERANCE = {np.float64: (1e-8, 1e-10), np.float32: (2e-3, 2e-4)}  # (rtol, atol per unit of scale)


def assert_close(got, want, dtype, what):
    rtol, atol = TOLERANCE[dtype]
    want = np.asarray(want, dtype=np.float64)
    assert np.shape(got) == want.shape, f"{what}: shape {np.shape(got)} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=what)


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dtype=st.sampled_from([np.float64, np.float32]),
       n_ops=st.integers(3, 12), n_inputs=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_random_programs_agree_with_autograd(data, dtype, n_ops, n_inputs, seed):
    rng = np.random.default_rng(seed)
    shapes = [data.draw(st.sampled_from(SHAPES)) for _ in range(n_inputs)]
    inputs = [mt.Tensor(rng.uniform(-2, 2, size=s).astype(dtype), name=f"x{i}")
              for i, s in enumerate(shapes)]
    with mt.Tape() as tape:
        builder = Builder(data, dtype, inputs)
        for _ in range(n_ops):
            builder.one()
        # The target adds up the last value and one drawn from the pool (fan-out).
        other = data.draw(st.sampled_from(builder.usable))
        weights = [rng.normal(size=np.shape(builder.pool[k].value)).astype(dtype)
                   for k in (-1, other)]
        target = mt.add(mt.sum(builder.pool[-1] * weights[0]), mt.sum(builder.pool[other] * weights[1]))
    program = builder.program
    for k, v in enumerate(builder.pool):
        made_by = program[k - n_inputs][0] if k >= n_inputs else "input"
        assert v.dtype == dtype, f"value {k} (made by {made_by}) is {v.dtype}"

    def reference(*xs):
        pool = run(program, xs, AUTOGRAD)
        return anp.sum(pool[-1] * weights[0].astype(np.float64)) + \
            anp.sum(pool[other] * weights[1].astype(np.float64))

    xs64 = [x.value.astype(np.float64) for x in inputs]
    what = " -> ".join(name for name, _, _ in program)
    with np.errstate(over="ignore"):  # autograd's tanh VJP overflows in cosh
        want_value = reference(*xs64)
        want = autograd.grad(lambda xs: reference(*xs))(xs64)
    assert_close(target.value, want_value, dtype, f"value of {what}")
    grads = tape.gradient(target, inputs)
    for i, (g, w) in enumerate(zip(grads, want)):
        assert g.dtype == dtype
        assert_close(g, w, dtype, f"gradient of x{i} through {what}")


# -- every op on its edge values ---------------------------------------------------

EDGES = np.array([0.0, -0.0, 1.0, -1.0, 1e-4, -3.5, 1e4, -1e4])


def _compare(name, arrays, dtype=np.float64, **params):
    """One op, both implementations: the value and each array's gradient."""
    xs = [mt.Tensor(np.asarray(a, dtype)) for a in arrays]
    with mt.Tape() as tape:
        out = MICROTAPE[name](*xs, **params)
    g = np.random.default_rng(0).normal(size=out.shape)
    grads = tape.gradient(out, xs, seed=g.astype(dtype))
    xs64 = [x.value.astype(np.float64) for x in xs]

    def ref(*vs):
        return anp.sum(AUTOGRAD[name](*vs, **params) * g)

    with np.errstate(over="ignore"):  # autograd's own VJPs overflow at ±1e4 (cosh, say)
        want_value = AUTOGRAD[name](*xs64, **params)
        want = autograd.grad(lambda vs: ref(*vs))(xs64)
    assert_close(out.value, want_value, dtype, f"{name} value")
    for i, (got, w) in enumerate(zip(grads, want)):
        assert_close(got, w, dtype, f"{name} gradient of input {i}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["neg", "tanh", "sigmoid", "relu"])
def test_unary_ops_at_edge_values(name, dtype):
    _compare(name, [EDGES[EDGES != 0] if name == "relu" else EDGES], dtype)  # relu has a kink at 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_and_log_at_edge_values(dtype):
    _compare("exp", [np.array([0.0, -0.0, 1.0, -1e4, -50.0, 30.0])], dtype)
    _compare("log", [np.array([1e-30, 1e-4, 1.0, 1e4])], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("shapes", [((4, 1), (1, 3)), ((1, 3), (3,)), ((), (2, 3)), ((2, 1), ())])
def test_binary_ops_broadcast_length_one_axes(name, shapes, dtype):
    rng = np.random.default_rng(1)
    a, b = (rng.choice(EDGES, size=s) for s in shapes)
    if name == "div":
        b = np.where(b == 0, 2.0, b)
    _compare(name, [a, b], dtype)


@pytest.mark.parametrize("base, p", [
    ([0.0, 2.0, 3.0], [2.0, 3.0, 0.5]),       # a zero base: dp = 0 there
    ([0.0, 1.0, 5.0], [0.0, 0.0, 0.0]),       # x^0
    ([-2.0, -1.0, -3.0], [2.0, 3.0, 4.0]),    # negative bases, integer exponents (dA only)
    ([1e4, 0.5, 1.0], [1.0, -2.0, 3.0]),
])
def test_pow_at_edge_values(base, p):
    base, p = np.array(base), np.array(p)
    if (base < 0).any():  # log of a negative base has no real value: only dA is defined
        _compare_pow_base(base, p)
    else:
        _compare("pow", [base, p])


def _compare_pow_base(base, p):
    x = mt.Tensor(base)
    with mt.Tape() as tape:
        out = mt.sum(x ** p)
    with np.errstate(over="ignore"):
        want = autograd.grad(lambda v: anp.sum(anp.power(v, p)))(base)
    assert_close(tape.gradient(out, x), want, np.float64, "pow gradient at negative bases")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_ops_at_edge_values(name, axis, dtype):
    x = np.array([[0.0, 1e4, -1e4], [0.0, 0.0, 0.0], [-1e4, -1e4, 5.0]])
    _compare(name, [x], dtype, axis=axis)
    _compare(name, [np.zeros((1, 3))], dtype, axis=axis)  # a length-1 axis


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_at_edge_values(dtype):
    x = np.array([[0.0, 1e4, -1e4], [0.0, 0.0, 0.0], [-1e4, -1e4, 5.0]])
    for reduction in ("mean", "sum", "none"):
        _compare("softmax_cross_entropy", [x], dtype, labels=np.array([1, 2, 0]), reduction=reduction)
        _compare("softmax_cross_entropy", [x], dtype, labels=np.full((3, 3), 1 / 3), reduction=reduction)
        _compare("softmax_cross_entropy", [x[2]], dtype, labels=2, reduction=reduction)  # one example
    _compare("softmax_cross_entropy", [np.zeros(1)], dtype, labels=0)  # one class
    _compare("softmax_cross_entropy", [np.zeros(1)], dtype, labels=0, reduction="none")


@pytest.mark.parametrize("name, params, shape", [
    ("sum", {"axis": 0, "keepdims": True}, (1, 3)), ("sum", {"axis": None}, (1, 1)),
    ("mean", {"axis": 1}, (3, 1)), ("mean", {"axis": (0, 1), "keepdims": True}, (1, 1)),
    ("transpose", {"axes": (1, 0)}, (1, 3)), ("reshape", {"shape": (3, 1)}, (1, 3)),
    ("getitem", {"index": (slice(None), [0, 0])}, (3, 1)),
])
def test_reductions_and_shape_ops_on_length_one_axes(name, params, shape):
    x = np.random.default_rng(2).choice(EDGES, size=shape)
    _compare(name, [x], **params)


@pytest.mark.parametrize("spec, shapes", [
    ("ij,ij->ij", ((3, 1), (3, 4))), ("ij,jk->ik", ((3, 1), (4, 2))), ("ij,j->i", ((3, 1), (4,))),
    ("ij,jk->ik", ((3, 4), (1, 2))), ("ii->i", ((1, 1),)), ("ij,ij->", ((1, 4), (3, 1))),
])
def test_einsum_on_length_one_axes(spec, shapes):
    rng = np.random.default_rng(3)
    _compare_einsum(spec, [rng.choice(EDGES[np.abs(EDGES) < 1e4], size=s) for s in shapes])


def _compare_einsum(spec, arrays):
    xs = [mt.Tensor(a) for a in arrays]
    with mt.Tape() as tape:
        out = mt.einsum(spec, *xs)
    g = np.random.default_rng(0).normal(size=out.shape)
    grads = tape.gradient(out, xs, seed=g)
    assert_close(out.value, np.einsum(spec, *arrays), np.float64, f"einsum {spec} value")
    with np.errstate(over="ignore"):
        want = autograd.grad(lambda vs: anp.sum(AUTOGRAD["einsum"](spec, *vs) * g))(list(arrays))
    for i, (got, w) in enumerate(zip(grads, want)):
        assert_close(got, w, np.float64, f"einsum {spec}: gradient of operand {i}")


@pytest.mark.parametrize("shapes", [((3, 1), (1, 3)), ((3,), (3, 1)), ((1, 3), (3,)), ((3,), (3,))])
def test_matmul_on_length_one_axes(shapes):
    rng = np.random.default_rng(4)
    _compare("matmul", [rng.choice(EDGES[np.abs(EDGES) < 1e4], size=s) for s in shapes])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_abs_and_sqrt_at_edge_values(dtype):
    _compare("abs", [EDGES], dtype)  # ±0 included: gradient 0 there, as autograd's
    _compare("sqrt", [np.array([1e-8, 1e-4, 1.0, 2.0, 1e4])], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_and_minimum_split_a_tie_as_autograd_does(name, dtype):
    a = np.array([[0.0, 1.0, -3.5], [1e4, -1e4, 2.0]])
    b = np.array([[0.0, 2.0, -3.5], [1e4, 1e4, -2.0]])  # three ties, one each at ±1e4
    _compare(name, [a, b], dtype)
    _compare(name, [a, np.array([1.0, 1.0, -3.5])], dtype)  # a broadcast row, tying in places


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lo, hi", [(-1.0, 1.0), (0.0, None), (None, -1.0), (-3.5, -3.5)])
def test_clip_at_its_bounds_is_maximum_then_minimum(lo, hi, dtype):
    _compare("clip", [EDGES], dtype, lo=lo, hi=hi)  # values on the bounds get half of G


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, False), (1, True), ((0, 1), True)])
def test_max_and_min_share_a_tie_equally(name, axis, keepdims, dtype):
    x = np.array([[1e4, 1e4, -1.0, 1e4], [-1e4, 0.0, -1e4, -0.0]])  # ties for both, ±0 too
    _compare(name, [x], dtype, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_at_edge_values(reduction, dtype):
    z = EDGES.reshape(2, 4)
    y = np.array([[1.0, 0.0, 1.0, 0.0], [0.5, 1.0, 0.0, 1.0]])  # ±1e4 right and wrong
    _compare("binary_cross_entropy_with_logits", [z], dtype, y=y, reduction=reduction)
    _compare("mse", [z, y], dtype, reduction=reduction)


def test_where_concatenate_and_stack_with_broadcasting_and_fan_out():
    rng = np.random.default_rng(5)
    a, row = rng.choice(EDGES, size=(2, 4)), rng.choice(EDGES, size=(4,))
    condition = a > 0
    got = mt.grad(lambda x, r: mt.sum(mt.where(condition, x, r) * a), argnums=(0, 1))(a, row)
    want = autograd.grad(lambda xs: anp.sum(_ag_where(condition, *xs) * a))([a, row])
    for g, w in zip(got, want):
        assert_close(g, w, np.float64, "where")
    _compare("concatenate", [a, row[None], a], axis=0)
    _compare("stack", [row, row], axis=-1)


# -- second derivatives of the same random programs ---------------------------------

@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n_ops=st.integers(3, 10), n_inputs=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_random_programs_hessian_vector_products_agree_with_autograd(data, n_ops, n_inputs, seed):
    """H v by differentiating the recorded backward pass (create_graph=True), against autograd's."""
    rng = np.random.default_rng(seed)
    inputs = [mt.Tensor(rng.uniform(-2, 2, size=data.draw(st.sampled_from(SHAPES))), name=f"x{i}")
              for i in range(n_inputs)]
    builder = Builder(data, np.float64, inputs)
    for _ in range(n_ops):
        builder.one()
    program, pool = builder.program, builder.pool
    w = rng.normal(size=np.shape(pool[-1].value))
    v = [rng.normal(size=x.shape) for x in inputs]

    def target(ops, xs):
        return ops["sum"](run(program, xs, ops)[-1] * w, axis=None)

    with mt.Tape() as outer:
        with mt.Tape() as inner:
            out = target(MICROTAPE, inputs)
        grads = inner.gradient(out, inputs, create_graph=True)
        total = mt.add(0.0, 0.0)
        for g, vi in zip(grads, v):
            total = total + mt.sum(g * vi)
    got = outer.gradient(total, inputs)

    def directional(xs):
        first = autograd.grad(lambda xs: target(AUTOGRAD, xs))(xs)
        return sum(anp.sum(g * vi) for g, vi in zip(first, v))

    with np.errstate(over="ignore"):
        want = autograd.grad(directional)([x.value for x in inputs])
    what = " -> ".join(name for name, _, _ in program)
    for i, (g, wi) in enumerate(zip(got, want)):
        assert_close(g, wi, np.float64, f"H v of x{i} through {what}")

