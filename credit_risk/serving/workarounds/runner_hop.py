"""The API -> runner hop as raw rows over one kept-alive connection, into BentoML's batching.

Upstream (BentoML 1.4.40, checked): a call to a dependency goes through BentoML's client
(`RemoteProxy`: OpenTelemetry context injection, the pickle serde, a request built per call) and,
in the runner, through the whole request stack again: a tracing span, request metrics, the
timeout, the context middleware, Starlette's router, pydantic validation of the input model,
the JSON schema of the output model rebuilt on every answer to find its media type, and the
pickled answer streamed in chunks (one write per chunk). py-spy at 64 connections on 2 cores:
our scoring was 3 % of the runner's time, and the runner about 40 % of the service's CPU per
decision (docs/performance.md).

Here the API worker sends a batch's code rows as little-endian float64 bytes (`ROWS_MEDIA_TYPE`)
to the runner's `/score` on a kept-alive connection (`RowsClient`), and in the runner
`RowsRoute`, a layer outside BentoML's stack, hands the array straight to BentoML's adaptive
batching dispatcher for `score` (`ServiceAppFactory.batch_infer`: batching, its batch-size
histogram and `max_latency_ms` shedding unchanged) and answers the rows the same way, in one
write. Calls in BentoML's own media types still reach BentoML's route untouched.

The canary in tests/serving/workarounds/test_runner_hop.py fails once `Service.to_asgi` builds
its app other than through `ServiceAppFactory` (which `EdgeService` does itself, to reach the
dispatcher), once `batch_infer` changes its signature, or once the output media type stops being
recomputed per answer; then measure BentoML's own hop again and delete this module if it comes
close.
"""

from __future__ import annotations

import logging
from typing import Any, Final
from urllib.parse import urlparse

import aiohttp
import bentoml
import numpy as np
from bentoml.exceptions import ServiceUnavailable

from credit_risk.arrays import FloatArray
from credit_risk.serving.asgi import ASGIApp, ClientGoneError, Receive, Scope, Send, read_body

logger = logging.getLogger(__name__)

ROWS_MEDIA_TYPE: Final = "application/x-credit-risk-rows"
"""A body of little-endian float64 values, row after row; the answer says its width."""
COLUMNS_HEADER: Final = "x-columns"
SCORE_PATH: Final = "/score"
"""The runner's batchable API (`CreditScorer.score`), where BentoML also routes it."""
ROWS_DTYPE: Final = np.dtype("<f8")


class RunnerShedError(Exception):
    """The runner is up but shed the call: its batching queue could not meet `max_latency_ms`."""


def encode_rows(rows: FloatArray) -> bytes:
    """The wire form of a 2-D float array (its width travels separately)."""
    return np.ascontiguousarray(rows, dtype=ROWS_DTYPE).tobytes()


def decode_rows(body: bytes, columns: int) -> FloatArray:
    """The array a wire body holds; `ValueError` if it is not whole rows of `columns`."""
    if columns < 1 or len(body) % (ROWS_DTYPE.itemsize * columns):
        msg = f"{len(body)} bytes are not whole rows of {columns} float64 values"
        raise ValueError(msg)
    return np.frombuffer(body, dtype=ROWS_DTYPE).reshape(-1, columns)


class RowsRoute:
    """The runner's side: POST `path` in `ROWS_MEDIA_TYPE` answered through BentoML's batching
    dispatcher for `method`; everything else passes to BentoML."""

    outside_bentoml: Final = True
    needs_app_factory: Final = True
    """`EdgeService` passes BentoML's app factory (for its dispatcher) as `factory`."""

    def __init__(self, app: ASGIApp, factory: Any, path: str, method: str, columns: int) -> None:
        self.app = app
        self.factory = factory
        self.path = path
        self.method = method
        self.columns = columns

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer raw-row calls; pass the rest on."""
        if not self._ours(scope):
            await self.app(scope, receive, send)
            return
        try:
            codes = decode_rows(await read_body(receive), self.columns)
        except ClientGoneError:
            return
        except ValueError as exc:
            await _send(send, 400, str(exc).encode())
            return
        try:
            out = np.asarray(await self._score(codes))
        except ServiceUnavailable as exc:  # the dispatcher shed it (max_latency_ms)
            await _send(send, 503, str(exc).encode())
            return
        except Exception:
            logger.exception("scoring %d rows failed", len(codes))
            await _send(send, 500, b"scoring failed; see the runner's log")
            return
        await _send(send, 200, encode_rows(out), [(COLUMNS_HEADER.encode(), b"%d" % out.shape[1])])

    async def _score(self, codes: FloatArray) -> Any:
        """Through BentoML's batching dispatcher when the method is batchable (adaptive
        batching on), else straight to the service's method, as BentoML's route would."""
        if self.method in self.factory.dispatchers:
            return await self.factory.batch_infer(self.method, (codes,), {})
        return await getattr(bentoml.get_current_service(), self.method)(codes)

    def _ours(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            return False
        declared: bytes = dict(scope.get("headers") or []).get(b"content-type", b"")
        return declared == ROWS_MEDIA_TYPE.encode()


async def _send(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    start_headers = [
        (b"content-type", ROWS_MEDIA_TYPE.encode() if status == 200 else b"text/plain"),
        (b"content-length", b"%d" % len(body)),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


class RowsClient:
    """The API worker's side: one kept-alive session to the runner's address (BentoML's
    `tcp://`, `file://` Unix socket, or `http://` URL for the dependency)."""

    def __init__(self, url: str, path: str) -> None:
        parsed = urlparse(url)
        self._socket = parsed.path if parsed.scheme == "file" else None
        base = "http://runner" if self._socket else f"http://{parsed.netloc}"
        self._url = base + path
        self._session: aiohttp.ClientSession | None = None

    async def score(self, rows: FloatArray) -> FloatArray:
        """The runner's answer rows for `rows`; `RunnerShedError` if it shed the call, aiohttp's
        connection errors if it could not be reached."""
        session = self._session or self._open()
        async with session.post(
            self._url, data=encode_rows(rows), headers={"content-type": ROWS_MEDIA_TYPE}
        ) as response:
            body = await response.read()
            if response.status == 503:
                raise RunnerShedError(body.decode(errors="replace"))
            if response.status != 200:
                msg = f"runner answered {response.status}: {body.decode(errors='replace')}"
                raise RuntimeError(msg)
            columns = int(response.headers[COLUMNS_HEADER])
        return decode_rows(body, columns)

    def _open(self) -> aiohttp.ClientSession:
        connector = (
            aiohttp.UnixConnector(path=self._socket)
            if self._socket
            else aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        )
        self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
        return self._session

    async def close(self) -> None:
        """Close the session (at shutdown)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
