"""numpy's warnings inside an op, restated: the op's name, and the line that called it.

numpy warns at the line of microtape that called it: ``log(-1)`` shows
``microtape/ops.py:425: RuntimeWarning: invalid value encountered in log``,
which names neither the op nor the user's line. :func:`install`, run once at
import, puts a hook on ``warnings.showwarning`` that restates a warning
attributed to a file of microtape: the op first (``log: invalid value
encountered in log``, or ``log's VJP (backward pass): divide by zero ...``),
at the first line outside microtape, where the user's own filters then apply
(``-W error``, ``ignore``, once per line).

The hook runs only when a warning is about to be shown, so an op costs
nothing more when none is: no ``np.errstate`` per op, no check of the
outputs. Inside ``warnings.catch_warnings(record=True)`` (pytest records
warnings so) the hook is set aside and warnings keep numpy's place.
"""

from __future__ import annotations

import os
import sys
import warnings
from types import FrameType
from typing import Any

from .primitive import Primitive

__all__ = ["install"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_BACKWARD = "'s VJP (backward pass)"


def install() -> None:
    """Hook ``warnings.showwarning`` once; a hook installed before it is called for the rest."""
    if getattr(warnings.showwarning, "_restates_ops", False):
        return
    previous = warnings.showwarning

    def showwarning(message: Any, category: type, filename: str, lineno: int,
                    file: Any = None, line: str | None = None) -> None:
        if not (filename.startswith(_PACKAGE) and _restate(message, category, filename, lineno)):
            previous(message, category, filename, lineno, file, line)

    showwarning._restates_ops = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


def _restate(message: Any, category: type, filename: str, lineno: int) -> bool:
    """Warn again at the caller's line, naming the op; False if the warning is not an op's."""
    frame = sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename, frame.f_lineno) != (filename, lineno):
        frame = frame.f_back  # past the hook and the warnings module, to where numpy warned
    if frame is None:
        return False
    # The registry entry numpy's warning just made at microtape's line would silence the
    # next one from any caller; once per caller's line is decided below, by the caller's filters.
    frame.f_globals.get("__warningregistry__", {}).pop((str(message), category, lineno), None)
    op = None
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        found = _op_at(frame)
        # The innermost op names it, but for a VJP spelled in ops (grads=): the ops it runs
        # (sqrt's is a div) are its own, and the warning is that VJP's
        if found is not None and (op is None or found.endswith(_BACKWARD)):
            op = found
        frame = frame.f_back
    if frame is None or op is None:
        return False
    where, filename = frame.f_globals, frame.f_code.co_filename
    # The module's globals let the warning show the caller's source line, read through its
    # loader; code run by `python -c` ("<string>") has none, and its loader raises ImportError
    warnings.warn_explicit(f"{op}: {message}", category, filename, frame.f_lineno,
                           module=where.get("__name__"),
                           registry=where.setdefault("__warningregistry__", {}),
                           module_globals=None if filename.startswith("<") else where)
    return True


def _op_at(frame: FrameType) -> str | None:
    """The op a frame of microtape runs: ``Primitive.__call__`` (a forward), or a VJP,
    which is a closure of its op's forward called from the backward pass's loop."""
    code = frame.f_code
    if code is Primitive.__call__.__code__:
        op = frame.f_locals.get("self")
        return getattr(op, "name", None)
    qualname = getattr(code, "co_qualname", "")  # Python 3.11+
    if qualname.startswith("Primitive._eager_vjps."):  # an op's grads, run on arrays
        op = frame.f_locals.get("self")
        return f"{op.name}{_BACKWARD}" if isinstance(op, Primitive) else None
    caller = frame.f_back
    if ".<locals>." in qualname and caller is not None and caller.f_code.co_filename != code.co_filename:
        return f"{qualname.split('.<locals>.')[0]}{_BACKWARD}"
    return None
