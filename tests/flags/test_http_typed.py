"""The HTTP admin's typed-flag endpoints, in process (Starlette's TestClient over a
LocalMap): variants, rules, prerequisites, schedules, segments, evaluation, the 422
pointers into the request's body, and the JSON Schemas served beside them."""

import datetime
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

import flags.http
from flags import Flag, FlagFormatError, FlagStore, LocalMap
from flags._events import flag_json
from flags._schedule import SCHEDULABLE_KINDS
from flags._schema import NAME_PATTERN
from flags._targeting import MAX_CONDITIONS, MAX_SEGMENTS, MAX_VALUES, OPS
from flags._variants import MAX_SPLIT_VARIANTS, MAX_WEIGHT
from flags.http import SCHEMAS, create_app

TOKEN = "typed-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCHEMA_DIR = Path(flags.http.__file__).parent / "schema"


def make_api(**options: Any) -> Any:
    store = FlagStore(LocalMap("n1"))
    app = create_app(store, token=TOKEN, node_id="n1", synced=lambda: True, cluster=dict, **options)
    client = TestClient(app)
    client.store = store  # type: ignore[attr-defined]
    return client


@pytest.fixture
def api() -> Any:
    return make_api()


def ok(answer: Any) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def refused(answer: Any, pointer: str, words: str = "") -> str:
    """Assert a 422 with ``pointer`` and ``words`` in its error; return the error."""
    assert answer.status_code == 422, answer.text
    document = answer.json()
    assert document.get("pointer") == pointer, document
    assert words in document["error"], document
    return str(document["error"])


def colours(api: Any) -> None:
    """Flag "colour": a string flag, on, blue and green, served green by default."""
    ok(
        api.put(
            "/flags/colour/variants",
            json={"type": "string", "variants": {"blue": "#00f", "green": "#0f0"}},
            headers=AUTH,
        )
    )
    ok(api.put("/flags/colour", json={"enabled": True}, headers=AUTH))
    ok(api.put("/flags/colour/fallthrough", json={"variant": "green"}, headers=AUTH))


def evaluate(api: Any, name: str, **context: Any) -> dict[str, Any]:
    return ok(api.post(f"/flags/{name}/evaluate", json={"default": "dflt", **context}))


# -- the flag's JSON ---------------------------------------------------------------


def test_a_boolean_flags_json_has_only_the_fields_it_had_before_typed_flags(api: Any) -> None:
    ok(api.put("/flags/plain", json={"enabled": True}, headers=AUTH))
    fields = {
        "name",
        "boolean",
        "actors",
        "groups",
        "percentage_of_actors",
        "percentage_of_time",
        "description",
        "owner",
        "expires",
        "default",
    }
    listed = ok(api.get("/flags"))["flags"]
    assert [set(f) for f in listed] == [fields]
    assert set(ok(api.get("/flags/plain"))) == fields | {"enabled", "reason", "node", "synced"}
    # A default Flag is shown the same way, typed fields only when set.
    default = Flag("d", boolean=True, variants={"true": True, "false": False})
    shown = flag_json(Flag("d", default=default))
    assert set(shown) == fields
    assert shown["default"]["type"] == "boolean"
    assert shown["default"]["variants"] == {"true": True, "false": False}
    assert "rules" not in shown["default"]


def test_a_typed_flags_json_has_its_rules_in_evaluation_order_with_their_ids(api: Any) -> None:
    colours(api)
    serve = {"variant": "blue"}
    ok(api.put("/flags/colour/rules/zeta", json={"serve": serve}, headers=AUTH))
    ok(api.put("/flags/colour/rules/alpha", json={"serve": serve}, headers=AUTH))  # goes last
    ok(
        api.put(
            "/flags/colour/rules/mid",
            json={"serve": serve, "before": "alpha", "author": "ann"},
            headers=AUTH,
        )
    )
    flag = ok(api.get("/flags/colour"))
    assert [r["id"] for r in flag["rules"]] == ["zeta", "mid", "alpha"]
    assert list(flag["rules"][0]) == ["id", "position", "conditions", "segments", "serve"]
    assert flag["type"] == "string"
    assert flag["variants"] == {"blue": "#00f", "green": "#0f0"}
    assert flag["fallthrough"] == {"variant": "green"}
    for unset in ("off_variant", "prerequisites", "schedules"):
        assert unset not in flag
    assert api.store.audit("colour")[0].action == "set_rule"
    assert api.store.audit("colour")[0].author == "ann"
    # Moved after another: the answer is the flag in its new order.
    moved = ok(
        api.put("/flags/colour/rules/zeta", json={"serve": serve, "after": "alpha"}, headers=AUTH)
    )
    assert [r["id"] for r in moved["rules"]] == ["mid", "alpha", "zeta"]


