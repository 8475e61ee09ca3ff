"""Hybrid logical clocks: `Timestamp` values and the `HLC` that issues them.

Sans-IO: nothing here reads the real clock except the default ``wall_ms`` callable,
which callers replace in tests and simulations.
"""

from ._clock import HLC as HLC
from ._clock import ClockSkewError as ClockSkewError
from ._clock import system_wall_ms as system_wall_ms
from ._timestamp import MAX_LOGICAL as MAX_LOGICAL
from ._timestamp import MAX_NODE_BYTES as MAX_NODE_BYTES
from ._timestamp import MAX_WALL_MS as MAX_WALL_MS
from ._timestamp import Timestamp as Timestamp
from ._timestamp import TimestampError as TimestampError

__all__ = [
    "HLC",
    "MAX_LOGICAL",
    "MAX_NODE_BYTES",
    "MAX_WALL_MS",
    "ClockSkewError",
    "Timestamp",
    "TimestampError",
    "system_wall_ms",
]
