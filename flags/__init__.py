"""Feature flags as a thin schema over a replicated map.

Not built yet; see the project's issues.
"""

__all__: list[str] = []
