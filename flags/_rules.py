"""How a flag's gates decide, compiled for the read path.

The rules, as in fun_with_flags (FunWithFlags.Flag.enabled?), plus deny gates:

1. **Actor gate.** If the actor has one, its value decides (enable *or* deny).
2. **Group gates.** If any of the caller's groups has one: a deny in any of them
   denies; otherwise an enable enables. (An actor in two groups that disagree is
   denied: guaranteeing "off" matters more than "on".)
3. **Boolean gate.** If set to enabled, the flag is on.
4. **Percentage gates.** With an actor and a percentage-of-actors gate, the flag is on
   for the actor when its score is below the percentage. Otherwise, a
   percentage-of-time gate turns the flag on for that fraction of checks, at random.
5. Otherwise the flag is off.

The actor score is fun_with_flags': the first 16 bits of SHA-256 over the UTF-8 of
``actor + flag name``, divided by 65,536, a number in [0, 1). It is the same on every
node, process and Python version (``hash()`` is not), it is never to change, and:

- ramping a flag from 5% to 20% keeps the first 5% of actors enabled;
- the flag name salts the score, so different flags pick independent cohorts
  (the fetlife/rollout#26 problem).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping

import attrs

#: Why a flag evaluated as it did.
ACTOR, GROUP, BOOLEAN, PERCENTAGE_OF_ACTORS, PERCENTAGE_OF_TIME, DEFAULT, NO_GATE = (
    "actor",
    "group",
    "boolean",
    "percentage_of_actors",
    "percentage_of_time",
    "default",
    "no_gate",
)

_random = random.random  # percentage of time: no need for a seeded or secure generator
_sha256 = hashlib.sha256


def actor_score(actor: str, flag: str) -> float:
    """The actor's fixed place in [0, 1) for ``flag`` (see the module notes)."""
    digest = hashlib.sha256((actor + flag).encode("utf-8")).digest()
    return int.from_bytes(digest[:2], "big") / 65536


@attrs.frozen
class Rules:
    """A flag's gates, as the read path evaluates them (internal, immutable)."""

    name: str
    boolean: bool | None = None
    actors: Mapping[str, bool] = attrs.field(factory=dict)
    groups: Mapping[str, bool] = attrs.field(factory=dict)
    percentage_of_actors: float | None = None
    percentage_of_time: float | None = None
    # For the read path: the flag's UTF-8 (the score's salt), and the percentage of
    # actors as a bound on the 16-bit score (exact: 65536 is a power of two).
    _salt: bytes = attrs.field(init=False, repr=False, eq=False)
    _threshold: float | None = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_salt", self.name.encode("utf-8"))
        ratio = self.percentage_of_actors
        object.__setattr__(self, "_threshold", None if ratio is None else ratio * 65536)

    def explain(self, actor: str | None, groups: Iterable[str]) -> tuple[bool, str]:
        """Return ``(enabled, why)`` where ``why`` names the deciding gate."""
        if actor is not None and self.actors:
            verdict = self.actors.get(actor)
            if verdict is not None:
                return verdict, ACTOR
        if self.groups:
            found = [self.groups[g] for g in groups if g in self.groups]
            if found:
                return all(found), GROUP
        if self.boolean:
            return True, BOOLEAN
        if actor is not None and self.percentage_of_actors is not None:
            return actor_score(actor, self.name) < self.percentage_of_actors, PERCENTAGE_OF_ACTORS
        if self.percentage_of_time is not None:
            return _random() < self.percentage_of_time, PERCENTAGE_OF_TIME
        return False, BOOLEAN if self.boolean is not None else NO_GATE

    def enabled(self, actor: str | None, groups: Iterable[str]) -> bool:
        """`explain` without the reason: the read path, with nothing allocated for it."""
        if actor is not None and self.actors:
            verdict = self.actors.get(actor)
            if verdict is not None:
                return verdict
        if self.groups:
            found = [self.groups[g] for g in groups if g in self.groups]
            if found:
                return all(found)
        if self.boolean:
            return True
        if actor is not None and self._threshold is not None:
            digest = _sha256(actor.encode("utf-8") + self._salt).digest()
            return (digest[0] << 8 | digest[1]) < self._threshold
        if self.percentage_of_time is not None:
            return _random() < self.percentage_of_time
        return False

    def simplify(self) -> bool | Rules:
        """A plain bool when only the boolean gate is set: the read path's fast case."""
        if (
            not self.actors
            and not self.groups
            and self.percentage_of_actors is None
            and self.percentage_of_time is None
        ):
            return bool(self.boolean)
        return self
