"""microtape: reverse-mode autodiff on numpy, one tape at a time.

    import microtape as mt
    W = mt.Tensor(np.random.randn(3, 2), name="W")
    with mt.Tape() as tape:
        loss = mt.softmax_cross_entropy(x @ W, labels)
    dW = tape.gradient(loss, W)
"""

try:
    import numpy  # noqa: F401
except ImportError as e:  # a fresh shell's python, not the project's .venv, most often
    from ._install import missing_package
    raise ImportError(f"microtape needs numpy. {missing_package('numpy', 'pip install microtape')}"
                      ) from None

from .tensor import Tensor
from .errors import AnomalyError, GradcheckError, InputError, ShapeError, TraceError
from .tape import Node, Tape, no_grad
from .primitive import Code, Primitive, primitive
from .ops import (
    add, astype, broadcast_axes, broadcast_to, div, einsum, exp, getitem, is_positive, log,
    log_softmax,
    matmul, mean, mul, neg, pow, relu, reshape, scatter_add, sigmoid, softmax,
    softmax_cross_entropy, stop_gradient, sub, sum, tanh, transpose, unbroadcast,
)
from .selection import (
    above, abs, clip, heaviside, is_equal, max, maximum, min, minimum, sign, sqrt, where,
)
from .joining import concatenate, stack
from .losses import binary_cross_entropy_with_logits, mse
from . import operators  # noqa: F401  (gives Tensor its operators, now that the ops exist)
from .functional import grad, value_and_grad
from .derivatives import hessian, hvp, jacobian, jvp
from .anomaly import detect_anomaly
from .closed_form import ClosedForm
from .gradient_checking import GradcheckReport, gradcheck
from . import optim, testing
from .op_warnings import install as _install_op_warnings

_install_op_warnings()  # numpy's warnings inside an op name the op and the caller's line

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Tape", "Node", "no_grad", "Primitive", "primitive", "Code", "ClosedForm",
    "ShapeError", "InputError", "GradcheckError", "GradcheckReport", "TraceError",
    "AnomalyError", "detect_anomaly",
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "tanh", "sigmoid", "relu",
    "is_positive",
    "matmul", "sum", "mean", "transpose", "reshape", "getitem", "softmax", "log_softmax",
    "softmax_cross_entropy", "einsum", "stop_gradient", "broadcast_axes", "unbroadcast",
    "broadcast_to", "scatter_add", "astype",
    "abs", "sqrt", "maximum", "minimum", "clip", "where", "max", "min", "sign", "heaviside",
    "above", "is_equal", "concatenate", "stack", "mse", "binary_cross_entropy_with_logits",
    "grad", "value_and_grad", "gradcheck",
    "jacobian", "hessian", "hvp", "jvp",
]
