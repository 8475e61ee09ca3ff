"""What the UI tests share: the tokens and a TestClient that keeps the CSRF token."""

import re
from typing import Any

from starlette.testclient import TestClient

from flags import FlagClient, FlagStore
from flags.ui import create_ui

TOKEN = "admin-token-0123456789"
VIEWER = "viewer-token-0123456789"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class UI:
    """A browser of sorts: a TestClient that keeps the CSRF token of the last page."""

    def __init__(self, client: TestClient, store: FlagStore | FlagClient, root: str = "") -> None:
        self.client = client
        self.store = store
        self.root = root
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.client.get(self.root + path, **kwargs)
        self._keep_csrf(response.text)
        return response

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> Any:
        """POST a form with the current CSRF token (unless ``data`` has its own)."""
        form = {"csrf": self.csrf, **(data or {})}
        response = self.client.post(self.root + path, data=form, **kwargs)
        self._keep_csrf(response.text)
        return response

    def login(self, token: str = TOKEN, name: str = "") -> Any:
        self.get("/login")
        return self.post("/login", {"token": token, "name": name})

    def _keep_csrf(self, text: str) -> None:
        found = _CSRF.search(text)
        if found:
            self.csrf = found.group(1)


def logged_in(store: FlagStore, token: str = TOKEN, **options: Any) -> UI:
    """A UI over ``store`` made with ``options``, logged in with ``token``."""
    ui = UI(TestClient(create_ui(store, token=TOKEN, **options)), store)
    ui.login(token)
    return ui
