"""The web UI: flags, one flag, and the cluster, as server-rendered pages.

`create_ui` builds it as an ASGI app (Starlette) to mount anywhere: ``chorus serve``
mounts it at ``/ui``, and a Starlette or FastAPI app can mount it on a path of its
own, over a `flags.FlagClient`. Jinja2 templates and the stylesheet and script ship
in the package; nothing is loaded from elsewhere. In a FastAPI app::

    client = flags.FlagClient()  # CHORUS_JOIN, CHORUS_SECRET from the environment
    app = FastAPI()
    app.mount("/admin/flags", create_ui(client, token=os.environ["CHORUS_UI_TOKEN"]))

Log in at ``/admin/flags/login`` with the token. The session cookie is scoped to
the mount path; every form carries a CSRF token; pages send a Content-Security-Policy
that allows no inline script.
"""

from ._app import BANNER_COLOURS as BANNER_COLOURS
from ._app import create_ui as create_ui

__all__ = ["BANNER_COLOURS", "create_ui"]
