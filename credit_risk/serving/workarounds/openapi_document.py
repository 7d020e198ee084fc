"""The API as documented: an OpenAPI document that matches what the server answers.

Upstream (BentoML 1.4.40, checked): BentoML generates `/docs.json` itself and gets three things
wrong for this service: it labels pydantic's JSON Schema 2020-12 output as OpenAPI 3.0.2 (so
`exclusiveMinimum: 0` on `credit_amount` is invalid 3.0 and strict tools refuse the document),
it documents the 400 body as `{"error": str, "detail": str}` while `detail` is pydantic's list
of field errors, and it knows nothing of the refusals the service adds (401, 405, 408, 413,
415, 429, 431, 503, 504) nor of the bearer-token scheme. It also flattens every `anyOf` to its
first member (`_bentoml_sdk/method.py` `_flatten_field`), so an optional field such as
`application_id` (a string or null) is documented as a plain string. Schemathesis, run against
the served document in tests/service/test_fuzz_api.py, found the first three and the last. Its
`info` is BentoML's too: served from source (`bentoml serve`, `make serve`) the version is the
string "None" and the description BentoML's boilerplate README (badges and links to third-party
sites: Swagger UI loads the badges as images from img.shields.io, readthedocs.org and
badgen.net), with BentoML's team as the contact; here it is the package's version and our own
description, in a bento as well. The canaries in tests/serving/workarounds/
test_openapi_document.py fail once BentoML labels its document 3.1, describes the 400 body as a
list of field errors, keeps the null of an optional field, or serves a real version; then
`truthful_openapi` shrinks to what BentoML still gets wrong, and to the refusals it cannot know
of (and our description).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from credit_risk import __version__
from credit_risk.schema import Application, Decision
from credit_risk.serving.asgi import ASGIApp, Message, Receive, Scope, Send, run_rewriting_response

OPENAPI_DOCUMENT_PATH: Final = "/docs.json"
"""Where BentoML 1.4 serves the generated document (`_bentoml_impl/server/app.py`)."""

OPENAPI_VERSION: Final = "3.1.0"
"""The OpenAPI version whose schema dialect (JSON Schema 2020-12) pydantic 2 emits."""

JSON_MEDIA_TYPE: Final = "application/json"

API_DESCRIPTION: Final = (
    "Credit-risk decisions from a points-based scorecard. `POST /classify` takes one applicant, "
    "`POST /classify_batch` 1 to 1,000; each decision carries the probability of default, the "
    "score, the risk band and, for a decline, up to four reason codes, with a `decision_id` "
    "that keys its record in the decision log. `POST /model_card` describes the served model. "
    "Every refusal is JSON whose `error` names the field or the limit; 429 and 503 were refused "
    "before anything was scored and may be retried after `Retry-After`."
)
"""The document's `info.description`, in place of BentoML's boilerplate."""

FIELD_ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "title": "FieldError",
    "description": "One pydantic validation error: where (`loc`), what (`type`) and why (`msg`).",
    "required": ["type", "loc", "msg"],
    "properties": {
        "type": {"type": "string", "title": "Error type", "examples": ["missing"]},
        "loc": {
            "type": "array",
            "title": "Location",
            "description": "Path to the offending value inside the request body: the field name "
            "for one applicant, the list index then the field for a batch, empty for the body as "
            "a whole. The one-line `error` names it joined by dots (`3.housing`), or `body`.",
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "examples": [["age_years"], [3, "housing"], []],
        },
        "msg": {"type": "string", "title": "Message", "examples": ["Field required"]},
        "url": {"type": "string", "title": "Documentation URL"},
    },
}

VALIDATION_ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "title": "InvalidArgument",
    "description": "Bad Request: the body is not valid JSON or not a valid applicant.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "string",
            "title": "Message",
            "description": "One line naming each offending field (the first few), e.g. "
            "'invalid input: age_years: Field required' or 'invalid input: 3.housing: Input "
            "should be ...'; an empty body is 'the request body is empty: ...'.",
        },
        "detail": {
            "type": "array",
            "title": "Field errors",
            "description": "The validation errors, each in full: at most 50, of the body or, "
            "in a batch, of its first invalid row (validation stops there).",
            "items": {"$ref": "#/components/schemas/FieldError"},
        },
        "error_count": {
            "type": "integer",
            "title": "Errors",
            "description": "How many errors were found; `detail` lists at most 50 of them.",
        },
    },
}

REFUSAL_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "title": "Refusal",
    "description": "A request refused before it reached the model; `error` says why.",
    "required": ["error"],
    "properties": {"error": {"type": "string", "title": "Message"}},
}

REFUSALS: Final[Mapping[int, str]] = {
    401: "Unauthorized: bearer token missing or invalid (only when the server requires one).",
    405: "Method Not Allowed: the route takes only the method in the Allow header.",
    408: "Request Timeout: the request's head or body did not arrive within the deadline "
    "named in the message; the connection is closed.",
    413: "Payload Too Large: the body exceeds the request-size limit named in the message.",
    415: "Unsupported Media Type: the body must be sent as application/json, uncompressed "
    "(no Content-Encoding but identity).",
    429: "Too Many Requests: the worker is at its in-flight limit, or the bodies it holds fill "
    "its budget for bodies, or a large body could not start its validation in time; nothing "
    "was decided, retry after Retry-After.",
    431: "Request Header Fields Too Large: the request's head exceeds the size or header-count "
    "limit named in the message; the connection is closed.",
    503: "Service Unavailable: the scoring runner is down, or did not answer in time because "
    "the server is busy, or the decision store cannot record decisions (the message says which, "
    "and `cause` names the store's failure); nothing was decided, retry after Retry-After.",
    504: "Gateway Timeout: the request was not answered within the request timeout.",
}
"""Refusals on the API routes beyond BentoML's own list: the edge (serving/edge.py: the HTTP
protocol, routes, auth, body format, admission gate, JSON body), the runner's 503
(serving/classify.py) and the request deadline's 504; each body is `{"error": ...}`."""

