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
