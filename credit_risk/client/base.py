"""What both clients hold: the service's address, the retry policy and one connection pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import httpx

from credit_risk.client.retry import RetryEvent, RetryPolicy
from credit_risk.client.wire import DEFAULT_URL, headers, timeout

Pool = TypeVar("Pool", httpx.Client, httpx.AsyncClient)


class BaseClient(Generic[Pool]):
    """The options both clients take, kept in one place so the two never drift apart.

    `token` is sent as a bearer token; `connect_timeout_s` bounds making a connection and
    `read_timeout_s` each wait for the server (keep it above the service's 10 s request
    timeout, so the server ends a slow request with a 504 rather than the client guessing).
    429 and 503 are retried as `retry` allows, honouring Retry-After; `on_retry` hears of each
    retry before its wait (for logs or metrics).
    """

    _pool: type[Pool]

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        self.base_url = base_url
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        options: dict[str, Any] = {
            "base_url": base_url,
            "headers": headers(token),
            "timeout": timeout(connect_timeout_s, read_timeout_s),
        }
        self._http: Pool = self._pool(**options)
