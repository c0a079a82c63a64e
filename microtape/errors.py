"""The errors microtape raises on purpose, so callers can catch exactly them."""


class ShapeError(ValueError):
    """An op was given arrays whose shapes do not fit together.

    The message names the op and every shape involved, plus a hint when an
    obvious fix exists (a missing transpose, say).
    """


class InputError(ValueError):
    """An argument has the right shape but a wrong value.

    Class indices out of range, label rows that do not sum to 1, an unknown
    ``reduction``: the message says which argument and what was expected.
    """


class GradcheckError(AssertionError):
    """The tape's gradient disagrees with central finite differences.

    Raised by :func:`microtape.gradcheck`; the message names the input, the
    worst element's index, both values and their relative error.
    """


class TraceError(RuntimeError):
    """A function being traced for ``compile=True`` asked for a traced value.

    ``bool(t)``, ``float(t)``, ``t.item()`` or ``if t > 0:`` would pick one
    branch for the values of the first call and bake it into the closed form,
    which is then wrong for other values. The message says which call did it.
    """


class AnomalyError(RuntimeError):
    """Anomaly mode (``mt.detect_anomaly()``) met the first NaN or Inf, where it was made.

    ``op`` names the op, ``phase`` is "forward" or "backward", ``kind`` is
    "NaN" or "Inf", ``index`` the first bad element of the output (forward)
    or of the gradient (backward). ``input`` says which input's gradient went
    bad, or which input already held the bad value (``input_name`` its name);
    ``source`` is the user's "file:line" that called the op, ``tape`` the
    innermost active tape (or None), ``node`` the recorded ``mt.Node``,
    ``target`` the Tensor whose gradient was asked (backward only),
    ``formula`` the op's VJP and ``values`` each operand's value at the bad
    element. In the backward phase, ``gradients`` holds what the pass had
    finished and kept before it stopped ({id(tensor): gradient}; for
    ``tape.backward``, the outputs of every op it had visited), the failing
    op's own G included, so the step page can play the pass up to that op. The message says all of it in one block, with
    a hint where one fits, and the command that draws it.
    """

    def __init__(self, message: str, *, op: str, phase: str, kind: str, index: tuple,
                 input: int | None, input_name: str | None, source: str | None, tape, node,
                 target, formula: str, values: dict) -> None:
        super().__init__(message)
        self.op, self.phase, self.kind, self.index = op, phase, kind, index
        self.input, self.input_name, self.source = input, input_name, source
        self.tape, self.node, self.target = tape, node, target
        self.formula, self.values = formula, values
        self.gradients: dict = {}
