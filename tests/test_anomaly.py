"""Anomaly mode names the op that made the first NaN or Inf, and costs nothing when off."""

from __future__ import annotations

import asyncio
import inspect
import threading
import warnings

import numpy as np
import pytest

import microtape as mt

# numpy warns as it makes each NaN or Inf; these tests make them on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _line() -> int:
    """The caller's line number."""
    return inspect.currentframe().f_back.f_lineno


def test_forward_names_the_op_that_made_the_nan_not_the_ones_after():
    x = mt.Tensor(np.array([3.0, 1.0, 4.0]), name="x")
    with pytest.raises(mt.AnomalyError) as caught, mt.detect_anomaly():
        with mt.Tape() as tape:
            line = _line() + 1
            y = (x - 2.0) ** 0.5  # NaN at x = 1
            z = y ** 0.5  # would pass the NaN on
            (z * 2.0).sum()
    err = caught.value
    assert (err.op, err.phase, err.kind, err.index) == ("pow", "forward", "NaN", (1,))
    assert err.source.endswith(f"test_anomaly.py:{line}")
    assert err.tape is tape and tape.nodes[-1] is err.node  # the tape holds it, last
    assert err.node.op is mt.pow and err.input is None and err.target is None
    assert err.values["A"] == -1.0 and err.values["p"] == 0.5
    assert err.formula == mt.pow.formula
    text = str(err)
    for part in ("pow", "forward", "NaN", "[1]", f"test_anomaly.py:{line}", mt.pow.formula,
                 "A[1] = -1", "p = 0.5", "non-integer power", 'viz.render_anomaly(err, "anomaly.svg")'):
        assert part in text, part


def test_forward_without_a_tape_still_builds_the_node():
    with pytest.raises(mt.AnomalyError) as caught, mt.detect_anomaly():
        mt.log(np.array([[1.0, 2.0], [0.0, 1.0]]))
    err = caught.value
    assert (err.op, err.kind, err.index, err.tape) == ("log", "Inf", (1, 0), None)
    assert isinstance(err.node, mt.Node) and err.node.op is mt.log
    assert "log of 0" in str(err) and "A[1, 0] = 0" in str(err)


@pytest.mark.parametrize("make, op, hint", [
    (lambda a: mt.div(a, a - 1.0), "div", "division by 0"),
    (lambda a: mt.exp(a * 1000.0), "exp", "softmax_cross_entropy"),
    (lambda a: mt.log(a - 2.0), "log", "log of a negative number"),
])
def test_each_hint_fits_its_case(make, op, hint):
    a = mt.Tensor(np.array([1.0, 2.0]))
    with pytest.raises(mt.AnomalyError) as caught, mt.detect_anomaly():
        with np.errstate(all="ignore"):
            make(a)
    assert caught.value.op == op and hint in str(caught.value)


def test_backward_pow_at_zero_is_named_with_its_formula_and_operands():
    x = mt.Tensor(np.array([1.0, 0.0, 4.0]), name="x")
    with mt.detect_anomaly():
        with mt.Tape() as tape:
            line = _line() + 1
            loss = (x ** 0.5).sum()  # finite: 0 ** 0.5 = 0
        assert np.isfinite(loss.value)
        with pytest.raises(mt.AnomalyError) as caught, np.errstate(all="ignore"):
            tape.gradient(loss, x)
    err = caught.value
    assert (err.op, err.phase, err.kind, err.index, err.input) == ("pow", "backward", "Inf", (1,), 0)
    assert err.input_name == "x" and err.target is loss and err.tape is tape
    assert err.source.endswith(f"test_anomaly.py:{line}")
    assert err.values["A"] == 0.0 and err.values["p"] == 0.5 and err.values["G"] == 1.0
    text = str(err)
    for part in ("backward", "dA = G ∘ p A^(p−1)", "A[1] = 0", "p = 0.5", "pow at 0 with p < 1"):
        assert part in text, part


@pytest.mark.parametrize("x, values", [
    ([4.0, 0.0, 9.0], {"A": 0.0, "C": 0.0, "G": 1.0}),  # the backward pass: dA = G / (2C) at 0
    ([4.0, -1.0, 9.0], {"A": -1.0})],                    # the forward pass: √−1
    ids=["backward", "forward"])
