"""mt.grad, mt.value_and_grad and mt.gradcheck."""

from __future__ import annotations

import re

import numpy as np
import pytest

import microtape as mt


def _loss(W, b, x):
    return mt.softmax_cross_entropy(mt.tanh(x @ W + b), np.array([0, 2]))


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3, 3)), rng.normal(size=3), rng.normal(size=(2, 3))


def _tape_grads(W, b, x):
    ts = [mt.Tensor(a) for a in (W, b, x)]
    with mt.Tape() as tape:
        loss = _loss(*ts)
    return loss.value, tape.gradient(loss, ts)


# -- grad and value_and_grad ----------------------------------------------------------

@pytest.mark.parametrize("argnums", ["0", 1.0, None, (), True, (0, 1.0)], ids=repr)
@pytest.mark.parametrize("make", [mt.grad, mt.value_and_grad], ids=["grad", "value_and_grad"])
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_bad_argnums_are_refused_when_the_function_is_made(make, argnums, compile):
    # They raised numpy's or Python's own errors at the first call ('float' object is not
    # iterable), or were taken: () gave no gradients and True meant argument 1
    with pytest.raises(TypeError, match=r"(value_and_)?grad: argnums must be an int"):
        make(lambda x, y: mt.sum(x * y), argnums=argnums, compile=compile)


def test_grad_with_default_argnums():
    W, b, x = _data()
    _, (dW, _, _) = _tape_grads(W, b, x)
    g = mt.grad(_loss)(W, b, x)
    assert isinstance(g, np.ndarray) and g.shape == W.shape
    np.testing.assert_array_equal(g, dW)


@pytest.mark.parametrize("argnums, picks", [(1, 1), (2, 2), (-1, 2), ((0, 2), (0, 2)), ((1,), (1,)),
                                            ([2, 0], (2, 0))])
def test_grad_with_argnums(argnums, picks):
    W, b, x = _data(1)
    _, expected = _tape_grads(W, b, x)
    g = mt.grad(_loss, argnums=argnums)(W, b, x)
    if isinstance(picks, int):
        assert isinstance(g, np.ndarray)
        np.testing.assert_array_equal(g, expected[picks])
    else:
        assert isinstance(g, tuple) and len(g) == len(picks)
        for got, i in zip(g, picks):
            np.testing.assert_array_equal(got, expected[i])


def test_value_and_grad():
    W, b, x = _data(2)
    value, expected = _tape_grads(W, b, x)
    v, g = mt.value_and_grad(_loss)(W, b, x)
    assert isinstance(v, np.ndarray) and v.shape == ()
    np.testing.assert_array_equal(v, value)
    np.testing.assert_array_equal(g, expected[0])
    v2, (gW, gx) = mt.value_and_grad(_loss, argnums=(0, 2))(W, b, x)
    np.testing.assert_array_equal(v2, value)
    np.testing.assert_array_equal(gW, expected[0])
    np.testing.assert_array_equal(gx, expected[2])


def test_grad_accepts_tensors_lists_and_scalars():
    f = lambda a, b: (a * a * b).sum()  # noqa: E731
    np.testing.assert_allclose(mt.grad(f)([1.0, 2.0], 3.0), [6.0, 12.0])
    np.testing.assert_allclose(mt.grad(f, argnums=1)(mt.Tensor([1.0, 2.0]), 3.0), 5.0)
    np.testing.assert_allclose(mt.grad(f)(mt.Tensor(np.array([1.0, 2.0])), 3), [6.0, 12.0])


def test_grad_of_an_argument_the_function_ignores_is_zero():
    g = mt.grad(lambda a, b: (a * 2.0).sum(), argnums=(0, 1))(np.ones(2), np.ones((3, 1)))
    np.testing.assert_array_equal(g[0], [2.0, 2.0])
    np.testing.assert_array_equal(g[1], np.zeros((3, 1)))


def test_grad_leaves_no_tape_behind():
    mt.grad(lambda a: (a * a).sum())(np.ones(3))
    assert mt.tape.active_tapes() == ()


def test_grad_inside_an_outer_tape():
    x = mt.Tensor(np.array([1.0, 2.0]))
    with mt.Tape() as outer:
        g = mt.grad(lambda a: (a * a).sum())(x)
        y = (x * 3.0).sum()
    np.testing.assert_array_equal(g, [2.0, 4.0])
    np.testing.assert_array_equal(outer.gradient(y, x), [3.0, 3.0])


