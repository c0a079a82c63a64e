"""Hessians and Hessian-vector products of random programs, microtape against HIPS autograd.

The programs are the ones tests/test_against_autograd.py draws (every op, broadcasting,
fan-out, constants); autograd differentiates its own VJPs again, so its Hessian is an
independent reference for microtape's differentiable VJPs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import microtape as mt
import tests.test_against_autograd as programs  # a module, so its tests are not collected twice

autograd = pytest.importorskip("autograd")
anp = pytest.importorskip("autograd.numpy")


def draw_program(data, dtype, n_ops, n_inputs, seed):
    """A random program, its inputs, and its scalar target on either side."""
    rng = np.random.default_rng(seed)
    shapes = [data.draw(st.sampled_from(programs.SHAPES)) for _ in range(n_inputs)]
    inputs = [rng.uniform(-2, 2, size=s).astype(dtype) for s in shapes]
    builder = programs.Builder(data, dtype, [mt.Tensor(x) for x in inputs])
    for _ in range(n_ops):
        builder.one()
    other = data.draw(st.sampled_from(builder.usable))
    weights = [rng.normal(size=np.shape(builder.pool[k].value)) for k in (-1, other)]

    def target(ops, xs, cast):
        pool = programs.run(builder.program, xs, ops)
        return sum(ops["sum"](ops["mul"](pool[k], cast(w))) for k, w in zip((-1, other), weights))

    def mine(*xs):
        return target(programs.MICROTAPE, xs, lambda w: w.astype(dtype))

    def reference(flat):  # all inputs as one float64 vector, for autograd.hessian
        ends = np.cumsum([x.size for x in inputs])
        xs = [anp.reshape(flat[e - x.size:e], x.shape) for x, e in zip(inputs, ends)]
        return target(programs.AUTOGRAD, xs, lambda w: w)

    return inputs, mine, reference, " -> ".join(name for name, _, _ in builder.program)


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dtype=st.sampled_from([np.float64, np.float32]),
       n_ops=st.integers(2, 8), n_inputs=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_hessians_and_hvps_of_random_programs_agree_with_autograd(data, dtype, n_ops, n_inputs,
                                                                   seed):
    inputs, mine, reference, what = draw_program(data, dtype, n_ops, n_inputs, seed)
    flat = np.concatenate([x.astype(np.float64).reshape(-1) for x in inputs])
    vs = [np.random.default_rng(seed + 1).normal(size=x.shape) for x in inputs]
    v = np.concatenate([u.reshape(-1) for u in vs])
    with np.errstate(over="ignore"):  # autograd's tanh VJP overflows in cosh
        want = np.asarray(autograd.hessian(reference)(flat))
    argnums = tuple(range(n_inputs))
    H = mt.hessian(mine, argnums=argnums)(*inputs)
    ends = np.cumsum([x.size for x in inputs])
    for i, (xi, ei) in enumerate(zip(inputs, ends)):
        for j, (xj, ej) in enumerate(zip(inputs, ends)):
            assert H[i][j].dtype == dtype
            block = want[ei - xi.size:ei, ej - xj.size:ej].reshape(xi.shape + xj.shape)
            programs.assert_close(H[i][j], block, dtype, f"Hessian block {i},{j} of {what}")
    _, hvps = mt.hvp(mine, tuple(inputs), tuple(vs))
    for i, (xi, ei) in enumerate(zip(inputs, ends)):
        assert hvps[i].dtype == dtype
        programs.assert_close(hvps[i], (want @ v)[ei - xi.size:ei].reshape(xi.shape), dtype,
                              f"H·v of input {i} through {what}")