def test_sqrt_gives_the_values_at_the_bad_element(x, values):
    # sqrt and the other unary ops of selection.py were left out of the elementwise ops
    # whose operands' values at the bad element the error shows: it showed none
    v = mt.Tensor(np.array(x), name="v")
    with pytest.raises(mt.AnomalyError) as caught, np.errstate(all="ignore"):
        with mt.detect_anomaly(), mt.Tape() as tape:
            tape.gradient(mt.sum(mt.sqrt(v)), v)
    assert caught.value.index == (1,) and "values there:" in str(caught.value)
    assert {k: v for k, v in caught.value.values.items() if k in values} == values


def test_backward_is_checked_when_only_the_gradient_is_asked_in_the_mode():
    x = mt.Tensor(np.array([1.0, 0.0]), name="x")
    with mt.Tape() as tape:
        loss = (x ** 0.5).sum()
    with pytest.raises(mt.AnomalyError) as caught, mt.detect_anomaly(), np.errstate(all="ignore"):
        tape.gradient(loss, x)
    assert caught.value.phase == "backward" and caught.value.source is None  # not captured then
    with np.errstate(all="ignore"):
        assert np.isinf(tape.gradient(loss, x)[1])  # outside the mode: as before


def test_a_bad_forward_recorded_outside_the_mode_is_blamed_on_its_maker():
    x = mt.Tensor(np.array([3.0, 1.0]), name="x")
    with mt.Tape() as tape, np.errstate(all="ignore"):
        loss = ((x - 2.0) ** 0.5 * 3.0).sum()  # NaN at x = 1, made by pow
    with pytest.raises(mt.AnomalyError) as caught, mt.detect_anomaly():
        tape.gradient(loss, x)  # the first NaN in the backward pass is pow's VJP's, too
    assert (caught.value.op, caught.value.phase, caught.value.index) == ("pow", "forward", (1,))


def test_data_already_bad_is_named_as_an_input_of_the_first_op_that_reads_it():
    data = mt.Tensor(np.array([1.0, np.nan]), name="data")
    w = mt.Tensor(np.array([2.0, 3.0]), name="w")
    with pytest.raises(mt.AnomalyError) as caught, mt.detect_anomaly():
        line = _line() + 1
        h = mt.tanh(w * data)
        mt.exp(h)
    err = caught.value
    assert (err.op, err.phase, err.kind, err.input, err.input_name) == ("mul", "forward", "NaN", 1, "data")
    assert err.index == (1,) and err.source.endswith(f"test_anomaly.py:{line}")
    assert "already holds NaN" in str(err) and "'data'" in str(err)


def test_inf_false_lets_masks_through_and_gradients_stay_finite():
    logits = mt.Tensor(np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]]), name="logits")
    mask = np.array([[0.0, -np.inf, 0.0], [0.0, 0.0, -np.inf]])
    with mt.detect_anomaly(inf=False):
        with mt.Tape() as tape:
            p = mt.softmax(logits + mask, axis=1)
            loss = (p * np.arange(3.0)).sum()
        g = tape.gradient(loss, logits)
    assert np.isfinite(g).all() and g[0, 1] == 0.0
    with pytest.raises(mt.AnomalyError, match="read an input that already holds Inf"), \
            mt.detect_anomaly():
        mt.softmax(logits + mask, axis=1)
    with pytest.raises(mt.AnomalyError) as caught, mt.detect_anomaly(inf=False):
        mt.mul(mask, 0.0)  # 0 · inf is NaN: still caught
    assert caught.value.kind == "NaN" and "0 · inf" in str(caught.value)


def test_off_by_default_and_bit_identical_with_and_without_the_mode():
    with np.errstate(divide="ignore"):
        assert mt.log(mt.Tensor(0.0)).value == -np.inf
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(5, 4)), mt.Tensor(rng.normal(size=(4, 3)), name="w")
    b = mt.Tensor(rng.normal(size=3), name="b")

    def run():
        with mt.Tape() as tape:
            loss = mt.softmax_cross_entropy(mt.tanh(x @ w + b) ** 2.0, np.array([0, 1, 2, 0, 1]))
        return loss.value, tape.gradient(loss, [w, b])

    plain = run()
    with mt.detect_anomaly():
        checked = run()
    assert plain[0].tobytes() == checked[0].tobytes()
    for p, c in zip(plain[1], checked[1]):
        assert p.tobytes() == c.tobytes()