# -- each endpoint -----------------------------------------------------------------


def test_variants_one_by_one_and_off_variant(api: Any) -> None:
    colours(api)
    flag = ok(api.put("/flags/colour/variants/red", json={"value": "#f00"}, headers=AUTH))
    assert flag["variants"] == {"blue": "#00f", "green": "#0f0", "red": "#f00"}
    flag = ok(api.put("/flags/colour/off_variant", json={"variant": "red"}, headers=AUTH))
    assert flag["off_variant"] == "red"
    ok(api.put("/flags/colour", json={"enabled": False}, headers=AUTH))
    assert evaluate(api, "colour")["value"] == "#f00"
    assert evaluate(api, "colour")["reason"] == "DISABLED"
    flag = ok(api.delete("/flags/colour/off_variant", params={"author": "bob"}, headers=AUTH))
    assert "off_variant" not in flag
    assert api.store.audit("colour")[0].author == "bob"
    assert evaluate(api, "colour")["value"] == "dflt"
    flag = ok(api.delete("/flags/colour/variants/red", headers=AUTH))
    assert flag["variants"] == {"blue": "#00f", "green": "#0f0"}
    # set_variants: exactly these (green removed), the type kept.
    flag = ok(api.put("/flags/colour/variants", json={"variants": {"blue": "b"}}, headers=AUTH))
    assert (flag["type"], flag["variants"]) == ("string", {"blue": "b"})


def test_deleting_a_part_the_flag_lacks_is_404_and_writes_nothing(api: Any) -> None:
    colours(api)
    before = len(api.store.audit("colour"))
    for path in (
        "variants/purple",
        "off_variant",
        "rules/nope",
        "prerequisites/other",
        "schedules/nope",
    ):
        answer = api.delete(f"/flags/colour/{path}", headers=AUTH)
        assert answer.status_code == 404, path
        assert "colour" in answer.json()["error"]
    assert len(api.store.audit("colour")) == before
    answer = api.delete("/flags/nothing/rules/r1", headers=AUTH)
    assert answer.status_code == 404
    assert answer.json()["error"].startswith("no flag named 'nothing'")
    assert api.delete("/segments/nope", headers=AUTH).status_code == 404
    ok(api.delete("/flags/colour/fallthrough", headers=AUTH))
    assert api.delete("/flags/colour/fallthrough", headers=AUTH).status_code == 404


