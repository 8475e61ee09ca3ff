"""Every form of the flags and flag pages changes the store as it says, and only so."""

import datetime
import re
from typing import Any

import pytest

from flags import FlagStore, LocalMap
from flags.ui._views import when
from tests.flags.ui.ui_helpers import UI, logged_in
from transport import WriteRefused


def test_create_makes_a_flag_with_no_gate_and_shows_its_page(admin: UI, store: FlagStore) -> None:
    admin.get("/")
    response = admin.post("/create", {"name": "new-checkout"}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/flags/new-checkout")
    assert "new-checkout" in store.names()
    assert not store.flag("new-checkout").has_gates
    page = admin.get("/flags/new-checkout")
    assert page.status_code == 200
    assert '<h1 class="name">new-checkout</h1>' in page.text
    assert "No gate yet" in page.text
    assert "new-checkout" in admin.get("/").text


def test_create_refuses_a_bad_name_with_422(admin: UI, store: FlagStore) -> None:
    admin.get("/")
    response = admin.post("/create", {"name": "has space"})
    assert response.status_code == 422
    assert 'role="alert"' in response.text
    assert store.names() == set()


@pytest.mark.parametrize(
    ("form", "check"),
    [
        ({"action": "enable"}, lambda f: f.boolean is True),
        ({"action": "actor-enable", "actor": "user-1"}, lambda f: f.actors == {"user-1": True}),
        ({"action": "actor-deny", "actor": "user-1"}, lambda f: f.actors == {"user-1": False}),
        ({"action": "group-enable", "group": "beta"}, lambda f: f.groups == {"beta": True}),
        ({"action": "group-deny", "group": "beta"}, lambda f: f.groups == {"beta": False}),
        (
            {"action": "percentage_of_actors", "percentage_of_actors": "30"},
            lambda f: f.percentage_of_actors == pytest.approx(0.3),
        ),
        (
            {"action": "percentage_of_time", "percentage_of_time": "2.5"},
            lambda f: f.percentage_of_time == pytest.approx(0.025),
        ),
    ],
)
def test_each_gate_form_sets_its_gate_and_is_audited(
    admin: UI, store: FlagStore, form: dict[str, str], check: Any
) -> None:
    admin.login(name="ann")  # the name the audit log records
    admin.get("/flags/f")
    response = admin.post("/gates/f", form, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/flags/f")
    assert check(store.flag("f"))
    assert store.audit("f")[0].author == "ui:ann"


@pytest.mark.parametrize(
    "form",
    [
        {"action": "actor-enable", "actor": "has space"},
        {"action": "actor-enable", "actor": ""},
        {"action": "percentage_of_actors", "percentage_of_actors": "101"},
        {"action": "percentage_of_actors", "percentage_of_actors": "nan"},
        {"action": "percentage_of_time", "percentage_of_time": "lots"},
        {"action": "explode"},
    ],
)
def test_bad_input_is_422_on_the_page_and_changes_nothing(
    admin: UI, store: FlagStore, form: dict[str, str]
) -> None:
    admin.get("/flags/f")
    response = admin.post("/gates/f", form)
    assert response.status_code == 422
    assert 'role="alert"' in response.text
    assert store.audit() == []


def test_remove_buttons_name_their_gate_and_remove_only_it(admin: UI, store: FlagStore) -> None:
    store.enable("f")
    store.enable_for_actor("f", "user-1")
    store.disable_for_group("f", "banned")
    store.enable_percentage_of_actors("f", 0.3)
    store.enable_percentage_of_time("f", 0.1)
    page = admin.get("/flags/f").text
    labels = re.findall(r'aria-label="(Remove [^"]+)"', page)
    assert labels == [
        "Remove boolean gate",
        "Remove actor gate user-1",
        "Remove group gate banned",
        "Remove percentage of actors gate",
        "Remove percentage of time gate",
    ]
    admin.post("/remove/f", {"kind": "actor", "target": "user-1"})
    admin.post("/remove/f", {"kind": "percentage_of_time"})
    flag = store.flag("f")
    assert (flag.actors, flag.percentage_of_time) == ({}, None)
    assert (flag.boolean, flag.groups, flag.percentage_of_actors) == (True, {"banned": False}, 0.3)
    admin.post("/remove/f", {"kind": "group", "target": "banned"})
    admin.post("/remove/f", {"kind": "boolean"})
    assert store.flag("f").groups == {}
    assert store.flag("f").boolean is None


def test_disable_asks_first_and_only_its_disable_button_applies(
    admin: UI, store: FlagStore
) -> None:
    store.enable("f")
    page = admin.get("/flags/f").text
    # "Disable for everyone" is a GET form: it leads to the question, changes nothing.
    assert re.search(r'<form method="get" action="/disable/f"', page)
    question = admin.get("/disable/f")
    assert "<h1>Disable f?</h1>" in question.text
    assert ">Disable</button>" in question.text
    assert '<form method="get" action="/flags/f"' in question.text  # Cancel: back, no write
    assert ">Cancel</button>" in question.text
    assert store.enabled("f")
    response = admin.post("/disable/f", follow_redirects=False)
    assert response.status_code == 303
    assert store.flag("f").boolean is False
    assert store.audit("f")[0].action == "disable"


def test_metadata_form_writes_only_what_changed(admin: UI, store: FlagStore) -> None:
    store.set_metadata("f", description="old", owner="team-a")
    admin.get("/flags/f")
    admin.post(
        "/metadata/f",
        {"description": "new words", "owner": "team-a", "expires": "2027-01-31"},
    )
    assert store.metadata("f") == {
        "description": "new words",
        "owner": "team-a",
        "expires": "2027-01-31",
    }
    assert store.audit("f")[0].value == {"description": "new words", "expires": "2027-01-31"}
    entries = len(store.audit("f"))
    admin.post("/metadata/f", {"description": "new words", "owner": "team-a", "expires": ""})
    assert len(store.audit("f")) == entries  # nothing differed: nothing written
    response = admin.post("/metadata/f", {"description": "x", "expires": "someday"})
    assert response.status_code == 422
    assert store.metadata("f")["description"] == "new words"


def test_delete_needs_the_typed_name(admin: UI, store: FlagStore) -> None:
    store.enable("f")
    admin.get("/flags/f")
    response = admin.post("/delete/f", {"confirm": "F"})
    assert response.status_code == 422
    assert "does not match" in response.text
    assert store.known("f")
    response = admin.post("/delete/f", {"confirm": "f"}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/")
    assert "f" not in store.names()
    assert store.audit("f")[0].action == "delete"


def test_evaluate_shows_the_answer_and_the_gate_that_decided(admin: UI, store: FlagStore) -> None:
    store.enable_for_actor("f", "ann")
    store.disable_for_group("f", "banned")

    def evaluation(**params: str) -> str:
        page = admin.get("/flags/f", params=params).text
        found = re.search(r'<output id="evaluation"[^>]*>(.*?)</output>', page, re.S)
        assert found is not None
        return re.sub(r"<[^>]+>", "", found.group(1))

    assert evaluation(actor="ann", groups="banned") == "enabled, decided by actor"
    assert evaluation(actor="bob", groups="staff, banned") == "disabled, decided by group"
    assert evaluation(actor="bob", groups="") == "disabled, decided by no_gate"
    assert '<output id="evaluation"' not in admin.get("/flags/f").text  # asked nothing


def test_restore_from_the_history_writes_the_earlier_state_back(
    admin: UI, store: FlagStore
) -> None:
    store.enable_for_actor("f", "user-1")
    store.enable_percentage_of_actors("f", 0.3)
    earlier = store.audit("f")[0]
    store.enable("f")
    store.clear("f", actor="user-1")
    page = admin.get("/flags/f").text
    label = f'aria-label="Restore the state after the change of {when(earlier.timestamp)}"'
    assert label in page
    response = admin.post("/restore/f", {"timestamp": earlier.timestamp})
    assert response.status_code == 200
    flag = store.flag("f")
    assert (flag.boolean, flag.actors, flag.percentage_of_actors) == (None, {"user-1": True}, 0.3)
    assert (store.audit("f")[0].action, store.audit("f")[0].target) == (
        "restore",
        earlier.timestamp,
    )
    again = admin.post("/restore/f", {"timestamp": earlier.timestamp})
    assert "Nothing to change" in again.text
    response = admin.post("/restore/f", {"timestamp": "0000-nope"})
    assert response.status_code == 422
    assert "no audit entry" in response.text


def test_a_node_that_refuses_writes_gives_503_on_the_page_never_500(admin: UI) -> None:
    class Refusing(LocalMap):
        def check_writable(self, keys: Any, *, values: Any = ()) -> None:
            raise WriteRefused("joining: not synced with the cluster yet")

    store = FlagStore(Refusing("n1"))
    ui = logged_in(store)
    ui.get("/")
    for path, form in (
        ("/create", {"name": "f"}),
        ("/gates/f", {"action": "enable"}),
        ("/disable/f", {}),
        ("/metadata/f", {"description": "d"}),
    ):
        response = ui.post(path, form)
        assert response.status_code == 503, path
        assert "not synced with the cluster yet" in response.text
    assert store.names() == set()


def test_the_flags_page_shows_state_last_change_and_how_long_fully_on(
    admin: UI, store: FlagStore
) -> None:
    clock = [1_700_000_000_000]
    old = FlagStore(LocalMap("n1", wall_ms=lambda: clock[0]))
    old.enable("steady", author="ann")
    old.disable("quiet")
    old.enable_for_actor("ramp", "user-1")
    old.enable_percentage_of_actors("ramp", 0.3)
    ui = logged_in(old)
    rows = {
        name: row
        for row in re.findall(r"<tr>(.*?)</tr>", ui.get("/").text, re.S)
        for name in re.findall(r'<a href="/flags/([^"]+)">', row)
    }
    days = (datetime.datetime.now(datetime.UTC).timestamp() * 1000 - clock[0]) // 86_400_000
    assert ">on<" in rows["steady"]
    assert f"fully on for {int(days)} days" in rows["steady"]
    assert f"fully off for {int(days)} days" in rows["quiet"]
    assert "partial: actors, 30 % of actors" in rows["ramp"]
    assert "fully" not in rows["ramp"]
    assert "by ann" in rows["steady"]


def test_the_filter_keeps_matching_names(admin: UI, store: FlagStore) -> None:
    for name in ("checkout-v2", "search", "Checkout-old"):
        store.enable(name)
    page = admin.get("/", params={"q": "checkout"}).text
    names = re.findall(r'<a href="/flags/([^"]+)">', page)
    assert names == ["Checkout-old", "checkout-v2"]
    assert 'value="checkout"' in page
