"""A listening socket of the worker's own, and the canary for why: BentoML hands every API
worker the one socket its supervisor bound."""

from __future__ import annotations

import inspect
import os
import socket

import _bentoml_impl.server.serving as bentoml_serving

from credit_risk.serving.workarounds.listening_socket import passed_socket, take_own_socket


def test_bentoml_still_passes_every_api_worker_the_supervisors_socket() -> None:
    source = inspect.getsource(bentoml_serving.serve_http)
    assert '"--fd",\n            f"$(circus.sockets.{API_SERVER_NAME})"' in source, (
        "BentoML no longer hands its API workers one shared socket: "
        "delete credit_risk/serving/workarounds/listening_socket.py"
    )


def test_the_worker_takes_its_own_socket_on_the_same_address_and_the_shared_one_stops() -> None:
    shared = socket.socket()
    shared.bind(("127.0.0.1", 0))
    shared.listen(16)
    address = shared.getsockname()
    duplicate = socket.socket(fileno=os.dup(shared.fileno()))  # as the supervisor keeps it
    worker_fd = os.dup(shared.fileno())  # the descriptor the worker inherited
    before = os.fstat(worker_fd).st_ino
    try:
        take_own_socket(worker_fd, backlog=16)
        assert os.fstat(worker_fd).st_ino != before, "the descriptor is a new socket"
        own = socket.socket(fileno=worker_fd)
        assert own.getsockname() == address
        assert own.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        with socket.create_connection(address, timeout=5):
            own.settimeout(5)
            conn, _ = own.accept()  # the worker's own socket gets the connection
            conn.close()
        own.close()
        other_worker = os.dup(duplicate.fileno())
        take_own_socket(other_worker, backlog=16)  # a second worker joins the same address
        with socket.socket(fileno=other_worker) as second:
            assert second.getsockname() == address
    finally:
        for s in (shared, duplicate):
            s.close()


def test_only_a_tcp_socket_passed_with_fd_is_taken() -> None:
    with socket.socket() as tcp, socket.socket(socket.AF_UNIX) as unix:
        assert passed_socket(["worker", "--fd", str(tcp.fileno())]) == tcp.fileno()
        assert passed_socket(["worker", "--fd", str(unix.fileno())]) is None
        assert passed_socket(["worker"]) is None
