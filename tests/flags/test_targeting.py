"""Conditions, SemVer, instants and the write-time rule checks (flags._targeting)."""

import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flags._schema import FlagFormatError
from flags._targeting import check_rule, compile_condition, instant, semver_key


def holds(attribute: str, op: str, values: list[Any], value: Any = None, **ctx: Any) -> bool:
    condition = compile_condition({"attribute": attribute, "op": op, "values": values})
    attributes = {} if value is None else {attribute: value}
    return condition(ctx.get("actor"), frozenset(ctx.get("groups", ())), attributes)


@pytest.mark.parametrize(
    ("op", "values", "value", "expected"),
    [
        ("in", ["pro", 3], "pro", True),
        ("in", [1], 1.0, True),
        ("in", [1], True, False),
        ("not_in", ["pro"], "free", True),
        ("not_in", ["pro"], None, False),
        ("not_in", ["pro"], ["list"], False),
        ("lt", [10], 9.5, True),
        ("lt", [10], True, False),
        ("gte", [10, 20], 10, True),
        ("semver_gte", ["1.2.0-rc.1"], "1.2.0", True),
        ("semver_lt", ["1.2.0"], "1.2.0-rc.1", True),
        ("semver_eq", ["1.2.0"], "1.2.0+build.5", True),
        ("semver_gt", ["1.0.0"], "1.2", False),
        ("starts_with", ["en-"], "en-GB", True),
        ("ends_with", ["@example.com"], "ann@example.com", True),
        ("contains", ["beta"], "v2-beta-3", True),
        ("contains", ["beta"], 5, False),
        ("before", ["2025-01-01"], "2024-12-31T23:59:59Z", True),
        ("after", ["2025-01-01T00:00:00+01:00"], "2024-12-31T23:30:00Z", True),
        ("after", [0], 1.5, True),
        ("before", ["2025-01-01"], "2024-12-31T23:59:59", False),  # no offset
    ],
)
def test_each_operator(op: str, values: list[Any], value: Any, expected: bool) -> None:
    assert holds("x", op, values, value) is expected


def test_groups_are_any_of_and_actor_is_the_targeting_key() -> None:
    assert holds("groups", "in", ["beta"], groups=["staff", "beta"])
    assert not holds("groups", "not_in", ["beta"], groups=["staff", "beta"])
    assert holds("groups", "not_in", ["beta"], groups=[])
    assert holds("actor", "starts_with", ["u-"], actor="u-1")
    assert not holds("actor", "not_in", ["u-1"])


def test_semver_precedence_is_the_specs_example() -> None:
    # SemVer 2.0.0, section 11.4.
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ]
    keys = [semver_key(v) for v in ordered]
    assert None not in keys
    assert keys == sorted(keys)  # type: ignore[type-var]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("text", ["1.2", "01.2.3", "1.2.3-", "1.2.3-01", "v1.2.3", ""])
def test_a_malformed_version_is_none(text: str) -> None:
    assert semver_key(text) is None


@given(st.datetimes(), st.integers(-(23 * 60 + 59), 23 * 60 + 59))
def test_an_rfc3339_date_time_is_its_utc_instant(naive: Any, offset_min: int) -> None:
    zone = datetime.timezone(datetime.timedelta(minutes=offset_min))
    moment = naive.replace(tzinfo=zone)
    expected = (moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)).total_seconds()
    assert instant(moment.isoformat()) == pytest.approx(expected, abs=1e-6)


@given(
    st.dictionaries(
        st.text(max_size=3),
        st.one_of(st.none(), st.integers(), st.text(), st.floats(), st.lists(st.integers())),
    )
)
def test_a_condition_never_raises_on_any_attributes(attributes: dict[str, Any]) -> None:
    for op, values in [
        ("in", ["a"]),
        ("lt", [1]),
        ("semver_gt", ["1.0.0"]),
        ("contains", ["a"]),
        ("after", [0]),
        ("not_in", [1]),
    ]:
        for key in [*attributes, "missing"]:
            condition = compile_condition({"attribute": key, "op": op, "values": values})
            assert condition(None, frozenset(), attributes) in (True, False)


RULE: dict[str, Any] = {
    "position": "V",
    "conditions": [{"attribute": "plan", "op": "in", "values": ["pro"]}],
    "segments": ["beta"],
    "serve": {"split": {"a": 1, "b": 0}},
}


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        ({"position": "V0"}, "/position"),
        ({"colour": 1}, "/colour"),
        (
            {
                "conditions": [
                    RULE["conditions"][0],
                    {"attribute": "x", "op": "regex", "values": ["a"]},
                ]
            },
            "/conditions/1/op",
        ),
        (
            {"conditions": [{"attribute": "x", "op": "lt", "values": [1, "2"]}]},
            "/conditions/0/values/1",
        ),
        (
            {"conditions": [{"attribute": "x", "op": "semver_eq", "values": ["1.2"]}]},
            "/conditions/0/values/0",
        ),
        (
            {"conditions": [{"attribute": "x", "op": "in", "values": list(range(101))}]},
            "/conditions/0/values",
        ),
        ({"conditions": [RULE["conditions"][0]] * 51}, "/conditions"),
        ({"segments": ["ok", "not ok"]}, "/segments/1"),
        ({"serve": {"split": {"a": 0}}}, "/serve/split"),
        ({"serve": {"split": {"a/b": 1}}}, "/serve/split/a~1b"),
        ({"serve": {"variant": "a", "split": {}}}, "/serve"),
    ],
)
def test_check_rule_points_at_the_first_bad_field(change: dict[str, Any], pointer: str) -> None:
    with pytest.raises(FlagFormatError) as caught:
        check_rule({**RULE, **change})
    assert caught.value.pointer == pointer


def test_check_rule_returns_the_rule_with_every_field() -> None:
    rule = check_rule({"position": "V", "serve": {"variant": "a"}})
    assert rule == {"position": "V", "conditions": [], "segments": [], "serve": {"variant": "a"}}