def test_rules_with_conditions_segments_and_splits_evaluate(api: Any) -> None:
    colours(api)
    ok(
        api.put(
            "/segments/adults",
            json={"conditions": [{"attribute": "age", "op": "gte", "values": [18]}]},
            headers=AUTH,
        )
    )
    rule = {
        "conditions": [{"attribute": "country", "op": "in", "values": ["fr", "de"]}],
        "segments": ["adults"],
        "serve": {"variant": "blue"},
    }
    ok(api.put("/flags/colour/rules/eu", json=rule, headers=AUTH))
    hit = evaluate(api, "colour", actor="u1", attributes={"country": "fr", "age": 30})
    assert hit == {
        "name": "colour",
        "value": "#00f",
        "variant": "blue",
        "reason": "TARGETING_MATCH",
        "detail": "eu",
        "node": "n1",
    }
    young = evaluate(api, "colour", actor="u1", attributes={"country": "fr", "age": 12})
    assert (young["variant"], young["reason"]) == ("green", "DEFAULT")
    # A split: every actor gets one of its variants, the same one each time.
    split = {"split": {"blue": 50, "green": 50}}
    ok(api.put("/flags/colour/rules/eu", json={**rule, "serve": split}, headers=AUTH))
    seen = set()
    for actor in [f"user-{i}" for i in range(40)]:
        got = evaluate(api, "colour", actor=actor, attributes={"country": "de", "age": 40})
        assert got["reason"] == "SPLIT"
        assert got == evaluate(api, "colour", actor=actor, attributes={"country": "de", "age": 40})
        seen.add(got["variant"])
    assert seen == {"blue", "green"}
    # Groups reach conditions on "groups".
    ok(
        api.put(
            "/flags/colour/rules/staff",
            json={
                "conditions": [{"attribute": "groups", "op": "in", "values": ["staff"]}],
                "serve": {"variant": "blue"},
                "before": "eu",
            },
            headers=AUTH,
        )
    )
    got = evaluate(api, "colour", actor="u1", groups=["staff"])
    assert (got["variant"], got["detail"]) == ("blue", "staff")
    flag = ok(api.delete("/flags/colour/rules/staff", headers=AUTH))
    assert [r["id"] for r in flag["rules"]] == ["eu"]


def test_prerequisites_gate_a_flag_and_cycles_are_refused(api: Any) -> None:
    colours(api)
    ok(api.put("/flags/colour/off_variant", json={"variant": "blue"}, headers=AUTH))
    ok(api.put("/flags/checkout", json={"actor": "ann", "enabled": True}, headers=AUTH))
    flag = ok(
        api.put("/flags/colour/prerequisites/checkout", json={"variants": ["true"]}, headers=AUTH)
    )
    assert flag["prerequisites"] == {"checkout": ["true"]}
    met = evaluate(api, "colour", actor="ann")
    assert (met["variant"], met["reason"]) == ("green", "DEFAULT")
    unmet = evaluate(api, "colour", actor="bob")
    assert unmet == {**unmet, "variant": "blue", "reason": "DISABLED"}
    assert unmet["detail"] == "prerequisite checkout"
    # checkout -> colour would close a cycle: refused, and the message shows it.
    error = refused(
        api.put("/flags/checkout/prerequisites/colour", json={"variants": ["blue"]}, headers=AUTH),
        "",
    )
    assert "a prerequisite cycle: checkout -> colour -> checkout" in error
    refused(
        api.put("/flags/colour/prerequisites/nowhere", json={"variants": ["true"]}, headers=AUTH),
        "",
        "no flag nowhere",
    )
    refused(
        api.put("/flags/colour/prerequisites/checkout", json={"variants": ["maybe"]}, headers=AUTH),
        "",
        "has no variant 'maybe'",
    )
    refused(
        api.put("/flags/colour/prerequisites/checkout", json={"variants": "true"}, headers=AUTH),
        "/variants",
        "a list",
    )
    flag = ok(api.delete("/flags/colour/prerequisites/checkout", headers=AUTH))
    assert "prerequisites" not in flag
    assert evaluate(api, "colour", actor="bob")["variant"] == "green"


def test_schedules_by_date_time_or_ms_apply_at_their_time(api: Any) -> None:
    colours(api)
    flag = ok(
        api.put(
            "/flags/colour/schedules/launch",
            json={
                "at": "2030-01-01T09:00:00+01:00",
                "set": [["fallthrough", {"variant": "blue"}]],
                "delete": [["off_variant"]],
            },
            headers=AUTH,
        )
    )
    at_ms = int(datetime.datetime(2030, 1, 1, 8, tzinfo=datetime.UTC).timestamp() * 1000)
    assert flag["schedules"] == {
        "launch": {
            "at_ms": at_ms,
            "set": [["fallthrough", {"variant": "blue"}]],
            "delete": [["off_variant"]],
        }
    }
    assert evaluate(api, "colour")["variant"] == "green"  # not yet
    api.store.apply_schedules(at_ms)
    assert evaluate(api, "colour")["variant"] == "blue"
    ok(api.put("/flags/colour/schedules/ms", json={"at": at_ms + 1}, headers=AUTH))
    assert api.store.flag("colour").schedules["ms"]["at_ms"] == at_ms + 1
    flag = ok(api.delete("/flags/colour/schedules/ms", headers=AUTH))
    assert set(flag["schedules"]) == {"launch"}


