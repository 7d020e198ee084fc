"""Which store: `CREDIT_RISK_DECISION_STORE` (a URL), or a file holding it, else SQLite under
the BentoML home."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl

from credit_risk.decision_store.errors import StoreError
from credit_risk.decision_store.store import DecisionStore

STORE_ENV: Final = "CREDIT_RISK_DECISION_STORE"
"""The store's URL: `postgresql://user@host:5432/db` or `sqlite:////absolute/path.sqlite`."""
STORE_FILE_ENV: Final = "CREDIT_RISK_DECISION_STORE_FILE"
"""A file holding that URL (a mounted Kubernetes Secret: the password stays out of the env)."""
DEFAULT_FILE: Final = "decisions.sqlite"
"""The embedded store's file name under the BentoML home."""

SYNC_LEVELS: Final = ("NORMAL", "FULL")
"""SQLite's `synchronous` levels the store accepts in WAL mode (`?synchronous=` in the URL)."""
DEFAULT_SYNC: Final = "NORMAL"
"""A commit is in the write-ahead log before its answer is sent, so it survives the process,
the pod and the container (the kernel keeps what was written); a power cut or a kernel crash
can roll back the last commits. `?synchronous=full` syncs the log at every commit and survives
those too, at ~0.1 ms of CPU per decision and ~20 % of throughput here (docs/performance.md).
PostgreSQL, the production store, syncs its log at every commit by default."""

_POSTGRES = re.compile(r"^postgres(ql)?://", re.IGNORECASE)


def store_url(environ: Mapping[str, str] = os.environ) -> str:
    """The configured store URL; without one, SQLite beside the model store."""
    url = (environ.get(STORE_ENV) or "").strip()
    secret = (environ.get(STORE_FILE_ENV) or "").strip()
    if url and secret:
        msg = f"set {STORE_ENV} or {STORE_FILE_ENV}, not both"
        raise StoreError(msg)
    if secret:
        try:
            url = Path(secret).read_text(encoding="utf-8").strip()
        except OSError as exc:
            msg = f"{STORE_FILE_ENV}={secret}: cannot read it ({exc.strerror})"
            raise StoreError(msg) from None
        if not url:
            msg = f"{STORE_FILE_ENV}={secret}: the file is empty"
            raise StoreError(msg)
    if not url:
        from credit_risk.model_store import store_home  # noqa: PLC0415 (imports BentoML)

        return f"sqlite:///{store_home() / DEFAULT_FILE}"
    check_url(url)
    return url


def check_url(url: str) -> None:
    """Refuse a URL that names neither backend, without echoing a password."""
    if _POSTGRES.match(url) or url.startswith("sqlite:///"):
        return
    scheme = url.split(":", 1)[0] if ":" in url else url[:12]
    msg = f"decision store URL must start with postgresql:// or sqlite:/// (got {scheme!r}...)"
    raise StoreError(msg)


def describe_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def open_store(url: str | None = None) -> DecisionStore:
    """The store at `url` (default: the configured one); nothing is connected yet."""
    url = url or store_url()
    check_url(url)
    if _POSTGRES.match(url):
        from credit_risk.decision_store.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(url)
    from credit_risk.decision_store.sqlite import SqliteStore  # noqa: PLC0415

    where, _, query = url.removeprefix("sqlite:///").partition("?")
    path = Path(where)
    if not path.is_absolute():
        msg = "sqlite:/// needs an absolute path, e.g. sqlite:////var/lib/decisions.sqlite"
        raise StoreError(msg)
    options = dict(parse_qsl(query))
    sync = options.pop("synchronous", DEFAULT_SYNC).upper()
    if options or sync not in SYNC_LEVELS:
        msg = f"sqlite:/// takes one option, synchronous={'|'.join(SYNC_LEVELS).lower()}"
        raise StoreError(msg)
    return SqliteStore(url, path, synchronous=sync)
