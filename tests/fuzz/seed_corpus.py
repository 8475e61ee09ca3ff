"""The fuzz corpus: small interesting inputs for each decoder, replayed on every run.

tests/fuzz/corpus/<target>/<name>.bin, one input a file, <target> a name in
`tests.fuzz.targets.TARGETS`. The seeds below (bombs, each refused tag, truncated and
oversized frames...) are written by::

    .venv/bin/python -m tests.fuzz.seed_corpus

which rewrites the seed files and leaves every other file alone: inputs a fuzz run
found are saved by hand beside them, under a name that says what they found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2

import crdt
from hlc import Timestamp
from tests.fuzz.hostile import (
    REFUSED_VALUE_TAGS,
    array,
    head,
    map_with_values,
    one_map,
    register_with_value,
    sharing_bomb,
    stringref_bomb,
    sync_with_values,
    tag,
)
from tests.fuzz.targets import connection, handshake
from transport import _wire
from transport._membership import Membership

CORPUS = Path(__file__).parent / "corpus"

BOMB = sharing_bomb(30)
STRINGREFS = stringref_bomb(1000, 2000)
HOSTILE_ITEMS = {
    "sharing-bomb": BOMB,
    "stringref-bomb": STRINGREFS,
    "indefinite-bytes": b"\x5f\x41a\x41b\xff",
    "indefinite-array": b"\x9f\x01\x02\xff",
    "indefinite-map": b"\xbf\x61a\x01\xff",
    "repeated-map-key": b"\xa2\x61a\x01\x61a\x02",
    "int-map-key": b"\xa1\x01\x02",
    "array-map-key": b"\xa1\x82\x01\x02\x00",
    "deep-nesting": b"\x81" * 500 + b"\x01",
    "bignum": b"\xc2\x41\x01",
    "bignum-over-limit": b"\xc2\x58\x81" + b"\xff" * 129,
    "bignum-of-array": tag(2, array()),
    "huge-byte-string-length": b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",
    "huge-array-length": b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff",
    "lone-break": b"\xff",
    "reserved-info": b"\x1c",
    "typed-array-of-text": tag(70, head(3, 1) + b"x"),
    **{f"tag-{number}": item for number, item in REFUSED_VALUE_TAGS.items()},
}


def _fields(data: bytes) -> list[bytes]:
    return [cbor2.dumps(field) for field in cbor2.loads(data)]


def _each_field_hostile(valid: bytes, items: dict[str, bytes]) -> dict[str, bytes]:
    """``valid`` with each field in turn replaced by each of ``items``."""
    fields = _fields(valid)
    out = {}
    for at in range(len(fields)):
        for name, item in items.items():
            changed = list(fields)
            changed[at] = item
            out[f"field{at}-{name}"] = array(*changed)
    return out


def _truncations(valid: bytes, count: int = 4) -> dict[str, bytes]:
    step = max(1, len(valid) // count)
    return {f"truncated-at-{cut}": valid[:cut] for cut in range(0, len(valid), step)}


def _codec_seeds() -> dict[str, dict[str, bytes]]:
    m = one_map()
    m.set(("t", 2**70), {"k": [1.5, None, b"x"]}, Timestamp(6, 1, "m"))
    m.delete(-(2**100), Timestamp(7, 0, "n"))
    step = crdt.SyncStep(digest=m.digest([(0, 0), (1, 2)]), delta=m, complete=[(1, 2)])
    reg = crdt.LWWRegister({"a": [1, 2]}, Timestamp(5, 0, "n"))
    valid = {
        "map": crdt.encode_map(m),
        "sync": crdt.encode_sync_step(step),
        "register": crdt.encode_register(reg),
        "digest": crdt.encode_digest(m.digest([(0, 0), (1, 2)])),
        "timestamp": crdt.encode_timestamp(Timestamp(5, 0, "n")),
    }
    carriers = {"map": map_with_values, "sync": sync_with_values, "register": register_with_value}
    small = {k: HOSTILE_ITEMS[k] for k in ("sharing-bomb", "tag-70")}
    seeds: dict[str, dict[str, bytes]] = {}
    for name, data in valid.items():
        seeds[name] = {"valid": data, **_truncations(data), "trailing-byte": data + b"\x00"}
        seeds[name].update(_each_field_hostile(data, small))
        if name in carriers:
            seeds[name].update(
                {f"value-{k}": carriers[name](item) for k, item in HOSTILE_ITEMS.items()}
            )
    seeds["map"]["colliding-keys-short"] = _colliding_keys(64)
    return seeds


def _colliding_keys(count: int) -> bytes:
    """A map of ``count`` int keys with one hash (multiples of 2**61 - 1): a small one,
    quick to decode; see the report on issue 13 for what a large one costs."""
    fields: list[Any] = cbor2.loads(crdt.encode_map(crdt.LWWMap()))
    fields[2] = [k * (2**61 - 1) for k in range(1, count + 1)]
    fields[3] = cbor2.CBORTag(71, bytes(8 * count))
    fields[4] = fields[5] = cbor2.CBORTag(70, bytes(4 * count))
    fields[7] = bytes(count)
    return cbor2.dumps(fields)


def _wire_seeds() -> dict[str, dict[str, bytes]]:
    membership = Membership()
    membership.found("a/1", "a/1@1")
    membership.propose("b/1", "a/1")
    heartbeat = _wire.Heartbeat(
        "1-x", True, "a/1@1", bytes(8), bytes(8), (5, 1), 6, (2**64 - 1, 3), (1, 0)
    )
    valid = {
        "heartbeat": _wire.encode_heartbeat(heartbeat),
        "ack": _wire.encode_ack((5, 2)),
        "members": _wire.encode_members((5, 2), membership),
    }
    small = {k: HOSTILE_ITEMS[k] for k in ("sharing-bomb", "bignum")}
    seeds = {name: {"valid": data, **_truncations(data)} for name, data in valid.items()}
    for name, data in valid.items():
        seeds[name].update(_each_field_hostile(data, small))
    seeds["cbor"] = dict(HOSTILE_ITEMS)
    seeds["peek"] = {
        "valid-map": crdt.encode_map(one_map()),
        "wide-array-head": b"\x9a\x00\x00\x00\x02\x01\x63map",
        "unknown-kind": cbor2.dumps([1, "nope"]),
        "non-ascii-kind": b"\x82\x01\x62\xc3\xa9",
        "short": b"\x82\x01",
    }
    return seeds


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def _tcp_seeds() -> dict[str, dict[str, bytes]]:
    hello = connection(client=True).data_to_send()
    client, server = connection(client=True), connection(client=False)
    server.receive_data(client.data_to_send())
    reply = server.data_to_send()
    seeds: dict[str, dict[str, bytes]] = {}
    for name, flight in (("tcp-server", hello), ("tcp-client", reply)):
        body = flight[4:]
        seeds[name] = {
            "valid": flight,
            **_truncations(flight),
            "length-only": flight[:4],
            "zero-length-frame": _frame(b""),
            "huge-length": b"\xff\xff\xff\xff" + body,
            "over-handshake-limit": _frame(b"\x80" * 1025),
            "twice": flight + flight,
            **{f"body-{k}": _frame(item) for k, item in HOSTILE_ITEMS.items() if len(item) < 1024},
            **{
                f"{k}-in-field": _frame(item)
                for k, item in _each_field_hostile(
                    body, {"bomb": BOMB, "tag-2": b"\xc2\x41\x01"}
                ).items()
            },
        }
    # After a handshake, from an authenticated peer: a whole session, to a fresh side.
    client, server = connection(client=True), connection(client=False)
    chunks = handshake(client, server)
    client.send_cluster("001700000000000/client/1")
    client.send_message(b"hello")
    seeds["tcp-server"]["a-whole-session"] = b"".join(chunks[::2]) + client.data_to_send()
    seeds["tcp-client"]["a-whole-session"] = b"".join(chunks[1::2])
    return seeds


def seeds() -> dict[str, dict[str, bytes]]:
    """Every seed: target name -> input name -> bytes."""
    return {**_codec_seeds(), **_wire_seeds(), **_tcp_seeds()}


def main() -> int:
    count = 0
    for target, inputs in seeds().items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in inputs.items():
            (folder / f"{name}.bin").write_bytes(data)
            count += 1
    print(f"wrote {count} seed inputs under {CORPUS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