def test_segments_are_listed_read_set_and_deleted(api: Any) -> None:
    condition = {"attribute": "plan", "op": "in", "values": ["pro"]}
    answer = ok(api.put("/segments/pro", json={"conditions": [condition]}, headers=AUTH))
    assert answer == {"node": "n1", "segments": {"pro": [condition]}}
    assert ok(api.get("/segments"))["segments"] == {"pro": [condition]}
    assert ok(api.get("/segments/pro"))["conditions"] == [condition]
    assert api.get("/segments/none").status_code == 404
    [record] = api.store.audit("")
    assert (record.action, record.target) == ("set_segment", "pro")
    assert ok(api.delete("/segments/pro", params={"author": "ann"}, headers=AUTH))["segments"] == {}
    assert api.store.audit("")[0].author == "ann"


def test_evaluate_an_unknown_flag_serves_the_default_and_checks_its_body(api: Any) -> None:
    assert evaluate(api, "nope") == {
        "name": "nope",
        "value": "dflt",
        "variant": None,
        "reason": "ERROR",
        "detail": "unknown flag",
        "node": "n1",
    }
    post = api.post
    refused(post("/flags/x/evaluate", json={}), "/default", "required")
    refused(post("/flags/x/evaluate", json={"default": 1, "actr": "u"}), "/actr", "unknown field")
    refused(post("/flags/x/evaluate", json={"default": 1, "actor": 5}), "/actor")
    refused(post("/flags/x/evaluate", json={"default": 1, "groups": ["a", 2]}), "/groups/1")
    refused(post("/flags/x/evaluate", json={"default": 1, "attributes": []}), "/attributes")


# -- refusals: 422 with a pointer into the body, 401 without a token -----------------


@pytest.mark.parametrize(
    ("path", "body", "pointer", "words"),
    [
        # A bad op, and other bad fields of a rule.
        (
            "/flags/colour/rules/r1",
            {
                "conditions": [{"attribute": "a", "op": "like", "values": ["x"]}],
                "serve": {"variant": "blue"},
            },
            "/conditions/0/op",
            "not 'like'",
        ),
        (
            "/flags/colour/rules/r1",
            {
                "conditions": [{"attribute": "v", "op": "semver_gt", "values": ["1.2"]}],
                "serve": {"variant": "blue"},
            },
            "/conditions/0/values/0",
            "SemVer",
        ),
        (
            "/flags/colour/rules/r1",
            {"serve": {"split": {"blue": -1}}},
            "/serve/split/blue",
            "weight",
        ),
        (
            "/flags/colour/rules/r1",
            {"serve": {"variant": "blue"}, "colour": 1},
            "/colour",
            "unknown field",
        ),
        ("/flags/colour/rules/r1", {"conditions": []}, "/serve", "required"),
        (
            "/flags/colour/rules/r1",
            {"serve": {"variant": "blue"}, "segments": "beta"},
            "/segments",
            "list",
        ),
        (
            "/flags/colour/rules/r1",
            {"serve": {"variant": "blue"}, "segments": ["a b"]},
            "/segments/0",
            "segment name",
        ),
        (
            "/flags/colour/rules/r1",
            {"serve": {"variant": "blue"}, "before": "nope"},
            "/before",
            "no rule",
        ),
        (
            "/flags/colour/rules/r1",
            {"serve": {"variant": "blue"}, "before": "x", "after": "y"},
            "/after",
            "not both",
        ),
        # A bad variant value for the flag's type.
        (
            "/flags/colour/variants/red",
            {"value": 7},
            "/value",
            "a string flag's variant is a string",
        ),
        (
            "/flags/colour/variants",
            {"type": "integer", "variants": {"one": "1"}},
            "/variants/one",
            "integer",
        ),
        ("/flags/colour/variants", {"type": "colour", "variants": {}}, "/type", "one of"),
        ("/flags/colour/variants", {"variants": {}, "value": 1}, "/value", "unknown field"),
        ("/flags/colour/off_variant", {"variant": 3}, "/variant", "a variant name, not 3"),
        ("/flags/colour/off_variant", {"variant": "a b"}, "/variant", "a variant name"),
        ("/flags/colour/fallthrough", {"split": {"blue": 0}}, "/split", "positive weight"),
        ("/flags/colour/fallthrough", {"variant": "blue", "split": {"blue": 1}}, "", "the body is"),
        ("/flags/colour/fallthrough", {"varient": "blue"}, "/varient", "unknown field"),
        ("/flags/colour/schedules/s1", {"at": "tomorrow"}, "/at", "RFC 3339"),
        ("/flags/colour/schedules/s1", {"at": 2**60}, "/at", "HLC wall ms"),
        ("/flags/colour/schedules/s1", {"at": 1, "set": [["colour", 1]]}, "/set/0/0", "one of"),
        ("/flags/colour/schedules/s1", {"at": 1, "set": [5]}, "/set/0", "list"),
        (
            "/flags/colour/schedules/s1",
            {"at": 1, "set": [["boolean", "yes"]]},
            "/set",
            "not a bool",
        ),
        (
            "/segments/beta",
            {"conditions": [{"attribute": "a", "op": "in", "values": []}]},
            "/conditions/0/values",
            "at least one",
        ),
        (
            "/segments/beta",
            {"conditions": [{"attribute": "a", "op": "in"}]},
            "/conditions/0/values",
            "needs",
        ),
        ("/segments/beta", {}, "/conditions", "required"),
    ],
)
def test_a_bad_field_is_422_with_its_pointer_into_the_body(
    api: Any, path: str, body: dict[str, Any], pointer: str, words: str
) -> None:
    colours(api)
    before = dict(api.store._map.items())
    refused(api.put(path, json=body, headers=AUTH), pointer, words)
    assert dict(api.store._map.items()) == before  # nothing written