def test_the_mode_in_one_thread_does_not_check_ops_in_another():
    seen, inside = [], threading.Event()
    release = threading.Event()

    def other():
        inside.wait()
        with np.errstate(divide="ignore"):
            seen.append(mt.log(mt.Tensor(0.0)).value)  # not checked: -inf, silently
        release.set()

    worker = threading.Thread(target=other)
    worker.start()
    with mt.detect_anomaly():
        inside.set()
        release.wait()
        with pytest.raises(mt.AnomalyError):
            mt.log(mt.Tensor(0.0))
    worker.join()
    assert seen == [-np.inf]


def test_a_task_started_in_the_mode_stops_checking_once_it_is_left():
    async def main():
        with mt.detect_anomaly():
            task = asyncio.ensure_future(asyncio.sleep(0, 0))
        await task
        with np.errstate(divide="ignore"):
            return mt.log(mt.Tensor(0.0)).value

    assert asyncio.run(main()) == -np.inf


def test_a_decorator_nests_and_the_innermost_settings_win():
    mask = np.array([0.0, -np.inf])

    @mt.detect_anomaly(inf=False)
    def masked(x):
        return mt.softmax(x + mask)

    with mt.detect_anomaly():
        assert np.isfinite(masked(np.array([1.0, 2.0])).value).all()
        with pytest.raises(mt.AnomalyError):
            mt.softmax(mt.add(np.array([1.0, 2.0]), mask))
    assert masked.__name__ == "masked"
    assert mt.tape.active_tapes() == ()


def test_no_grad_pauses_the_tapes_not_the_checks():
    with mt.detect_anomaly(), mt.Tape() as tape, mt.no_grad():
        with pytest.raises(mt.AnomalyError):
            mt.log(mt.Tensor(0.0))
    assert len(tape) == 0


def test_value_and_grad_eager_and_compiled_are_checked_op_by_op():
    def f(x):
        return (x ** 0.5).sum()

    x = np.array([4.0, 0.0])
    for compile in (False, True):
        both = mt.value_and_grad(f, compile=compile)
        with pytest.raises(mt.AnomalyError) as caught, mt.detect_anomaly(), np.errstate(all="ignore"):
            both(x)
        assert (caught.value.op, caught.value.phase) == ("pow", "backward")
        if compile:
            assert both.cache_info().misses == 0  # ran eagerly: nothing traced
    with np.errstate(all="ignore"):
        assert np.isinf(mt.value_and_grad(f, compile=True)(x)[1][1])


def test_a_block_exited_where_none_is_open_says_so():
    with pytest.raises(RuntimeError, match="no anomaly block is open"):
        mt.detect_anomaly().__exit__(None, None, None)
    with pytest.raises(TypeError, match="True or False"):
        mt.detect_anomaly(nan="yes")


def test_a_bad_seed_and_an_overflowing_sum_of_gradients_are_told_apart():
    x = mt.Tensor(np.array([1.0, 2.0]), name="x")
    with mt.detect_anomaly():
        with mt.Tape() as tape:
            y = x * 1.0
        with pytest.raises(mt.AnomalyError, match="the seed of the backward pass"):
            tape.gradient(y, x, seed=np.array([1.0, np.inf]))
        tiny = mt.Tensor(np.array([1e-300, 2e-300]), name="tiny")
        with mt.Tape() as tape:
            loss = (tiny * 1e308).sum() + (tiny * 1e308).sum()  # tiny's gradients: 1e308 twice
        with pytest.raises(mt.AnomalyError, match="summed to Inf") as caught:
            tape.gradient(loss, tiny)
    assert caught.value.phase == "backward"


@pytest.mark.parametrize("p", [np.inf, -np.inf])
def test_pow_of_a_negative_number_to_an_infinite_power_is_reported_not_a_crash(p):
    # the hint asked int(p) whether p is an integer, which raises OverflowError for ±inf
    a = mt.Tensor(np.array([-2.0]), name="a")
    power = mt.Tensor(np.array(p), name="p")
    with pytest.raises(mt.AnomalyError) as caught, mt.detect_anomaly(inf=False), mt.Tape() as tape:
        tape.gradient(mt.sum(a ** power), [a, power])
    assert (caught.value.op, caught.value.phase, caught.value.kind) == ("pow", "backward", "NaN")
    assert "non-integer power" not in str(caught.value)


