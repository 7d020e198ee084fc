"""Where BentoML 1.4 does not do what this service needs, and what we do instead.

Each module opens with the upstream behaviour it works around, how that was measured, and when
it can be deleted; each has a canary test under tests/serving/workarounds/ that fails once
upstream changes. Measured on BentoML 1.4.40: importing this package refuses any other release,
so a version bump cannot slip past the canaries.

- `http_protocol`: uvicorn's HTTP protocol with a bounded, timed request head (431, 408),
  silent connections closed, malformed requests answered in JSON.
- `admission_gate`: a cheap 429 outside BentoML's middleware stack, bodies read under a
  deadline and within a per-worker budget.
- `request_deadline`: BentoML's request timeout without its per-request timer leak.
- `model_reference`: an unservable model is refused with one line, not a restart loop.
- `openapi_document`: /docs.json as OpenAPI 3.1 with the real 400 body and every refusal.
- `json_body`: only JSON bodies reach BentoML's parser (malformed ones were 500s); no key twice.
- `docs_page`: the API docs page without BentoML's third-party tracker.
- `shutdown_order`: on SIGTERM the runner outlives the API workers (and its socket).
- `listening_socket`: each API worker accepts from a socket of its own (SO_REUSEPORT).
- `validation_errors`: 400s that name the fields; client errors logged as one INFO line.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Final

MEASURED_ON: Final = "1.4.40"
"""The BentoML release every workaround here was measured against (pinned in pyproject.toml)."""


class UnmeasuredBentoMLError(ImportError):
    """The installed BentoML is not the release these workarounds were measured on."""


def check_bentoml(installed: str) -> None:
    """Refuse a BentoML other than `MEASURED_ON`: each workaround patches or bypasses a
    behaviour of that release, and could silently do the wrong thing on another."""
    if installed != MEASURED_ON:
        msg = (
            f"bentoml {installed} is installed, but credit_risk/serving/workarounds/ was measured "
            f"on bentoml {MEASURED_ON}: install bentoml=={MEASURED_ON} (make setup), or re-run "
            "each workaround's canary (tests/serving/workarounds/) before moving the pin"
        )
        raise UnmeasuredBentoMLError(msg)


check_bentoml(version("bentoml"))