def test_a_store_error_elsewhere_in_the_flag_has_the_flags_pointer_in_its_message() -> None:
    with pytest.raises(flags.http._Rejected) as caught, flags.http.body_pointers(("/rules/r1", "")):
        raise FlagFormatError("/variants/x", "bad")
    assert caught.value.pointer == ""
    assert str(caught.value) == "the flag's /variants/x: bad"


WRITES = [
    ("PUT", "/flags/colour/variants", {"variants": {}}),
    ("PUT", "/flags/colour/variants/red", {"value": "#f00"}),
    ("DELETE", "/flags/colour/variants/blue", None),
    ("PUT", "/flags/colour/off_variant", {"variant": "blue"}),
    ("DELETE", "/flags/colour/off_variant", None),
    ("PUT", "/flags/colour/fallthrough", {"variant": "blue"}),
    ("DELETE", "/flags/colour/fallthrough", None),
    ("PUT", "/flags/colour/rules/r1", {"serve": {"variant": "blue"}}),
    ("DELETE", "/flags/colour/rules/r1", None),
    ("PUT", "/flags/colour/prerequisites/other", {"variants": ["true"]}),
    ("DELETE", "/flags/colour/prerequisites/other", None),
    ("PUT", "/flags/colour/schedules/s1", {"at": 1}),
    ("DELETE", "/flags/colour/schedules/s1", None),
    ("PUT", "/segments/beta", {"conditions": []}),
    ("DELETE", "/segments/beta", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_every_write_needs_the_admin_token(
    method: str, path: str, body: dict[str, Any] | None
) -> None:
    api = make_api(viewer_token="viewer-token")
    colours(api)
    before = dict(api.store._map.items())
    for headers in ({}, {"Authorization": "Bearer viewer-token"}, {"Authorization": "Bearer x"}):
        answer = api.request(method, path, json=body, headers=headers)
        assert answer.status_code == 401, (path, headers)
    assert dict(api.store._map.items()) == before


def test_evaluate_and_segments_are_reads_and_the_schemas_need_no_token() -> None:
    api = make_api(reads_need_token=True, viewer_token="viewer-token")
    viewer = {"Authorization": "Bearer viewer-token"}
    assert api.post("/flags/x/evaluate", json={"default": 1}).status_code == 401
    assert api.post("/flags/x/evaluate", json={"default": 1}, headers=viewer).status_code == 200
    assert api.get("/segments").status_code == 401
    assert api.get("/segments", headers=viewer).status_code == 200
    assert api.get("/segments/x").status_code == 401
    for name in SCHEMAS:
        answer = api.get(f"/schema/{name}.json")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/schema+json"
        assert answer.json() == json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    assert api.get("/schema/flag.json").status_code == 404
    assert api.get("/schema/..%2Fhttp.json").status_code == 404


# -- the JSON Schemas agree with the store's checks -----------------------------------


def schema(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    return document


def validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator of schema ``name``, its relative references ("condition.json")
    resolved among the files as a client fetching them from a node would."""
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (f"{n}.json", referencing.Resource.from_contents(schema(n))) for n in SCHEMAS
    )
    return jsonschema.Draft202012Validator(schema(name), registry=registry)


@pytest.mark.parametrize("name", SCHEMAS)
def test_each_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(schema(name))
    assert schema(name)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_schemas_limits_are_the_stores() -> None:
    condition = schema("condition")
    assert condition["properties"]["op"]["enum"] == list(OPS)
    assert condition["properties"]["values"]["maxItems"] == MAX_VALUES
    rule = schema("rule")
    assert rule["properties"]["conditions"]["maxItems"] == MAX_CONDITIONS
    assert rule["properties"]["segments"]["maxItems"] == MAX_SEGMENTS
    split = schema("serve")["oneOf"][1]["properties"]["split"]
    assert split["maxProperties"] == MAX_SPLIT_VARIANTS
    assert split["additionalProperties"]["maximum"] == MAX_WEIGHT
    for name in ("serve", "rule", "schedule"):
        assert schema(name)["$defs"]["name"]["pattern"] == f"^{NAME_PATTERN.pattern}$".replace(
            r"\Z", "$"
        )
    kinds = schema("schedule")["properties"]["set"]["items"]["prefixItems"][0]["enum"]
    assert kinds == list(SCHEDULABLE_KINDS)
    at = schema("schedule")["properties"]["at"]["oneOf"][1]["pattern"]
    assert at == f"^{flags.http.SCHEDULE_TIME.pattern}$".replace("(?:", "(")


names = st.from_regex(r"[a-z][a-z0-9._-]{0,8}", fullmatch=True)
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=10)
values_by_op = {
    "in": st.one_of(texts, st.integers(-100, 100), st.booleans()),
    "not_in": st.one_of(texts, st.floats(-1e6, 1e6)),
    "lt": st.integers(-100, 100),
    "gte": st.floats(-1e6, 1e6),
    "semver_gte": st.sampled_from(["1.2.3", "0.0.1-rc.1", "10.0.0+build.5"]),
    "starts_with": texts,
    "contains": texts,
    "before": st.one_of(
        st.integers(0, 2**40),
        st.sampled_from(["2026-01-01", "2026-12-01T09:00:00Z", "2026-12-01t09:00:00.5+02:00"]),
    ),
}
conditions = st.sampled_from(sorted(values_by_op)).flatmap(
    lambda op: st.fixed_dictionaries(
        {
            "attribute": st.sampled_from(["country", "age", "actor", "groups", "plan"]),
            "op": st.just(op),
            "values": st.lists(values_by_op[op], min_size=1, max_size=3),
        }
    )
)
serves = st.one_of(
    st.fixed_dictionaries({"variant": st.sampled_from(["blue", "green"])}),
    st.fixed_dictionaries(
        {
            "split": st.dictionaries(
                st.sampled_from(["blue", "green", "red"]),
                st.integers(0, MAX_WEIGHT),
                min_size=1,
            ).filter(lambda split: any(split.values()))
        }
    ),
)
rules = st.fixed_dictionaries(
    {"serve": serves},
    optional={
        "conditions": st.lists(conditions, max_size=4),
        "segments": st.lists(st.just("adults"), max_size=1),
        "author": st.just("ann"),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules)
def test_generated_valid_rules_validate_and_the_store_takes_them(rule: dict[str, Any]) -> None:
    validator("rule").validate(rule)
    api = make_api()
    variants = {"blue": "b", "green": "g", "red": "r"}  # every name the rules serve
    ok(
        api.put(
            "/flags/colour/variants", json={"type": "string", "variants": variants}, headers=AUTH
        )
    )
    answer = api.put("/flags/colour/rules/r1", json=rule, headers=AUTH)
    assert answer.status_code == 200, answer.text
    [stored] = answer.json()["rules"]
    assert stored["conditions"] == rule.get("conditions", [])
    assert stored["serve"] == rule["serve"]


@settings(max_examples=30, deadline=None)
@given(st.lists(conditions, max_size=4))
def test_generated_valid_segments_validate_and_the_store_takes_them(
    segment: list[dict[str, Any]],
) -> None:
    validator("segment").validate({"conditions": segment})
    api = make_api()
    ok(api.put("/segments/s", json={"conditions": segment}, headers=AUTH))


GOOD_CONDITION = {"attribute": "a", "op": "in", "values": ["x"]}
MALFORMED = [
    # (schema, path, body)
    ("rule", "/flags/colour/rules/r1", {}),
    ("rule", "/flags/colour/rules/r1", {"serve": {}}),
    ("rule", "/flags/colour/rules/r1", {"serve": {"variant": "blue"}, "extra": 1}),
    ("rule", "/flags/colour/rules/r1", {"serve": {"variant": "a b"}}),
    ("rule", "/flags/colour/rules/r1", {"serve": {"variant": "blue", "split": {"blue": 1}}}),
    ("rule", "/flags/colour/rules/r1", {"serve": {"split": {}}}),
    ("rule", "/flags/colour/rules/r1", {"serve": {"split": {"blue": 0, "green": 0}}}),
    ("rule", "/flags/colour/rules/r1", {"serve": {"split": {"blue": MAX_WEIGHT + 1}}}),
    ("rule", "/flags/colour/rules/r1", {"serve": {"split": {"blue": "1"}}}),
    ("rule", "/flags/colour/rules/r1", {"serve": {"variant": "blue"}, "segments": ["."]}),
    ("rule", "/flags/colour/rules/r1", {"serve": {"variant": "blue"}, "segments": {}}),
    ("rule", "/flags/colour/rules/r1", {"serve": {"variant": "blue"}, "before": "a", "after": "b"}),
    (
        "rule",
        "/flags/colour/rules/r1",
        {"serve": {"variant": "blue"}, "conditions": [GOOD_CONDITION] * (MAX_CONDITIONS + 1)},
    ),
    ("segment", "/segments/s", {"conditions": [{**GOOD_CONDITION, "op": "regex"}]}),
    ("segment", "/segments/s", {"conditions": [{**GOOD_CONDITION, "values": []}]}),
    ("segment", "/segments/s", {"conditions": [{**GOOD_CONDITION, "values": ["x"] * 101}]}),
    ("segment", "/segments/s", {"conditions": [{**GOOD_CONDITION, "values": [None]}]}),
    ("segment", "/segments/s", {"conditions": [{**GOOD_CONDITION, "values": [["x"]]}]}),
    ("segment", "/segments/s", {"conditions": [{**GOOD_CONDITION, "attribute": ""}]}),
    ("segment", "/segments/s", {"conditions": [{**GOOD_CONDITION, "attribute": "a" * 201}]}),
    ("segment", "/segments/s", {"conditions": [{**GOOD_CONDITION, "also": 1}]}),
    ("segment", "/segments/s", {"conditions": [{"attribute": "a", "op": "in"}]}),
    ("segment", "/segments/s", {"conditions": [{"attribute": "n", "op": "lt", "values": ["1"]}]}),
    ("segment", "/segments/s", {"conditions": [{"attribute": "n", "op": "gt", "values": [True]}]}),
    (
        "segment",
        "/segments/s",
        {"conditions": [{"attribute": "v", "op": "semver_eq", "values": ["v1"]}]},
    ),
    (
        "segment",
        "/segments/s",
        {"conditions": [{"attribute": "s", "op": "contains", "values": [1]}]},
    ),
    (
        "segment",
        "/segments/s",
        {"conditions": [{"attribute": "t", "op": "after", "values": ["May"]}]},
    ),
    ("segment", "/segments/s", {"conditions": "x"}),
    ("segment", "/segments/s", {"conditions": [], "colour": 1}),
    ("schedule", "/flags/colour/schedules/s1", {}),
    ("schedule", "/flags/colour/schedules/s1", {"at": -1}),
    ("schedule", "/flags/colour/schedules/s1", {"at": 2**48}),
    ("schedule", "/flags/colour/schedules/s1", {"at": "2026-12-01"}),
    ("schedule", "/flags/colour/schedules/s1", {"at": "2026-12-01T09:00:00"}),
    ("schedule", "/flags/colour/schedules/s1", {"at": True}),
    ("schedule", "/flags/colour/schedules/s1", {"at": 1, "set": [["boolean"]]}),
    ("schedule", "/flags/colour/schedules/s1", {"at": 1, "set": [["audit", "x", 1]]}),
    ("schedule", "/flags/colour/schedules/s1", {"at": 1, "delete": [["actor", "a b"]]}),
    ("schedule", "/flags/colour/schedules/s1", {"at": 1, "delete": [[]]}),
    ("schedule", "/flags/colour/schedules/s1", {"at": 1, "delete": "boolean"}),
    ("schedule", "/flags/colour/schedules/s1", {"at": 1, "when": 2}),
]


@pytest.mark.parametrize(("name", "path", "body"), MALFORMED)
def test_malformed_bodies_are_refused_by_the_schema_and_by_the_node(
    api: Any, name: str, path: str, body: dict[str, Any]
) -> None:
    colours(api)
    assert not validator(name).is_valid(body)
    assert api.put(path, json=body, headers=AUTH).status_code == 422


def test_valid_examples_of_each_schema_are_taken_by_the_node(api: Any) -> None:
    colours(api)
    examples = [
        ("schedule", "/flags/colour/schedules/s1", {"at": "2099-12-01T09:00:00.123456789Z"}),
        (
            "schedule",
            "/flags/colour/schedules/s2",
            {
                "at": 4_102_444_800_000,
                "set": [
                    ["actor", "u1", True],
                    ["rule", "r9", {"position": "V", "serve": {"variant": "blue"}}],
                ],
                "delete": [["percentage_of_time"], ["meta", "owner"]],
                "author": "ann",
            },
        ),
        ("segment", "/segments/empty", {"conditions": []}),
        ("rule", "/flags/colour/rules/r2", {"serve": {"split": {"blue": 0, "green": 1}}}),
    ]
    for name, path, body in examples:
        validator(name).validate(body)
        ok(api.put(path, json=body, headers=AUTH))
    serve_schema = validator("serve")
    serve_schema.validate({"variant": "blue"})
    assert not serve_schema.is_valid({"variant": "blue", "author": "ann"})
    validator("condition").validate(
        {"attribute": "t", "op": "before", "values": [1.5, "2026-01-01"]}
    )


def test_get_shows_what_a_typed_flag_serves_for_the_actor(api: Any) -> None:
    colours(api)
    ok(
        api.put(
            "/flags/colour/rules/vip",
            json={
                "conditions": [{"attribute": "actor", "op": "in", "values": ["ann"]}],
                "serve": {"variant": "blue"},
            },
            headers=AUTH,
        )
    )
    for actor, variant, reason in (("ann", "blue", "TARGETING_MATCH"), ("bob", "green", "DEFAULT")):
        document = ok(api.get("/flags/colour", params={"actor": actor}))
        assert document["serves"]["variant"] == variant
        assert document["serves"]["reason"] == reason
    api.store.enable("plain")
    assert "serves" not in ok(api.get("/flags/plain"))  # a boolean flag of gates: as before