@pytest.mark.parametrize("values, inf", [([1e308, 1e308], True), ([np.inf, -np.inf], False)],
                         ids=["finite-values-whose-sum-overflows", "both-infinities"])
def test_the_check_itself_never_warns(values, inf):
    # the check summed the output: the sum warned of an overflow (or of inf − inf), and the
    # warning was restated as the user's op's, an error under python -W error
    a = mt.Tensor(np.array(values), name="a")
    with warnings.catch_warnings(record=True) as seen, mt.detect_anomaly(inf=inf):
        warnings.simplefilter("always")
        with mt.Tape() as tape:
            b = a * 1.0
            loss = mt.sum(b * 0.5) if inf else None
        if inf:
            tape.gradient(loss, a)  # the gradient's checks too: [0.5, 0.5]
    assert [str(w.message) for w in seen] == []
    assert np.array_equal(b.value, a.value)


def test_a_nested_block_leaves_the_outer_tapes_with_the_outer_settings():
    # the inner block set its inf=False on the outer block's tape and never set it back,
    # so an infinite gradient passed silently once the inner block was left
    x = mt.Tensor(np.array([4.0, 0.0]), name="x")
    with mt.detect_anomaly():
        with mt.Tape() as tape:
            loss = mt.sum(mt.sqrt(x))
            with mt.detect_anomaly(inf=False):
                pass
    assert tape.anomaly.inf
    with pytest.raises(mt.AnomalyError) as caught, np.errstate(all="ignore"):
        tape.gradient(loss, x)  # outside every block: the tape's own settings
    assert (caught.value.op, caught.value.phase, caught.value.kind) == ("sqrt", "backward", "Inf")


def test_a_tape_opened_outside_the_mode_keeps_the_settings_of_the_block_it_recorded_in():
    x = mt.Tensor(np.array([4.0, 0.0]), name="x")
    with mt.Tape() as tape:
        with mt.detect_anomaly(inf=False):
            loss = mt.sum(mt.sqrt(x))
    assert tape.anomaly is not None and not tape.anomaly.inf


def _first_anomaly(f) -> mt.AnomalyError:
    with pytest.raises(mt.AnomalyError) as caught, np.errstate(all="ignore"):
        f()
    return caught.value


def _told(err: mt.AnomalyError) -> tuple:
    return (err.op, err.phase, err.kind, err.index, err.input, err.values, str(err).splitlines()[0])


@pytest.mark.parametrize("run", [
    lambda f, x: mt.hvp(f, (x,), (np.ones(3),)),
    lambda f, x: mt.hessian(f)(x),
    lambda f, x: mt.grad(lambda v: mt.sum(mt.grad(f)(v)))(x),
    lambda f, x: mt.jvp(f, (x,), (np.ones(3),)),
], ids=["hvp", "hessian", "nested-grad", "jvp"])
def test_a_vjp_that_goes_bad_in_a_recorded_pass_is_named_as_in_the_plain_pass(run):
    # create_graph=True runs each VJP as ops, which the mode checked as the user's: sqrt's
    # VJP at 0 was told as "div made Inf in the forward pass"
    x = np.array([4.0, 0.0, 9.0])
    plain = _first_anomaly(lambda: mt.detect_anomaly()(mt.grad(lambda v: mt.sum(mt.sqrt(v))))(x))
    err = _first_anomaly(lambda: mt.detect_anomaly()(run)(lambda v: mt.sum(mt.sqrt(v)), x))
    assert (err.op, err.phase, err.input, err.index) == ("sqrt", "backward", 0, (1,))
    assert "from a finite G" in str(err)
    if err.values["G"] == 1.0:  # jvp's pass starts from a seed of its own
        assert _told(err) == _told(plain)


def test_create_graph_tells_an_anomaly_as_the_plain_pass_does():
    def ask(create_graph: bool) -> mt.AnomalyError:
        x = mt.Tensor(np.array([4.0, 0.0, 9.0]), name="x")

        def run():
            with mt.detect_anomaly(), mt.Tape() as tape:
                tape.gradient(mt.sum(mt.sqrt(x)), x, create_graph=create_graph)
        return _first_anomaly(run)

    plain, recorded = ask(False), ask(True)
    assert _told(recorded) == _told(plain)
    assert str(recorded).startswith("sqrt made Inf in the backward pass: its VJP gave dA[1] = inf")
    finished = [[g.tolist() for g in err.gradients.values()] for err in (recorded, plain)]
    assert finished[0] == finished[1] == [[1.0, 1.0, 1.0]]  # sqrt's G


