"""Every op microtape can differentiate, each one block: forward, VJPs, formula.

Notation is models/DERIVATION.md's: ``G`` is the gradient of the output (same shape
as the output), ``dA`` the gradient passed to input ``A``, ``∘`` the
elementwise product.

Each op's VJPs are written once, in these same ops (``grads=``, see
primitive.py), reading the recorded output ``C`` as a Tensor:
``tape.gradient(..., create_graph=True)`` runs them, so the backward pass is
recorded and can be differentiated again, and the closed form prints them
with each op's forward template (``Code``), so its code and equations come
from them too. A test holds each formula line to its grads
(tests/test_closed_form_derived.py).

Each forward here also returns one numpy VJP per positional argument (None
where that argument gets no gradient): the eager fast path, which reuses
what the forward computed and never writes into an array it did not create,
so a tape can be asked twice; tests/test_higher_order.py holds them to the
grads on every op case. A few ops keep a hand-tuned VJP template for the
closed form (``Code(fast_vjps=...)``) where it beats the derived code, held
to it by tests/test_closed_form_derived.py. ``broadcast_to``, ``scatter_add``
and ``is_positive`` exist for the grads: the adjoints of a sum and of getitem,
and relu's derivative.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

from .validation import broadcast_hint, check_broadcast_from, check_labels, matmul_hint
from .errors import InputError, ShapeError
from .primitive import ATOM, NEGATION_BINDS, POWER_BINDS, PRODUCT_BINDS, Code, primitive
from .tape import pass_on
from .tensor import Tensor

_THIS_MODULE = sys.modules[__name__]  # the ops as a namespace like numpy's, for _einsum_vjp



# -- the one helper every binary VJP shares ----------------------------------

def broadcast_axes(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The axes of ``out_shape`` along which an input of ``shape`` was broadcast.

    Leading axes the input lacks, plus axes where it had length 1 and the
    output does not.
    """
    lead = len(out_shape) - len(shape)
    return tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and out_shape[lead + i] != 1
    )


def _shape(a) -> tuple[int, ...]:
    """An operand's shape; np.shape for numbers and lists (slower, and rarely needed)."""
    return a.shape if type(a) is np.ndarray or isinstance(a, Tensor) else np.shape(a)


def _value(a) -> np.ndarray:
    """An operand's numbers, whether a Tensor, an array or a number."""
    return a.value if isinstance(a, Tensor) else np.asarray(a)


_ONES: dict[tuple[tuple[int, ...], np.dtype], np.ndarray] = {}

# Sums by BLAS (a product with ones) stay below this many elements: OpenBLAS
# runs a matrix-vector product in one thread up to about 9216, and split across
# threads it stalls whenever another process holds a core; numpy sums the rest.
_BLAS_SUM_MAX_SIZE = 8192


