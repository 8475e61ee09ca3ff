"""The replication runtime: Transport, MemoryNetwork, TcpTransport and Node.

Not built yet; see the project's issues.
"""

__all__: list[str] = []
