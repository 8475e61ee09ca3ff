"""The web UI in process: Starlette's TestClient over a `FlagStore(LocalMap(...))`."""

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from flags import FlagStore, LocalMap
from flags.ui import create_ui
from tests.flags.ui.ui_helpers import TOKEN, UI, VIEWER


@pytest.fixture
def store() -> FlagStore:
    return FlagStore(LocalMap("n1"))


@pytest.fixture
def make_ui(store: FlagStore) -> Callable[..., UI]:
    """``make_ui(**create_ui options)``: a UI over ``store``, not logged in."""

    def make(**options: Any) -> UI:
        options.setdefault("token", TOKEN)
        options.setdefault("viewer_token", VIEWER)
        return UI(TestClient(create_ui(store, **options)), store)

    return make


@pytest.fixture
def admin(make_ui: Callable[..., UI]) -> UI:
    """A UI with an admin session."""
    ui = make_ui()
    assert ui.login().status_code == 200
    return ui
