"""Typed values, variant splits and rule positions: the pieces of a flag's answer.

Pure: no map, no I/O, no clock. `flags._evaluation` compiles a flag with these.

**Types.** A flag's ``(name, "type")`` entry is one of OpenFeature's five value types,
`TYPES`: ``"boolean"`` (a bool), ``"string"`` (a str), ``"integer"`` (an int, not a
bool), ``"float"`` (a float; an int is taken as the float it equals) and
``"object"`` (a JSON object: a dict with str keys). No entry means ``"boolean"``.

**Splits.** A split serves one of several variants by weight: weights are
non-negative integers (basis points, say) that need not sum to anything; variants of
weight 0 are never served. With an actor, the variant is chosen by weighted
rendezvous hashing (highest random weight, HRW: Thaler and Ravishankar, "Using
Name-Based Mappings to Increase Hit Rates", 1998; the weighted form of Schindelhauer
and Schomaker, "Weighted Distributed Hash Tables", 2005). The bucketing is part of
the contract, computed exactly so (all integers unsigned 64-bit):

1. ``d``: the first 8 bytes, big-endian, of SHA-256 over the UTF-8 of
   ``actor + flag + "\\0" + salt``, where the salt is the rule id, or
   ``"fallthrough"``: one SHA-256 per evaluation, however many variants;
2. for each variant ``v`` of weight ``w > 0``, its key ``k_v``: the first 8 bytes,
   big-endian, of SHA-256 over the UTF-8 of ``v`` (fixed when the flag is compiled);
3. ``x = mix64(d XOR k_v)``, SplitMix64's finalizer (Steele, Lea and Flood, "Fast
   Splittable Pseudorandom Number Generators", OOPSLA 2014; the variant with
   Stafford's "Mix13" constants that ``java.util.SplittableRandom`` and Vigna's
   ``splitmix64.c`` use), modulo 2**64 throughout::

       z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
       z = (z ^ (z >> 27)) * 0x94D049BB133111EB
       x = z ^ (z >> 31)

4. ``u = ((x >> 12) + 0.5) / 2**52``, in (0, 1) and exact in a float;
5. the score ``w / -ln(u)`` (IEEE 754 doubles); the greatest score wins, and on a tie
   the least variant name.

It follows that:

- the same actor gets the same variant on every node, process and Python version;
- raising one variant's weight only moves actors into it, and lowering it only moves
  actors out of it: no actor moves between two variants whose weights did not change;
- different flags and different rules of a flag split actors independently (``d``
  is salted with both).

It matches no peer's bucketing bit for bit. LaunchDarkly hashes ``key.salt.user``
with SHA-1 into [0, 1) and Unleash takes MurmurHash3 of the user mod 10,000, and both
cut that line into cumulative ranges, one per variant: changing any weight shifts the
boundaries of the ranges after it, moving users between neighbouring variants whose
weights did not change. HRW moves only the users that must move. It costs one
SHA-256 (about 0.4 us here, with the encoding and unpacking) plus about 0.4-0.6 us per
variant of positive weight: in CPython the mixing's dozen big-integer operations, a
log and a division cost about what a SHA-256 of a short string did (`choose` of 2
variants: about 1.6 us, 2-core x86 VM, CPython 3.11). Keep splits small.

**Speed, chosen by measurement** (benchmarks/bench_targeting.py). `choose` is the
contract computed directly; binding the log locally and folding the 2**-52 scale
into a constant gain a few percent at most, within this machine's noise (a counter
instead of ``enumerate`` measured the same). Two alternatives were measured and left
out: packing every variant's 64-bit lane into one big integer, 128 bits apart (the
mixing done once for all variants; identical results), saved about 0.1 us of 1.6
for 2 variants and 0.6 us of 2.9 for 5, not worth its subtlety; and skipping the
log when weights are equal (the score is then monotone in ``u``) would rest on the
platform's ``log`` being monotone and on ties, not proven. What makes a repeated
actor cheap is a per-split cache of the winner (`flags._evaluation`'s
``_Split.chosen``): a hit answers in about 0.1 us, exactly as `choose` would, since
the winner is a pure function of the actor, the salt and the arms.

Without an actor, a split picks at random by weight, as the percentage-of-time gate
does.

**Positions.** Rules are ordered by ``(position, rule_id)``. A position is a
fractional index (see `position_between`): a string of base-62 digits, compared as
plain strings, so a rule can go between two others without rewriting either.
"""

from __future__ import annotations

import hashlib
import math
import random
import string
import struct
from collections.abc import Sequence

