"""Tuned constants of the serving path: each measured, none configurable by environment.

What an operator may change lives in `credit_risk.serving.settings`; BentoML's own knobs
(workers, traffic) in its config. These values were sized by the load benchmark and the fault
tests, and each says what it bounds and why it has the value it has.
"""

from __future__ import annotations

from typing import Final

from credit_risk.policy import MAX_BATCH_APPLICANTS

RUNNER_MAX_BATCH_SIZE: Final = MAX_BATCH_APPLICANTS
"""Rows per adaptive batch. The compiled scorecard scores 1,000 rows in well under a
millisecond, so the bound is there to keep one batch request a single runner call."""

RUNNER_MAX_LATENCY_MS: Final = 1000
"""BentoML's admission bound for the runner queue: a row that cannot be scored within this is
shed with 503 (it is not a flush timer). Sized from the load benchmark."""

BATCHES_IN_FLIGHT: Final = 4
"""Decision batches one API worker has under way at once (runner call, then the store's
commit); what arrives meanwhile waits for one to finish and goes as one batch
(serving/coalesce.py). At 64 connections batches hold ~12 requests either way; the bound keeps
a burst from fanning out into hundreds of concurrent runner calls and commits."""

RUNNER_CALL_ATTEMPTS: Final = 3
"""Tries of one API -> runner call. Under bursts the internal keep-alive connection is
sometimes closed under a request (aiohttp `Cannot write to closing transport`); one retry on a
fresh connection succeeds. A runner that is down fails all three within ~0.1 s -> 503."""

RUNNER_DEADLINE_S: Final = 3.0
"""Longest one request waits for the runner (all tries together). A killed runner is back in
~9-14 s (the supervisor checks every 10 s), far past what a caller should be held; past this
the request gets a 503 with Retry-After and nothing scored (tests/service/test_faults.py)."""

RUNNER_DEADLINE_GRACE_S: Final = 0.05
"""A last wait after the deadline before giving up: an event loop blocked past the deadline
(by other requests' CPU work) runs its timers before it reads the answers that arrived
meanwhile, so a healthy runner's answer may be there, unread."""

RUNNER_READY_PROBE_S: Final = 0.5
"""How long a call that missed its deadline asks the runner's /readyz, to tell the client the
true cause: a runner that answers is busy (503 "server busy"), one that does not is down (503
"runner unavailable")."""

RUNNER_RETRY_BACKOFF_S: Final = 0.05
"""Pause before the second try (doubled before the third)."""

RUNNER_CONNECTION_MAX_REQUESTS: Final = 10_000
"""BentoML's `runner_connection.max_requests`: the API -> runner session is rebuilt after this
many calls. Raising it from BentoML's default removed dropped connections under bursts."""

REQUEST_TIMEOUT_S: Final = 10
"""BentoML `traffic.timeout`: a request still unanswered after this gets 504."""

BODY_READ_TIMEOUT_S: Final = 5.0
"""Longest a request's body may take to arrive, from its headers to its last byte; past it the
admission gate answers 408 and closes the connection. A batch of 1,000 applicants (~0.3 MB)
needs 5 s only below ~0.5 Mbit/s; a client that stalls mid-body holds nothing but its
connection meanwhile (docs/reliability.md, "Stalled and idle clients")."""

KEEP_ALIVE_TIMEOUT_S: Final = 5
"""Uvicorn closes a connection idle this long after its last response (BentoML's default,
changed only by `bentoml serve --timeout-keep-alive`; there is no config key for it)."""

DRIFT_PUBLISH_INTERVAL_S: Final = 0.5
"""The drift gauges are recomputed at most this often (and always this soon after traffic):
a PSI per signal on every runner batch cost ~6 % of the runner's time under load."""

DEFAULT_MAX_IN_FLIGHT: Final = 64
"""Requests one API worker admits at once before it sheds with 429
(credit_risk/serving/workarounds/admission_gate.py).
Little's law: a saturated 2-core host serves ~700 requests/s under a flood, so 2 x 64 admitted
requests queue ~0.2 s and their p99 stays well inside the documented 1 s; 128 per worker
measured a p99 of 2.1 s, and 16 refused some requests at half load (`make overload`). The 64
connections of the load benchmark fit; a closed loop of 256 connections is half refused."""

DEFAULT_MAX_CONNECTIONS: Final = 4096
"""Client connections one worker holds open at most (credit_risk/serving/connections.py). An
idle connection costs ~10 KB; 2,000 idle keep-alive connections leave service untouched
(tests/service/test_stalled_clients.py). Further connections are closed as they arrive."""

MAX_HEAD_BYTES: Final = 16 * 1024
"""Request line and headers of one request, in bytes; past it, 431 and the connection closed
(credit_risk/serving/workarounds/http_protocol.py). Our largest legitimate head, a browser's
with cookies and a bearer token, is under 2 KB; nginx's default buffers allow 8-32 KB."""

MAX_HEADERS: Final = 100
"""Header fields in one request; past it, 431 (Go's and Node's servers default to 100-2000;
no client of ours sends more than 20)."""

HEAD_TIMEOUT_S: Final = 5.0
"""From a request's first byte to the end of its headers; past it, 408 and the connection
closed. A client sends its head in one packet, so only a stalled or trickling one (slowloris)
gets near it. Also the most a body left unread by an early refusal may take to arrive."""

BODY_BUDGET_BYTES: Final = 32 * 1024 * 1024
"""Bytes of request bodies one API worker holds at once: bodies being read plus those of
admitted requests. 64 admitted batches of 1,000 applicants (~0.45 MB each) fit in 29 MB; past
it, 429 with Retry-After (credit_risk/serving/workarounds/admission_gate.py). Keeps bodies in
flight to a fixed share of a worker's memory (~130 MB idle; the pod has 1.5 GiB for four
processes)."""

LANE_FROM_BYTES: Final = 16 * 1024
"""Bodies larger than this take the validation lane (credit_risk/serving/validation_lane.py):
one applicant is under 1 KB, a full batch ~0.45 MB."""

LANE_SHARE: Final = 0.125
"""Of a worker's CPU, about the most that refused large bodies may take: a full batch with every
field wrong is charged ~2 ms, so the lane refuses at most ~60 of them a second per worker."""

LANE_MAX_WAIT_S: Final = 2.0
"""Longest a large body waits for the validation lane before its request is answered 429; well
inside REQUEST_TIMEOUT_S, so a batch refused here has time to be sent again."""

RUNNER_SHUTDOWN_WAIT_S: Final = 20.0
"""Longest the runner keeps serving after SIGTERM while API workers still finish their requests
(credit_risk/serving/workarounds/shutdown_order.py): a request lasts at most the request timeout
(10 s), and the pod's grace period is 30 s, 5 of them the preStop sleep."""
