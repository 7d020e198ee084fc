"""The lean API -> runner hop: raw rows in and out, through BentoML's own batching dispatcher.

Canaries first: what upstream does that the hop avoids, and the internals it relies on.
"""

from __future__ import annotations

import inspect
import json

import bentoml
import numpy as np
import pytest
from _bentoml_impl.server.app import ServiceAppFactory
from _bentoml_sdk.io_models import IOMixin

from credit_risk.serving.workarounds.runner_hop import (
    ROWS_MEDIA_TYPE,
    decode_rows,
    encode_rows,
)
from tests.conftest import fresh_python

# --- canaries -----------------------------------------------------------------------------------


def test_bentoml_builds_a_services_app_through_its_app_factory() -> None:
    # EdgeService.to_asgi builds the app itself to reach the dispatcher; when upstream's
    # to_asgi does more than this, EdgeService must do it too (or this module goes).
    source = inspect.getsource(bentoml.Service.to_asgi)
    assert "self.inject_config()" in source
    assert "ServiceAppFactory(self, is_main=is_main)" in source
    body = [ln.strip() for ln in source.splitlines()[1:] if ln.strip()]
    assert len(body) == 4, body  # the import, inject_config, the factory, return factory()


def test_batch_infer_still_takes_a_method_name_and_its_arguments() -> None:
    params = list(inspect.signature(ServiceAppFactory.batch_infer).parameters)
    assert params == ["self", "name", "input_args", "input_kwargs"]


def test_bentoml_still_rebuilds_the_output_schema_for_every_answer() -> None:
    # One of the costs the hop avoids: the media type of an answer is found by building the
    # output model's JSON schema again, per answer. When this is cached upstream, re-measure.
    assert not isinstance(inspect.getattr_static(IOMixin, "mime_type"), property | type(None))
    assert "model_json_schema" in inspect.getsource(IOMixin.mime_type)


# --- the wire form ------------------------------------------------------------------------------


def test_rows_survive_the_wire_exactly() -> None:
    rows = np.random.default_rng(3).normal(size=(7, 18))
    back = decode_rows(encode_rows(rows), 18)
    np.testing.assert_array_equal(back, rows)


def test_a_body_that_is_not_whole_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="not whole rows of 18"):
        decode_rows(b"\0" * (8 * 18 + 3), 18)


# --- the runner's side, on BentoML's real app and dispatcher ------------------------------------
# In a fresh interpreter: BentoML registers its request metrics process-wide, so a second BentoML
# app cannot start in the process that serves the canaries' `Upstream` app.

RUNNER = """
import json, sys
import bentoml, numpy as np
from starlette.testclient import TestClient
from credit_risk.serving.edge import EdgeService
from credit_risk.serving.workarounds.runner_hop import RowsRoute, ROWS_MEDIA_TYPE

@bentoml.service(service_class=EdgeService)
class Doubler:
    @bentoml.api(batchable=True, max_batch_size=100, max_latency_ms=1000)
    async def score(self, rows: np.ndarray) -> np.ndarray:
        return np.column_stack([rows * 2, np.ones(len(rows))])

Doubler.add_asgi_middleware(RowsRoute, path="/score", method="score", columns=3)
out = []
with TestClient(Doubler.to_asgi(), raise_server_exceptions=False) as client:
    for body, media_type in json.loads(sys.argv[1]):
        r = client.post("/score", content=bytes.fromhex(body), headers={"content-type": media_type})
        out.append([r.status_code, r.headers.get("x-columns"), r.content.hex()])
print("ANSWERS", json.dumps(out))
"""


def _post(*bodies: tuple[bytes, str]) -> list[tuple[int, str | None, bytes]]:
    calls = json.dumps([[body.hex(), media_type] for body, media_type in bodies])
    out = fresh_python(RUNNER, calls)
    line = next(ln for ln in out.splitlines() if ln.startswith("ANSWERS "))
    return [(s, c, bytes.fromhex(b)) for s, c, b in json.loads(line.removeprefix("ANSWERS "))]


def test_the_route_scores_through_bentomls_batching_and_answers_rows() -> None:
    rows = np.arange(12, dtype=np.float64).reshape(4, 3)
    (status, width, body), (bad, _, message), (other, other_width, other_body) = _post(
        (encode_rows(rows), ROWS_MEDIA_TYPE),
        (b"\0" * 5, ROWS_MEDIA_TYPE),
        (b'{"rows": [[1, 2, 3]]}', "application/json"),
    )
    assert status == 200
    assert width is not None
    np.testing.assert_array_equal(
        decode_rows(body, int(width)), np.column_stack([rows * 2, np.ones(4)])
    )
    assert bad == 400, "a malformed body is the caller's mistake, not a runner failure"
    assert b"not whole rows" in message
    # other media types reach BentoML's own route, which answers in JSON
    assert (other, other_width) == (200, None)
    assert json.loads(other_body) == [[2.0, 4.0, 6.0, 1.0]]
