"""Export and import of flags, and defaults read from an export: the store's API, the
document's checks, and the HTTP admin's ``GET /export`` and ``POST /import``."""

import datetime
import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from flags import Flag, FlagFormatError, FlagStore, LocalMap
from flags._export import EXPORT_VERSION, export_document, flag_to_json, parse_export
from flags.http import MAX_IMPORT_BYTES, create_app

TOKEN = "export-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.UTC)

names = st.sampled_from(["a", "b", "checkout.v2", "team:pay", "u@x", "org+1"])
ratios = st.one_of(st.none(), st.sampled_from([0.0, 0.1, 0.25, 1.0]), st.floats(0, 1))
texts = st.one_of(st.none(), st.text(max_size=20))
flags_ = st.builds(
    Flag,
    name=names,
    boolean=st.one_of(st.none(), st.booleans()),
    actors=st.dictionaries(names, st.booleans(), max_size=3),
    groups=st.dictionaries(names, st.booleans(), max_size=3),
    percentage_of_actors=ratios,
    percentage_of_time=ratios,
    description=texts,
    owner=texts,
    expires=st.one_of(st.none(), st.dates().map(datetime.date.isoformat)),
)
flag_lists = st.lists(flags_, max_size=4, unique_by=lambda f: f.name)


def document(*flags: dict[str, Any]) -> dict[str, Any]:
    return {"format": "chorus-flags", "version": EXPORT_VERSION, "flags": list(flags)}


def store_with(flags: list[Flag], node: str = "a") -> FlagStore:
    store = FlagStore(LocalMap(node))
    store.import_flags(flags, author="setup")
    return store


def audit_count(store: FlagStore) -> int:
    return len(store.audit())


@given(flag_lists, flag_lists)
def test_an_export_imported_anywhere_gives_the_same_flags_and_a_second_import_writes_nothing(
    source: list[Flag], other: list[Flag]
) -> None:
    exported = store_with(source, "a")
    text = json.dumps(export_document(exported.export(), node="a", exported_at=NOW))
    target = store_with(other, "b")  # a cluster that already holds other flags
    untouched = {f.name: f for f in target.export() if f.name not in {s.name for s in source}}

    plans = target.import_flags(parse_export(json.loads(text)), author="restore")

    mine = {f.name: f for f in target.export()}
    for flag in exported.export():
        assert mine[flag.name] == flag
    for name, flag in untouched.items():  # flags not in the file are not touched
        assert mine[name] == flag
    assert {p.name for p in plans} == {f.name for f in exported.export()}
    before = audit_count(target)
    again = target.import_flags(parse_export(json.loads(text)), author="restore")
    assert [p.changes for p in again] == [[] for _ in again]
    assert audit_count(target) == before


def test_import_makes_a_flag_equal_the_files_removing_what_the_file_lacks() -> None:
    store = FlagStore(LocalMap("a"))
    store.enable_for_actor("x", "old")
    store.enable_percentage_of_time("x", 0.5)
    store.set_metadata("x", owner="bob", description="kept")
    store.enable("other")
    wanted = Flag("x", boolean=True, actors={"new": False}, description="kept")

    [plan] = store.import_flags([wanted], author="ops")

    assert attrs.evolve(store.flag("x"), default=None) == wanted
    assert plan.changes == [
        "boolean: on",
        "actor new: deny",
        "actor old: cleared",
        "percentage_of_time: cleared",
        "owner: cleared",
    ]
    assert store.flag("other").boolean is True
    [record] = [e for e in store.audit("x") if e.action == "import"]
    assert (record.author, record.value) == ("ops", {"set": 2, "cleared": 3})


def test_a_dry_run_plans_and_writes_nothing() -> None:
    store = FlagStore(LocalMap("a"))
    store.enable("x")
    entries = dict(store._map.items())
    [plan] = store.import_flags([Flag("x", actors={"u": True})], dry_run=True)
    assert plan.changes == ["boolean: cleared", "actor u: on"]
    assert dict(store._map.items()) == entries


def test_a_bad_flag_anywhere_writes_nothing_and_says_where() -> None:
    store = FlagStore(LocalMap("a"))
    good = Flag("fine", boolean=True)
    bad = Flag("worse", actors={"has space": True})
    with pytest.raises(FlagFormatError) as caught:
        store.import_flags([good, bad])
    assert caught.value.pointer == "/1/actors/has space"
    with pytest.raises(FlagFormatError) as caught:
        store.import_flags([good, good])
    assert caught.value.pointer == "/1/name"
    assert store.names() == set()
    assert store.audit() == []


@pytest.mark.parametrize(
    ("doc", "pointer", "words"),
    [
        ([], "", "a JSON object"),
        ({"format": "other", "version": 1, "flags": []}, "/format", "not a chorus export"),
        (document() | {"version": 2}, "/version", "reads version 1 only"),
        (document() | {"flagz": []}, "/flagz", "unknown field"),
        (document() | {"flags": {}}, "/flags", "a list of flags"),
        (document({"boolean": True}), "/flags/0/name", "every flag has a name"),
        (document({"name": "a", "percentage": 0.5}), "/flags/0/percentage", "unknown field"),
        (document({"name": "a b"}), "/flags/0/name", "a flag name is"),
        (document({"name": "a", "boolean": "yes"}), "/flags/0/boolean", "true, false"),
        (document({"name": "a", "actors": ["u"]}), "/flags/0/actors", "an object"),
        (document({"name": "a", "groups": {"g/1": True}}), "/flags/0/groups/g~11", "group name"),
        (document({"name": "a", "actors": {"u": 1}}), "/flags/0/actors/u", "true or false"),
        (document({"name": "a", "percentage_of_actors": 2}), "/flags/0/percentage_of_actors", ""),
        (document({"name": "a", "percentage_of_time": True}), "/flags/0/percentage_of_time", ""),
        (document({"name": "a", "expires": "soon"}), "/flags/0/expires", "YYYY-MM-DD"),
        (document({"name": "a", "owner": "x" * 2001}), "/flags/0/owner", "at most 2000"),
        (document({"name": "a"}, {"name": "a"}), "/flags/1/name", "twice"),
    ],
)
def test_a_malformed_document_is_refused_with_a_pointer(doc: Any, pointer: str, words: str) -> None:
    with pytest.raises(FlagFormatError) as caught:
        parse_export(doc)
    assert caught.value.pointer == pointer
    assert words in caught.value.message


