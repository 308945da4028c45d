"""trustwire.controller.queue.WorkQueue: coalescing, one worker per key, re-runs, delayed adds.

Delays are real but short (tens of milliseconds); only ordering and "not before" are
asserted, never upper bounds that a slow machine could miss.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from trustwire.controller.queue import WorkQueue

pytestmark = pytest.mark.timeout(30)


async def nothing_ready(queue: WorkQueue[str], within: float = 0.05) -> bool:
    """True when ``get`` returns nothing within ``within`` seconds."""
    try:
        key = await asyncio.wait_for(queue.get(), timeout=within)
    except TimeoutError:
        return True
    queue.done(key)
    pytest.fail(f"unexpected key {key!r} was handed out")


async def test_adds_coalesce() -> None:
    queue: WorkQueue[str] = WorkQueue()
    assert queue.idle and len(queue) == 0
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    queue.add("a")
    assert len(queue) == 2
    assert not queue.idle
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    queue.done("a")
    queue.done("b")
    assert queue.idle and len(queue) == 0
    assert await nothing_ready(queue)


async def test_keys_come_out_in_insertion_order() -> None:
    queue: WorkQueue[int] = WorkQueue()
    for key in (3, 1, 2, 1, 3):
        queue.add(key)
    assert [await queue.get() for _ in range(3)] == [3, 1, 2]


async def test_a_key_is_never_handed_out_twice_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")  # an event while "a" is being reconciled
    queue.add("b")
    assert await queue.get() == "b"  # other keys still flow
    assert await nothing_ready(queue)  # ... but not "a" while it is active
    assert not queue.idle
    queue.done("a")
    assert await queue.get() == "a"  # processed again after done: the event is not lost
    queue.done("a")
    queue.done("b")
    assert queue.idle
    assert await nothing_ready(queue)


async def test_re_add_while_active_runs_once_more_not_more() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    await queue.get()
    for _ in range(10):
        queue.add("a")
    queue.done("a")
    assert await queue.get() == "a"
    queue.done("a")
    assert await nothing_ready(queue)


async def test_done_without_re_add_does_not_requeue() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    await queue.get()
    queue.done("a")
    assert queue.idle
    assert await nothing_ready(queue)


async def test_waiting_getter_wakes_on_add() -> None:
    queue: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    queue.add("x")
    assert await asyncio.wait_for(getter, timeout=5) == "x"


async def test_workers_never_overlap_on_a_key_and_never_lose_an_add() -> None:
    """Level-triggered guarantee: after every add, some processing of that key starts later."""
    queue: WorkQueue[int] = WorkQueue()
    rng = random.Random(7)
    active: set[int] = set()
    overlaps: list[int] = []
    started: Counter[int] = Counter()
    last_add: dict[int, int] = {}
    last_start: dict[int, int] = {}
    tick = 0

    async def worker() -> None:
        nonlocal tick
        while True:
            key = await queue.get()
            if key in active:
                overlaps.append(key)
            active.add(key)
            tick += 1
            last_start[key] = tick
            started[key] += 1
            await asyncio.sleep(rng.random() / 500)
            active.discard(key)
            queue.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    try:
        for _ in range(300):
            key = rng.randrange(6)
            tick += 1
            last_add[key] = tick
            queue.add(key)
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        for _ in range(500):
            if queue.idle:
                break
            await asyncio.sleep(0.01)
        assert queue.idle
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    assert overlaps == []
    for key, added in last_add.items():
        assert last_start[key] > added, f"the last add of {key} was never processed"
    assert sum(started.values()) < 300  # bursts were coalesced


async def test_add_after_delivers_in_due_order() -> None:
    queue: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    queue.add_after("late", 0.09)
    queue.add_after("early", 0.03)
    queue.add_after("middle", 0.06)
    assert len(queue) == 3
    assert await nothing_ready(queue, within=0.01)
    order = []
    for _ in range(3):
        key = await queue.get()
        order.append((key, loop.time() - start))
        queue.done(key)
    assert [k for k, _ in order] == ["early", "middle", "late"]
    for (key, elapsed), delay in zip(order, (0.03, 0.06, 0.09), strict=True):
        assert elapsed >= delay - 0.005, (key, elapsed)
    assert queue.idle


async def test_add_after_keeps_the_earliest_request() -> None:
    queue: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    queue.add_after("k", 0.2)
    queue.add_after("k", 0.03)  # earlier: wins
    queue.add_after("k", 10.0)  # later: ignored
    assert await queue.get() == "k"
    assert loop.time() - start < 0.19  # not held back until the first (later) request
    queue.done("k")
    # the superseded request does not fire a second time
    assert await nothing_ready(queue, within=0.3)


async def test_add_after_later_request_after_the_earlier_one_fired() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("k", 0.02)
    assert await queue.get() == "k"
    queue.done("k")
    queue.add_after("k", 0.02)  # a new request after delivery is honoured again
    assert await asyncio.wait_for(queue.get(), timeout=5) == "k"


@pytest.mark.parametrize("delay", [0, -1.0])
async def test_add_after_without_delay_is_an_add(delay: float) -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("now", delay)
    assert len(queue) == 1
    assert await asyncio.wait_for(queue.get(), timeout=0.5) == "now"


async def test_immediate_add_is_not_delayed_by_a_pending_add_after() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("k", 10.0)
    queue.add("k")
    assert await asyncio.wait_for(queue.get(), timeout=0.5) == "k"


async def test_delayed_key_that_is_active_when_due_runs_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("k")
    assert await queue.get() == "k"
    queue.add_after("k", 0.02)
    await asyncio.sleep(0.05)
    assert await nothing_ready(queue, within=0.05)  # due, but "k" is still active
    queue.done("k")
    assert await asyncio.wait_for(queue.get(), timeout=5) == "k"


async def test_getter_waiting_for_a_delay_sees_an_earlier_add() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("slow", 10.0)
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    queue.add("fast")
    assert await asyncio.wait_for(getter, timeout=5) == "fast"


async def test_re_armed_wake_ups_count_once_and_do_not_pile_up() -> None:
    """The controller re-arms every identity's wake-up on every pass, usually a little earlier
    than the last one (the deadline comes closer). Superseded requests must not accumulate:
    neither in the queue depth (a metric) nor in memory until their original due time."""
    queue: WorkQueue[str] = WorkQueue()
    for i in range(2000):
        queue.add_after("identity/a", 3600.0 - i)  # each request is earlier than the one before
        queue.add_after("identity/b", 7200.0 - i)
    assert len(queue) == 2
    assert len(queue._delayed) < 500  # white-box: superseded heap entries are compacted away
    queue.add_after("identity/a", 0.02)
    assert await asyncio.wait_for(queue.get(), timeout=5) == "identity/a"
    queue.done("identity/a")
    assert len(queue) == 1  # only b's wake-up is left


@pytest.mark.parametrize("yields", [0, 1, 2, 3])
@pytest.mark.parametrize("key_added", [True, False])
async def test_a_cancelled_get_ends_cancelled_even_when_woken_at_the_same_moment(key_added: bool, yields: int) -> None:
    """Shutdown cancels workers blocked in ``get`` while watch events keep arriving. A
    cancellation that lands together with the wake-up must still end the worker: with
    ``asyncio.wait_for`` on Python 3.11 it was swallowed, and the worker either ran on with
    the key or waited forever — a shutdown that never finished."""
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("later", 60.0)  # a delayed key: the getter waits with a timeout
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)  # blocked on the empty queue
    if key_added:
        queue.add("x")  # wakes the getter ...
    else:
        queue._changed.set()  # ... or a spurious wake-up with nothing to hand out
    for _ in range(yields):  # ... and the cancellation lands a few loop steps later
        await asyncio.sleep(0)
    requested = getter.cancel()  # False when get already returned (nothing to check then)
    done, _ = await asyncio.wait({getter}, timeout=1.0)
    assert done == {getter}, "the cancelled get never finished"
    if requested:
        assert getter.cancelled(), f"the cancellation was swallowed: get returned {getter.result()!r}"
