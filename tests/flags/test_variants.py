"""Variant values, weighted rendezvous splits and rule positions (flags._variants)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flags._variants import (
    MAX_POSITION_CHARS,
    choose,
    coerce_value,
    hrw_score,
    mix64,
    position_between,
    split_arm,
    split_salt,
    valid_position,
    variant_key,
)

VARIANTS = ["a", "b", "c", "d"]
WEIGHTS = st.dictionaries(st.sampled_from(VARIANTS), st.integers(0, 10_000), min_size=1).filter(
    lambda w: any(w.values())
)
ACTORS = [f"user-{i}" for i in range(300)]


def served(weights: dict[str, int], actor: str) -> str:
    names = sorted(v for v, w in weights.items() if w > 0)
    arms = [split_arm(v, weights[v]) for v in names]
    return names[choose(actor, split_salt("f", "r1"), arms)]


@given(weights=WEIGHTS, variant=st.sampled_from(VARIANTS), weight=st.integers(0, 10_000))
def test_changing_one_weight_moves_actors_only_into_or_out_of_that_variant(
    weights: dict[str, int], variant: str, weight: int
) -> None:
    after = {**weights, variant: weight}
    if not any(after.values()):
        return
    raised = weight >= weights.get(variant, 0)
    for actor in ACTORS[:60]:
        old, new = served(weights, actor), served(after, actor)
        if old != new:
            assert (new == variant) if raised else (old == variant)


def test_a_split_serves_about_its_weights() -> None:
    counts = {"a": 0, "b": 0}
    for i in range(4000):
        counts[served({"a": 1000, "b": 3000}, f"u{i}")] += 1
    assert 900 < counts["a"] < 1100


def test_the_winner_is_the_greatest_score_and_its_hash_is_the_documented_one() -> None:
    salt = split_salt("f", "r1")
    for actor in ACTORS[:50]:
        scores = {v: hrw_score(actor, salt, v, w) for v, w in {"a": 1, "b": 2, "c": 3}.items()}
        assert served({"a": 1, "b": 2, "c": 3}, actor) == max(scores, key=scores.__getitem__)


def test_the_mixer_is_splitmix64s_finalizer() -> None:
    # SplitMix64 seeded with 0 first outputs mix64(0x9E3779B97F4A7C15) (splitmix64.c).
    assert mix64(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF


def test_the_bucketing_never_changes() -> None:
    # Pinned (and checked once against numpy's wrapping uint64 arithmetic): a change
    # here moves actors between variants on every upgraded node.
    assert variant_key("control") == 0x0FCD568A5CB9BDB4
    assert hrw_score("user-1234", split_salt("f", "r3"), "control", 5000) == 175905.8944346833
    picks = [served({"a": 1, "b": 1, "c": 2}, actor) for actor in ACTORS[:12]]
    assert "".join(picks) == "cbacbabbccab"


def test_without_an_actor_a_split_picks_by_weight_at_random() -> None:
    arms = [split_arm("a", 10_000), split_arm("b", 1)]
    picks = [choose(None, b"", arms) for _ in range(200)]
    assert picks.count(0) > 190


@pytest.mark.parametrize(
    ("kind", "value", "ok"),
    [
        ("boolean", True, True),
        ("boolean", 1, False),
        ("integer", True, False),
        ("integer", 3, True),
        ("float", 3, True),
        ("float", "3", False),
        ("string", "x", True),
        ("object", {"k": [1]}, True),
        ("object", [1], False),
        ("nope", 1, False),
    ],
)
def test_values_must_be_of_the_flag_type(kind: str, value: object, ok: bool) -> None:
    assert coerce_value(kind, value)[0] is ok


def test_an_int_served_by_a_float_flag_is_a_float() -> None:
    assert coerce_value("float", 3) == (True, 3.0)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.booleans()), max_size=200))
def test_positions_sort_strictly_between_and_stay_short(inserts: list[tuple[int, bool]]) -> None:
    positions: list[str] = []
    for where, _ in inserts:
        index = where % (len(positions) + 1)
        a = positions[index - 1] if index else None
        b = positions[index] if index < len(positions) else None
        p = position_between(a, b)
        assert valid_position(p)
        assert a is None or a < p
        assert b is None or p < b
        positions.insert(index, p)
    # The worst case, always bisecting the newest gap, costs a character per 5 inserts.
    assert all(len(p) <= 3 + len(inserts) // 4 for p in positions)


@given(st.lists(st.booleans(), max_size=200))
def test_bisecting_the_newest_gap_costs_about_a_character_per_five_inserts(
    sides: list[bool],
) -> None:
    a, b = "V", "W"
    for move_a in sides:
        p = position_between(a, b)
        assert a < p < b
        a, b = (p, b) if move_a else (a, p)
    assert len(a) <= 3 + len(sides) // 4
    assert len(b) <= 3 + len(sides) // 4


@pytest.mark.parametrize("spot", ["start", "end", "after_first"])
def test_five_hundred_inserts_at_one_spot_need_short_positions(spot: str) -> None:
    positions = [position_between(None, None)]
    for _ in range(500):
        if spot == "start":
            positions.insert(0, position_between(None, positions[0]))
        elif spot == "end":
            positions.append(position_between(positions[-1], None))
        else:
            following = positions[1] if len(positions) > 1 else None
            positions.insert(1, position_between(positions[0], following))
    assert positions == sorted(positions)
    # At either end a character per 30 inserts; bisecting one gap, one per 5.
    bound = 120 if spot == "after_first" else 20
    assert max(map(len, positions)) <= bound < MAX_POSITION_CHARS


@pytest.mark.parametrize(
    ("a", "b"), [("b", "a"), ("a", "a"), ("a0", None), ("", None), ("é", None)]
)
def test_position_between_refuses_bad_or_unordered_bounds(a: str, b: str | None) -> None:
    with pytest.raises(ValueError, match=r"position|before"):
        position_between(a, b)
