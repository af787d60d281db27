"""The adaptive limiter: weights, FIFO order, capacity changes while slots are held."""

from __future__ import annotations

import anyio
import pytest

from test_framework.dispatch.limiter import AdaptiveLimiter

pytestmark = pytest.mark.anyio


async def test_acquire_within_capacity_is_immediate() -> None:
    limiter = AdaptiveLimiter(2)
    assert await limiter.acquire() == 1
    assert await limiter.acquire() == 1
    stats = limiter.statistics()
    assert (stats.in_use, stats.waiting, stats.peak_in_use) == (2, 0, 2)


async def test_waiters_are_served_in_arrival_order() -> None:
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        await limiter.acquire()
        order.append(name)
        limiter.release(1)

    async with anyio.create_task_group() as tg:
        for name in ("a", "b", "c"):
            tg.start_soon(take, name)
            await anyio.wait_all_tasks_blocked()
        assert limiter.statistics().waiting == 3
        limiter.release(1)
    assert order == ["a", "b", "c"]


async def test_heavy_waiter_at_the_head_is_not_starved_by_light_ones() -> None:
    limiter = AdaptiveLimiter(2)
    await limiter.acquire()
    order: list[str] = []

    async def take(name: str, weight: int) -> None:
        await limiter.acquire(weight)
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "heavy", 2)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(take, "light", 1)
        await anyio.wait_all_tasks_blocked()
        # One slot is free, but the heavy waiter came first: nobody jumps it.
        assert order == []
        limiter.release(1)
        await anyio.wait_all_tasks_blocked()
        assert order == ["heavy"]
        limiter.release(2)
    assert order == ["heavy", "light"]


async def test_weight_above_capacity_means_the_whole_limiter() -> None:
    limiter = AdaptiveLimiter(2)
    assert await limiter.acquire(10) == 10
    assert limiter.statistics().in_use == 10
    limiter.release(10)
    assert limiter.statistics().in_use == 0


async def test_widening_wakes_waiters() -> None:
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()
    got: list[int] = []

    async def take() -> None:
        got.append(await limiter.acquire())

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        limiter.set_capacity(3)
    assert got == [1, 1]
    assert limiter.statistics().in_use == 3


async def test_narrowing_does_not_preempt_holders_but_blocks_newcomers() -> None:
    limiter = AdaptiveLimiter(3)
    for _ in range(3):
        await limiter.acquire()
    limiter.set_capacity(1)
    assert limiter.statistics().in_use == 3
    admitted: list[bool] = []

    async def take() -> None:
        await limiter.acquire()
        admitted.append(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        limiter.release(1)
        limiter.release(1)
        await anyio.wait_all_tasks_blocked()
        assert admitted == []  # 1 still in use == capacity
        limiter.release(1)
    assert admitted == [True]


async def test_cancelled_waiter_leaves_the_queue() -> None:
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()
    with anyio.move_on_after(0.05):
        await limiter.acquire()
    assert limiter.statistics().waiting == 0
    limiter.release(1)
    assert limiter.statistics().in_use == 0


async def test_invalid_capacity_and_weight() -> None:
    with pytest.raises(ValueError, match="capacity"):
        AdaptiveLimiter(0)
    limiter = AdaptiveLimiter(1)
    with pytest.raises(ValueError, match="capacity"):
        limiter.set_capacity(0)
    with pytest.raises(ValueError, match="weight"):
        await limiter.acquire(0)
    with pytest.raises(RuntimeError, match="released more"):
        limiter.release(1)
