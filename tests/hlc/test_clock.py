import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlc import HLC, MAX_LOGICAL, MAX_WALL_MS, ClockSkewError, Timestamp, TimestampError


class FakeWall:
    """A wall clock the test moves by hand, forwards, backwards or not at all."""

    def __init__(self, now_ms: int = 1_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


# An operation: move the wall clock by a step (which may be negative or zero), then
# either tick the clock (None) or receive a remote timestamp at some offset from the
# local wall clock (which may be beyond max_offset_ms).
operations = st.lists(
    st.tuples(
        st.integers(min_value=-2_000, max_value=2_000),
        st.none()
        | st.tuples(
            st.integers(min_value=-5_000, max_value=1_000),
            st.integers(min_value=0, max_value=5),
            st.sampled_from(["a", "b", "z"]),
        ),
    ),
    max_size=60,
)


@given(operations, st.integers(min_value=0, max_value=800))
def test_every_result_exceeds_everything_before(
    ops: list[tuple[int, tuple[int, int, str] | None]], max_offset_ms: int
) -> None:
    wall = FakeWall()
    clock = HLC("m", max_offset_ms=max_offset_ms, wall_ms=wall)
    seen: list[Timestamp] = []  # every result and every accepted remote
    for step, remote_spec in ops:
        wall.now_ms = max(0, wall.now_ms + step)
        if remote_spec is None:
            result = clock.now()
        else:
            offset, logical, node = remote_spec
            remote = Timestamp(max(0, wall.now_ms + offset), logical, node)
            before = clock.last
            if remote.wall_ms - wall.now_ms > max_offset_ms:
                with pytest.raises(ClockSkewError) as info:
                    clock.update(remote)
                assert info.value.remote == remote
                assert clock.last == before  # a refused remote leaves the clock unchanged
                continue
            result = clock.update(remote)
            assert result > remote
            seen.append(remote)
        assert all(result > earlier for earlier in seen)
        assert result.node == "m"
        assert result.wall_ms >= wall.now_ms  # never behind the wall clock
        assert clock.last == result
        seen.append(result)


def test_now_follows_the_wall_clock() -> None:
    wall = FakeWall(5_000)
    clock = HLC("a", wall_ms=wall)
    assert clock.now() == Timestamp(5_000, 0, "a")
    wall.now_ms = 5_007
    assert clock.now() == Timestamp(5_007, 0, "a")


def test_stalled_wall_clock_counts_logically() -> None:
    clock = HLC("a", wall_ms=FakeWall(5_000))
    assert [clock.now().logical for _ in range(4)] == [0, 1, 2, 3]


def test_backwards_wall_clock_never_goes_back() -> None:
    wall = FakeWall(5_000)
    clock = HLC("a", wall_ms=wall)
    first = clock.now()
    wall.now_ms = 4_000
    assert clock.now() == Timestamp(5_000, 1, "a") > first


def test_update_takes_the_remote_wall_time_when_ahead() -> None:
    clock = HLC("a", wall_ms=FakeWall(5_000))
    assert clock.update(Timestamp(5_300, 7, "b")) == Timestamp(5_300, 8, "a")
    assert clock.now() == Timestamp(5_300, 9, "a")


def test_update_with_equal_wall_takes_the_larger_counter() -> None:
    clock = HLC("a", wall_ms=FakeWall(5_000))
    clock.now()
    clock.now()  # (5000, 1)
    assert clock.update(Timestamp(5_000, 0, "b")) == Timestamp(5_000, 2, "a")
    assert clock.update(Timestamp(5_000, 9, "b")) == Timestamp(5_000, 10, "a")


def test_update_with_old_remote_keeps_local_time() -> None:
    clock = HLC("a", wall_ms=FakeWall(5_000))
    assert clock.update(Timestamp(10, 99, "b")) == Timestamp(5_000, 0, "a")


def test_skew_guard_boundary() -> None:
    clock = HLC("a", max_offset_ms=500, wall_ms=FakeWall(5_000))
    assert clock.update(Timestamp(5_500, 0, "b")) == Timestamp(5_500, 1, "a")
    with pytest.raises(ClockSkewError) as info:
        clock.update(Timestamp(5_501, 0, "b"))
    assert info.value.local_wall_ms == 5_000
    assert info.value.max_offset_ms == 500
    assert "501 ms ahead" in str(info.value)
    assert clock.last == Timestamp(5_500, 1, "a")


def test_logical_overflow_on_now_carries_into_wall_ms() -> None:
    clock = HLC("a", wall_ms=FakeWall(5_000), last=Timestamp(5_000, MAX_LOGICAL - 1, "a"))
    assert clock.now() == Timestamp(5_000, MAX_LOGICAL, "a")
    assert clock.now() == Timestamp(5_001, 0, "a")
    assert clock.now() == Timestamp(5_001, 1, "a")


def test_logical_overflow_on_update_carries_into_wall_ms() -> None:
    clock = HLC("a", wall_ms=FakeWall(5_000))
    result = clock.update(Timestamp(5_000, MAX_LOGICAL, "b"))
    assert result == Timestamp(5_001, 0, "a")
    assert result > Timestamp(5_000, MAX_LOGICAL, "b")


def test_overflow_at_the_end_of_time() -> None:
    clock = HLC("a", wall_ms=FakeWall(MAX_WALL_MS), last=Timestamp(MAX_WALL_MS, MAX_LOGICAL, "a"))
    with pytest.raises(OverflowError):
        clock.now()


def test_restart_above_last() -> None:
    clock = HLC("a", wall_ms=FakeWall(10), last=Timestamp(5_000, 3, "x"))
    assert clock.now() == Timestamp(5_000, 4, "a")


def test_bad_arguments() -> None:
    with pytest.raises(TimestampError):
        HLC("")
    with pytest.raises(ValueError, match="max_offset_ms"):
        HLC("a", max_offset_ms=-1)


def test_system_clock_by_default() -> None:
    import time

    before = time.time_ns() // 1_000_000
    ts = HLC("a").now()
    after = time.time_ns() // 1_000_000
    assert before <= ts.wall_ms <= after