SECURITY_SCHEME: Final = "bearerAuth"
"""The name of the bearer-token scheme in `components.securitySchemes`."""


def _nullable_fields() -> frozenset[str]:
    names = set()
    for model in (Application, Decision):
        for name, prop in model.model_json_schema()["properties"].items():
            if any(option.get("type") == "null" for option in prop.get("anyOf", [])):
                names.add(name)
    return frozenset(names)


NULLABLE_FIELDS: Final = _nullable_fields()
"""Fields of the request and answer that may be null (pydantic's `anyOf [..., null]`)."""


def _restore_nullable(node: Any) -> None:
    """Document each nullable field as `type: [..., "null"]` wherever a schema lists it."""
    if isinstance(node, list):
        for item in node:
            _restore_nullable(item)
        return
    if not isinstance(node, dict):
        return
    properties = node.get("properties")
    if isinstance(properties, dict):
        for name in NULLABLE_FIELDS & properties.keys():
            field = properties[name]
            kind = field.get("type")
            if isinstance(kind, str):
                field["type"] = [kind, "null"]
            elif "$ref" in field:  # a nullable model, flattened to its reference
                field["anyOf"] = [{"$ref": field.pop("$ref")}, {"type": "null"}]
    for value in node.values():
        _restore_nullable(value)


def truthful_openapi(
    document: dict[str, Any], api_paths: Iterable[str], *, auth_required: bool = False
) -> dict[str, Any]:
    """BentoML's generated document, corrected to describe what the server really answers:
    the bearer scheme is required on the API routes when `auth_required`, optional otherwise."""
    doc: dict[str, Any] = json.loads(json.dumps(document))  # deep copy; the input stays as is
    doc["openapi"] = OPENAPI_VERSION
    info = doc.setdefault("info", {})
    info.pop("contact", None)  # BentoML's team, not the people who run this service
    info.update(version=__version__, description=API_DESCRIPTION)
    _restore_nullable(doc)
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the tokens in CREDIT_RISK_API_TOKENS or "
        "CREDIT_RISK_API_TOKENS_FILE; with none configured, the server takes requests without "
        "a token.",
    }
    bearer: dict[str, list[str]] = {SECURITY_SCHEME: []}
    security = [bearer] if auth_required else [bearer, {}]
    schemas = components.setdefault("schemas", {})
    schemas["FieldError"] = FIELD_ERROR_SCHEMA
    schemas["InvalidArgument"] = VALIDATION_ERROR_SCHEMA
    schemas["Refusal"] = REFUSAL_SCHEMA
    refusal = {"application/json": {"schema": {"$ref": "#/components/schemas/Refusal"}}}
    for path in api_paths:
        for operation in doc.get("paths", {}).get(path, {}).values():
            responses = operation.setdefault("responses", {})
            for status, description in REFUSALS.items():
                responses[str(status)] = {"description": description, "content": refusal}
            operation["security"] = security
            body = operation.get("requestBody")
            if body is not None and _requires_content(body, schemas):
                body["required"] = True  # an empty body is refused as such
    return doc


def _requires_content(request_body: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """Whether an empty body would fail validation: required fields, or a non-empty list."""
    for media in request_body.get("content", {}).values():
        schema = media.get("schema", {})
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            schema = schemas.get(ref.rsplit("/", 1)[-1], {})
        if schema.get("required") or schema.get("minItems", 0) > 0:
            return True
    return False


class OpenAPIDocumentMiddleware:
    """Serve `truthful_openapi(...)` of BentoML's document at /docs.json; touch nothing else."""

    def __init__(
        self, app: ASGIApp, api_paths: Iterable[str], *, auth_required: bool = False
    ) -> None:
        self.app = app
        self.api_paths = tuple(sorted(api_paths))
        self.auth_required = auth_required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the one small document response and rewrite it; stream everything else."""
        if scope["type"] != "http" or scope.get("path") != OPENAPI_DOCUMENT_PATH:
            await self.app(scope, receive, send)
            return
        await run_rewriting_response(
            self.app, scope, receive, send, wants=lambda _start: True, rewrite=self._rewrite
        )

    def _rewrite(self, start: Message, body: bytes) -> bytes:
        if start["status"] != 200:
            return body
        document = truthful_openapi(
            json.loads(body), self.api_paths, auth_required=self.auth_required
        )
        return json.dumps(document).encode()
