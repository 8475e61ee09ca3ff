"""One line per event, ``key=value``, for people and log shippers alike."""

from __future__ import annotations

import datetime
import logging


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=INFO logger=chorus.node msg="peer b is up"``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        message = record.getMessage().replace("\\", "\\\\").replace('"', '\\"')
        line = (
            f"ts={ts.isoformat(timespec='milliseconds').replace('+00:00', 'Z')} "
            f'level={record.levelname} logger={record.name} msg="{message}"'
        )
        if record.exc_info:
            line += f' error="{self.formatException(record.exc_info).splitlines()[-1]}"'
        return line


def configure(level: str = "INFO") -> None:
    """Send chorus' logs to stderr, one key=value line per event."""
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
