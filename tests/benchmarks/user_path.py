"""The user's compiled step taken apart: what ``compile=True`` and the optimizers add to numpy.

A user trains with ``value_and_grad(loss, argnums=(0, 1, 2, 3), compile=True)``
and ``mt.optim.SGD`` or ``Adam``. Each piece is timed beside the work it
wraps: the compiled call beside the generated code it runs (``cf.function``),
the compiled function's fused step (``vg._sgd_step``) beside its generated
code, ``opt.step(vg, *args)`` beside that fused step, and each optimizer's
step beside the same numpy arithmetic written as bare in-place updates. The medians come from interleaved blocks; what the library
adds per call and per parameter, a few microseconds, from pairs of calls made
side by side (``timing.paired``).
"""

from __future__ import annotations

import statistics

import numpy as np

import microtape as mt

from .contenders import CompiledStep, ValueAndGradStep
from .problem import PARAM_NAMES, make_problem
from .timing import Timing, interleave, paired

CALL_TARGET = 3e-6       # seconds a compile=True call may add over its generated code
PER_PARAM_TARGET = 1.5e-6  # seconds an optimizer's step may add per parameter over its arithmetic


def _sgd_arithmetic(params: list[np.ndarray], grads: tuple, lr: float):
    def step():
        for p, g in zip(params, grads):
            p -= lr * g
    return step


def _adam_arithmetic(params: list[np.ndarray], grads: tuple, lr: float):
    """Adam's update with its step count fixed at 1: the same numpy calls as ``Adam.step``."""
    m, v, buf = ([np.zeros_like(p) for p in params] for _ in range(3))
    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def step():
        for p, g, m1, v1, b in zip(params, grads, m, v, buf):
            m1 *= beta1
            np.multiply(g, 1 - beta1, out=b)
            m1 += b
            v1 *= beta2
            np.multiply(g, g, out=b)
            b *= 1 - beta2
            v1 += b
            np.sqrt(v1, out=b)
            b /= 0.5
            b += eps
            np.divide(m1, b, out=b)
            b *= lr
            p -= b
    return step


# What each piece adds over the work it wraps: (piece, the work, how many it is per). The
# call's budget is the compiled function's; opt.step(vg) is that function's fused step with
# SGD around it, so SGD's own part is held to the optimizers' budget per parameter.
OVERHEADS = (("compiled call", "generated code", 1), ("compiled step", "generated step code", 1),
             ("opt.step(vg)", "generated step code", 1),
             ("SGD around the compiled step", ("opt.step(vg)", "compiled step"), len(PARAM_NAMES)),
             ("SGD.step", "numpy SGD", len(PARAM_NAMES)), ("Adam.step", "numpy Adam", len(PARAM_NAMES)))


def measure(size: str, dtype: str, rounds: int,
            block_seconds: float) -> tuple[dict[str, Timing], dict[str, float]]:
    """Each piece of the user's compiled step at ``size``, interleaved in one run, and the
    seconds each piece of ``OVERHEADS`` adds over its work (per parameter for the optimizers):
    the median over pairs of calls, for as long as the interleaved rounds give each piece."""
    problem = make_problem(size, dtype)
    user, fused = ValueAndGradStep(problem), CompiledStep(problem)
    user.step()  # the first call traces and writes the closed form: not timed
    cf = user._value_and_grad.closed_form(*user.args)
    inputs = {"x": problem.x, "labels": problem.labels,
              **{name: p.value for name, p in user.net.params.items()}}
    bound = [inputs[name] for name in cf.inputs]
    # A tiny lr: thousands of steps must not move the parameters the other timings read.
    lr = 1e-12
    grads = user._value_and_grad(*user.args)[1]
    tensors = [mt.Tensor(problem.params0[name].copy()) for name in PARAM_NAMES]
    arrays = [problem.params0[name].copy() for name in PARAM_NAMES]
    sgd, adam = mt.optim.SGD(tensors, lr), mt.optim.Adam(tensors, lr)
    step_code = cf.step_function
    vg, params = user._value_and_grad, tuple(user.net.parameters())
    pieces = {
        "generated code": lambda: cf.function(*bound),
        "compiled call": lambda: user._value_and_grad(*user.args),
        "compiled call + SGD": user.two_calls,
        "generated step code": lambda: step_code(*bound, lr),
        "compiled step": lambda: vg._sgd_step(lr, user.args, params),
        "opt.step(vg)": user.step,
        "fused step": fused.step,
        "SGD.step": lambda: sgd.step(grads),
        "numpy SGD": _sgd_arithmetic(arrays, grads, lr),
        "Adam.step": lambda: adam.step(grads),
        "numpy Adam": _adam_arithmetic(arrays, grads, lr),
    }
    timings = interleave(pieces, rounds, block_seconds)
    over = {}
    for piece, work, per in OVERHEADS:
        timed, work = work if isinstance(work, tuple) else (piece, work)
        over[piece] = statistics.median(
            paired(pieces[timed], pieces[work], rounds * block_seconds)) / per
    return timings, over


