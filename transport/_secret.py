"""The cluster secret: how strong it must be, and how to make one.

A node's handshake proof is an HMAC under the secret over values its peer chose, so
whoever a node dials can test guesses of the secret offline, as fast as it can hash.
A human-chosen secret (``summer2024``) falls to a dictionary in seconds; 128 random
bits do not fall at all. So the transport refuses a secret that does not *look* like
128 random bits or more.

The check reads the secret's form, not its history: it can tell ``summer2024`` from
``openssl rand -hex 32`` but not a random-looking string a person typed. Generate
secrets with `new_secret` (``chorus secret``) or ``openssl rand -hex 32``.
"""

from __future__ import annotations

import itertools
import secrets
import string

#: The least strength a cluster secret must show, in bits.
MIN_SECRET_BITS = 128

_HEX = frozenset(string.hexdigits)
_BASE64 = frozenset(string.ascii_letters + string.digits + "+/-_")
_MIN_DISTINCT = 8  # 32 random hex digits show ~14 distinct; "abab..." shows 2
_REPEAT = 8


class WeakSecretError(ValueError):
    """The cluster secret is empty, too short, or not random-looking enough."""


def secret_bits(secret: bytes) -> int:
    """Estimate the strength of a secret from its form, in bits.

    - hex text (``openssl rand -hex N``): 4 bits a character;
    - base64 text, standard or URL-safe, ``=`` padding ignored (``openssl rand
      -base64 N``): 6 bits a character, if it mixes at least two of upper case,
      lower case and digits, as random base64 does;
    - bytes that are not text (read from a key file): 8 bits a byte;
    - anything else (words, phrases, spaces, punctuation, non-ASCII text): 0.

    A secret with fewer than 8 distinct characters (or bytes), in which some 8
    characters occur twice (``summer2024summer2024``), or with 8 consecutive
    characters in order (``abcdefgh``), counts as 0. Surrounding
    whitespace around text, such as a file's final newline, is ignored.
    """
    try:
        text = secret.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = None
    if text is None or not all(c.isprintable() or c.isspace() for c in text):
        # Binary key material (random bytes are rarely UTF-8 text).
        if len(set(secret)) < _MIN_DISTINCT or _repeats(secret):
            return 0
        return 8 * len(secret)
    if not text.isascii():
        return 0  # words in some language: "Sommer2024München"
    data = text.encode()
    if len(set(data)) < _MIN_DISTINCT or _repeats(data):
        return 0
    if set(text) <= _HEX:
        return 4 * len(text)
    body = text.rstrip("=")
    if set(body) <= _BASE64 and _mixes_classes(body):
        return 6 * len(body)
    return 0


def _repeats(data: bytes) -> bool:
    """True if some run of `_REPEAT` bytes occurs twice, or `_REPEAT` bytes count up or
    down by one (``abcdefgh``, ``76543210``). In random hex of 64 characters, each
    happens about once in 3 million."""
    seen: set[bytes] = set()
    for i in range(len(data) - _REPEAT + 1):
        chunk = data[i : i + _REPEAT]
        if chunk in seen:
            return True
        seen.add(chunk)
        steps = {b - a for a, b in itertools.pairwise(chunk)}
        if steps == {1} or steps == {-1}:
            return True
    return False


def _mixes_classes(text: str) -> bool:
    classes = (str.isupper, str.islower, str.isdigit)
    return sum(any(map(test, text)) for test in classes) >= 2


def check_secret(secret: bytes | str) -> bytes:
    """Return the secret as bytes (str as UTF-8), if strong enough.

    Raises:
        WeakSecretError: the secret shows under `MIN_SECRET_BITS` bits (see
            `secret_bits`); the message says what is expected.
    """
    data = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not data:
        raise WeakSecretError("the cluster secret must not be empty")
    bits = secret_bits(data)
    if bits < MIN_SECRET_BITS:
        raise WeakSecretError(
            f"the cluster secret shows about {bits} bits; at least {MIN_SECRET_BITS} are "
            "needed: 32 or more hex characters, 22 or more base64 characters, or 16 or "
            "more random bytes. Make one with `chorus secret` or `openssl rand -hex 32`"
        )
    return data


def new_secret() -> str:
    """Return a fresh cluster secret: 64 hex characters (256 random bits)."""
    while True:  # a retry about once in 3 million: see `secret_bits`
        secret = secrets.token_hex(32)
        if secret_bits(secret.encode()) >= MIN_SECRET_BITS:
            return secret
