"""The core's only global state: which tapes record, and a clock of in-place updates.

Both sit below ``tensor.py``, so that a Tensor can refuse a conversion while
a trace records, and the tape, the ops and the optimizers can read the clock,
without any module importing one that imports it back.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

# The tapes recording in this thread (contextvars are per thread), innermost
# last. An empty tuple means ops only compute values: the cheap mode.
_active: ContextVar[tuple[Any, ...]] = ContextVar("microtape_active_tapes", default=())

# A clock of in-place updates: each mark_modified() takes the next tick, and
# each recorded node keeps the tick it was recorded at, so "changed after it
# was recorded" is one comparison. A list, so that other modules read it live.
_EDITS = [0]
