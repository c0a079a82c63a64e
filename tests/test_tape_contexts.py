"""Tapes and no_grad blocks used across threads and tasks, nested, or after answering."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import numpy as np
import pytest

import microtape as mt


def _exit_in_thread(tape):
    errors = []

    def run():
        try:
            tape.__exit__(None, None, None)
        except RuntimeError as e:
            errors.append(e)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return errors


def test_a_tape_exited_from_another_thread_says_so_and_stays_usable():
    # In a copy of this thread's context, so the stack it leaves behind ends here.
    contextvars.copy_context().run(_exit_elsewhere)


def _exit_elsewhere():
    x = mt.Tensor(np.arange(3.0), name="x")
    tape = mt.Tape()
    tape.__enter__()
    loss = (x * x).sum()
    errors = _exit_in_thread(tape)
    assert len(errors) == 1
    assert "exited in a different thread or asyncio task" in str(errors[0])
    assert "Token" not in str(errors[0])
    (x * 2.0).sum()  # it stopped recording, although this thread never left it
    assert len(tape) == 2
    np.testing.assert_array_equal(tape.gradient(loss, x), [0.0, 2.0, 4.0])
    assert mt.tape.active_tapes() == ()
    with tape:  # not "already recording": it can be entered again
        (x * 3.0).sum()
    assert len(tape) == 4
    assert mt.tape.active_tapes() == ()


def test_a_tape_exited_from_another_asyncio_task_says_so():
    x = mt.Tensor(np.ones(2), name="x")
    tape = mt.Tape()

    async def enter():
        tape.__enter__()

    async def leave():
        tape.__exit__(None, None, None)

    async def main():
        await asyncio.create_task(enter())
        with pytest.raises(RuntimeError, match="different thread or asyncio task"):
            await asyncio.create_task(leave())

    asyncio.run(main())
    with tape:
        loss = (x * x).sum()
    np.testing.assert_array_equal(tape.gradient(loss, x), [2.0, 2.0])


def test_an_error_leaving_the_block_is_not_hidden_by_the_thread_check():
    tape = mt.Tape()
    tape.__enter__()
    result = []
    worker = threading.Thread(target=lambda: result.append(tape.__exit__(KeyError, KeyError(), None)))
    worker.start()
    worker.join()
    assert result == [None]


def test_exiting_a_tape_never_entered_is_a_clear_error():
    with pytest.raises(RuntimeError, match="exited without being entered"):
        mt.Tape().__exit__(None, None, None)


def test_one_no_grad_object_nests_inside_itself():
    x = mt.Tensor(np.ones(2))
    pause = mt.no_grad()
    with mt.Tape() as tape:
        with pause:
            with pause:
                x * 2.0
            x * 3.0
        y = x * 4.0
    assert [n.output for n in tape.nodes] == [y]
    assert mt.tape.active_tapes() == ()


def test_one_no_grad_object_shared_by_threads():
    x = mt.Tensor(np.ones(2))
    pause = mt.no_grad()
    barrier = threading.Barrier(2)
    lengths = []

    def run():
        with mt.Tape() as tape:
            with pause:
                barrier.wait()  # both threads are inside the same no_grad object
                x * 2.0
                barrier.wait()
            x * 3.0
        lengths.append(len(tape))

    workers = [threading.Thread(target=run) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert lengths == [1, 1]


def test_no_grad_exited_where_it_was_not_entered_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no_grad: exited in a thread or asyncio task where no "
                                           "no_grad block is open"):
        mt.no_grad().__exit__(None, None, None)


def test_a_spent_tape_stops_recording():
    x = mt.Tensor(np.ones(3))
    with mt.Tape(persistent=False) as tape:
        loss = (x * x).sum()
        tape.gradient(loss, x)
        for _ in range(5):
            loss = (x * x).sum()
        assert len(tape) == 0
    with pytest.raises(RuntimeError, match="persistent=False"):
        tape.gradient(loss, x)


def test_a_spent_tape_entered_again_records_nothing():
    x = mt.Tensor(np.ones(3))
    with mt.Tape(persistent=False) as tape:
        loss = (x * x).sum()
    tape.gradient(loss, x)
    with tape:
        (x * 2.0).sum()
    assert len(tape) == 0


def _open_tape():
    """A generator holding a tape open across its yield, as a fixture or a session does."""
    with mt.Tape() as tape:
        yield tape


def test_a_tape_exited_before_one_entered_after_it_leaves_that_one_recording():
    # Closing the outer generator first reset the stack to before the outer tape, which
    # silently dropped the inner one: it recorded nothing more, and asking it failed.
    w = mt.Tensor(np.array([1.0, 2.0]))
    before = mt.tape._active.get()
    outer, inner = _open_tape(), _open_tape()
    next(outer)
    tape = next(inner)
    outer.close()
    loss = mt.sum(w * w)
    np.testing.assert_array_equal(tape.gradient(loss, w), [2.0, 4.0])
    inner.close()
    assert mt.tape._active.get() == before


def test_a_tape_exited_inside_no_grad_leaves_the_tapes_outside_paused():
    w = mt.Tensor(np.array([1.0, 2.0]))
    with mt.Tape() as outer:
        inner = mt.Tape().__enter__()
        with mt.no_grad():
            inner.__exit__(None, None, None)
            mt.sum(w * 2.0)  # in the block: recorded nowhere
        assert len(outer) == 0
        mt.sum(w * 3.0)
    assert len(outer) == 2 and len(inner) == 0


def test_a_no_grad_block_closed_before_a_tape_entered_in_it_leaves_that_tape_recording():
    w = mt.Tensor(np.array([1.0, 2.0]))
    before = mt.tape._active.get()
    with mt.Tape() as outer:
        block = mt.no_grad()
        block.__enter__()
        inner = mt.Tape().__enter__()
        block.__exit__(None, None, None)
        mt.sum(w * 2.0)
        assert (len(outer), len(inner)) == (2, 2)
        inner.__exit__(None, None, None)
        mt.sum(w * 3.0)
        assert (len(outer), len(inner)) == (4, 2)
    assert mt.tape._active.get() == before


def test_no_grad_as_a_decorator_pauses_the_tapes_for_each_call():
    w = mt.Tensor(np.array([1.0, 2.0]))

    @mt.no_grad()
    def evaluate(t):
        return mt.sum(t * t)

    with mt.Tape() as tape:
        assert float(evaluate(w).value) == 5.0
        mt.sum(w * 3.0)
    assert [node.op.name for node in tape.nodes] == ["mul", "sum"] and evaluate.__name__ == "evaluate"
    with pytest.raises(TypeError, match="no_grad: cannot decorate batches: its body runs after"):
        @mt.no_grad()
        def batches():
            yield mt.sum(w)