def test_a_tensor_at_two_argnums_is_one_variable_inside_a_tape_too():
    # Outside a tape a Tensor passed at two argnums is one variable, so each gets the
    # total derivative, as compile=True gives it. Inside one (a nested grad), each place
    # got a copy of its own: partial derivatives, and argnums=(0, 0) gave zeros first.
    x = np.array([0.3, -0.8, 1.1])
    X = mt.Tensor(x)
    h = lambda a, b: mt.sum(a * b * b)  # noqa: E731
    g = lambda a, b: mt.sum(a * a * 3.0 + b)  # noqa: E731
    total, partials = 3 * x ** 2, (x ** 2, 2 * x ** 2)
    cases = [(h, (0, 1), (X, X), (total, total)), (h, (0, 1), (x, x), partials),  # arrays: by place
             (g, (0, 0), (x, x), (6 * x, 6 * x)), (g, (0, -2), (X, x), (6 * x, 6 * x))]
    for f, argnums, args, want in cases:
        for got in (mt.grad(f, argnums)(*args), mt.grad(f, argnums, compile=True)(*args)):
            np.testing.assert_allclose(got, want, rtol=1e-14)
        with mt.Tape():
            got = mt.grad(f, argnums)(*args)
        np.testing.assert_allclose([t.value for t in got], want, rtol=1e-14)
    # and its derivative is that of the total: d/dt Σ 3t² = 6t
    np.testing.assert_allclose(mt.grad(lambda t: mt.sum(mt.grad(h, (0, 1))(t, t)[0]))(x), 6 * x,
                               rtol=1e-14)


def test_grad_names_the_function():
    def my_loss(a):
        return (a * a).sum()
    assert "my_loss" in mt.grad(my_loss).__name__
    assert "my_loss" in mt.value_and_grad(my_loss).__name__


def test_grad_errors():
    with pytest.raises(IndexError, match="argnums 3"):
        mt.grad(lambda a, b: (a * b).sum(), argnums=3)(np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match="must return a Tensor"):
        mt.grad(lambda a: 1.0)(np.ones(2))
    with pytest.raises(ValueError, match="not a scalar"):
        mt.grad(lambda a: a * 2.0)(np.ones(2))


@pytest.mark.parametrize("compile_", [False, True])
def test_grad_of_a_function_with_several_outputs_points_to_jacobian(compile_):
    # grad takes no seed=, so the tape's own hint would send the user nowhere.
    for make in (mt.grad, mt.value_and_grad):
        with pytest.raises(ValueError) as info:
            make(lambda a: a * 2.0, compile=compile_)(np.ones(2))
        message = str(info.value)
        assert "mt.jacobian(f)" in message and "seed" not in message


# -- gradcheck ---------------------------------------------------------------------------

def test_gradcheck_passes_and_reports():
    W, b, x = _data(3)
    report = mt.gradcheck(_loss, [mt.Tensor(W, name="W"), b, x])
    assert isinstance(report, mt.GradcheckReport)
    assert report.passed and bool(report)
    assert [c.name for c in report.inputs] == ["W", "input 1", "input 2"]
    assert [c.shape for c in report.inputs] == [(3, 3), (3,), (2, 3)]
    assert all(c.passed for c in report.inputs)
    assert 0 <= report.max_rel_error < 1e-5
    assert (report.eps, report.rtol, report.atol) == (1e-6, 1e-5, 1e-8)
    text = str(report)
    assert "W" in text and "input 2" in text and "(3, 3)" in text


def test_gradcheck_with_a_dict_of_inputs():
    W, b, x = _data(4)
    report = mt.gradcheck(lambda W, b: _loss(W, b, x), {"W": W, "b": b}, eps=1e-5, rtol=1e-4)
    assert report.passed and [c.name for c in report.inputs] == ["W", "b"]
    assert report.eps == 1e-5 and report.rtol == 1e-4


def test_gradcheck_with_a_single_array_input():
    report = mt.gradcheck(lambda a: (mt.exp(a) * a).sum(), np.array([0.3, -0.2]))
    assert report.passed and len(report.inputs) == 1


def test_gradcheck_runs_in_float64_for_float32_inputs():
    x = mt.Tensor(np.array([0.5, 1.5, -0.25], dtype=np.float32), name="x")
    report = mt.gradcheck(lambda a: (mt.sigmoid(a) * mt.tanh(a)).sum(), [x])
    assert report.passed


def _wrong_square():
    @mt.primitive("dA = 3 G ∘ A  (deliberately wrong: should be 2)")
    def wrong_square(a):
        """C = A ∘ A with a VJP that is off by half."""
        return a * a, (lambda g: 3 * g * a,)
    return wrong_square


def test_gradcheck_raises_naming_the_input_index_and_values():
    square = _wrong_square()
    good = np.array([0.1, 0.2])
    bad = np.array([[1.0, 0.1], [-0.5, 2.0]])  # the worst element is 2.0, at (1, 1)
    with pytest.raises(mt.GradcheckError) as info:
        mt.gradcheck(lambda a, b: (a * a).sum() + square(b).sum(),
                     [mt.Tensor(good, name="good"), mt.Tensor(bad, name="weights")])
    message = str(info.value)
    assert "weights" in message and "good" not in message
    assert "(1, 1)" in message
    assert re.search(r"^  tape: +6$", message, re.M)                  # 3 · 2.0
    assert re.search(r"^  numeric: +4$", message, re.M)               # 2 · 2.0
    assert re.search(r"^  relative error: +0\.333", message, re.M)
    assert "rtol=1e-05, atol=1e-08" in message and "eps=1e-06" in message
    assert isinstance(info.value, AssertionError)


