"""Where BentoML 1.4 does not do what this service needs, and what we do instead.

Each module opens with the upstream behaviour it works around, how that was measured, and when
it can be deleted; each has a canary test under tests/serving/workarounds/ that fails once
upstream changes. Checked against BentoML 1.4.40.

- `admission_gate`: a cheap 429 outside BentoML's middleware stack.
- `request_deadline`: BentoML's request timeout without its per-request timer leak.
- `model_reference`: an unservable model is refused with one line, not a restart loop.
- `openapi_document`: /docs.json as OpenAPI 3.1 with the real 400 body and every refusal.
- `json_body`: only JSON bodies reach BentoML's parser (malformed ones were 500s).
- `validation_errors`: 400s that name the fields; client errors logged as one INFO line.
"""
