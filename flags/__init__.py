"""Feature flags as a thin schema over a replicated map.

`FlagStore` holds the gates (boolean, actors, groups, percentage of actors,
percentage of time; actor and group gates can deny) as entries of a
`transport.ReplicatedMap`, and answers `FlagStore.enabled` from an immutable snapshot.
Typed flags add a value type, variants, rules on attributes, segments, prerequisites
and schedules; `FlagStore.evaluate` answers them with an `Evaluation`.
`connect` starts a node in a background thread and returns a `FlagClient`, the
synchronous, thread-safe way for Flask, Django and FastAPI apps to read and write
flags. `LocalMap` stands in for a replicated map in unit tests. `flags.openfeature` has an
OpenFeature provider (it needs the ``openfeature-sdk`` package). `FlagEvents` is the
change feed behind ``GET /events``, and `flags.ui` the web UI.
"""

from ._client import FlagClient as FlagClient
from ._client import NotReadyError as NotReadyError
from ._client import connect as connect
from ._evaluation import Evaluation as Evaluation
from ._events import FlagEvents as FlagEvents
from ._local import LocalMap as LocalMap
from ._rules import actor_score as actor_score
from ._schema import Flag as Flag
from ._schema import FlagFormatError as FlagFormatError
from ._store import AuditEntry as AuditEntry
from ._store import FlagStore as FlagStore
from ._store import RestoreError as RestoreError

__all__ = [
    "AuditEntry",
    "Evaluation",
    "Flag",
    "FlagClient",
    "FlagEvents",
    "FlagFormatError",
    "FlagStore",
    "LocalMap",
    "NotReadyError",
    "RestoreError",
    "actor_score",
    "connect",
]