def section(size: str, dtype: str, t: dict[str, Timing],
            over: dict[str, float]) -> tuple[list[str], list[list[str]]]:
    """The report's section (markdown lines) and its rows for the goals table."""
    from .bench import fmt_time, table, verdict  # the report's formatting, shared

    n = len(PARAM_NAMES)
    rows = [["the generated code (`cf.function`)", fmt_time(t["generated code"].median), ""],
            ["the compiled call (`vg(*args)`)", fmt_time(t["compiled call"].median),
             f"{over['compiled call'] * 1e6:+.2f} µs over the generated code"],
            ["the compiled call, then `SGD.step(grads)`", fmt_time(t["compiled call + SGD"].median),
             ""],
            ["the fused step's generated code (`cf.step_function`)",
             fmt_time(t["generated step code"].median), ""],
            ["the compiled function's fused step (`vg._sgd_step`)",
             fmt_time(t["compiled step"].median),
             f"{over['compiled step'] * 1e6:+.2f} µs over its generated code"],
            ["`opt.step(vg, *args)` (SGD: the fused step)", fmt_time(t["opt.step(vg)"].median),
             f"{over['opt.step(vg)'] * 1e6:+.2f} µs over its generated code, "
             f"{over['SGD around the compiled step'] * 1e6:+.2f} µs per parameter over "
             f"`vg._sgd_step`"],
            ["the fused step (`cf.sgd_step`)", fmt_time(t["fused step"].median), ""],
            ["`SGD.step`", fmt_time(t["SGD.step"].median),
             f"{over['SGD.step'] * 1e6:+.2f} µs per parameter over numpy's "
             f"{fmt_time(t['numpy SGD'].median)}"],
            ["`Adam.step`", fmt_time(t["Adam.step"].median),
             f"{over['Adam.step'] * 1e6:+.2f} µs per parameter over numpy's "
             f"{fmt_time(t['numpy Adam'].median)}"]]
    md = ["", f"## The compiled step as a user writes it, taken apart ({size}, {dtype})", "",
          "`vg = mt.value_and_grad(loss, argnums=(0, 1, 2, 3), compile=True)` on the four "
          "parameter Tensors, stepped by `opt.step(vg, *args)` (one call: for plain SGD the "
          "closed form's fused step) or called for its gradients and then "
          "`opt.step(grads)` (two calls), and the optimizers on its gradients, each timed beside the work it "
          "wraps (medians from the same rounds scheme; what a piece adds is the median, over "
          "pairs of calls made side by side in alternating order, of its call's time less "
          "its work's): the call beside the generated code it runs, the compiled function's "
          "fused step (what `opt.step(vg, *args)` hands plain SGD's update to) beside its "
          "generated code and `opt.step(vg, *args)` beside that fused step, each "
          f"optimizer beside its own arithmetic as bare numpy in-place updates ({n} parameters).",
          "", *table(["what", "median", "over the work it wraps"], rows)]
    where = f"{size}, {dtype}"
    goals = [(f"compile=True call over its generated code, {where}", CALL_TARGET,
              over["compiled call"]),
             (f"compile=True fused step over its generated code, {where}", CALL_TARGET,
              over["compiled step"]),
             (f"opt.step(vg, *args) per parameter over that fused step, {where}",
              PER_PARAM_TARGET, over["SGD around the compiled step"]),
             (f"SGD.step per parameter over its numpy, {where}", PER_PARAM_TARGET,
              over["SGD.step"]),
             (f"Adam.step per parameter over its numpy, {where}", PER_PARAM_TARGET,
              over["Adam.step"])]
    targets = [[name, f"≤ {fmt_time(goal)}", fmt_time(value), verdict(value, goal)]
               for name, goal, value in goals]
    return md, targets
