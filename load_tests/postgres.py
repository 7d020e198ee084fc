"""A throwaway PostgreSQL server, for the tests and the benchmark alike: Debian's `postgresql`
package, in a temporary directory, on a loopback port, stopped afterwards.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user over a
data directory it owns. Where no server binaries are installed `MISSING` says how to get them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from load_tests.harness import free_port

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
"""Debian installs each major version's binaries here, newest first."""
MISSING = (
    "PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin): "
    "make postgresql (Debian's postgresql package)"
)


@dataclass
class Postgres:
    """A running throwaway server."""

    bin: Path
    data: Path
    port: int
    as_user: list[str]

    def run(self, tool: str, *args: str, check: bool = True) -> None:
        """One of the server's tools (initdb, pg_ctl) on its data directory, as its owner."""
        argv = [*self.as_user, str(self.bin / tool), "-D", str(self.data), *args]
        subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        """Start (or start again) on the same port."""
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=on"
        self.run("pg_ctl", "-o", options, "-l", str(self.data / "server.log"), "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: open connections are terminated, as when the database goes down."""
        self.run("pg_ctl", "-m", "fast", "-w", "stop", check=False)

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg  # noqa: PLC0415

        name, url = f"t_{uuid.uuid4().hex[:12]}", f"postgresql://postgres@127.0.0.1:{self.port}"
        with psycopg.connect(f"{url}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{url}/{name}"


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A server in a temporary directory for as long as the context is open."""
    if not BIN_DIRS:
        raise RuntimeError(MISSING)
    root = Path(tempfile.mkdtemp(prefix="credit-risk-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = Postgres(BIN_DIRS[0], root / "data", free_port(), as_user)
    server.run("initdb", "-A", "trust", "-U", "postgres")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
