"""Pin each package's public surface, as trio's test_exports does."""

import ast
import importlib
import pathlib
import types

import pytest
from hypothesis.stateful import RuleBasedStateMachine

import crdt
import crdt.testing
import flags
import hlc
import transport
import transport.recipes

ROOT = pathlib.Path(__file__).resolve().parent.parent

EXPECTED = {
    hlc: {
        "HLC",
        "MAX_LOGICAL",
        "MAX_NODE_BYTES",
        "MAX_WALL_MS",
        "ClockSkewError",
        "Timestamp",
        "TimestampError",
        "system_wall_ms",
    },
    crdt: {
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
        "Stability",
    },
    transport: {
        "MIN_SECRET_BITS",
        "SIM_EPOCH_MS",
        "BackgroundNode",
        "CallError",
        "CallResult",
        "CallTimeout",
        "Handler",
        "MemberEvent",
        "Overloaded",
        "PeerUnavailable",
        "RemoteError",
        "UnknownService",
        "Event",
        "ForkedError",
        "NodeIdClaim",
        "claim_node_id",
        "LinkFaults",
        "MemoryNetwork",
        "MemoryTransport",
        "NetworkStats",
        "Node",
        "NodeStats",
        "PeerDown",
        "PeerStatus",
        "PeerUp",
        "Received",
        "ReplicatedMap",
        "Subscriber",
        "SyncMap",
        "TcpStats",
        "TcpTransport",
        "Transport",
        "TransportClosed",
        "WeakSecretError",
        "WriteRefused",
        "Membership",
        "check_secret",
        "new_secret",
        "rendezvous_owner",
    },
    flags: {
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
    },
    transport.recipes: {
        "MemberSet",
        "OwnerRoutedRateLimiter",
        "RateLimiter",
        "ReplicatedCache",
        "SyncCache",
        "SyncOwnerRoutedRateLimiter",
        "SyncRateLimiter",
    },
}


@pytest.mark.parametrize("module", list(EXPECTED), ids=lambda m: m.__name__)
def test_public_names_are_pinned(module: types.ModuleType) -> None:
    assert set(module.__all__) == EXPECTED[module]
    for name in module.__all__:
        assert hasattr(module, name), name


def test_testing_module_exports_exist() -> None:
    for name in crdt.testing.__all__:
        assert callable(getattr(crdt.testing, name)) or name == "Operation", name
    assert issubclass(crdt.testing.LWWMapReplicas, RuleBasedStateMachine)


# What the sans-IO packages may import: nothing that does I/O, threads, randomness or
# reads the clock. hlc/_clock.py alone reads `time`, for its default wall clock.
FORBIDDEN = {"socket", "trio", "asyncio", "threading", "random", "time", "select", "os"}
ALLOWED = {("hlc", "_clock.py", "time")}


@pytest.mark.parametrize("package", ["hlc", "crdt"])
def test_sans_io_packages_import_no_io(package: str) -> None:
    for path in sorted((ROOT / package).glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in FORBIDDEN:
                    assert (package, path.name, top) in ALLOWED, f"{path.name} imports {name}"


def test_packages_import_cleanly() -> None:
    for name in [
        "hlc",
        "crdt",
        "crdt.testing",
        "transport",
        "transport.process",
        "transport.recipes",
        "transport.simulation",
        "transport.testing",
        "flags",
        "flags.openfeature",
        "flags.http",
        "flags.serve",
        "flags.cli",
        "flags.demo",
    ]:
        importlib.import_module(name)
