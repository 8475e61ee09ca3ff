"""The web UI: flags, one flag, and the cluster, as server-rendered pages.

`create_ui` builds it as an ASGI app (Starlette) to mount anywhere: ``chorus serve``
mounts it at ``/ui``, and a Starlette or FastAPI app can mount it on a path of its
own, over a `flags.FlagClient`. Jinja2 templates and the stylesheet and script ship
in the package; nothing is loaded from elsewhere.
"""

from ._app import BANNER_COLOURS as BANNER_COLOURS
from ._app import create_ui as create_ui

__all__ = ["BANNER_COLOURS", "create_ui"]
