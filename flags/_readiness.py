"""Why a node is not ready, in the words an operator needs."""

from __future__ import annotations

from transport import Node, TcpTransport


def not_ready_reason(node: Node, transport: TcpTransport) -> str | None:
    """``node.not_ready_reason()``, and while it is not a member, why dialling fails.

    A node that has not joined says why its seeds do not answer as a cluster
    ("connection refused", "it answers HTTP", "a different cluster secret?"), not
    only that it has not joined. Call it from the node's thread.

    Returns:
        None when the node is ready, else one line of text.
    """
    reason = node.not_ready_reason()
    # The node's reason already says which peers refuse our node id.
    refused = transport.refusals()
    errors = {a: e for a, e in transport.dial_errors().items() if a not in refused}
    if reason is None or node.admitted or not errors:
        return reason
    why = "; ".join(f"{address}: {error}" for address, error in sorted(errors.items()))
    return f"{reason}; dialling {why}"
