"""Export and import of typed flags and segments: the document's fields, the plan's
lines, and a round trip through GET /export and POST /import."""

import datetime
import json
from typing import Any

import attrs
import pytest
from starlette.testclient import TestClient

from flags import Flag, FlagFormatError, FlagStore, LocalMap
from flags._export import (
    EXPORT_VERSION,
    FLAG_FIELDS,
    export_document,
    flag_to_json,
    parse_export,
    parse_segments,
)
from flags.http import create_app

TOKEN = "export-typed-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.UTC)
AT_MS = 1_900_000_000_000
ADULTS = [{"attribute": "age", "op": "gte", "values": [18]}]


def typed_store(node: str = "a") -> FlagStore:
    """A store with a boolean flag, a typed flag using every typed part, and a segment."""
    store = FlagStore(LocalMap(node))
    store.enable("plain")
    store.set_segment("adults", ADULTS)
    store.set_variants("colour", {"blue": "#00f", "green": "#0f0"}, type="string")
    store.enable("colour")
    store.set_off_variant("colour", "blue")
    store.set_fallthrough("colour", {"split": {"blue": 1, "green": 3}})
    store.set_rule(
        "colour",
        "eu",
        serve={"variant": "green"},
        conditions=[{"attribute": "country", "op": "in", "values": ["fr", "de"]}],
        segments=["adults"],
    )
    store.set_rule("colour", "staff", serve={"variant": "blue"}, before="eu")
    store.set_prerequisite("colour", "plain", ["true"])
    store.schedule("colour", "later", AT_MS, set=[["off_variant", "green"]])
    return store


def document_of(store: FlagStore) -> dict[str, Any]:
    exported = export_document(store.export(), node="a", exported_at=NOW, segments=store.segments())
    parsed: dict[str, Any] = json.loads(json.dumps(exported))  # through JSON text
    return parsed


def without_default(flags: list[Flag]) -> dict[str, Flag]:
    return {f.name: attrs.evolve(f, default=None) for f in flags}


def test_a_boolean_only_export_is_as_before_typed_flags() -> None:
    store = FlagStore(LocalMap("a"))
    store.enable("plain")
    store.enable_for_actor("plain", "ann")
    document = export_document(store.export(), node="a", exported_at=NOW, segments={})
    assert set(document) == {"format", "version", "exported_at", "node", "flags"}
    assert list(document["flags"][0]) == list(FLAG_FIELDS)
    # A document of before typed flags still reads.
    old = {"format": "chorus-flags", "version": EXPORT_VERSION, "flags": [{"name": "x"}]}
    assert parse_export(old) == [Flag("x")]
    assert parse_segments(old) == {}


def test_a_typed_flag_carries_only_the_typed_fields_it_sets() -> None:
    document = flag_to_json(Flag("v", variants={"on": True, "off": False}))
    assert list(document) == [*FLAG_FIELDS, "type", "variants"]
    full = document_of(typed_store())
    colour = next(f for f in full["flags"] if f["name"] == "colour")
    assert colour["type"] == "string"
    assert colour["off_variant"] == "blue"
    assert colour["fallthrough"] == {"split": {"blue": 1, "green": 3}}
    assert set(colour["rules"]) == {"eu", "staff"}
    assert colour["rules"]["eu"]["segments"] == ["adults"]
    assert colour["prerequisites"] == {"plain": ["true"]}
    assert colour["schedules"]["later"]["at_ms"] == AT_MS
    assert full["segments"] == {"adults": ADULTS}
    assert list(full["segments"]["adults"][0]) == ["attribute", "op", "values"]
    assert list(colour["rules"]["eu"]) == ["position", "conditions", "segments", "serve"]


def test_export_then_import_into_an_empty_store_gives_equal_flags_and_segments() -> None:
    source = typed_store()
    document = document_of(source)
    target = FlagStore(LocalMap("b"))
    for name, conditions in parse_segments(document).items():
        target.set_segment(name, conditions)
    plans = target.import_flags(parse_export(document), author="restore")
    assert without_default(target.export()) == without_default(source.export())
    assert target.segments() == source.segments()
    assert [p.name for p in plans if p.changes] == ["colour", "plain"]
    # The same import again writes nothing.
    again = target.import_flags(parse_export(document), author="restore")
    assert [p.changes for p in again] == [[], []]
    # And both evaluate alike.
    for attributes in ({"country": "fr", "age": 30}, {"country": "fr", "age": 3}, {}):
        for actor in ("u1", "u2", "u3"):
            a = source.evaluate("colour", "x", actor=actor, attributes=attributes)
            b = target.evaluate("colour", "x", actor=actor, attributes=attributes)
            assert a == b


