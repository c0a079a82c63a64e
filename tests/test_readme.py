"""The README's API example runs as pasted, and says what it claims."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

import microtape as mt

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_api_example_runs_and_its_gradient_is_the_closed_form():
    example = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    scope: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(example, str(README), "exec"), scope)
    assert "worst |error| / tolerance" in out.getvalue()   # the gradcheck report was printed
    # dJ/db2 = mean over the batch of (yhat − y), as the comment says.
    h = 1 / (1 + np.exp(-(scope["x"] @ scope["W1"].value + scope["b1"].value)))
    v = h @ scope["W2"].value + scope["b2"].value
    yhat = np.exp(v - v.max(1, keepdims=True))
    yhat /= yhat.sum(1, keepdims=True)
    y = np.eye(3)[scope["labels"]]
    np.testing.assert_allclose(scope["grads"]["b2"], (yhat - y).mean(0), rtol=1e-12)


def _block(marker: str) -> str:
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if marker in b]
    return code


def _run_tests(code: str) -> None:
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    tests = [f for name, f in scope.items() if name.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        test()


def test_the_readme_testing_example_passes_and_catches_a_wrong_vjp():
    code = _block("# test_my_layer.py")
    _run_tests(code)
    wrong = code.replace("g * 2 * a", "g * 3 * a")
    assert wrong != code
    try:
        _run_tests(wrong)
    except AssertionError as e:
        message = str(e)
    else:
        raise AssertionError("a wrong VJP passed the README's test")
    assert "assert_vjp_matches(square)" in message and "worst element" in message
    assert "relative error:  0.333" in message


def test_the_derivatives_example_runs_and_its_numbers_are_right():
    import microtape as mt
    scope: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(_block("create_graph=True"), str(README), "exec"), scope)
    x = scope["x"]
    t = np.tanh(x)
    grad = 2 * t * (1 - t * t)                       # d/dx Σ tanh²
    second = 2 * (1 - t * t) * (1 - 3 * t * t)       # its derivative, elementwise
    np.testing.assert_allclose(scope["outer"].gradient(scope["s"], scope["w"]),
                               2 * grad * second, rtol=1e-12)
    np.testing.assert_allclose(scope["hv"], second, rtol=1e-12)   # H is diagonal here
    np.testing.assert_allclose(scope["jv"], 1 - t * t, rtol=1e-12)
    assert mt.hessian(scope["f"])(x).shape == (3, 3)


def test_adding_an_op_shows_one_block_that_works_eagerly_again_and_in_the_closed_form():
    scope: dict = {}
    exec(compile(_block("def softplus(a):"), str(README), "exec"), scope)
    softplus, rng = scope["softplus"], np.random.default_rng(0)
    x = mt.Tensor(rng.normal(size=(3, 4)), name="x")
    assert mt.gradcheck(lambda t: mt.sum(mt.mul(softplus(t), t)), [x], order=2).passed
    G = mt.Tensor(rng.normal(size=(3, 4)), name="G")
    with mt.Tape() as tape:
        J = mt.sum(mt.mul(softplus(x), G))
    cf = tape.closed_form(J, x)
    text = README.read_text(encoding="utf-8")
    for shown in ("d_x = G * (1 / (1 + np.exp(-x)))", "dx = G ∘ σ(x)"):
        assert shown in text
    assert "1 / (1 + np.exp(-x))" in cf.source and "∘ σ(x)" in cf.equations
    np.testing.assert_allclose(cf()[1], G.value / (1 + np.exp(-x.value)), rtol=1e-12)


def test_every_op_the_package_exports_is_in_the_readmes_op_list():
    from tests.op_cases import primitives
    text = README.read_text()
    ops_bullet = text[text.index("- Ops: "):text.index("\n- `tape.gradient(")]
    listed = set(re.findall(r"\b[a-z_]+\b", ops_bullet))
    public = {name for name in primitives() if hasattr(mt, name)} | {"concatenate", "stack"}
    # getitem is "indexing" in the bullet above; the others exist for the grads (ops.py)
    missing = public - listed - {"getitem", "broadcast_to", "scatter_add", "astype"}
    assert not missing, missing


def test_the_compiled_training_loop_runs_the_fused_step_and_learns():
    scope: dict = {"np": np, "mt": mt}
    exec(compile(_block("loss_and_grads = mt.value_and_grad(loss"), str(README), "exec"), scope)
    loop = _block("value = opt.step(loss_and_grads")
    fused = []
    vg = scope["loss_and_grads"]
    step = vg._sgd_step
    vg._sgd_step = lambda lr, args, params: fused.append(lr) or step(lr, args, params)
    exec(compile(loop, str(README), "exec"), scope)
    assert fused == [0.1] * 100  # every step ran the closed form's fused code
    W, b, x, labels = (scope[k] for k in ("W", "b", "x", "labels"))
    first = mt.value_and_grad(scope["loss"])(mt.Tensor(np.zeros((4, 3))), np.zeros(3), x, labels)[0]
    assert float(scope["value"]) < 0.8 * float(first)  # it learned: 1.10 at W = 0, b = 0
