"""The API docs page from the image's own files, with no third-party tracker.

Upstream (BentoML 1.4.40, checked): `GET /` serves `_bentoml_impl/server/main-openapi.html`,
which loads Google Tag Manager from www.googletagmanager.com (and a no-script iframe from
there), whatever `BENTOML_DO_NOT_TRACK` says; its Swagger UI initializer leaves `validatorUrl`
at Swagger UI's default, so on any host but localhost the page also loads a badge from
validator.swagger.io, sending it the document's address. Here `/` is answered at the edge with
`templates/docs.html`: the same Swagger UI from BentoML's own static files
(`/static_content/...`, served by BentoML), no tracker, `validatorUrl: null`. The canary in
tests/serving/workarounds/test_docs_page.py fails once upstream's page loads nothing from
another host; then delete this module and its template.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

import bentoml._internal.server

from credit_risk.serving.asgi import ASGIApp, Receive, Scope, Send

DOCS_PATH: Final = "/"
STATIC_PREFIX: Final = "/static_content/"
"""Where BentoML 1.4 mounts its Swagger UI files (`_bentoml_impl/server/app.py`)."""


def static_dir() -> Path:
    """BentoML's Swagger UI files (swagger-ui-bundle.js, its CSS, favicons)."""
    return Path(bentoml._internal.server.__file__).parent / "static_content"


def static_paths() -> list[str]:
    """The paths BentoML serves those files at."""
    return sorted(STATIC_PREFIX + p.name for p in static_dir().iterdir() if p.is_file())


class DocsPageMiddleware:
    """Answer `GET /` (and HEAD) with our docs page; pass everything else through."""

    outside_bentoml: Final = True

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.page = files("credit_risk.serving").joinpath("templates/docs.html").read_bytes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the page, or pass on."""
        if (
            scope["type"] != "http"
            or scope["path"] != DOCS_PATH
            or scope.get("method") not in ("GET", "HEAD")
        ):
            await self.app(scope, receive, send)
            return
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(self.page)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        body = b"" if scope["method"] == "HEAD" else self.page
        await send({"type": "http.response.body", "body": body})