def _ones(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A read-only array of ones, kept: sums by BLAS multiply by it, at the shapes a
    training loop asks for again and again."""
    ones = _ONES.get((shape, dtype))
    return ones if ones is not None else _keep(_ONES, (shape, dtype), np.ones(shape, dtype))


_HELD_NUMBERS: dict[tuple[float, np.dtype], np.ndarray] = {}


def _held(x: float, dtype: np.dtype) -> np.ndarray:
    """``x`` as a read-only 0-d array of ``dtype``, kept: numpy converts a Python float on
    every call (0.15-0.5 µs beside a small array), and a number exact in ``dtype`` gives
    every result the literal gives."""
    held = _HELD_NUMBERS.get((x, dtype))
    return held if held is not None else _keep(_HELD_NUMBERS, (x, dtype), np.full((), x, dtype))


def _keep(cache: dict, key: Any, arrays: Any) -> Any:
    """Keep ``arrays`` (an array, or a tuple of arrays and Nones) read-only in ``cache`` under
    ``key``, and return them. The caches of constants the ops reuse hold the few shapes a
    training loop asks for; past 64 keys they are forgotten rather than grow."""
    if len(cache) >= 64:
        cache.clear()
    for a in arrays if type(arrays) is tuple else (arrays,):
        if a is not None:  # a constant a shape does without
            a.flags.writeable = False
    cache[key] = arrays
    return arrays


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` back to ``shape``: the adjoint of a broadcast is a sum.

    Broadcasting copies an input along some axes; each copy received its own
    gradient, so the input's gradient is their sum over those axes. This is
    where the derivation's bias gradients (column sums of delta) come from.
    """
    if g.shape == shape:
        return g
    if isinstance(g, Tensor):  # in ops, so that a tape records it (create_graph=True)
        check_broadcast_from(shape, g.shape)
        axes = broadcast_axes(shape, g.shape)
        return _reshaped(sum(g, axis=axes[0] if len(axes) == 1 else axes), shape)
    ones = _row_summing_ones(g, shape)
    if ones is not None:
        return ones.dot(g)
    # np.add.reduce is g.sum without numpy's Python-level wrapper.
    if g.shape[1:] == shape:  # a row added to every example, too large for one BLAS call
        return np.add.reduce(g, axis=0)
    check_broadcast_from(shape, g.shape)
    return np.add.reduce(g, axis=broadcast_axes(shape, g.shape)).reshape(shape)



def _row_summing_ones(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The ones whose product with the matrix ``a`` sums its rows down to ``shape`` (the
    bias add's gradient), where BLAS does it: 3-4x numpy's reduction, both running down
    the rows. None for other shapes, large matrices and other dtypes."""
    if (a.ndim == 2 and a.shape[1:] == shape and a.size <= _BLAS_SUM_MAX_SIZE
            and a.dtype.char in "fd"):
        return _ones((len(a),), a.dtype)
    return None


# Large elementwise chains run in place in one fresh buffer: a new
# multi-megabyte array costs page faults worth as much as the arithmetic.
# Small ones allocate, since numpy's out= costs more per call (about 0.4 µs)
# than a small fresh result.
IN_PLACE_MIN_SIZE = 4096


# -- the four ops of the derivation ------------------------------------------

@primitive("dA = G Bᵀ,  dB = Aᵀ G", explain=matmul_hint,
           code=Code("{A} @ {B}", math="{A} {B}", binds=PRODUCT_BINDS, name="{A}{B}",
                     when=lambda c: c.ndims == [2, 2]),
           grads=(lambda g, c, a, b: _matmul_grad(0, g, a, b),
                  lambda g, c, a, b: _matmul_grad(1, g, a, b)))
def matmul(a, b):
    """Matrix product C = A B (numpy's ``@``)."""
    if type(a) is np.ndarray and type(b) is np.ndarray and a.ndim == 2 and b.ndim == 2:
        return a @ b, (lambda g: g @ b.T, lambda g: a.T @ g)
    return np.matmul(a, b), _matmul_nd_vjps(np.asarray(a), np.asarray(b))


def _matmul_nd_vjps(a, b):
    """dA = G Bᵀ, dB = Aᵀ G for vectors and stacks of matrices.

    A vector is a one-row (or one-column) matrix for the product, and stacked
    operands broadcast over their leading axes, so those are summed back.
    """
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b

    def as_matrix(g):
        return np.expand_dims(g, tuple(ax for ax, n in ((-2, a.ndim), (-1, b.ndim)) if n == 1))

    def da(g):
        return unbroadcast(as_matrix(g) @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)

    def db(g):
        return unbroadcast(np.swapaxes(a2, -1, -2) @ as_matrix(g), b2.shape).reshape(b.shape)

    return da, db


def _matmul_grad(i, g, a, b):
    """dA = G Bᵀ or dB = Aᵀ G in ops; vectors as one-row (or one-column) matrices, stacks summed back."""
    a_shape, b_shape = _shape(a), _shape(b)
    if len(a_shape) == 2 and len(b_shape) == 2:
        return matmul(g, transpose(b)) if i == 0 else matmul(transpose(a), g)
    a2 = _reshaped(a, (1,) + a_shape) if len(a_shape) == 1 else a
    b2 = _reshaped(b, b_shape + (1,)) if len(b_shape) == 1 else b
    gs = g.shape
    if len(a_shape) == 1:
        gs = gs[:-1] + (1,) + gs[-1:] if len(b_shape) > 1 else (1,)
    g2 = _reshaped(g, gs + (1,) if len(b_shape) == 1 else gs)
    if i == 0:
        return _reshaped(unbroadcast(matmul(g2, _swap_last(b2)), _shape(a2)), a_shape)
    return _reshaped(unbroadcast(matmul(_swap_last(a2), g2), _shape(b2)), b_shape)


def _reshaped(x, shape):
    return x if _shape(x) == tuple(shape) else reshape(x, shape)


def _swap_last(x):
    n = len(_shape(x))
    return transpose(x, tuple(range(n - 2)) + (n - 1, n - 2))


@primitive("dA = G,  dB = G  (each summed over the axes it was broadcast along)",
           broadcasts=True, explain=broadcast_hint,
           code=Code("{A} + {B}", math="{A} + {B}", operator="+"),
           grads=(lambda g, c, a, b: unbroadcast(g, _shape(a)),
                  lambda g, c, a, b: unbroadcast(g, _shape(b))))
def add(a, b):
    """Elementwise sum C = A + B with numpy broadcasting (the bias add)."""
    # The VJPs need no values: let them go. (Shapes read inline: _shape's call
    # costs a tenth of a small add.) An operand of the output's shape takes G
    # as it is, which the backward loop hands on without a call.
    a_shape = a.shape if type(a) is np.ndarray else np.shape(a)
    b_shape = b.shape if type(b) is np.ndarray else np.shape(b)
    out = np.add(a, b)
    shape = out.shape
    return out, (pass_on if a_shape == shape else _sum_to(a_shape, out),
                 pass_on if b_shape == shape else _sum_to(b_shape, out))


_SUMS_TO: dict[tuple, Callable] = {}


def _sum_to(shape: tuple[int, ...], out: np.ndarray) -> Callable:
    """The VJP of an operand of ``shape`` broadcast to ``out``'s: G summed back to its shape.

    Kept per shapes and dtype, as the ones are: a training loop asks for the same few, and
    a lookup costs a tenth of choosing again, which was 2.5 µs of a tiny eager step."""
    key = (shape, out.shape, out.dtype)
    vjp = _SUMS_TO.get(key)
    if vjp is not None:
        return vjp
    ones = _row_summing_ones(out, shape)
    if ones is not None:
        # A bias row: dB = 1ᵀ G, unbroadcast's BLAS sum, chosen here so that the backward
        # pass calls the product itself, with no Python frame between. (G has out's
        # shape; a G of another dtype, from a seed given so, is summed in the wider.)
        vjp = ones.dot
    else:
        def vjp(g):
            return unbroadcast(g, shape)
    if len(_SUMS_TO) >= 64:  # as _keep: the few shapes of a loop, forgotten rather than grown
        _SUMS_TO.clear()
    _SUMS_TO[key] = vjp
    return vjp


@primitive("dA = G ∘ S ∘ (1 − S)  (from the saved output S)",
           code=Code(lambda c: _sigmoid_code(c), math="σ({A})", binds=PRODUCT_BINDS,
                     math_binds=ATOM, tight=("fast", "textbook"),
                     fast_vjps=(lambda c: _sigmoid_vjp_code(c),)),
           grads=(lambda g, c, a: mul(mul(g, c), sub(1.0, c)),))
def sigmoid(a):
    """Logistic function S = 1 / (1 + exp(−A)), to a few ulp for every normal result, without warnings."""
    # Each step of 1 / (1 + exp(−A)) is within an ulp or two, so S keeps its
    # relative precision wherever it is normal; (1 + tanh(A/2)) / 2 cancels to
    # 0 for A < 0 long before (A = −17 in float32). Small arrays cap −A where
    # exp(x) is finite, which changes only an S below the smallest normal, and
    # need no np.errstate (~40% of a small call); large ones silence instead.
    # The numbers are 0-d arrays of A's dtype, kept: numpy converts a Python
    # float on every call (~0.25 µs), and 1 is exact in every float dtype, so
    # the bits are the literal's.
    numbers = _SIGMOID_NUMBERS.get(a.dtype) if type(a) is np.ndarray else None
    if numbers is None:  # a number, a list, an int array, or a float dtype met first here
        a = np.asarray(a)
        if a.dtype.kind != "f":
            a = a.astype(np.float64)  # bools cannot be negated
        numbers = _sigmoid_numbers(a.dtype)
    one, cap = numbers
    if a.size >= IN_PLACE_MIN_SIZE:
        s = _sigmoid_in_place(a)
    else:
        s = one / (one + np.exp(np.minimum(np.negative(a), cap)))

    def vjp(g):  # one buffer at every size: 1.8 against 2.8 µs at 64 × 32
        d = one - s  # S itself is never written, so the tape can be asked again
        d *= s
        d *= g
        return d

    return s, (vjp,)


def _sigmoid_in_place(a):
    """S = 1 / (1 + exp(−A)): the same steps in one fresh buffer.

    Here the overflow of exp(−A) is silenced instead of capped: one np.errstate
    costs nothing beside a large array, while the cap is one more pass over
    it (3% of a large training step). Where the cap would give a subnormal,
    this gives 0; both are below the smallest normal float, as the true S is.
    """
    s = np.negative(a)
    with np.errstate(over="ignore"):
        np.exp(s, out=s)
    s += 1.0
    np.divide(1.0, s, out=s)
    return s


_SIGMOID_NUMBERS: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}


def _sigmoid_numbers(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """1 and the exp cap, as read-only 0-d arrays of the float ``dtype``."""
    return _keep(_SIGMOID_NUMBERS, dtype, (_held(1.0, dtype), _exp_cap(dtype)))


def _exp_cap(dtype: np.dtype) -> np.ndarray:
    """The largest x of ``dtype`` (as a 0-d array) whose exp(x) is finite."""
    # log(max) rounded to the dtype may lie just above the true log(max), so
    # step down until exp is finite, checked on a vector so that numpy's
    # vectorised loop is the one tested.
    x = np.log(np.asarray(np.finfo(dtype).max, dtype=dtype))
    with np.errstate(over="ignore"):
        while not np.isfinite(np.exp(np.full(64, x))).all():
            x = np.nextafter(x, dtype.type(0))
    return np.asarray(x, dtype=dtype)


@primitive("dv = G (ŷ − y)  (÷ N for the mean; for reduction='none', G[:, None] ∘ (ŷ − y) with G of "
           "shape (N,); ŷ = softmax(v), from the exponentials the forward pass saved)",
           code=Code(lambda c: _loss_code(c), math="J({A}, {B})", binds=PRODUCT_BINDS,
                     math_binds=ATOM, tight=("fast", "textbook", "maths"), when=lambda c: c.ndims[0] == 2,
                     saved=("yhat", "picks"), temps=("top", "z", "rest", "rows", "e"),
                     fast_vjps=(lambda c: _loss_vjp_code(c), None)),
           grads=(lambda g, c, v, y, reduction="mean": _loss_grad(g, v, y, reduction), None))
def softmax_cross_entropy(logits, labels, reduction="mean"):
    """J = −Σ y log softmax(v): the fused, numerically stable loss.

    ``labels`` are class indices (shape N, or an int for one example) or rows
    of non-negative numbers summing to 1 (one-hot or soft). Labels are data
    and get no gradient (for targets that learn, write
    ``-mt.sum(y * mt.log_softmax(v))``). ``reduction`` is "mean" (over the
    examples), "sum", or "none": each example's loss, shape (N,) for (N, C)
    logits (0-d for one example).
    """
    if reduction not in ("mean", "sum") and reduction != "none":
        raise InputError(f"softmax_cross_entropy: reduction must be 'mean', 'sum' or 'none', "
                         f"not {reduction!r}")
    v = np.asarray(logits, order="C")  # row-major, as z and exp(z) are: their flat views are
    # read and written at each row's max and label
    if v.dtype.kind in "biu":  # whole-number logits: z = v − max v would stay integer, exp(z) too
        v = v.astype(np.float64)
    if v.ndim not in (1, 2):
        raise ShapeError(f"softmax_cross_entropy: logits must be (N, C) or (C,), got shape {v.shape}")
    if v.shape[-1] == 0:
        raise ShapeError(f"softmax_cross_entropy: logits of shape {v.shape} have no classes")
    if v.ndim == 2 and len(v) == 0 and reduction == "mean":
        raise InputError(f"softmax_cross_entropy: the batch is empty (logits of shape {v.shape}), "
                         f"and a mean over no examples is undefined; pass at least one example "
                         f"(reduction='sum' gives 0 for an empty batch)")
    if v.ndim == 2:
        return _softmax_cross_entropy_rows(v, labels, reduction)
    y = check_labels(labels, v.shape)
    loss, (vjp, _) = _softmax_cross_entropy_rows(v[None], y[None], reduction)  # a batch of one
    if reduction == "none":  # one example's loss, 0-d as the mean and sum are
        loss = loss.reshape(())
    return loss, (lambda g: vjp(g)[0], None)


# Up to this many classes, numpy's own row sum adds each row in a few
# interleaved running sums, as BLAS's product does, so the two are as precise;
# longer rows keep numpy's reduction (pairwise along a short batch's rows).
_BLAS_ROW_SUM_MAX = 128

# Up to this many logits, a number per row meets every element of its row as a
# same-shape operand gathered by one index (``col[spread]``): numpy broadcasts an
# (N, 1) column row by row, 0.6-1.4 µs slower per op at 20 x 10; larger, the gather
# costs as much as it saves.
_SPREAD_MAX_SIZE = 1024


def _row_sums(a, ones):
    """The sum of each row of the matrix ``a``, shape (N,).

    numpy reduces a short last axis one row at a time (1 µs at 20 x 10, 3.7
    at 512 x 10); a product with ``ones`` (kept by ``_loss_constants``) sums
    every row in one BLAS call, three times faster.
    Where ``ones`` is None (long rows, large matrices, other dtypes) numpy
    reduces, across all rows at once when there are many (the transposed copy
    pays off from about four rows per column).
    """
    if ones is not None:
        return a.dot(ones)
    n, c = a.shape
    if n > 4 * c:
        return np.add.reduce(a.T.copy(), axis=0)
    return np.add.reduce(a, axis=1)


_LOSS_CONSTANTS: dict[tuple[int, int, np.dtype], tuple] = {}


def _loss_constants(n: int, c: int, dtype: np.dtype) -> tuple:
    """What the fused loss reads at (n, c) logits of ``dtype``, read-only and kept (np.arange
    costs as much as a small op, and a training loop asks for the same few shapes):

    - the flat position of each row's start, and the row numbers 0..n-1;
    - ``spread``, each element's row number in an (n, c) array, up to _SPREAD_MAX_SIZE
      logits (else None);
    - ``ones``, the vector of c ones by which BLAS sums the rows (None where numpy sums);
    - 0 and 1 as 0-d arrays of ``dtype``, which numpy need not convert from Python floats.
    """
    kept = _LOSS_CONSTANTS.get((n, c, dtype))
    if kept is not None:
        return kept
    rows = np.arange(n)
    spread = np.repeat(rows, c).reshape(n, c) if n * c <= _SPREAD_MAX_SIZE else None
    blas = c <= _BLAS_ROW_SUM_MAX and n * c <= _BLAS_SUM_MAX_SIZE and dtype.char in "fd"
    return _keep(_LOSS_CONSTANTS, (n, c, dtype),
                 (np.arange(0, n * c, c), rows, spread, _ones((c,), dtype) if blas else None,
                  _held(0.0, dtype), _held(1.0, dtype)))


def _label_positions(labels, shape, starts, rows):
    """``(picked, None)``: each row's class index as a flat position in (N, C) logits, checked;
    or ``(None, y)`` for label rows ``y``, checked. Raises the op's error for bad labels."""
    y = labels if type(labels) is np.ndarray else np.asarray(labels)
    if y.dtype.kind in "iu" and y.shape == shape[:1]:
        try:  # refuses an index outside 0..C-1 as it places it: one call for valid labels
            return np.ravel_multi_index((rows, y), shape), None
        except (TypeError, ValueError):
            pass  # check_labels says what is wrong
    y = check_labels(y, shape)
    return (starts + y, None) if y.dtype.kind in "iu" else (None, y)


def _softmax_cross_entropy_rows(v, labels, reduction):
    """J = Σ_rows (log Σ exp v − Σ y v) · scale and dv = G (ŷ − y) · scale, for (N, C)
    row-major logits; for reduction "none", each row's loss and dv = G[:, None] ∘ (ŷ − y)."""
    n, c = v.shape
    per_row = reduction == "none"
    scale = 1.0 / n if reduction == "mean" else 1.0
    starts, rows, spread, ones, zero, one = _loss_constants(n, c, v.dtype)
    picked, y = _label_positions(labels, v.shape, starts, rows)
    # log ŷ = z − log Σ exp z, z = v − max v (exp cannot overflow), row-major as v is
    top = starts + v.argmax(axis=1)
    high = v.ravel()[top]
    z = v - (high[spread] if spread is not None else high[:, None])
    # z is exactly 0 at the max, so Σ exp z = 1 + rest (the other classes' sum), and
    # log1p(rest) stays precise where log(1 + rest) rounds a confident row's rest away.
    e = np.exp(z)
    flat_e = e.ravel()
    flat_e[top] = zero
    rest = _row_sums(e, ones)
    flat_e[top] = one
    log_total = np.log1p(rest)
    if picked is not None:
        # log1p(rest) − z_label adds two non-negative numbers: no cancellation
        loss = log_total
        loss -= z.ravel()[picked]
        if not per_row:
            loss = np.add.reduce(loss)
    else:
        # −Σ y log ŷ, in the logits' dtype even when the label rows are float64
        loss = (y * (log_total[:, None] - z)).sum(axis=1 if per_row else None).astype(v.dtype)
    if scale != 1.0:  # as the logits' dtype: numpy 1.x would promote a float32 loss times a float
        loss = loss * v.dtype.type(scale)
    if per_row:
        return loss, (_per_row_loss_vjp(e, rest, picked, y, spread, one), None)
    return loss, (_loss_vjp(e, rest, picked, y, scale, spread, one), None)


def _probabilities(e, rest, spread, one):
    """ŷ = e / (1 + rest), each row of exp(z) over its total, in a fresh buffer."""
    total = rest + one
    return e / (total[spread] if spread is not None else total[:, None])


def _loss_vjp(e, rest, picked, y, scale, spread, one):
    """dv = G (ŷ − y) · scale from exp(z) and the row sums but the largest term.

    ŷ = softmax(v) is made here, not in the forward, whose value needs none of
    it: a tape asked for no gradient never pays for it, and at G · scale = 1 (a
    summed loss) ŷ is dv's own buffer, with no product to form.
    """
    def vjp(g):
        d = _probabilities(e, rest, spread, one)
        gs = float(g) * scale  # the loss is a scalar, so G is one number
        if gs != 1.0:
            d *= gs
        if picked is not None:
            d.ravel()[picked] -= gs  # y is one-hot: subtract at each row's label
        else:
            d -= y * gs
        return d
    return vjp


def _per_row_loss_vjp(e, rest, picked, y, spread, one):
    """dv = G[:, None] ∘ (ŷ − y) for the per-row losses, G of shape (N,); see ``_loss_vjp``."""
    def vjp(g):
        d = _probabilities(e, rest, spread, one)
        g = np.reshape(g, (-1, 1))  # each row's G, as a column
        d *= g  # in ŷ's dtype, as the summed loss's VJP keeps it
        if picked is not None:
            d.ravel()[picked] -= g[:, 0]  # y is one-hot: subtract at each row's label
        else:
            d -= y * g
        return d
    return vjp


def _loss_grad(g, logits, labels, reduction):
    """dv = G (softmax(v) − y) · scale in ops: softmax recorded, so ŷ's own Jacobian follows."""
    shape, dtype = _shape(logits), _value(logits).dtype
    y = check_labels(_value(labels), shape)
    # The labels are read as the op was given them where they are an array, so
    # that a closed form written from this reads its own labels argument.
    given = labels if isinstance(labels, np.ndarray) and labels.dtype == y.dtype else y
    if y.dtype.kind in "iu":  # class indices pick rows of the identity: one-hot rows
        y = getitem(Tensor(np.eye(shape[-1], dtype=dtype), name="I"), given, name="y")
    else:  # rows of probabilities, in the logits' dtype
        y = astype(given, dtype=dtype.name, name="y")
    d = sub(softmax(logits, axis=-1, name="ŷ"), y)
    if reduction == "mean" and len(shape) == 2:
        d = div(d, Tensor(np.asarray(shape[0], dtype=dtype), name="N"))
    elif reduction == "none" and len(shape) == 2:  # G holds a number per row: a column of them
        g = reshape(g, shape[0], 1)
    return mul(g, d)


# -- the everyday elementwise ops ---------------------------------------------

@primitive("dA = G,  dB = −G  (each summed over the axes it was broadcast along)",
           broadcasts=True, explain=broadcast_hint,
           code=Code("{A} - {B}", math="{A} − {B}", operator="-"),
           grads=(lambda g, c, a, b: unbroadcast(g, _shape(a)),
                  lambda g, c, a, b: unbroadcast(neg(g), _shape(b))))
def sub(a, b):
    """Elementwise difference C = A − B with broadcasting."""
    a_shape, b_shape = _shape(a), _shape(b)
    return np.subtract(a, b), (lambda g: unbroadcast(g, a_shape),
                               lambda g: unbroadcast(-g, b_shape))


@primitive("dA = G ∘ B,  dB = G ∘ A  (each summed over the axes it was broadcast along)",
           broadcasts=True, explain=broadcast_hint,
           code=Code("{A} * {B}", math="{A} ∘ {B}", operator="*"),
           grads=(lambda g, c, a, b: unbroadcast(mul(g, b), _shape(a)),
                  lambda g, c, a, b: unbroadcast(mul(g, a), _shape(b))))
def mul(a, b):
    """Elementwise product C = A ∘ B with broadcasting."""
    return np.multiply(a, b), (lambda g: unbroadcast(g * b, a.shape),
                               lambda g: unbroadcast(g * a, b.shape))


@primitive("dA = G / B,  dB = −G ∘ C / B  (each summed over the axes it was broadcast along)",
           broadcasts=True, explain=broadcast_hint,
           code=Code("{A} / {B}", math="{A} / {B}", operator="/"),
           grads=(lambda g, c, a, b: unbroadcast(div(g, b), _shape(a)),
                  lambda g, c, a, b: unbroadcast(div(mul(neg(g), c), b), _shape(b))))
def div(a, b):
    """Elementwise quotient C = A / B with broadcasting."""
    c = np.divide(a, b)
    return c, (lambda g: unbroadcast(g / b, a.shape),
               lambda g: unbroadcast(-g * c / b, b.shape))


@primitive("dA = −G", code=Code("-{A}", math="−{A}", binds=NEGATION_BINDS),
           grads=(lambda g, c, a: neg(g),))
def neg(a):
    """C = −A."""
    return np.negative(a), (np.negative,)


_NUMBERS = (int, float)


@primitive("dA = G ∘ p A^(p−1)  (0 where p = 0),  dp = G ∘ C ∘ log A  (0 where A = 0 and p ≥ 0)",
           broadcasts=True, explain=broadcast_hint,
           # The hand VJPs write pow's zero masks as np.where, shorter code than the
           # masks the grads record as ops (is_equal, is_positive).
           code=Code("{A} ** {B}", math=lambda c: _power_math(c), binds=POWER_BINDS,
                     fast_vjps=(lambda c: _pow_base_code(c), lambda c: _pow_exponent_code(c))),
           grads=(lambda g, c, a, p: _pow_base_grad(g, a, p),
                  lambda g, c, a, p: _pow_exponent_grad(g, c, a, p)))
def pow(a, p):
    """Elementwise power C = A^p (p usually a constant number)."""
    a, p = _listed(a), _listed(p)  # the VJPs compute with both, as arrays
    # A square is A·A, exactly, as numpy's `**` and tanh's 1 − T·T compute it;
    # np.power(a, 2.0) may round differently in numpy 1.x.
    c = np.square(a) if type(p) in _NUMBERS and p == 2 else np.power(a, p)

    def da(g):
        # A^0 is the constant 1, so dA = 0 even at A = 0, where p A^(p−1) is 0 · inf.
        if np.ndim(p) == 0 and p != 0:
            return unbroadcast(g * p * np.power(a, p - 1), np.shape(a))
        return unbroadcast(g * p * np.power(a, np.where(p == 0, 1, p - 1)), np.shape(a))

    def dp(g):
        # At A = 0, C = 0^p is 0 (or 1 at p = 0) for every p ≥ 0 nearby: the
        # limit of C log A there is 0, not 0 · −inf.
        base = np.where((a == 0) & (p >= 0), 1, a)
        return unbroadcast(g * c * np.log(base), np.shape(p))

    return c, (da, dp)


def _power_math(c) -> str:
    """A^p, with a square written A²."""
    p = c.values[1]
    return f"{c.A}²" if isinstance(p, (int, float)) and p == 2 else f"{c.A}^{c.B}"


def _listed(x):
    """A list or tuple operand as the array numpy reads it; anything else as it is."""
    return np.asarray(x) if type(x) is list or type(x) is tuple else x


def _pow_base_grad(g, a, p):
    """dA = G ∘ p A^(p−1) in ops, 0 where p = 0.

    Where p = 0 and A = 0 the exponent is shifted by a constant 1, so that the
    product is p · 1 = 0 rather than 0 · inf; elsewhere p A^(p−1) is used as it
    is, whose derivative in p stays right at p = 0.
    """
    a, p = _listed(a), _listed(p)
    if not isinstance(p, Tensor) and np.ndim(p) == 0:
        if p == 0:
            return Tensor(np.zeros(_shape(a), dtype=_value(g).dtype))
        return unbroadcast(mul(mul(g, p), pow(a, p - 1) if p != 2 else a), _shape(a))
    # The masks are ops on the recorded values, never arrays read off them: a
    # closed form of a recorded pass then computes them from the values it is given.
    zero_power = mul(is_equal(p, 0.0), is_equal(a, 0.0))
    return unbroadcast(mul(mul(g, p), pow(a, add(sub(p, 1), zero_power))), _shape(a))


def _pow_exponent_grad(g, c, a, p):
    """dp = G ∘ C ∘ log A in ops, with log A read as 0 where A = 0 and p ≥ 0 (C log A → 0 there)."""
    a, p = _listed(a), _listed(p)
    if isinstance(a, (int, float, np.integer, np.floating)) and not isinstance(a, bool) and a > 0:
        # log of a number as a number, which keeps G's dtype (float32 stays float32)
        return unbroadcast(mul(mul(g, c), float(np.log(float(a)))), _shape(p))
    limit = mul(is_equal(a, 0.0), sub(1.0, is_positive(neg(p))))  # [A = 0] [p ≥ 0]
    return unbroadcast(mul(mul(g, c), log(add(a, limit))), _shape(p))


@primitive("dA = G ∘ C  (exp is its own derivative; C saved)",
           code=Code("np.exp({A})", math="exp({A})", fast_vjps=(lambda c: _exp_vjp_code(c),)),
           grads=(lambda g, c, a: mul(g, c),))
def exp(a):
    """C = exp(A)."""
    c = np.exp(a)
    return c, (lambda g: g * c,)


@primitive("dA = G / A", code=Code("np.log({A})", math="log({A})"),
           grads=(lambda g, c, a: div(g, a),))
def log(a):
    """C = log(A)."""
    return np.log(a), (lambda g: g / a,)


@primitive("dA = G ∘ (1 − T²)  (from the saved output T)",
           code=Code("np.tanh({A})", math="tanh({A})", fast_vjps=(lambda c: _tanh_vjp_code(c),)),
           grads=(lambda g, c, a: mul(g, sub(1.0, pow(c, 2))),))
def tanh(a):
    """T = tanh(A)."""
    t = np.tanh(a)
    return t, (lambda g: g * (1.0 - t * t),)


@primitive("dA = G ∘ [C > 0]",
           # The boolean mask is cheaper than is_positive's float one.
           code=Code("np.maximum({A}, 0)", math="max({A}, 0)", fast_vjps=("{G} * ({C} > 0)",)),
           grads=(lambda g, c, a: mul(g, is_positive(c)),))
def relu(a):
    """C = max(A, 0)."""
    c = np.maximum(a, 0)
    return c, (lambda g: g * (c > 0),)


@primitive("dA: none ([A > 0] is flat wherever it is defined)",
           code=Code(lambda c: f"({c.A} > 0).astype(np.{c.dtype.name})", math="[{A} > 0]"),
           grads=(None,))
def is_positive(a):
    """C = [A > 0]: 1 where A is positive, else 0 (relu's derivative, so relu's second is 0)."""
    a = np.asarray(a)
    return (a > 0).astype(a.dtype if a.dtype.kind == "f" else np.float64), (None,)


@primitive("dA, dB: none ([A = B] is flat wherever it is defined)", broadcasts=True,
           explain=broadcast_hint,
           code=Code(lambda c: f"({c.A} == {c.B}).astype(np.{c.dtype.name})", math="[{A} = {B}]"),
           grads=(None, None))
def is_equal(a, b):
    """C = [A = B]: 1 where the two are equal, else 0, as floats (pow's zero masks; ties of max and min)."""
    dtype = np.result_type(a, b)
    return np.equal(a, b).astype(dtype if dtype.kind == "f" else np.float64)


# -- reductions and shape ops -------------------------------------------------

def _expand(g, shape, axis, keepdims):
    """G put back on the reduced axes, as a broadcast view of ``shape``."""
    if axis is not None and not keepdims and shape:  # numpy lets a 0-d input name axis 0 or -1
        g = np.expand_dims(g, axis)
    return np.broadcast_to(g, shape)


@primitive("dA = G copied along the summed axes",
           code=Code(lambda c: _sum_code(c), math=lambda c: _sum_math(c, "Σ"),
                     tight=("textbook", "maths")),
           grads=(lambda g, c, a, axis=None, keepdims=False: _expand_in_ops(g, a, axis, keepdims),))
def sum(a, axis=None, keepdims=False):
    """C = Σ A over ``axis`` (all axes by default)."""
    return np.sum(a, axis=axis, keepdims=keepdims), (
        lambda g: _expand(g, np.shape(a), axis, keepdims),)


@primitive("dA = G / n copied along the averaged axes (n elements per mean)",
           code=Code(lambda c: _mean_code(c), math=lambda c: _sum_math(c, "mean"),
                     binds=PRODUCT_BINDS, math_binds=ATOM,
                     tight=("textbook", "maths")),
           grads=(lambda g, c, a, axis=None, keepdims=False:
                  _expand_in_ops(div(g, _size(a) // max(c.size, 1) if _size(a) else 1), a, axis,
                                 keepdims),))
def mean(a, axis=None, keepdims=False):
    """C = mean of A over ``axis`` (all axes by default)."""
    if np.size(a) == 0:
        return _mean_of_nothing(a, axis, keepdims)
    c = np.mean(a, axis=axis, keepdims=keepdims)
    n = np.size(a) // max(np.size(c), 1)
    return c, (lambda g: _expand(g / n, np.shape(a), axis, keepdims),)


def _mean_of_nothing(a, axis, keepdims):
    """An empty A: refused where a mean would average no elements (numpy gives NaN and a
    warning from its own code, which names neither the op nor the call); an empty C, of
    no means at all, is fine."""
    c = np.sum(a, axis=axis, keepdims=keepdims) / 1.0  # its shape and dtype, without a warning
    if np.size(c):
        raise InputError(f"mean: there is nothing to average (A has shape {np.shape(a)}, "
                         f"axis={axis}), and the mean of no elements is undefined; check "
                         f"that the selection or batch is not empty")
    return c, (lambda g: np.zeros(np.shape(a), dtype=np.result_type(g, c)),)


def _size(a) -> int:
    return int(np.prod(_shape(a)))


def _expand_in_ops(g, a, axis, keepdims):
    """G put back on the reduced axes and copied along them, in ops (the adjoint of a sum)."""
    shape = _shape(a)
    if axis is not None and not keepdims and shape:  # a 0-d input has no axis to put back
        axes = {ax % len(shape) for ax in (axis if isinstance(axis, tuple) else (axis,))}
        g = _reshaped(g, tuple(1 if k in axes else n for k, n in enumerate(shape)))
    return broadcast_to(g, shape=shape) if g.shape != shape else g


@primitive("dA = G summed over the axes A was broadcast along",
           code=Code(lambda c: f"np.broadcast_to({c.A}, {c.lit(tuple(c.values[1]))})",
                     math=lambda c: _copied_math(c), tight=("maths",),
                     view=True),
           grads=(lambda g, c, a, shape: unbroadcast(g, _shape(a)),))
def broadcast_to(a, shape):
    """C = A copied along new or length-1 axes to ``shape`` (numpy's broadcasting, as a view)."""
    a_shape = _shape(a)
    try:
        c = np.broadcast_to(a, shape)
    except ValueError:  # numpy's message reads the target shape as a second input
        raise ShapeError(f"broadcast_to: an input of shape {a_shape} cannot be broadcast to shape "
                         f"{shape}: each of its axes, counted from the "
                         f"last, must be 1 or the target's length there") from None
    return c, (lambda g: unbroadcast(g, a_shape),)


@primitive("dA = Gᵀ  (axes put back in their order)",
           code=Code(lambda c: _transpose_code(c, c.A, c.values[1:]), math="{A}ᵀ", tight=("fast", "textbook", "maths"),
                     view=True),
           grads=(lambda g, c, a, *axes: _transpose_grad(g, a, axes),))
def transpose(a, *axes):
    """C = Aᵀ (reverses the axes, or permutes them as ``axes`` says)."""
    perm = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    perm = perm or None
    if perm is None:
        return np.transpose(a), (np.transpose,)
    ndim = np.ndim(a)
    # Negative axes are taken modulo ndim first, or argsort would misorder them.
    if sorted(ax + ndim if -ndim <= ax < 0 else ax for ax in perm) != list(range(ndim)):
        raise InputError(
            f"transpose: axes {perm} do not fit an array of shape {np.shape(a)}; give each of its "
            f"{ndim} axes once, in the new order (e.g. {tuple(range(ndim))[::-1]}), or none to "
            f"reverse them"
        )
    inverse = tuple(np.argsort([ax % ndim for ax in perm]))
    return np.transpose(a, perm), (lambda g: np.transpose(g, inverse),)


def _transpose_grad(g, a, axes):
    perm = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    if not perm:
        return transpose(g)
    ndim = len(_shape(a))
    return transpose(g, tuple(int(i) for i in np.argsort([ax % ndim for ax in perm])))


@primitive("dA = G reshaped to A's shape",
           code=Code(lambda c: f"np.reshape({c.A}, {c.lit(c.out_shape)})",
                     math=lambda c: _reshape_math(c), tight=("maths",), view=True),
           grads=(lambda g, c, a, *shape: reshape(g, _shape(a)),))
def reshape(a, *shape):
    """C = A with the same elements in ``shape`` (numpy's rules, -1 allowed)."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    a_shape = np.shape(a)
    try:
        c = np.reshape(a, shape)
    except ValueError as e:  # said here: the op's inputs are A and the numbers of the shape
        raise ShapeError(f"reshape: the {int(np.prod(a_shape))} elements of shape {a_shape} "
                         f"cannot be laid out as shape {shape} ({e})") from None
    return c, (lambda g: np.reshape(g, a_shape),)


def _is_basic_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice)) or p is None or p is Ellipsis for p in parts)


@primitive("dA = zeros of A's shape with G added at the indexed places",
           code=Code(lambda c: f"{c.A}[{_index_code(c)}]", math=lambda c: f"{c.A}[{_index_code(c)}]",
                     tight=("fast", "textbook", "maths"), view=True),
           grads=(lambda g, c, a, index: scatter_add(g, index, shape=_shape(a)), None))
def getitem(a, index):
    """C = A[index] (numpy indexing)."""
    def vjp(g):
        d = np.zeros(np.shape(a), dtype=np.result_type(a, g))
        if _is_basic_index(index):
            d[index] = g             # basic indexing picks each element once
        else:
            np.add.at(d, index, g)   # fancy indices may repeat: every pick adds
        return d

    return np.asarray(a)[index], (vjp,)


@primitive("dA = G at the indexed places (a getitem)",
           code=Code(lambda c: _scatter_code(c, c.A, c.values[2], c.dtypes[0]),
                     math=lambda c: f"{c.A} added into zeros of shape {c.out_shape} at "
                                    f"[{_index_code(c)}]", tight=("maths",)),
           grads=(lambda g, c, a, index, shape: getitem(g, index), None))
def scatter_add(a, index, shape):
    """C = zeros of ``shape`` with A added at ``index`` (getitem's adjoint: a repeated index adds)."""
    c = np.zeros(shape, dtype=np.result_type(a))
    if _is_basic_index(index):
        c[index] = a
    else:
        np.add.at(c, index, a)
    return c, (lambda g: g[index], None)


def index_masks(nodes: Any) -> list[np.ndarray]:
    """The boolean arrays the nodes index with (getitem's, scatter_add's): how many True
    values each holds decides the shape the op gives, as an array's shape decides others'."""
    masks = []
    for node in nodes:
        if node.op is getitem or node.op is scatter_add:
            index = node.inputs[1]
            masks += [p for p in (index if isinstance(index, tuple) else (index,))
                      if isinstance(p, np.ndarray) and p.dtype == np.bool_]
    return masks


# -- softmax and its log -------------------------------------------------------

def _softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


@primitive("dA = S ∘ (G − Σ G ∘ S)  (softmax Jacobian ŷ_a δ_ab − ŷ_a ŷ_b; S saved)",
           code=Code(lambda c: _softmax_code(c), math="softmax({A})", tight=("textbook",), temps=("e",)),
           grads=(lambda g, c, x, axis=-1: mul(c, sub(g, sum(mul(g, c), axis=axis, keepdims=True))),))
def softmax(x, axis=-1):
    """S = exp(x) / Σ exp(x) along ``axis``, shifted by the max so exp never overflows."""
    s = _softmax(x, axis)
    return s, (lambda g: s * (g - (g * s).sum(axis=axis, keepdims=True)),)


@primitive("dA = G − softmax(A) Σ G",
           code=Code(lambda c: _log_softmax_code(c), math="log softmax({A})", tight=("textbook",),
                     temps=("z", "e", "top", "rest")),
           grads=(lambda g, c, x, axis=-1: sub(g, mul(exp(c), sum(g, axis=axis, keepdims=True))),))
def log_softmax(x, axis=-1):
    """log softmax(x) = x − max − log Σ exp(x − max), stable for any finite x."""
    z = x - np.max(x, axis=axis, keepdims=True)
    # log Σ exp z is written log1p(the sum without the largest entry, whose
    # exp z is exactly 1), so that it keeps its relative precision when tiny:
    # log(1 + s) rounds s away against 1, and the largest entry's log softmax
    # with it. Ties for the largest are counted back in.
    e = np.exp(z)
    top = z == 0
    ties = np.sum(top, axis=axis, keepdims=True, dtype=e.dtype) - 1  # usually 0
    rest = np.sum(e - top, axis=axis, keepdims=True) + ties
    out = z - np.log1p(rest)
    return out, (lambda g: g - np.exp(out) * g.sum(axis=axis, keepdims=True),)


# -- einsum: the derivation's index bookkeeping, done by numpy ----------------

def _parse_einsum(subscripts: str, n_operands: int) -> tuple[list[str], str]:
    subscripts = subscripts.replace(" ", "")
    if "->" not in subscripts:
        raise InputError(f"einsum: use the explicit form with '->', e.g. 'ij,jk->ik'; got {subscripts!r}")
    if "." in subscripts:
        raise InputError("einsum: ellipsis ('...') is not supported; name every axis with a letter")
    inputs, output = subscripts.split("->")
    terms = inputs.split(",")
    if len(terms) != n_operands:
        raise InputError(f"einsum: {subscripts!r} names {len(terms)} operands but {n_operands} were given")
    return terms, output


@primitive("dA_i = einsum(G and the other operands -> A_i's indices): the VJP is again an einsum",
           code=Code(lambda c: f"np.einsum({', '.join(c.names)})",
                     math=lambda c: f"einsum({', '.join(c.names)})", when=lambda c: _einsum_plain(c),
                     view=True),
           grads=lambda i, g, c, subscripts, *operands: _einsum_vjp(
               i - 1, g, _einsum_plan(subscripts, operands), operands, _THIS_MODULE))
def einsum(subscripts, *operands):
    """Einstein summation over explicit subscripts, e.g. ``'bi,ij->bj'``."""
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: the first argument is the subscripts string, e.g. "
                        f"mt.einsum('ij,jk->ik', a, b), not a {type(subscripts).__name__}")
    operands = [np.asarray(x) for x in operands]
    plan = _einsum_plan(subscripts, operands)  # refuses the forms it does not take, before numpy
    try:
        out = np.einsum(subscripts, *operands)
    except ValueError as e:
        shapes = " and ".join(str(x.shape) for x in operands)
        raise ShapeError(f"einsum: {subscripts!r} cannot combine shapes {shapes} (numpy: {e})") from None
    return out, (None, *[lambda g, i=i: _einsum_vjp(i, g, plan, operands, np)
                         for i in range(len(operands))])


def _index_sizes(terms: list[str], shapes: list) -> dict[str, int]:
    """Each index's size: the largest any operand gives it (numpy broadcasts a length-1 axis)."""
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes):
        for c, n in zip(term, shape):
            sizes[c] = max(n, sizes.get(c, 1))
    return sizes


def _einsum_plan(subscripts: str, operands) -> tuple:
    """What every operand's VJP reads: the terms, the output's, the shapes and each index's size."""
    terms, output = _parse_einsum(subscripts, len(operands))
    shapes = [_shape(x) for x in operands]
    return terms, output, shapes, _index_sizes(terms, shapes)


def _einsum_vjp(i: int, g, plan: tuple, operands, xp):
    """Operand i's VJP: one einsum of G and the other operands, spelled once for two kinds.

    ``xp`` is numpy (the eager VJP, on arrays) or this module (the
    differentiable one, on Tensors): both give einsum, sum and broadcast_to.
    dA_i[term_i] = Σ over the other indices of G[out] ∏_{j≠i} A_j[term_j].
    """
    terms, output, shapes, sizes = plan
    others = [(t, x) for j, (t, x) in enumerate(zip(terms, operands)) if j != i]
    wanted = "".join(dict.fromkeys(terms[i]))  # each index once
    seen = set(output).union(*[set(t) for t, _ in others])
    # Indices of A_i that appear nowhere else were summed in the forward
    # pass; their gradient is G copied along them (ones).
    ones = [(ch, np.ones(sizes[ch], dtype=_value(g).dtype)) for ch in wanted if ch not in seen]
    spec = ",".join([output] + [t for t, _ in others] + [ch for ch, _ in ones]) + "->" + wanted
    d = xp.einsum(spec, g, *[x for _, x in others], *[o for _, o in ones])
    # Where numpy broadcast A_i's length-1 axis, each copy got its own
    # gradient: their sum. Where the others were broadcast, G reached this
    # axis as length 1 and is the same all along it.
    mine = tuple(shapes[i][terms[i].index(ch)] for ch in wanted)
    summed = tuple(k for k, n in enumerate(mine) if n == 1 and d.shape[k] != 1)
    if summed:
        d = xp.sum(d, axis=summed, keepdims=True)
    if d.shape != mine:
        d = xp.broadcast_to(d, shape=mine)
    return d if wanted == terms[i] else _onto_diagonal(d, wanted, terms[i], shapes[i], xp)


def _onto_diagonal(d, wanted: str, term: str, shape: tuple, xp):
    """A repeated index ('ii') gets its gradient on that diagonal: d times identity matrices."""
    free = iter(ch for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if ch not in term)
    full, eyes = "", []
    for k, ch in enumerate(term):
        new = next(free) if ch in term[:k] else ch
        if new != ch:
            eyes.append((ch + new, np.eye(shape[k], dtype=_value(d).dtype)))
        full += new
    return xp.einsum(f"{wanted},{','.join(t for t, _ in eyes)}->{full}", d, *[e for _, e in eyes])


@primitive("dA = G in A's dtype",
           code=Code(lambda c: f"{c.A}.astype(np.{np.dtype(c.values[1]).name})",
                     math=lambda c: f"{c.A} in {np.dtype(c.values[1]).name}",
                     tight=("fast", "textbook", "maths")),
           grads=(lambda g, c, a, dtype: astype(g, dtype=_value(a).dtype.name),))
def astype(a, dtype):
    """C = A in ``dtype``, a float type by name ('float32'), which a closed form can write down."""
    if np.dtype(dtype).kind != "f":
        raise InputError(f"astype: microtape differentiates floats; got dtype {np.dtype(dtype)}")
    a = np.asarray(a)  # np.result_type would read a list as a dtype's fields
    a_dtype = a.dtype
    return a.astype(dtype), (lambda g: g.astype(a_dtype),)


# -- leaving the tape -----------------------------------------------------------

@primitive("dA: none (no gradient flows back)",
           code=Code("{A}", math="{A}", name="{A}_const", view=True), grads=(None,))
def stop_gradient(a):
    """C = A, through which no gradient flows back (a constant, computed from A each time)."""
    return a, (None,)


# -- the longer ops spelled as numpy source, for Tape.closed_form ----------------
# Each function reads the writer's context ``c`` (see primitive.Code) and states
# the same maths as its op's closure above; tests/test_closed_form.py holds the
# two to agree on random inputs for every op. The VJP templates among them are
# the hand-tuned fast paths (Code.fast_vjps): buffers reused in place, the
# loss's saved ŷ and label picks, 0^0 kept exact.

def _sigmoid_code(c):
    # −A capped as the op caps it, so exp cannot overflow (S = 1 / (1 + exp(−A))
    # changes only where it is subnormal), and no warning needs silencing.
    s = c.target
    if c.textbook:
        return f"1 / (1 + np.exp(-{c.A}))"
    # Either way the steps run in one fresh buffer: no dearer than fresh
    # arrays at a hundred elements, and a tenth faster at a few thousand.
    if not c.big:  # the numbers as 0-d arrays of S's dtype: a Python float costs a conversion
        cap, one = c.const(_exp_cap(c.dtype), "exp_cap"), _one(c)
        if not c.out_shape:  # −A of a 0-d A is a numpy scalar: no buffer to work in
            return f"{one} / ({one} + np.exp(np.minimum(-{c.A}, {cap})))"
        return [f"{s} = -{c.A}", f"np.minimum({s}, {cap}, out={s})", f"np.exp({s}, out={s})",
                f"{s} += {one}", f"np.reciprocal({s}, out={s})  # 1 / (1 + exp(-{c.A}))"]
    return [f"{s} = np.negative({c.A})",  # large: the op's steps, the overflow silenced
            f'with np.errstate(over="ignore"): np.exp({s}, out={s})', f"{s} += 1.0",
            f"np.divide(1.0, {s}, out={s})"]


def _sigmoid_vjp_code(c):
    d = c.target
    if c.textbook:
        return f"{c.G} * {c.C} * (1 - {c.C})"
    if not c.big:  # ((1 − S) ∘ S) ∘ G in one fresh buffer, as the op multiplies: its bits
        return [f"{d} = {_one(c)} - {c.C}", f"{d} *= {c.C}", f"{d} *= {c.G}"]
    if c.spare(c.G, c.C):  # neither read again: the same steps in G's and S's buffers
        return [f"{d} = {c.G}", f"{d} *= {c.C}", f"np.subtract(1.0, {c.C}, out={c.C})",
                f"{d} *= {c.C}"]
    return [f"{d} = 1.0 - {c.C}", f"{d} *= {c.C}", f"{d} *= {c.G}"]


def _one(c) -> str:
    return _number(c, 1.0, c.dtype)


def _number(c, x: float, dtype: np.dtype, base: str = "one") -> str:
    """``x`` as a 0-d array of ``dtype`` (a float dtype; else the literal), for small arrays:
    numpy converts a Python float on every call (~0.15 µs), and a number exact in ``dtype``
    gives every result as the literal does."""
    if dtype is None or dtype.kind != "f":
        return c.lit(x)
    return c.const(_held(x, dtype), "zero" if x == 0 else base)


def _tanh_vjp_code(c):
    t, d = c.C, c.target
    if c.big and c.spare(t):  # T not read again: 1 − T² in its buffer, then times G
        return [f"{d} = {t}", f"np.multiply({d}, {d}, out={d})",
                f"np.subtract(1.0, {d}, out={d})", f"{d} *= {c.G}"]
    return f"{c.G} * (1.0 - {t} * {t})"


def _exp_vjp_code(c):
    if c.big and c.spare(c.C):  # C = exp(A) not read again: G ∘ C in its buffer
        return [f"{c.target} = {c.C}", f"{c.target} *= {c.G}"]
    return f"{c.G} * {c.C}"


def _pow_base_code(c):
    p = c.values[1]
    if isinstance(p, bool):  # numpy reads True as 1, weak as a Python int: float32 stays float32
        p = int(p)
    if isinstance(p, (int, float)):
        if p == 0:  # A^0 is the constant 1
            return f"np.zeros_like({c.A})"
        if p == 2:
            return f"{c.G} * 2 * {c.A}"
        return f"{c.G} * {c.lit(p)} * {c.A} ** {c.lit(p - 1)}"
    return f"{c.G} * {c.B} * {c.A} ** np.where({c.B} == 0, 1, {c.B} - 1)"


def _pow_exponent_code(c):
    a = c.values[0]
    if isinstance(a, (int, float, np.integer, np.floating)) and not isinstance(a, bool) and a > 0:
        # log of a number is a number, which keeps G's dtype (float32 stays float32)
        return f"{c.G} * {c.C} * {c.lit(float(np.log(float(a))))}"
    return f"{c.G} * {c.C} * np.log(np.where(({c.A} == 0) & ({c.B} >= 0), 1.0, {c.A}))"


def _axis_args(c, keep=False) -> str:
    axis = c.params.get("axis")
    text = "" if axis is None else f"axis={c.lit(axis)}"
    if keep or c.params.get("keepdims"):
        text += ", keepdims=True" if text else "keepdims=True"
    return text


def _sum_code(c) -> str:
    if c.textbook:
        return f"{c.A}.sum({_axis_args(c)})"
    keep = ", keepdims=True" if c.params.get("keepdims") else ""
    axis = c.params.get("axis")
    by_blas = None if keep else _blas_sum(c, c.A, axis[0] if type(axis) is tuple and len(axis) == 1
                                          else axis)
    return by_blas or f"np.add.reduce({c.A}, axis={c.lit(axis)}{keep})"


def _blas_sum(c, a: str, axis: Any) -> str | None:
    """The column sums (axis 0) or row sums (axis 1) of a small float matrix as one BLAS product
    with ones, as the eager ops sum them (unbroadcast, _row_sums): 3-4x numpy's reduction at
    the sizes where a step is mostly calls. None where numpy's reduction is kept."""
    shape, dtype = c.shapes[0], c.dtypes[0]
    if len(shape) != 2 or dtype is None or dtype.char not in "fd" or not (
            0 < shape[0] * shape[1] <= _BLAS_SUM_MAX_SIZE):
        return None
    if axis in (0, -2):
        return f"np.dot({c.const(_ones((shape[0],), dtype), f'ones_{shape[0]}')}, {a})"
    if axis in (1, -1) and shape[1] <= _BLAS_ROW_SUM_MAX:
        return f"np.dot({a}, {c.const(_ones((shape[1],), dtype), f'ones_{shape[1]}')})"
    return None


def _mean_code(c) -> str:
    if not int(np.prod(c.shapes[0])) and int(np.prod(c.out_shape)):
        return f"{_sum_code(c)} * np.nan"  # a mean over no elements, as the op gives
    return f"{_sum_code(c)} / {_count(c)}"


def _count(c) -> int:
    """Elements per mean: the input's size over the output's."""
    size = int(np.prod(c.shapes[0]))
    return size // max(int(np.prod(c.out_shape)), 1) if size else 1


def _sum_math(c, what: str) -> str:
    """Σ A (or mean of A) over the op's axes; the derivation's words for a bias gradient."""
    axis = c.params.get("axis")
    if axis is None:
        return f"{what} {c.A}" if what == "Σ" else f"mean of {c.A}"
    axes = axis if isinstance(axis, tuple) else (axis,)
    if what == "Σ" and axes in ((0,), (-2,)) and c.ndims[0] == 2 and len(c.out_shape) == 1:
        return f"column sums of {c.A}"
    return f"{what} over axes {axes} of {c.A}"


def _copied_math(c) -> str:
    if int(np.prod(c.shapes[0])) == 1:
        return f"{c.A} copied to every element"
    return f"{c.A} copied along axes {broadcast_axes(tuple(c.shapes[0]), tuple(c.out_shape))}"


def _reshape_math(c) -> str:
    """Only leading length-1 axes put in or taken out: the same numbers, the same symbol,
    which broadcasts as they do. A vector made a column broadcasts along rows: ``A[:, None]``."""
    shape, out = tuple(c.shapes[0]), tuple(c.out_shape)
    if _without_leading_ones(shape) == _without_leading_ones(out):
        return c.A
    if len(shape) == 1 and out == (*shape, 1):
        return f"{c.A}[:, None]"
    return f"{c.A} reshaped to {out}"


def _without_leading_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    k = 0
    while k < len(shape) and shape[k] == 1:
        k += 1
    return shape[k:]


def _transpose_code(c, x, axes, inverse=False):
    perm = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else tuple(axes)
    if not perm:
        return f"{x}.T"
    if inverse:
        perm = tuple(int(i) for i in np.argsort([ax % len(c.shapes[0]) for ax in perm]))
    return f"np.transpose({x}, {c.lit(tuple(int(p) for p in perm))})"


def _index_code(c) -> str:
    """The index as source: numbers and slices written out, arrays by their argument names."""
    index = c.values[1]
    if isinstance(index, np.ndarray):
        return c.B
    parts = index if isinstance(index, tuple) else (index,)

    def part(p):
        if p is Ellipsis:
            return "..."
        if isinstance(p, slice):
            text = ":".join("" if v is None else c.lit(v) for v in (p.start, p.stop))
            return text + (f":{c.lit(p.step)}" if p.step is not None else "")
        if isinstance(p, np.ndarray):
            return c.name_of(p)
        return c.lit(p)

    text = ", ".join(part(p) for p in parts)
    return text + "," if isinstance(index, tuple) and len(index) == 1 else text or "()"


def _scatter_code(c, value, shape, dtype):
    """Zeros of ``shape`` with ``value`` added at the op's index (getitem's VJP, scatter_add)."""
    d, index = c.target, _index_code(c)
    where = f"np.s_[{index}]" if ":" in index or "..." in index else f"({index})"  # a slice needs []
    fill = f"{d}[{index}] = {value}" if _is_basic_index(c.values[1]) else f"np.add.at({d}, {where}, {value})"
    return [f"{d} = np.zeros({c.lit(tuple(shape))}, dtype=np.{dtype.name})", fill]


def _softmax_code(c):
    axis = c.lit(c.params["axis"])
    if c.textbook:  # e, a name of its own only here: the fast form works in the output's buffer
        e = c.temps["e"]
        return [f"{e} = np.exp({c.A} - {c.A}.max(axis={axis}, keepdims=True))",
                f"{c.target} = {e} / {e}.sum(axis={axis}, keepdims=True)"]
    return [f"{c.target} = np.exp({c.A} - np.maximum.reduce({c.A}, axis={axis}, keepdims=True))",
            f"{c.target} /= np.add.reduce({c.target}, axis={axis}, keepdims=True)"]


def _log_softmax_code(c):
    """log softmax as the op computes it: log Σ exp z as log1p of the sum without the largest."""
    z, e, top, rest = (c.temps[k] for k in ("z", "e", "top", "rest"))
    axis = c.lit(c.params["axis"])
    if c.textbook:
        largest = f"{c.A}.max(axis={axis}, keepdims=True)"
        add = lambda x, d="": f"({x}).sum(axis={axis}, keepdims=True{d})" if " " in x else (  # noqa: E731
            f"{x}.sum(axis={axis}, keepdims=True{d})")
    else:
        largest = f"np.maximum.reduce({c.A}, axis={axis}, keepdims=True)"
        add = lambda x, d="": f"np.add.reduce({x}, axis={axis}, keepdims=True{d})"  # noqa: E731
    return [f"{z} = {c.A} - {largest}", f"{e} = np.exp({z})", f"{top} = {z} == 0",
            f"{rest} = {add(f'{e} - {top}')} + ({add(top, f', dtype={e}.dtype')} - 1)"
            "  # Σ exp z without the largest (ties counted back in)",
            f"{c.target} = {z} - np.log1p({rest})"]


def _loss_code(c):
    """The fused loss as the op computes it, keeping ŷ (and the label picks) for its VJP."""
    v, y = c.A, c.B
    n, k = c.shapes[0]
    per = f" / {n}" if c.params.get("reduction", "mean") == "mean" else ""
    top, z, rest = c.temps["top"], c.temps["z"], c.temps["rest"]
    yhat = c.saved["yhat"]
    if c.textbook:
        return _loss_textbook(c, v, y, n, per, (top, z, rest), yhat)
    # Small rows are summed by BLAS, as the eager op sums them; many short rows of a large
    # batch across the rows at once: numpy sums a short last axis row by row.
    summed = _blas_sum(c, yhat, 1) or (
        f"np.add.reduce({yhat}.T.copy(), axis=0)" if n >= 4 * k else f"np.add.reduce({yhat}, axis=1)")
    # the op's own constants: where each row begins (flat), the row numbers, and the
    # gather index by which a number per row meets its row's elements (or a broadcast)
    starts, rows, spread = _loss_constants(n, k, c.dtypes[0])[:3]
    starts = c.const(starts, "row_starts")
    each = f"[{c.const(spread, 'spread')}]" if spread is not None else "[:, None]"
    flat, zero, one = c.temps["e"], _number(c, 0.0, c.dtypes[0]), _number(c, 1.0, c.dtypes[0])
    lines = [*_labels_code(c, y, starts, rows),
             f"{top} = {starts} + {v}.argmax(axis=1)  # each row's largest logit, flat",
             f"{z} = np.subtract({v}, {v}.ravel()[{top}]{each}, order='C')",
             f"{yhat} = np.exp({z})", f"{flat} = {yhat}.ravel()", f"{flat}[{top}] = {zero}",
             f"{rest} = {summed}  # Σ exp(z) over the other classes",
             f"{flat}[{top}] = {one}"]
    per_row = c.params.get("reduction") == "none"
    if _labels_dtype(c).kind in "iu":
        body = f"np.log1p({rest}) - {z}.ravel()[{c.saved['picks']}]"
        body = body if per_row else f"np.add.reduce({body})"
    else:
        cast = f".astype(np.{c.dtype.name})" if _labels_dtype(c) != c.dtype else ""
        axis = 1 if per_row else None
        body = f"np.add.reduce({y} * (np.log1p({rest})[:, None] - {z}), axis={axis}){cast}"
    return lines + [f"{c.target} = {_over(body, per)}",
                    f"{rest} += {one}  # now Σ exp(z) over every class",
                    f"{yhat} /= {rest}{each}  # ŷ = softmax({v})"]


def _labels_code(c, y, starts, rows):
    """The labels checked as the op checks them; class indices also become flat positions.

    ``ravel_multi_index`` makes each row's flat position and refuses an index
    outside 0..C-1 in the same pass, so valid labels cost one call; only when
    it refuses is the op's own check run, for its exact error.
    """
    shape = c.lit(c.shapes[0])
    # y is read as given, never assigned: labels passed as a list are a literal in the code
    if _labels_dtype(c).kind not in "iu":
        return [f"_check_labels({y}, {shape})  # rows of probabilities, or the op's error"]
    picks, rows = c.saved["picks"], c.const(rows, "rows")
    return ["try:  # each row's label as a flat position; an index out of range is refused",
            f"    {picks} = np.ravel_multi_index(({rows}, {y}), {shape})",
            "except (TypeError, ValueError):  # the op's own check, for its error",
            f"    {picks} = {starts} + _check_labels({y}, {shape})"]


def _loss_textbook(c, v, y, n, per, temps, yhat):
    top, z, rest = temps
    rows, e = c.temps["rows"], c.temps["e"]
    lines = [f"{rows} = np.arange({n})", f"{top} = {v}.argmax(axis=1)",
             f"{z} = {v} - {v}[{rows}, {top}][:, None]  # each row's largest logit is 0",
             f"{e} = np.exp({z})", f"{e}[{rows}, {top}] = 0",
             f"{rest} = {e}.sum(axis=1)  # Σ exp(z) over the other classes",
             f"{e}[{rows}, {top}] = 1", f"{yhat} = {e} / (1 + {rest})[:, None]  # ŷ = softmax({v})"]
    per_row = c.params.get("reduction") == "none"
    if _labels_dtype(c).kind in "iu":
        body = f"np.log1p({rest}) - {z}[{rows}, {y}]"
        return lines + [f"{c.target} = {body}" if per_row else f"{c.target} = ({body}).sum(){per}"]
    cast = f".astype(np.{c.dtype.name})" if _labels_dtype(c) != c.dtype else ""
    body = f"({y} * (np.log1p({rest})[:, None] - {z})).sum({'axis=1' if per_row else ''}){cast}"
    return lines + [f"{c.target} = {body}{per}"]


def _labels_dtype(c) -> np.dtype:
    """The labels' dtype as the op reads them: a list's or tuple's as np.asarray makes it."""
    return c.dtypes[1] if c.dtypes[1] is not None else np.asarray(c.values[1]).dtype


def _label_rows(c) -> str:
    """The label rows in the logits' dtype, as the VJP subtracts them from ŷ."""
    if _labels_dtype(c) == c.dtype:
        return c.B
    if isinstance(c.values[1], np.ndarray):
        return f"{c.B}.astype(np.{c.dtype.name})"
    return f"np.asarray({c.B}, dtype=np.{c.dtype.name})"  # a list has no astype


def _over(expr: str, per: str) -> str:
    """``expr`` divided by N for the mean (``per`` is " / N" or empty)."""
    return f"({expr}){per}" if per else expr


def _loss_vjp_code(c):
    if c.params.get("reduction") == "none":
        return _per_row_loss_vjp_code(c)
    yhat, d = c.saved["yhat"], c.target
    n = c.shapes[0][0]
    per = f" / {n}" if c.params.get("reduction", "mean") == "mean" else ""
    scale = per.replace(" / ", "1 / ") if c.one else f"{c.G}{per}"
    if _labels_dtype(c).kind not in "iu":
        label = _label_rows(c)
        return f"({yhat} - {label}){per}" if c.one else f"({yhat} - {label}) * ({scale})"
    if c.textbook:
        first = f"{d} = {yhat}{per}" if c.one else f"{d} = {yhat} * ({scale})"
        return [first, f"{d}[np.arange({n}), {c.B}] -= {scale or 1}  # y is one-hot"]
    lines = [f"{d} = {yhat}  # ŷ − y in ŷ's own buffer, which nothing else reads"]
    if c.one:  # the scale is a number (1, or 1/N for the mean): held in ŷ's dtype
        scale = _number(c, 1.0 / n if per else 1.0, c.dtypes[0], f"inv_{n}" if per else "one")
        if per:
            lines.append(f"{d} *= {scale}  # 1 / {n}")
    else:
        lines.append(f"{d} *= {scale}")
    return lines + [f"{d}.ravel()[{c.saved['picks']}] -= {scale}  # y is one-hot: subtract at each label"]


def _per_row_loss_vjp_code(c):
    """dv = G[:, None] ∘ (ŷ − y) for the per-row losses (G a number per row)."""
    yhat, d = c.saved["yhat"], c.target
    column = "" if c.one else f" * {c.G}[:, None]"
    if _labels_dtype(c).kind not in "iu":
        label = _label_rows(c)
        return f"({yhat} - {label}){column}"
    g = "1" if c.one else c.G
    if c.textbook:
        return [f"{d} = {yhat}{column}", f"{d}[np.arange({c.shapes[0][0]}), {c.B}] -= {g}  # y is one-hot"]
    if c.one:
        g = _number(c, 1.0, c.dtypes[0], "one")
    lines = [f"{d} = {yhat}  # ŷ − y in ŷ's own buffer, which nothing else reads"]
    if not c.one:
        lines.append(f"{d} *= {c.G}[:, None]")
    return lines + [f"{d}.ravel()[{c.saved['picks']}] -= {g}  # y is one-hot: subtract at each label"]


def _einsum_terms(c):
    terms, output = _parse_einsum(c.values[0], len(c.values) - 1)
    return terms, output


def _einsum_plain(c) -> bool:
    """No diagonals and one size per index: the VJP is then a single einsum."""
    terms, _ = _einsum_terms(c)
    sizes = {}
    for term, shape in zip(terms, c.shapes[1:]):
        if len(set(term)) != len(term):
            return False
        for letter, n in zip(term, shape):
            if sizes.setdefault(letter, n) != n:
                return False
    return True
