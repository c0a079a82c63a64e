"""State the core shares below ``tensor.py``: open traces, and a clock of in-place updates.

A Tensor refuses conversions while a compile=True trace records (and so do
no_grad and value_and_grad), and the tape, the ops and the optimizers read
the clock; kept here, neither needs a
module that imports them back. (Which tapes record is the tape's own
business: ``tape._active``.)
"""

from __future__ import annotations

from contextvars import ContextVar

# How many compile=True traces are recording in this thread or task.
_tracing: ContextVar[int] = ContextVar("microtape_open_traces", default=0)

# The Tensors mt.Tensor(...) made while a compile=True trace records in this thread or task,
# by id: (the Tensor, the data it was made from). The trace reads each from the argument
# it was made from at every call, where it would otherwise keep the first call's value.
_made: ContextVar[dict | None] = ContextVar("microtape_tensors_made_in_trace", default=None)

# A clock of in-place updates: each mark_modified() takes the next tick, and
# each recorded node keeps the tick it was recorded at, so "changed after it
# was recorded" is one comparison. A list, so that other modules read it live.
_EDITS = [0]

# How many anomaly-mode blocks are open, in any thread: while none is, a
# backward pass or a compiled call need not look for one in its context.
_ANOMALY = [0]