#: OpenFeature's value types, as the ``(name, "type")`` entry names them.
TYPES = ("boolean", "string", "integer", "float", "object")
#: The variants of a boolean flag that defines none.
BOOLEAN_VARIANTS = {"true": True, "false": False}
#: The salt of the fallthrough's split (rules salt theirs with their id).
FALLTHROUGH = "fallthrough"
#: The most variants a split names, and the greatest weight.
MAX_SPLIT_VARIANTS = 100
MAX_WEIGHT = 1_000_000

_sha256 = hashlib.sha256
_log = math.log
_random = random.random  # splits without an actor: no need for a seeded generator
_unpack = struct.Struct(">Q").unpack_from
_MASK64 = 0xFFFF_FFFF_FFFF_FFFF


def coerce_value(kind: str, value: object) -> tuple[bool, object]:
    """Check ``value`` against the value type ``kind`` (one of `TYPES`).

    Returns:
        ``(True, value)`` with the value as served (an int for a ``"float"`` flag as
        a float), or ``(False, None)`` when it is not of that type (bool is not an
        integer nor a float; an object is a dict with str keys). Never raises.
    """
    t = type(value)
    if kind == "boolean":
        return (t is bool), value if t is bool else None
    if kind == "string":
        return (t is str), value if t is str else None
    if kind == "integer":
        return (t is int), value if t is int else None
    if kind == "float":
        if t is float:
            return True, value
        if t is int:
            try:
                return True, float(value)  # type: ignore[arg-type]
            except OverflowError:
                return False, None
        return False, None
    if kind == "object":
        ok = t is dict and all(type(k) is str for k in value)  # type: ignore[attr-defined]
        return ok, value if ok else None
    return False, None


def split_salt(flag: str, salt: str) -> bytes:
    """What a split hashes after the actor: the UTF-8 of ``flag + "\\0" + salt``."""
    return (flag + "\0" + salt).encode("utf-8")


def variant_key(variant: str) -> int:
    """A variant's 64-bit key ``k_v``: the first 8 bytes, big-endian, of SHA-256
    over its UTF-8 (see the module notes)."""
    return int.from_bytes(_sha256(variant.encode("utf-8")).digest()[:8], "big")


