"""The scenarios the notebooks plot: their claims hold, and a seed replays them."""

import pytest

from transport import scenarios

pytestmark = pytest.mark.timeout(120)


def test_partitions_converge_after_heal_and_the_greater_hlc_wins() -> None:
    run = scenarios.partitions(seed=3)
    assert max(run.divergent) == 10  # exactly the conflicting keys diverge
    assert all(
        d == 0 for t, d in zip(run.times, run.divergent, strict=True) if t < run.partition_at
    )
    assert run.converged_at is not None
    assert run.heal_at <= run.converged_at < run.heal_at + 5
    for c in run.conflicts:
        assert c.winner == (c.left if c.left_ts > c.right_ts else c.right)
    assert run == scenarios.partitions(seed=3)  # the seed replays it


def test_rolling_deploy_loses_nothing_until_every_node_is_down() -> None:
    run = scenarios.rolling_deploy(seed=2)
    assert run.ready_reads > 300
    assert run.lost_reads == 0
    assert any(r == 0 for series in run.ready.values() for r in series)  # restarts were seen
    assert run.after_all_down == {"a": "default", "b": "default", "c": "default"}


def test_scale_one_delta_per_peer_and_latency_flat() -> None:
    points = scenarios.scale_writes(seed=1, sizes=(3, 8))
    assert [p.messages_per_write for p in points] == [2.0, 7.0]
    assert all(p.visible_on_all_ms <= 6 for p in points)  # one hop: 1-5 ms


def test_repair_bytes_grow_with_the_difference() -> None:
    points = scenarios.repair_cost(total_keys=5_000, differing=(1, 50))
    assert points[0].digest_bytes < 2_048
    assert points[0].digest_bytes < points[1].digest_bytes < points[1].full_state_bytes


def test_loss_slows_convergence_but_it_still_converges() -> None:
    points = scenarios.loss_and_interval(seed=1, losses=(0.0, 0.3), intervals=(0.5,))
    assert all(p.converged_after_s is not None for p in points)
    assert points[0].converged_after_s <= points[1].converged_after_s  # type: ignore[operator]


def test_clock_skew_keeps_causality_and_holds_far_entries_back() -> None:
    run = scenarios.clock_skew(seed=1)
    assert run.causal_violations == 0
    assert run.accepted_after_s is not None
    assert run.accepted_after_s >= (600 - 500) / 1000  # waited for slow's clock to allow it
    assert run.held_back["slow"] > 0
    assert "off its peers' median" in run.far_refused
    # Writes here are 10-100 ms apart and land in 1-5 ms, and a write is ordered after
    # the entries its node holds back: for this seed no write inverts real-time order.
    assert run.inversions == 0
    assert run.final_value in range(40)