def test_the_plan_says_what_each_typed_part_becomes() -> None:
    store = FlagStore(LocalMap("a"))
    store.enable("plain")
    [colour] = [f for f in parse_export(document_of(typed_store())) if f.name == "colour"]
    [plan] = store.import_flags([colour], dry_run=True)
    assert plan.changes == [
        "boolean: on",
        "type: string",
        "variant blue: '#00f'",
        "variant green: '#0f0'",
        "off_variant: blue",
        "fallthrough: split blue 1, green 3",
        "rule eu: 1 conditions, 1 segments, serves green",
        "rule staff: 0 conditions, 0 segments, serves blue",
        "prerequisite plain: true",
        "schedule later: at 2030-03-17T17:46:40Z, 1 writes",
    ]
    store.import_flags([colour])
    smaller = attrs.evolve(colour, rules={}, off_variant=None, variants={"blue": "#00f"})
    [plan] = store.import_flags([smaller], dry_run=True)
    assert plan.changes == [
        "variant green: cleared",
        "off_variant: cleared",
        "rule eu: cleared",
        "rule staff: cleared",
    ]


def test_restore_writes_back_the_typed_parts_of_an_earlier_state() -> None:
    store = FlagStore(LocalMap("a"))
    store.set_variants("colour", {"blue": "#00f"}, type="string")
    store.set_fallthrough("colour", {"variant": "blue"})
    earlier = store.audit("colour")[0].timestamp
    store.set_variant("colour", "red", "#f00")
    store.set_fallthrough("colour", {"variant": "red"})
    assert store.restore("colour", earlier)
    flag = store.flag("colour")
    assert (dict(flag.variants), flag.fallthrough) == ({"blue": "#00f"}, {"variant": "blue"})


@pytest.mark.parametrize(
    ("flag_or_segments", "pointer", "words"),
    [
        ({"name": "a", "colour": 1}, "/flags/0/colour", "unknown field"),
        ({"name": "a", "type": "colour"}, "/flags/0/type", "one of"),
        (
            {"name": "a", "type": "integer", "variants": {"one": "1"}},
            "/flags/0/variants/one",
            "integer",
        ),
        (
            {"name": "a", "rules": {"r1": {"position": "V", "serve": {"variant": "x"}, "when": 1}}},
            "/flags/0/rules/r1/when",
            "no field",
        ),
        (
            {"segments": {"adults": [{"attribute": "age", "op": "like", "values": [1]}]}},
            "/segments/adults/0/op",
            "not 'like'",
        ),
        ({"segments": {"a b": []}}, "/segments/a b", "segment name"),
        ({"segments": {"adults": {}}}, "/segments/adults", "a list"),
        ({"segments": []}, "/segments", "an object"),
    ],
)
def test_a_bad_typed_field_or_segment_is_refused_with_a_pointer(
    flag_or_segments: dict[str, Any], pointer: str, words: str
) -> None:
    document: dict[str, Any] = {"format": "chorus-flags", "version": EXPORT_VERSION, "flags": []}
    if "segments" in flag_or_segments:
        document.update(flag_or_segments)
    else:
        document["flags"] = [flag_or_segments]
    with pytest.raises(FlagFormatError) as caught:
        parse_export(document)
    assert caught.value.pointer == pointer
    assert words in caught.value.message


def app_of(store: FlagStore) -> TestClient:
    return TestClient(
        create_app(
            store, token=TOKEN, node_id=store._map.node_id, synced=lambda: True, cluster=dict
        )
    )


def test_http_export_and_import_carry_typed_flags_and_segments() -> None:
    source = typed_store()
    target = FlagStore(LocalMap("b"))
    exported = app_of(source).get("/export").json()
    assert exported["segments"] == {"adults": ADULTS}
    client = app_of(target)
    dry = client.post("/import", json=exported, params={"dry_run": "true"}, headers=AUTH).json()
    assert dry["segments"] == [{"name": "adults", "changes": ["segment adults: 1 conditions"]}]
    assert target.segments() == {}  # a dry run writes nothing
    assert target.names() == set()
    done = client.post("/import", json=exported, params={"author": "ops"}, headers=AUTH)
    assert done.status_code == 200, done.text
    assert target.segments() == source.segments()
    assert without_default(target.export()) == without_default(source.export())
    assert target.audit("")[0].author == "ops"  # the segment's change, audited
    again = client.post("/import", json=exported, headers=AUTH).json()
    assert (again["changed"], "segments" in again) == ([], False)
    # A bad segment refuses the whole document: nothing written.
    empty = FlagStore(LocalMap("c"))
    bad = {**exported, "segments": {"adults": [{"attribute": "age", "op": "gte", "values": ["x"]}]}}
    answer = app_of(empty).post("/import", json=bad, headers=AUTH)
    assert answer.status_code == 422
    assert answer.json()["pointer"] == "/segments/adults/0/values/0"
    assert empty.names() == set()
    assert empty.segments() == {}
