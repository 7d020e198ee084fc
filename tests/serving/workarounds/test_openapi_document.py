"""The corrected OpenAPI document, in-process, and the canary for why: BentoML labels its
document OpenAPI 3.0 (pydantic emits 3.1's JSON Schema) and documents the 400's `detail` as a
string."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from credit_risk import __version__
from credit_risk.serving.workarounds.openapi_document import (
    API_DESCRIPTION,
    OPENAPI_DOCUMENT_PATH,
    OPENAPI_VERSION,
    REFUSALS,
    SECURITY_SCHEME,
    OpenAPIDocumentMiddleware,
    truthful_openapi,
)
from tests.serving.asgi_calls import call, http_scope, responding

PATHS = ("/one", "/many")


@pytest.fixture(scope="module")
def generated(upstream: TestClient) -> dict[str, Any]:
    """The document BentoML serves for the tiny service."""
    r = upstream.get(OPENAPI_DOCUMENT_PATH)
    assert r.status_code == 200
    return dict(r.json())


# --- canaries ----------------------------------------------------------------------------------


def test_bentoml_still_drops_the_null_of_an_optional_field() -> None:
    from _bentoml_sdk.method import _flatten_field  # noqa: PLC0415 (upstream internals)

    flattened = _flatten_field({"anyOf": [{"type": "string"}, {"type": "null"}]}, {})
    assert flattened == {"type": "string"}, (
        "BentoML keeps null in optional fields now: delete _restore_nullable from "
        "credit_risk/serving/workarounds/openapi_document.py"
    )


def test_optional_fields_are_documented_as_nullable() -> None:
    document = {
        "paths": {
            "/one": {
                "post": {
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "application_id": {"type": "string"},
                                        "age_years": {"type": "integer"},
                                    },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    doc = truthful_openapi(document, [])
    schema = doc["paths"]["/one"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["application_id"]["type"] == ["string", "null"]
    assert schema["properties"]["age_years"]["type"] == "integer"


def test_bentoml_still_labels_its_document_openapi_30(generated: dict[str, Any]) -> None:
    assert generated["openapi"].startswith("3.0."), (
        f"BentoML now serves OpenAPI {generated['openapi']}: drop the version fix in "
        "credit_risk/serving/workarounds/openapi_document.py"
    )


def test_bentoml_still_documents_the_400_detail_as_a_string(generated: dict[str, Any]) -> None:
    detail = generated["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]
    assert detail.get("type") == "string", (
        f"BentoML now documents the 400's detail as {detail}: drop the 400 fix in "
        "credit_risk/serving/workarounds/openapi_document.py"
    )


def test_bentoml_still_serves_version_none_and_its_boilerplate(generated: dict[str, Any]) -> None:
    info = generated["info"]
    assert info["version"] == "None", (
        f"BentoML now serves version {info['version']!r} from source: revisit the info fix in "
        "credit_risk/serving/workarounds/openapi_document.py"
    )
    assert "This is a Machine Learning Service created with BentoML" in info["description"]
    assert info["contact"]["name"] == "BentoML Team"


# --- truthful_openapi --------------------------------------------------------------------------


def test_the_document_is_31_with_the_real_400_and_every_refusal(
    generated: dict[str, Any],
) -> None:
    before = json.dumps(generated, sort_keys=True)
    doc = truthful_openapi(generated, PATHS)
    assert json.dumps(generated, sort_keys=True) == before, "the input is left as it was"
    assert doc["openapi"] == OPENAPI_VERSION
    assert doc["info"] == {
        "title": generated["info"]["title"],
        "version": __version__,
        "description": API_DESCRIPTION,
    }
    schemas = doc["components"]["schemas"]
    assert schemas["InvalidArgument"]["properties"]["detail"]["type"] == "array"
    assert schemas["FieldError"]["properties"]["loc"]["examples"][1] == [3, "housing"]
    for path in PATHS:
        operation = doc["paths"][path]["post"]
        for status in REFUSALS:
            refusal = operation["responses"][str(status)]
            assert refusal["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Refusal"
            }
    # an empty body fails an object with required fields, not a list that may be empty
    assert doc["paths"]["/one"]["post"]["requestBody"]["required"] is True
    assert "required" not in doc["paths"]["/many"]["post"]["requestBody"]
    assert (
        doc["paths"]["/one"]["post"]["responses"]["200"]
        == (generated["paths"]["/one"]["post"]["responses"]["200"])
    )


def test_the_document_lists_every_refusal_and_the_bearer_scheme(
    generated: dict[str, Any],
) -> None:
    assert set(REFUSALS) >= {401, 405, 408, 413, 415, 429, 431, 503, 504}
    open_doc = truthful_openapi(generated, PATHS)
    scheme = open_doc["components"]["securitySchemes"][SECURITY_SCHEME]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    required = truthful_openapi(generated, PATHS, auth_required=True)
    for path in PATHS:
        assert open_doc["paths"][path]["post"]["security"] == [{SECURITY_SCHEME: []}, {}]
        assert required["paths"][path]["post"]["security"] == [{SECURITY_SCHEME: []}]


def test_only_the_document_is_rewritten(generated: dict[str, Any]) -> None:
    served = responding(200, json.dumps(generated).encode(), b"application/json")
    sent = call(OpenAPIDocumentMiddleware(served, PATHS), http_scope(OPENAPI_DOCUMENT_PATH, "GET"))
    assert sent.json() == truthful_openapi(generated, PATHS)
    assert sent.headers[b"content-length"] == str(len(sent.body)).encode()
    elsewhere = call(OpenAPIDocumentMiddleware(served, PATHS), http_scope("/one"))
    assert json.loads(elsewhere.body) == generated
    failed = responding(500, b"oops")
    sent = call(OpenAPIDocumentMiddleware(failed, PATHS), http_scope(OPENAPI_DOCUMENT_PATH, "GET"))
    assert (sent.status, sent.body) == (500, b"oops")


def test_a_nullable_model_flattened_to_its_reference_is_documented_as_nullable() -> None:
    document = {
        "paths": {},
        "components": {
            "schemas": {
                "Decision": {"properties": {"recourse": {"$ref": "#/components/schemas/Recourse"}}}
            }
        },
    }
    fixed = truthful_openapi(document, ())
    recourse = fixed["components"]["schemas"]["Decision"]["properties"]["recourse"]
    assert recourse == {"anyOf": [{"$ref": "#/components/schemas/Recourse"}, {"type": "null"}]}