def test_gradcheck_catches_a_wrong_vjp_in_a_dict_input():
    square = _wrong_square()
    with pytest.raises(mt.GradcheckError, match=r"(?s)the gradient of b .*index \(0,\)"):
        mt.gradcheck(lambda a, b: (a * 2.0).sum() + square(b).sum(),
                     {"a": np.ones(2), "b": np.array([1.5])})


def test_gradcheck_tolerances_decide():
    # A VJP off by a relative 1e-4 passes a loose check and fails a strict one.
    @mt.primitive("dA = 1.0001 G  (slightly wrong)")
    def almost_identity(a):
        """C = A."""
        return a * 1.0, (lambda g: g * 1.0001,)

    f = lambda a: almost_identity(a).sum()  # noqa: E731
    assert mt.gradcheck(f, [np.ones(3)], rtol=1e-3).passed
    with pytest.raises(mt.GradcheckError):
        mt.gradcheck(f, [np.ones(3)], rtol=1e-6)


def test_gradcheck_requires_a_scalar_output():
    with pytest.raises(TypeError, match="single element"):
        mt.gradcheck(lambda a: a * 2.0, [np.ones(3)])


# -- gradcheck on big inputs: a sample, its size and the tolerance in the report ----------

def _counting(f):
    calls = []

    def counted(*args):
        calls.append(1)
        return f(*args)
    return counted, calls


def test_gradcheck_samples_big_inputs_and_says_how_many_elements_it_checked():
    rng = np.random.default_rng(0)
    big, small = rng.normal(size=(50, 40)), rng.normal(size=7)
    f, calls = _counting(lambda a, b: (mt.tanh(a) * mt.tanh(a)).sum() + (b * b).sum())
    report = mt.gradcheck(f, [mt.Tensor(big, name="big"), mt.Tensor(small, name="small")],
                          max_elements=100)
    assert [(c.checked, c.total) for c in report.inputs] == [(100, 2000), (7, 7)]
    assert len(calls) == 1 + 2 * (100 + 7)          # one taped call, two per checked element
    text = str(report)
    assert "100 of 2,000" in text and "7 of 7" in text
    assert "rtol=1e-05 and atol=1e-08" in text and "eps=1e-06" in text


def test_gradcheck_checks_every_element_without_a_limit_and_by_default_below_it():
    a = np.linspace(-1, 1, 1500)
    assert mt.gradcheck(lambda a: (a * a).sum(), [a], max_elements=None).inputs[0].checked == 1500
    assert mt.gradcheck(lambda a: (a * a).sum(), [a]).inputs[0].checked == 1000
    assert mt.gradcheck(lambda a: (a * a).sum(), [a[:999]]).inputs[0].checked == 999
    with pytest.raises(ValueError, match="max_elements"):
        mt.gradcheck(lambda a: (a * a).sum(), [a], max_elements=0)


def test_gradcheck_sample_follows_the_seed_and_still_finds_a_wrong_vjp():
    square = _wrong_square()
    x = np.random.default_rng(1).uniform(1, 2, size=(30, 30))
    worst = []
    for seed in (3, 3, 4):
        with pytest.raises(mt.GradcheckError) as info:
            mt.gradcheck(lambda a: square(a).sum(), [x], max_elements=20, seed=seed)
        assert "a random sample of 20 of 900" in str(info.value)
        worst.append(re.search(r"index (\(.*?\))", str(info.value)).group(1))
    assert worst[0] == worst[1] != worst[2]


def test_gradcheck_shows_progress_on_stderr_when_asked_or_when_slow(capsys, monkeypatch):
    import microtape.gradient_checking

    f = lambda a: (a * a).sum()  # noqa: E731
    mt.gradcheck(f, [np.ones(30)], progress=True)
    err = capsys.readouterr().err
    assert "gradcheck: input 0 30/30 elements" in err and "30 elements checked in" in err

    mt.gradcheck(f, [np.ones(30)], progress=False)
    assert capsys.readouterr().err == ""

    # Automatic: shown only when the estimate from the first elements exceeds the threshold.
    monkeypatch.setattr(microtape.gradient_checking, "PROGRESS_AFTER", float("inf"))
    mt.gradcheck(f, [np.ones(30)])
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(microtape.gradient_checking, "PROGRESS_AFTER", 0.0)
    mt.gradcheck(f, [np.ones(30)])
    assert "elements checked in" in capsys.readouterr().err


def test_gradcheck_report_states_how_close_to_the_bound_each_input_came():
    # A relative error of 2e-3 passes rtol=1e-2: the report says by how much.
    @mt.primitive("dA = 1.002 G  (slightly wrong)")
    def nearly(a):
        """C = A."""
        return a * 1.0, (lambda g: g * 1.002,)

    report = mt.gradcheck(lambda a: nearly(a).sum(), [np.ones(3)], rtol=1e-2)
    (check,) = report.inputs
    assert check.passed and 0.19 < check.tolerance_used < 0.21   # 2e-3 of an allowed 1e-2
    assert "rtol=0.01" in str(report) and "worst |error| / tolerance" in str(report)
