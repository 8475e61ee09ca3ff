"""Node ids for processes that are not given one: each worker of a multi-process server.

A web server with several worker processes (gunicorn ``-w 4``, uvicorn
``--workers 4``) runs the same code in every worker, so a node id written in the
code or the environment is the same in all of them: two live nodes with one id,
each replacing the other. Every worker needs an id of its own.

An id made from the process id (``web-host-12345``) is unique, but every restart of
a worker (a crash, gunicorn's ``max_requests``) would then be a new name. A new
name is admitted by a vote of the members, and a name that died without leaving
stays a member, down, until the others expel it (``tombstone_horizon_s``, a day):
meanwhile it holds tombstone collection back and counts towards every majority.

So `claim_node_id` hands out *slots*: ``{prefix}{host}-{slot}``, with the smallest
slot no live process on this host holds. A slot is held by an exclusive
``flock`` on a lock file, which the kernel releases when the process exits, however
it exits (SIGKILL included). A worker that replaces a dead one takes its slot, so
it comes back as a new incarnation of the same name: admitted at once, replacing
the old one, as a restarted ``chorus serve`` is. Two workers alive at once never
share a slot.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from pathlib import Path

import attrs

#: Characters kept from the host name in a claimed node id; others become ``-``.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@attrs.define(eq=False)
class NodeIdClaim:
    """A node id claimed by this process (made by `claim_node_id`).

    Attributes:
        node_id: the id, ``{prefix}{host}-{slot}``.
        slot: the slot number, from 0.
        path: the lock file that holds the slot.
    """

    node_id: str
    slot: int
    path: Path
    _fd: int | None = attrs.field(alias="fd", repr=False)

    @property
    def held(self) -> bool:
        """True until `release`."""
        return self._fd is not None

    def release(self) -> None:
        """Give the slot back (idempotent). Exiting the process releases it too.

        In a child process after a fork this closes only the child's copy of the
        descriptor: the lock belongs to the open file, which the parent holds too,
        so the parent keeps the slot.
        """
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def default_lock_dir() -> Path:
    """Where slot lock files live: ``$TMPDIR/chorus-<uid>`` (made 0700 on first use)."""
    return Path(tempfile.gettempdir()) / f"chorus-{os.getuid()}"


def claim_node_id(
    prefix: str = "",
    *,
    host: str | None = None,
    lock_dir: str | os.PathLike[str] | None = None,
    max_slots: int = 1024,
) -> NodeIdClaim:
    """Claim the smallest free node id ``{prefix}{host}-{slot}`` on this host.

    Args:
        prefix: put before the host name, e.g. ``"checkout-"`` so that two apps on one
            host have ids of their own.
        host: the host part (default: ``socket.gethostname()``, a pod's name under
            Kubernetes); characters other than letters, digits, ``.``, ``_`` and ``-``
            become ``-``.
        lock_dir: where the lock files are (default `default_lock_dir`). Processes
            that must not share ids must share this directory.
        max_slots: how many slots to try.

    Returns:
        A `NodeIdClaim` that holds the slot until it is released or the process
        exits.

    Raises:
        ValueError: ``prefix`` and ``host`` leave nothing to name the node with.
        RuntimeError: all ``max_slots`` slots are held by live processes.
        OSError: the lock directory cannot be made or written.
    """
    import fcntl  # POSIX only; imported here so the package imports everywhere

    name = _UNSAFE.sub("-", host if host is not None else socket.gethostname()).strip("-")
    if not (prefix or name):
        raise ValueError("claim_node_id needs a prefix or a host name")
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for slot in range(max_slots):
        node_id = f"{prefix}{name}-{slot}"
        path = directory / f"{node_id}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return NodeIdClaim(node_id, slot, path, fd=fd)
    raise RuntimeError(
        f"all {max_slots} node ids {prefix}{name}-N are held by live processes (lock files "
        f"in {directory})"
    )
