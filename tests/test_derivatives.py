"""jacobian, hessian, hvp and jvp against closed forms, finite differences and each other."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

import microtape as mt
from microtape.gradient_checking import central_differences

RNG = np.random.default_rng(16)


def softmax(v):
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def two_layer(x, W1, W2):
    return mt.tanh(x @ W1) @ W2


# -- jacobian ----------------------------------------------------------------------

def test_jacobian_of_matmul_is_the_other_factor_in_index_notation():
    x, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 2))
    Jx, JW = mt.jacobian(lambda x, W: x @ W, argnums=(0, 1))(x, W)
    assert Jx.shape == (4, 2, 4, 3) and JW.shape == (4, 2, 3, 2)
    np.testing.assert_allclose(Jx, np.einsum("ik,lj->ijkl", np.eye(4), W), atol=1e-15)  # W_lj δ_ik
    np.testing.assert_allclose(JW, np.einsum("ik,jl->ijkl", x, np.eye(2)), atol=1e-15)  # x_ik δ_jl


def test_jacobian_of_tanh_is_diagonal():
    t = RNG.normal(size=5)
    np.testing.assert_allclose(mt.jacobian(mt.tanh)(t), np.diag(1 - np.tanh(t) ** 2), atol=1e-15)


def test_jacobian_of_softmax_is_diag_yhat_minus_yhat_yhat_t():
    v = RNG.normal(size=6)
    y = softmax(v)
    np.testing.assert_allclose(mt.jacobian(mt.softmax)(v), np.diag(y) - np.outer(y, y),
                               atol=1e-15)
    V = RNG.normal(size=(3, 4))  # row-wise: one such block per row, zero across rows
    J, Y = mt.jacobian(mt.softmax)(V), softmax(V)
    for n in range(3):
        for m in range(3):
            want = np.diag(Y[n]) - np.outer(Y[n], Y[n]) if n == m else np.zeros((4, 4))
            np.testing.assert_allclose(J[n, :, m, :], want, atol=1e-15)


def test_jacobian_rows_are_the_gradients_of_each_output():
    x, W1, W2 = RNG.normal(size=(2, 3)), RNG.normal(size=(3, 4)), RNG.normal(size=(4, 2))
    J = mt.jacobian(two_layer, argnums=1)(x, W1, W2)
    assert J.shape == (2, 2, 3, 4)
    for i in range(2):
        for j in range(2):
            g = mt.grad(lambda W1: two_layer(x, W1, W2)[i, j])(W1)
            np.testing.assert_allclose(J[i, j], g, atol=1e-14)


def test_jacobian_of_identity_constant_and_unused_arguments():
    x = RNG.normal(size=(2, 3))
    np.testing.assert_array_equal(mt.jacobian(lambda x: x)(x), np.eye(6).reshape(2, 3, 2, 3))
    const = mt.jacobian(lambda x, y: y * 2.0, argnums=(0, 1))(x, np.ones(2))
    np.testing.assert_array_equal(const[0], np.zeros((2, 2, 3)))
    np.testing.assert_array_equal(const[1], 2 * np.eye(2))
    # Arguments not differentiated pass through as they were; negative argnums count from the end.
    J = mt.jacobian(lambda k, x: x * k, argnums=-1)(3, x)
    np.testing.assert_array_equal(J, 3 * np.eye(6).reshape(2, 3, 2, 3))


def test_jacobian_keeps_float32():
    x = RNG.normal(size=3).astype(np.float32)
    J = mt.jacobian(mt.tanh)(x)
    assert J.dtype == np.float32
    np.testing.assert_allclose(J, np.diag(1 - np.tanh(x) ** 2), rtol=1e-6)


@pytest.mark.parametrize("argnums, error, phrase", [
    ("0", TypeError, "argnums must be an int or a non-empty tuple of ints"),
    ((), TypeError, "argnums must be an int or a non-empty tuple of ints"),
    (True, TypeError, "argnums must be an int"),
    ((0, 1.0), TypeError, "argnums must be an int"),
    (2, IndexError, "argnums 2 is out of range for 2 arguments"),
    ((0, -2), ValueError, "names an argument twice"),
])
@pytest.mark.parametrize("transform", [mt.jacobian, mt.hessian])
def test_bad_argnums_are_named(transform, argnums, error, phrase):
    with pytest.raises(error, match=phrase):
        transform(lambda x, y: mt.sum(x * y), argnums=argnums)(np.ones(2), np.ones(2))


def test_jacobian_wants_a_tensor_back():
    with pytest.raises(TypeError, match="must return a Tensor, not float"):
        mt.jacobian(lambda x: 1.0)(np.ones(2))