def test_create_graph_tells_an_overflowing_fan_out_sum_as_the_plain_pass_does():
    def ask(create_graph: bool) -> mt.AnomalyError:
        tiny = mt.Tensor(np.array([1e-300, 2e-300]), name="tiny")

        def run():
            with mt.detect_anomaly(), mt.Tape() as tape:
                loss = (tiny * 1e308).sum() + (tiny * 1e308).sum()  # tiny's gradients: 1e308 twice
                tape.gradient(loss, tiny, create_graph=create_graph)
        return _first_anomaly(run)

    recorded = ask(True)
    assert "summed to Inf" in str(recorded) and _told(recorded) == _told(ask(False))


def test_create_graph_checks_a_tape_recorded_in_the_mode_when_asked_outside_it():
    # the recorded pass checked nothing but the ops the mode saw run: outside the mode,
    # the gradient came back [0.25, inf, 0.167] where create_graph=False raised
    x = mt.Tensor(np.array([4.0, 0.0, 9.0]), name="x")
    with mt.detect_anomaly(), mt.Tape() as tape:
        loss = mt.sum(mt.sqrt(x))
    for create_graph in (False, True):
        err = _first_anomaly(lambda: tape.gradient(loss, x, create_graph=create_graph))
        assert str(err).startswith("sqrt made Inf in the backward pass: its VJP gave dA[1] = inf")
    with mt.Tape() as unchecked:
        loss = mt.sum(mt.sqrt(x))
    with np.errstate(all="ignore"):
        assert np.isinf(unchecked.gradient(loss, x, create_graph=True).value[1])


def test_create_graph_checks_the_seed():
    x = mt.Tensor(np.array([1.0, 2.0]), name="x")
    with mt.detect_anomaly():
        with mt.Tape() as tape:
            y = x * 1.0
        with pytest.raises(mt.AnomalyError, match="the seed of the backward pass"):
            tape.gradient(y, x, seed=np.array([1.0, np.nan]), create_graph=True)


def test_a_bad_forward_value_the_target_never_read_is_not_blamed():
    # blaming the first bad output on the tape named an op the target did not depend on
    x = mt.Tensor(np.array([1.0, 2.0]), name="x")
    data = mt.Tensor(np.array([1.0, np.inf]), name="data")
    with mt.Tape() as tape, np.errstate(all="ignore"):
        mt.log(mt.Tensor(np.array([0.0])), name="unused")  # -inf, read by nothing
        loss = mt.sum(x * data)
    with pytest.raises(mt.AnomalyError) as caught, mt.detect_anomaly():
        tape.gradient(loss, x)
    err = caught.value
    assert (err.op, err.phase, err.kind) == ("mul", "forward", "Inf")
    assert (err.input, err.input_name) == (1, "data")


@pytest.mark.parametrize("p, shown", [([2.0, 1.0], "p[0] = 2"), (2.0, "p = 2")],
                         ids=["row-exponent", "0-d-exponent"])
def test_a_broadcast_input_s_bad_gradient_shows_the_element_that_made_it(p, shown):
    # the output element was taken at 0 along the axes p was broadcast along: A[0, 0] = 1,
    # whose term C log A is fine, and the NaN from log(-1) at A[1, 0] went unexplained
    a = mt.Tensor(np.array([[1.0, 2.0], [-1.0, 3.0]]), name="A")
    power = mt.Tensor(np.array(p), name="p")

    def run():
        with mt.detect_anomaly(), mt.Tape() as tape:
            tape.gradient(mt.sum(a ** power), [a, power])
    err = _first_anomaly(run)
    assert (err.op, err.phase, err.input) == ("pow", "backward", 1)
    assert err.values == {"A": -1.0, "p": 2.0, "C": 1.0, "G": 1.0}
    text = str(err)
    for part in ("A[1, 0] = -1", shown, "C[1, 0] = 1", "G[1, 0] = 1", "negative base"):
        assert part in text, part



