"""A bound on the connections one server process holds open, and what else bounds them.

BentoML 1.4.40 passes uvicorn no connection limit (its `limit_concurrency` is not exposed, and
would answer 503 to every request once idle connections filled it, locking clients out the way
stalled bodies did). What bounds a worker's connections is its file-descriptor limit: past it
the event loop (libuv) accepts each further connection and closes it at once, and the worker
keeps serving the connections it has. The service sets that limit explicitly, rather than
inheriting whatever the host or container runtime gives (1,024 to over a million), so the
bound is the same everywhere. Idle connections are closed by uvicorn's keep-alive timeout and
stalled bodies by the admission gate's body deadline (docs/reliability.md).
"""

from __future__ import annotations

import resource
from typing import Final

RESERVED_DESCRIPTORS: Final = 256
"""Descriptors kept for everything but client connections: the listening socket, the
connections to the runner, the decision log, the metrics files, imported modules."""


def bound_open_connections(max_connections: int) -> int:
    """Set this process's descriptor limit to `max_connections` plus the reserve (never above
    the hard limit); return the limit now in force."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + RESERVED_DESCRIPTORS
    soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft
