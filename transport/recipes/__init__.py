"""Recipes over replicated maps: a cluster-wide cache and rate limiters.

Each recipe comes in two forms: for trio, next to a running `transport.Node`
(`ReplicatedCache`, `RateLimiter`, `OwnerRoutedRateLimiter`), and for threaded apps
(Flask, Django, FastAPI), over a `transport.BackgroundNode` (`SyncCache`,
`SyncRateLimiter`, `SyncOwnerRoutedRateLimiter`). Recipes that elect an owner per
key elect it among the nodes that serve that recipe's service (`MemberSet`,
`Node.owner_of`), never among nodes that do not run it, and reach it over
`Node.call_owner`.
"""

from ._members import MemberSet as MemberSet
from .cache import ReplicatedCache as ReplicatedCache
from .cache import SyncCache as SyncCache
from .rate_limit import OwnerRoutedRateLimiter as OwnerRoutedRateLimiter
from .rate_limit import RateLimiter as RateLimiter
from .rate_limit import SyncOwnerRoutedRateLimiter as SyncOwnerRoutedRateLimiter
from .rate_limit import SyncRateLimiter as SyncRateLimiter

__all__ = [
    "MemberSet",
    "OwnerRoutedRateLimiter",
    "RateLimiter",
    "ReplicatedCache",
    "SyncCache",
    "SyncOwnerRoutedRateLimiter",
    "SyncRateLimiter",
]
