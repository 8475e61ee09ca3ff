"""The replication runtime: the Transport interface, MemoryNetwork, and Node.

All I/O of chorus lives here, on trio. Nodes know CRDTs only through crdt's public
API; `MemoryNetwork` simulates a faulty network deterministically for tests and
notebooks.
"""

from ._background import BackgroundNode as BackgroundNode
from ._background import ForkedError as ForkedError
from ._background import SyncMap as SyncMap
from ._calls import CallError as CallError
from ._calls import CallResult as CallResult
from ._calls import CallTimeout as CallTimeout
from ._calls import Handler as Handler
from ._calls import MemberEvent as MemberEvent
from ._calls import Overloaded as Overloaded
from ._calls import PeerUnavailable as PeerUnavailable
from ._calls import RemoteError as RemoteError
from ._calls import UnknownService as UnknownService
from ._hrw import rendezvous_owner as rendezvous_owner
from ._identity import NodeIdClaim as NodeIdClaim
from ._identity import claim_node_id as claim_node_id
from ._interface import Event as Event
from ._interface import PeerDown as PeerDown
from ._interface import PeerUp as PeerUp
from ._interface import Received as Received
from ._interface import Transport as Transport
from ._interface import TransportClosed as TransportClosed
from ._membership import Membership as Membership
from ._memory import SIM_EPOCH_MS as SIM_EPOCH_MS
from ._memory import LinkFaults as LinkFaults
from ._memory import MemoryNetwork as MemoryNetwork
from ._memory import MemoryTransport as MemoryTransport
from ._memory import NetworkStats as NetworkStats
from ._node import Node as Node
from ._node import NodeStats as NodeStats
from ._node import PeerStatus as PeerStatus
from ._node import WriteRefused as WriteRefused
from ._replicated import ReplicatedMap as ReplicatedMap
from ._replicated import Subscriber as Subscriber
from ._secret import MIN_SECRET_BITS as MIN_SECRET_BITS
from ._secret import WeakSecretError as WeakSecretError
from ._secret import check_secret as check_secret
from ._secret import new_secret as new_secret
from ._tcp import TcpStats as TcpStats
from ._tcp import TcpTransport as TcpTransport

__all__ = [
    "MIN_SECRET_BITS",
    "SIM_EPOCH_MS",
    "BackgroundNode",
    "CallError",
    "CallResult",
    "CallTimeout",
    "Event",
    "ForkedError",
    "Handler",
    "LinkFaults",
    "MemberEvent",
    "Membership",
    "MemoryNetwork",
    "MemoryTransport",
    "NetworkStats",
    "Node",
    "NodeIdClaim",
    "NodeStats",
    "Overloaded",
    "PeerDown",
    "PeerStatus",
    "PeerUnavailable",
    "PeerUp",
    "Received",
    "RemoteError",
    "ReplicatedMap",
    "Subscriber",
    "SyncMap",
    "TcpStats",
    "TcpTransport",
    "Transport",
    "TransportClosed",
    "UnknownService",
    "WeakSecretError",
    "WriteRefused",
    "check_secret",
    "claim_node_id",
    "new_secret",
    "rendezvous_owner",
]
