"""The timer heap: order, lazy cancellation, compaction, no starvation."""

from __future__ import annotations

from evserver.event.timers import COMPACT_MIN_SIZE, TimerQueue


def noop() -> None:
    pass


def test_due_timers_come_out_in_deadline_order_ties_in_arming_order() -> None:
    queue = TimerQueue()
    seen: list[str] = []
    for when, name in ((3.0, "c"), (1.0, "a1"), (2.0, "b"), (1.0, "a2")):
        queue.add(when, lambda name=name: seen.append(name))
    assert queue.next_deadline() == 1.0
    for timer in queue.pop_due(2.5):
        timer.callback()
    assert seen == ["a1", "a2", "b"]
    assert queue.next_deadline() == 3.0
    assert len(queue) == 1


def test_nothing_is_due_before_its_time() -> None:
    queue = TimerQueue()
    queue.add(5.0, noop)
    assert queue.pop_due(4.999) == []
    assert [t.when for t in queue.pop_due(5.0)] == [5.0]
    assert queue.next_deadline() is None


def test_cancelled_timers_are_never_returned_and_skipped_for_the_deadline() -> None:
    queue = TimerQueue()
    early = queue.add(1.0, noop)
    late = queue.add(2.0, noop)
    early.cancel()
    early.cancel()  # twice is harmless
    assert len(queue) == 1
    assert queue.next_deadline() == 2.0
    assert queue.pop_due(10.0) == [late]
    assert len(queue) == 0


def test_cancel_after_pop_does_not_corrupt_the_count() -> None:
    queue = TimerQueue()
    timer = queue.add(1.0, noop)
    queue.add(9.0, noop)
    assert queue.pop_due(1.0) == [timer]
    timer.cancel()
    assert len(queue) == 1


def test_many_cancellations_compact_the_heap() -> None:
    queue = TimerQueue()
    keep = queue.add(1000.0, noop)
    timers = [queue.add(float(i), noop) for i in range(COMPACT_MIN_SIZE * 2)]
    for timer in timers:
        timer.cancel()
    assert len(queue._heap) < COMPACT_MIN_SIZE  # rebuilt, not left to grow
    assert len(queue) == 1
    assert queue.pop_due(2000.0) == [keep]


class Uncomparable:
    """A callback that cannot be ordered: ties must never reach it."""

    def __call__(self) -> None:
        pass


def test_ties_never_compare_callbacks_and_fields_outlive_cancel_and_pop() -> None:
    queue = TimerQueue()
    first, second = Uncomparable(), Uncomparable()
    run = queue.add(1.0, first)
    dropped = queue.add(1.0, second)
    dropped.cancel()
    assert (dropped.when, dropped.callback, dropped.cancelled) == (1.0, second, True)
    assert queue.pop_due(1.0) == [run]
    assert (run.when, run.callback, run.cancelled) == (1.0, first, False)
    run.cancel()  # after it left the heap: marked, not counted
    assert run.cancelled and len(queue) == 0 and "cancelled" in repr(run)
