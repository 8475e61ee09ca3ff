"""Read-only mode, viewer sessions, and switching off creation and deletion."""

import re
from collections.abc import Callable

import pytest

from flags import FlagStore
from tests.flags.ui.ui_helpers import UI, VIEWER

#: Every write a form can make: (path, form).
WRITES = [
    ("/create", {"name": "g"}),
    ("/gates/f", {"action": "enable"}),
    ("/gates/f", {"action": "actor-enable", "actor": "ann"}),
    ("/remove/f", {"kind": "boolean"}),
    ("/disable/f", {}),
    ("/metadata/f", {"description": "changed"}),
    ("/delete/f", {"confirm": "f"}),
]
WRITE_BUTTONS = (
    "Create flag",
    "Enable for everyone",
    "Disable for everyone",
    "Enable for actor",
    "Deny group",
    "Set percentage of actors",
    "Save metadata",
    "Restore",
    "Remove",
    "Delete flag",
)


def post_forms(page: str) -> list[str]:
    """The actions of the page's POST forms, but log out."""
    actions = re.findall(r'<form method="post" action="([^"]+)"', page)
    return [a for a in actions if not a.endswith("/logout")]


def assert_read_only(ui: UI, store: FlagStore) -> None:
    """``ui`` shows no write control on any page and every write is 403."""
    before = (store.flag("f"), len(store.audit()))
    for path in ("/", "/flags/f"):
        page = ui.get(path).text
        assert post_forms(page) == [], path
        for button in WRITE_BUTTONS:
            assert f">{button}</button>" not in page, (path, button)
    assert "Description" in ui.get("/flags/f").text  # the metadata is still shown
    assert ui.get("/disable/f").status_code == 403
    for path, form in WRITES:
        assert ui.post(path, form).status_code == 403, path
    assert (store.flag("f"), len(store.audit())) == before


@pytest.fixture
def flagged(store: FlagStore) -> FlagStore:
    store.enable_for_actor("f", "ann")
    store.set_metadata("f", description="the flag")
    return store


def test_read_only_mode_renders_no_write_control_and_refuses_writes(
    make_ui: Callable[..., UI], flagged: FlagStore
) -> None:
    ui = make_ui(mode="read-only")
    ui.login()  # even the admin token
    assert_read_only(ui, flagged)


def test_a_viewer_session_is_read_only(make_ui: Callable[..., UI], flagged: FlagStore) -> None:
    ui = make_ui()
    ui.login(VIEWER)
    assert "read-only" in ui.get("/").text
    assert_read_only(ui, flagged)


def test_an_admin_session_has_every_control(admin: UI, flagged: FlagStore) -> None:
    page = admin.get("/flags/f").text
    assert len(post_forms(page)) >= 8
    for button in WRITE_BUTTONS[1:]:
        assert f">{button}</button>" in page, button
    assert ">Create flag</button>" in admin.get("/").text


def test_creation_off_hides_the_form_and_refuses_it(
    make_ui: Callable[..., UI], store: FlagStore
) -> None:
    ui = make_ui(allow_create=False)
    ui.login()
    assert "New flag name" not in ui.get("/").text
    assert ui.post("/create", {"name": "g"}).status_code == 403
    assert store.names() == set()
    # A write on a new name would create it: refused too (tests/flags/ui/test_adversarial.py).
    assert ui.post("/gates/f", {"action": "enable"}).status_code == 403
    assert store.names() == set()
    store.set_metadata("f", description="")  # made elsewhere: the rest works on it
    assert ui.post("/gates/f", {"action": "enable"}).status_code == 200


def test_deletion_off_hides_the_danger_zone_and_refuses_it(
    make_ui: Callable[..., UI], flagged: FlagStore
) -> None:
    ui = make_ui(allow_delete=False)
    ui.login()
    page = ui.get("/flags/f").text
    assert 'id="delete"' not in page
    assert "Delete flag" not in page
    assert ui.post("/delete/f", {"confirm": "f"}).status_code == 403
    assert flagged.known("f")
