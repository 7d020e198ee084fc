"""BentoML's own HTTP client keeps working with plain dicts (docs/api.md shows both clients)."""

from __future__ import annotations

import bentoml
import pytest

from credit_risk.schema import Decision, example_applicant
from tests.conftest import Server

pytestmark = pytest.mark.integration


def test_bentomls_sync_client_takes_and_returns_dicts(server: Server, model_tag: str) -> None:
    with bentoml.SyncHTTPClient(server.url, server_ready_timeout=30) as client:
        one = client.classify(example_applicant())
        many = client.classify_batch([example_applicant(), example_applicant()])
        card = client.model_card()
    assert isinstance(one, dict)
    assert Decision.model_validate(one).decision == "decline"
    assert [Decision.model_validate(d).decision for d in many] == ["decline", "decline"]
    assert card["tag"] == model_tag
