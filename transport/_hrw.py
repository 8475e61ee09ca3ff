"""Rendezvous (highest random weight) hashing: which node owns a key.

Thaler and Ravishankar, "Using name-based mappings to increase hit rates", 1998.
Every node computes the same owner from the same membership, with no coordination,
and when a node joins or leaves only the keys it wins or held move: about 1/n.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from crdt import Key
from crdt._values import encode_key


def weight(key_bytes: bytes, node: str) -> bytes:
    """The weight of ``node`` for a key: BLAKE2b of the key's CBOR and the node id."""
    return hashlib.blake2b(key_bytes + b"\x00" + node.encode("utf-8")).digest()[:8]


def rendezvous_owner(key: Key, nodes: Iterable[str]) -> str:
    """Return the node with the highest weight for ``key``.

    Raises:
        ValueError: ``nodes`` is empty.
    """
    key_bytes = encode_key(key)
    best = max(nodes, key=lambda node: (weight(key_bytes, node), node), default=None)
    if best is None:
        raise ValueError("no nodes to choose an owner from")
    return best