@pytest.mark.parametrize("make, n, label", [
    (lambda bad, ok: mt.where(np.array([False, True]), bad, ok), 1, "a"),
    (lambda bad, ok: mt.clip(ok, bad, mt.Tensor(np.array([5.0, 5.0]))), 1, "lo"),
    (lambda bad, ok: mt.einsum("i,i->", bad, ok), 0, "A_0"),
    (lambda bad, ok: mt.concatenate([ok, bad]), 1, "A_1"),
], ids=["where", "clip", "einsum", "concatenate"])
def test_an_input_is_named_as_its_formula_and_signature_name_it(make, n, label):
    # the message named inputs by one letter in formula order, counting where's condition
    # and einsum's subscripts: where's input 1 was 'b', clip's lo 'l', einsum's first operand
    # input 1, 'B'; and the drawing named them otherwise
    bad = mt.Tensor(np.array([1.0, np.nan]), name="bad")
    ok = mt.Tensor(np.array([1.0, 2.0]), name="ok")
    with pytest.raises(mt.AnomalyError) as caught, mt.detect_anomaly():
        make(bad, ok)
    err = caught.value
    assert (err.input, err.input_name) == (n, "bad")
    assert f"input {n} ({label}, 'bad')" in str(err) and label in err.values


def test_a_block_exited_before_a_tape_entered_in_it_leaves_the_tape_recording():
    # resetting the block's token dropped the tape from the stack, so it recorded nothing
    # more, and the tape's own exit put the dead checker back: every later op built a node
    x = mt.Tensor(np.array([1.0, 0.0]), name="x")
    mode = mt.detect_anomaly()
    mode.__enter__()
    tape = mt.Tape().__enter__()
    mode.__exit__(None, None, None)
    with np.errstate(divide="ignore"):
        y = mt.log(x)  # -inf: the mode is off, and the tape records it
    assert mt.tape.active_tapes() == (tape,) and len(tape) == 1
    tape.__exit__(None, None, None)
    assert mt.tape._active.get() == ()
    with mt.Tape() as later:
        mt.exp(y)
    assert later.anomaly is None and len(later) == 1


def test_the_decorator_checks_the_body_of_a_coroutine_and_of_a_generator():
    # the block was left as soon as the call made the coroutine or generator object, so
    # their bodies ran outside the mode and checked nothing
    @mt.detect_anomaly()
    async def later(x):
        await asyncio.sleep(0)
        return mt.log(x)

    assert inspect.iscoroutinefunction(later) and later.__name__ == "later"
    with pytest.raises(mt.AnomalyError, match="log made Inf"), np.errstate(divide="ignore"):
        asyncio.run(later(mt.Tensor(0.0)))

    @mt.detect_anomaly()
    def steps(x):
        y = yield mt.exp(x)
        return mt.log(y)

    run = steps(mt.Tensor(0.0))
    assert next(run).value == 1.0
    with np.errstate(divide="ignore"):  # between resumptions the caller runs outside the mode
        assert mt.log(mt.Tensor(0.0)).value == -np.inf
        with pytest.raises(mt.AnomalyError, match="log made Inf"):
            run.send(mt.Tensor(0.0))
    assert mt.tape._active.get() == ()
    fine = steps(mt.Tensor(0.0))
    next(fine)
    with pytest.raises(StopIteration) as done:
        fine.send(mt.Tensor(1.0))
    assert done.value.value.value == 0.0  # its return value: log(1)


def test_the_decorator_refuses_an_async_generator():
    async def stream():
        yield 1

    with pytest.raises(TypeError, match="async generator stream"):
        mt.detect_anomaly()(stream)


def test_a_decorated_generator_holding_a_tape_across_its_yields_leaves_no_tape_behind():
    # each resumption's block exits after the generator's tape was entered, or before it
    # was exited: the tape stopped recording, then stayed on the stack once exited
    @mt.detect_anomaly()
    def steps(x):
        with mt.Tape() as tape:
            y = yield mt.exp(x)
            loss = mt.sum(y * x)
        yield tape.gradient(loss, x)

    x = mt.Tensor(np.array([0.0, 1.0]), name="x")
    run = steps(x)
    y = next(run)
    assert np.allclose(run.send(y), np.exp([0.0, 1.0]) * np.array([1.0, 2.0]))  # e^x (1 + x)
    run.close()
    assert mt.tape._active.get() == ()
