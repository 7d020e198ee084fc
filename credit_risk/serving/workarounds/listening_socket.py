"""Each API worker accepts from a listening socket of its own, so connections spread.

Upstream (BentoML 1.4.40, checked in `_bentoml_impl/server/serving.py`): the supervisor binds
one listening socket and every API worker accepts from that same descriptor (circus passes it
as `--fd`). When a connection arrives every worker is woken, and the event loop (uvloop's
libuv) of the first one to run accepts every connection pending at that moment. A burst of
connections, such as the 64 that wrk opens at once, could so land on one worker, leaving the
other idle for the whole run: `make bench` at 64 connections was bimodal across rounds, about
1,420 requests/s with one worker busy against about 2,050 with both.

Here each API worker, at start-up and before uvicorn starts accepting, binds a socket of its own
to the same address with `SO_REUSEPORT`, puts it in place of the shared descriptor in its own
descriptor table (`dup2`, so the socket BentoML hands uvicorn is this one), and stops the shared
socket listening (`shutdown`), after setting `SO_REUSEPORT` on it so the new sockets may join
its address. The kernel then hashes every new connection to one of the workers' sockets. A
worker that restarts does the same. What it costs: connections waiting in a socket's accept
queue when its worker stops are reset, where a shared queue would have handed them to the
other worker (a stopping worker also stops accepting, so it matters only for a crash).
The canary in tests/serving/workarounds/test_listening_socket.py fails once BentoML stops
handing every worker the same listening socket; then delete this module.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys

logger = logging.getLogger(__name__)


def passed_socket(argv: list[str]) -> int | None:
    """The listening descriptor BentoML's worker command line passes (`--fd N`), if it is a
    TCP socket (the runner's is a Unix socket: nothing to spread there)."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "--fd" and argv[i + 1].isdigit():
            fd = int(argv[i + 1])
            try:
                with socket.socket(fileno=os.dup(fd)) as sock:
                    tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
            except OSError:
                return None
            return fd if tcp else None
    return None


def take_own_socket(fd: int, backlog: int) -> None:
    """Replace listening descriptor `fd` with a socket of this process's own on the same
    address (`SO_REUSEPORT`), and stop the socket it referred to listening."""
    shared = socket.socket(fileno=os.dup(fd))
    try:
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        own = socket.socket(shared.family, socket.SOCK_STREAM)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        own.bind(shared.getsockname())
        own.listen(backlog)
        with contextlib.suppress(OSError):  # ENOTCONN: another worker stopped it already
            shared.shutdown(socket.SHUT_RD)
        os.dup2(own.fileno(), fd)
        own.close()
    finally:
        shared.close()


def spread_connections(backlog: int, argv: list[str] = sys.argv) -> bool:
    """Give this worker a listening socket of its own in place of the shared one BentoML passed
    it; whether it did."""
    fd = passed_socket(argv)
    if fd is None:
        return False
    try:
        take_own_socket(fd, backlog)
    except OSError as exc:  # keep serving from the shared socket rather than not at all
        if exc.errno not in (errno.EADDRINUSE, errno.EPERM, errno.EACCES):
            raise
        logger.warning("connections not spread over the workers: %s", exc)
        return False
    return True
