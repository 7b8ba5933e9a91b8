"""The adaptive token bucket on a fake clock: spacing, bursts, slowing down on pushback, gradual recovery,
Retry-After for everyone, and distinct slots under contention from many threads."""

from __future__ import annotations

import threading

import pytest

from rotator.ratelimit import AdaptiveTokenBucket


class Clock:
    """Time moves only when someone sleeps (single-threaded tests) or when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def bucket(rate: float, clock: Clock, **options: float) -> AdaptiveTokenBucket:
    return AdaptiveTokenBucket(rate, clock=clock, sleep=clock.sleep, **options)


def test_requests_are_spaced_at_the_configured_rate() -> None:
    clock = Clock()
    pacer = bucket(10, clock, burst=1)
    start = clock.now
    waits = [pacer.acquire() for _ in range(21)]
    assert waits[0] == 0
    assert clock.now - start == pytest.approx(2.0)  # 20 intervals of 0.1 s
    assert pacer.stats().acquired == 21


def test_a_burst_goes_at_once_after_a_quiet_spell() -> None:
    clock = Clock()
    pacer = bucket(10, clock, burst=5)
    assert [pacer.acquire() for _ in range(5)] == [0, 0, 0, 0, 0]
    assert pacer.acquire() == pytest.approx(0.1)
    clock.now += 10  # quiet: the credit is back, but never more than the burst
    assert [pacer.acquire() for _ in range(5)] == [0, 0, 0, 0, 0]
    assert pacer.acquire() > 0


def test_pushback_halves_the_rate_once_per_wave_and_never_below_the_floor() -> None:
    clock = Clock()
    pacer = bucket(16, clock, floor_fraction=1 / 4, cooldown=1.0)
    pacer.throttled()
    pacer.throttled()  # in flight at the same time: the same wave
    assert pacer.current_rate == pytest.approx(8)
    for _ in range(5):
        clock.now += 1.5
        pacer.throttled()
    assert pacer.current_rate >= 4 - 1e-9  # floor: a quarter of 16
    assert pacer.stats().throttled == 7


def test_the_rate_recovers_gradually_to_the_configured_rate() -> None:
    clock = Clock()
    pacer = bucket(20, clock, recovery=10.0)
    pacer.throttled()
    assert pacer.current_rate == pytest.approx(10)
    clock.now += 5
    assert pacer.current_rate == pytest.approx(15)
    clock.now += 5
    assert pacer.current_rate == pytest.approx(20)
    clock.now += 100
    assert pacer.current_rate == pytest.approx(20)  # never above what was configured


def test_after_pushback_the_saved_credit_is_gone() -> None:
    clock = Clock()
    pacer = bucket(10, clock, burst=10)
    pacer.throttled()
    assert pacer.acquire() > 0  # no burst straight after a refusal


def test_retry_after_holds_every_caller() -> None:
    clock = Clock()
    pacer = bucket(100, clock, burst=50)
    pacer.throttled(retry_after=3)
    start = clock.now
    pacer.acquire()
    assert clock.now - start >= 3


def test_concurrent_callers_get_distinct_slots() -> None:
    clock = Clock()
    slots: list[float] = []
    lock = threading.Lock()
    pacer = AdaptiveTokenBucket(50, burst=1, clock=clock, sleep=lambda _: None)  # the clock stands still

    def worker() -> None:
        for _ in range(50):
            wait = pacer.acquire()
            with lock:
                slots.append(round(wait, 9))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(slots) == [round(i / 50, 9) for i in range(400)]  # every slot once, none shared


@pytest.mark.parametrize("rate", [0, -1, float("inf")])
def test_a_rate_must_be_positive_and_finite(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        AdaptiveTokenBucket(rate)


def test_a_reservation_waits_once_up_front_then_its_requests_never_wait() -> None:
    clock = Clock()
    pacer = bucket(1, clock, burst=1)
    pacer.acquire()  # the bucket is busy: the next slot is a second away
    start = clock.now
    with pacer.reserved(2) as waited:
        assert waited == pytest.approx(2.0)  # both slots, the second one second after the first
        after_wait = clock.now
        pacer.throttled(retry_after=30)  # another caller's 429 arrives between the two requests
        assert [pacer.acquire(), pacer.acquire()] == [0.0, 0.0]
        assert clock.now == after_wait  # nothing slept between them, the Retry-After included
    assert clock.now - start == pytest.approx(2.0)
    assert pacer.acquire() >= 28  # outside the reservation the Retry-After holds again
    assert pacer.stats().acquired == 4


def test_unused_reserved_slots_are_dropped_and_borrowed_ones_never_wait() -> None:
    clock = Clock()
    pacer = bucket(1, clock, burst=1)
    with pacer.reserved(2):
        pacer.acquire()
    start = clock.now
    assert pacer.acquire() > 0  # the unused slot did not carry over: this one waits its turn
    with pacer.reserved(1, wait=False) as waited:
        assert waited == 0 and pacer.acquire() == 0 and clock.now == pytest.approx(start + 1.0)
    assert pacer.acquire() == pytest.approx(2.0)  # the borrowed slot is paid by whoever comes next


def test_a_reservation_is_per_thread() -> None:
    clock = Clock()
    pacer = AdaptiveTokenBucket(10, burst=1, clock=clock, sleep=lambda _: None)
    other: list[float] = []
    with pacer.reserved(2):
        thread = threading.Thread(target=lambda: other.append(pacer.acquire()))
        thread.start()
        thread.join()
    assert other[0] > 0  # another thread does not spend this thread's reserved slots