def mix64(z: int) -> int:
    """SplitMix64's finalizer of ``z`` (an int in [0, 2**64)), modulo 2**64: a
    bijection whose every output bit depends on every input bit."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & _MASK64
    return z ^ (z >> 31)


def split_arm(variant: str, weight: int) -> tuple[int, float]:
    """A variant of a split as `choose` takes it, computed once per compile:
    ``(k ^ (k >> 30), float(weight))`` with ``k = variant_key(variant)``.

    `mix64` starts with ``z ^ (z >> 30)``, which is linear over XOR: for ``z = d ^ k``
    it is ``(d ^ (d >> 30)) ^ (k ^ (k >> 30))``, so the variant's half is done here
    and the actor's half once per evaluation.
    """
    key = variant_key(variant)
    return key ^ (key >> 30), float(weight)


def hrw_score(actor: str, salt: bytes, variant: str, weight: int) -> float:
    """One variant's rendezvous score for ``actor``, step by step as the module notes
    say (greater wins): the reference that `choose` computes faster.

    Args:
        actor: the targeting key.
        salt: `split_salt` of the flag and the rule id (or ``"fallthrough"``).
        variant: the variant's name.
        weight: its weight, positive.
    """
    d = int.from_bytes(_sha256(actor.encode("utf-8") + salt).digest()[:8], "big")
    x = mix64(d ^ variant_key(variant))
    u = ((x >> 12) + 0.5) / 2**52
    return weight / -math.log(u)


def choose(actor: str | None, salt: bytes, arms: Sequence[tuple[int, float]]) -> int:
    """The index in ``arms`` of the variant a split serves.

    Args:
        actor: the targeting key, or None (then a random pick by weight).
        salt: `split_salt` of the flag and the rule id (or ``"fallthrough"``).
        arms: `split_arm` of each variant of positive weight, sorted by name; not
            empty.

    Returns:
        The index of the winner: the greatest HRW score, the first (least name) on a
        tie; for no actor, a random index, each with probability weight / total.
        One SHA-256 whatever the number of arms.
    """
    if actor is None:
        total = 0.0
        for _, weight in arms:
            total += weight
        point = _random() * total
        for index, (_, weight) in enumerate(arms):
            point -= weight
            if point < 0:
                return index
        return len(arms) - 1
    d = _unpack(_sha256(actor.encode() + salt).digest())[0]  # encode(): UTF-8, its fast path
    d ^= d >> 30  # the actor's half of mix64's first step (see split_arm)
    best, best_score = 0, -1.0
    log = _log  # a local: read once, not per variant
    for index, (key, weight) in enumerate(arms):
        # The rest of mix64(d ^ k), inlined with literal constants: this loop is the
        # split's cost, about as much per variant in CPython as a SHA-256 of a short
        # string (12 big-int operations, a log and a division).
        z = (d ^ key) * 0xBF58476D1CE4E5B9 & 0xFFFF_FFFF_FFFF_FFFF
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & 0xFFFF_FFFF_FFFF_FFFF
        score = weight / -log((((z ^ (z >> 31)) >> 12) + 0.5) * 2.0**-52)  # folded constant
        if score > best_score:
            best, best_score = index, score
    return best


# -- positions -------------------------------------------------------------------

#: The digits of a position, in the order str comparison puts them.
POSITION_DIGITS = string.digits + string.ascii_uppercase + string.ascii_lowercase
MAX_POSITION_CHARS = 200
_DIGIT = {c: i for i, c in enumerate(POSITION_DIGITS)}
_BASE = len(POSITION_DIGITS)
_MIDDLE = POSITION_DIGITS[_BASE // 2]


def valid_position(value: object) -> bool:
    """True for a position: 1 to `MAX_POSITION_CHARS` of `POSITION_DIGITS`, not ending
    in ``"0"`` (so that there is always room before it)."""
    return (
        type(value) is str
        and 0 < len(value) <= MAX_POSITION_CHARS
        and value[-1] != "0"
        and all(c in _DIGIT for c in value)
    )


def position_between(a: str | None, b: str | None) -> str:
    """A position that sorts strictly between ``a`` and ``b``.

    Fractional indexing over base-62 digits, after David Greenspan's "Implementing
    Fractional Indexing" (2020), without its integer part: a position is read as the
    base-62 fraction ``0.a``. The first position is the middle digit, ``"V"``.
    Appending after the last rule (``b`` None) steps the last digit up and
    prepending (``a`` None) steps the first digit down, so about 30 rules go at
    either end per character; inserting between two bisects their gap, about 6 bits
    per character. The worst case, always inserting into the gap just made, grows
    positions by about one character per 5 inserts (200 such inserts: 41 chars).

    Args:
        a: the position before, or None for the start.
        b: the position after, or None for the end.

    Returns:
        A valid position (`valid_position`) ``p`` with ``a < p < b``.

    Raises:
        ValueError: ``a`` or ``b`` is not a valid position, or ``a >= b``.
    """
    for name, value in (("a", a), ("b", b)):
        if value is not None and not valid_position(value):
            raise ValueError(f"{name} is not a position: {value!r:.60}")
    if a is not None and b is not None and a >= b:
        raise ValueError(f"a must sort before b, got {a!r:.60} and {b!r:.60}")
    if a is None and b is not None:
        return _before(b)
    return _between(a or "", b, step=b is None)


def _before(b: str) -> str:
    # A position before b (prepending): the first digit stepped down.
    high = _DIGIT[b[0]]
    if high > 1:
        return POSITION_DIGITS[high - 1]
    if high == 1:  # "1" sorts before "1...", and "0z" before "1"
        return b[0] if len(b) > 1 else "0" + POSITION_DIGITS[-1]
    return "0" + _before(b[1:])  # b = "0...": never "0" alone


def _between(a: str, b: str | None, step: bool = False) -> str:
    # a < b (b None: 1.0); neither ends in "0"; a may be "" (0.0). With step (appending
    # at the end), the first digit goes up by one instead of halfway to 1.0.
    if b is None:
        if not a:
            return _MIDDLE
        low = _DIGIT[a[0]]
        if low + 1 < _BASE:
            return POSITION_DIGITS[low + 1 if step else (low + _BASE) // 2]
        return a[0] + _between(a[1:], None, step)
    n = 0  # the common prefix, reading a as padded with "0"
    while n < len(b) and (a[n] if n < len(a) else "0") == b[n]:
        n += 1
    if n:
        return b[:n] + _between(a[n:], b[n:])
    low, high = (_DIGIT[a[0]] if a else 0), _DIGIT[b[0]]
    if high - low > 1:  # bisect
        return POSITION_DIGITS[(low + high) // 2]
    if len(b) > 1:  # b = d... with d = low + 1: d alone sorts between
        return b[0]
    return (a[0] if a else "0") + _between(a[1:], None)
