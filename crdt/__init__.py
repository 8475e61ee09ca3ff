"""Conflict-free replicated data types: `LWWRegister` and `LWWMap`, sans-IO.

Nothing here touches sockets, threads or clocks: timestamps come in as arguments
(from an `hlc.HLC`), bytes go out through the codec. Everything is deterministic and
property-tested; `crdt.testing` offers the same strategies and law checkers to users.
"""

from ._chunks import Coverage as Coverage
from ._chunks import split_step as split_step
from ._codec import DEFAULT_MAX_BYTES as DEFAULT_MAX_BYTES
from ._codec import FORMAT_VERSION as FORMAT_VERSION
from ._codec import DecodeError as DecodeError
from ._codec import decode_cbor as decode_cbor
from ._codec import decode_digest as decode_digest
from ._codec import decode_map as decode_map
from ._codec import decode_register as decode_register
from ._codec import decode_sync_step as decode_sync_step
from ._codec import decode_timestamp as decode_timestamp
from ._codec import encode_digest as encode_digest
from ._codec import encode_map as encode_map
from ._codec import encode_register as encode_register
from ._codec import encode_sync_step as encode_sync_step
from ._codec import encode_timestamp as encode_timestamp
from ._exchange import sync_exchange as sync_exchange
from ._map import LWWMap as LWWMap
from ._merkle import DEPTH as DEPTH
from ._merkle import FANOUT as FANOUT
from ._merkle import ROOT as ROOT
from ._merkle import Digest as Digest
from ._merkle import Prefix as Prefix
from ._register import TOMBSTONE as TOMBSTONE
from ._register import LWWRegister as LWWRegister
from ._stability import Stability as Stability
from ._sync import DEFAULT_THRESHOLD as DEFAULT_THRESHOLD
from ._sync import SyncStep as SyncStep
from ._sync import sync_pull as sync_pull
from ._sync import sync_respond as sync_respond
from ._sync import sync_start as sync_start
from ._values import Key as Key

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_THRESHOLD",
    "DEPTH",
    "FANOUT",
    "FORMAT_VERSION",
    "ROOT",
    "TOMBSTONE",
    "Coverage",
    "DecodeError",
    "Digest",
    "Key",
    "LWWMap",
    "LWWRegister",
    "Prefix",
    "Stability",
    "SyncStep",
    "decode_cbor",
    "decode_digest",
    "decode_map",
    "decode_register",
    "decode_sync_step",
    "decode_timestamp",
    "encode_digest",
    "encode_map",
    "encode_register",
    "encode_sync_step",
    "encode_timestamp",
    "split_step",
    "sync_exchange",
    "sync_pull",
    "sync_respond",
    "sync_start",
]