def test_a_flag_left_out_fields_means_unset_and_dates_are_canonical() -> None:
    [flag] = parse_export(document({"name": "a", "expires": "2027-01-31", "boolean": None}))
    assert flag == Flag("a", expires="2027-01-31")
    assert flag_to_json(flag)["actors"] == {}


# -- defaults from an export -------------------------------------------------------------


def test_a_flag_default_answers_with_its_gates_until_the_cluster_holds_one() -> None:
    default = Flag("beta", actors={"ann": True}, groups={"staff": True})
    store = FlagStore(LocalMap("a"), defaults={"beta": default})
    assert store.explain("beta", "ann") == (True, "default")
    assert store.explain("beta", "bob", ["staff"]) == (True, "default")
    assert store.enabled("beta", "bob") is False
    assert store.flag("beta").default == default
    store.disable("beta")  # the cluster's word wins over the default
    assert store.explain("beta", "ann") == (False, "boolean")
    store.clear("beta")
    assert store.enabled("beta", "ann") is True
    assert store.export() == []  # a default is not the cluster's: never exported


def test_a_bad_default_is_refused() -> None:
    with pytest.raises(ValueError, match="named"):
        FlagStore(LocalMap("a"), defaults={"a": Flag("b", boolean=True)})
    with pytest.raises(FlagFormatError):
        FlagStore(LocalMap("a"), defaults={"a": Flag("a", percentage_of_time=3)})
    with pytest.raises(ValueError, match="a bool or a Flag"):
        FlagStore(LocalMap("a"), defaults={"a": "on"})  # type: ignore[dict-item]


# -- over HTTP ---------------------------------------------------------------------------


@pytest.fixture
def api() -> Any:
    store = FlagStore(LocalMap("n1"), defaults={"dark": True})
    app = create_app(store, token=TOKEN, node_id="n1", synced=lambda: True, cluster=lambda: {})
    client = TestClient(app)
    client.store = store  # type: ignore[attr-defined]
    return client


def test_http_export_holds_the_clusters_flags_not_the_defaults(api: Any) -> None:
    api.put("/flags/x", json={"actor": "u1", "enabled": True}, headers=AUTH)
    api.put("/flags/y/meta", json={"owner": "ops"}, headers=AUTH)
    exported = api.get("/export").json()
    assert exported["format"] == "chorus-flags"
    assert exported["node"] == "n1"
    assert datetime.datetime.fromisoformat(exported["exported_at"]).tzinfo is not None
    assert [f["name"] for f in exported["flags"]] == ["x", "y"]  # not "dark"
    assert parse_export(exported) == api.store.export()


def test_http_import_dry_run_then_apply_then_nothing(api: Any) -> None:
    body = document({"name": "x", "boolean": True}, {"name": "y", "groups": {"g": False}})
    dry = api.post("/import", json=body, params={"dry_run": "true"}, headers=AUTH).json()
    assert (dry["dry_run"], dry["changed"], dry["unchanged"]) == (True, ["x", "y"], [])
    assert api.store.names() == {"dark"}
    applied = api.post("/import", json=body, params={"author": "ops"}, headers=AUTH).json()
    assert applied["flags"] == [
        {"name": "x", "changes": ["boolean: on"]},
        {"name": "y", "changes": ["group g: deny"]},
    ]
    assert api.store.audit("x")[0].author == "ops"
    again = api.post("/import", json=body, headers=AUTH).json()
    assert (again["changed"], again["unchanged"]) == ([], ["x", "y"])


def test_http_import_refusals_change_nothing(api: Any) -> None:
    body = document({"name": "x", "boolean": True}, {"name": "y", "actors": {"a b": True}})
    assert api.post("/import", json=body).status_code == 401
    refused = api.post("/import", json=body, headers=AUTH)
    assert refused.status_code == 422
    assert refused.json()["pointer"] == "/flags/1/actors/a b"
    wrong = api.post("/import", json=body, params={"dry_run": "yes"}, headers=AUTH)
    assert wrong.status_code == 422
    oversized = api.post("/import", content=b" " * (MAX_IMPORT_BYTES + 1), headers=AUTH).status_code
    assert oversized == 413
    assert api.post("/import", content=b"{", headers=AUTH).status_code == 400
    assert api.store.names() == {"dark"}


def test_http_import_takes_an_export_larger_than_a_write_body(api: Any) -> None:
    actors = {f"user-{i}": True for i in range(2000)}  # ~40 KB: over a PUT's 16 KiB
    response = api.post("/import", json=document({"name": "big", "actors": actors}), headers=AUTH)
    assert response.status_code == 200, response.text
    assert api.store.flag("big").actors == actors
