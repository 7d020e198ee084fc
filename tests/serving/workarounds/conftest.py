"""BentoML's own app for a tiny service, in-process: what the canaries observe upstream doing.

One app per test session: BentoML registers its request metrics in the process-wide Prometheus
registry on an app's first request, so a second app in the same process cannot serve.
"""

from __future__ import annotations

from collections.abc import Iterator

import bentoml
import pytest
from pydantic import BaseModel
from starlette.testclient import TestClient


class Item(BaseModel):
    """Two required fields, as an applicant has many."""

    count: int
    label: str


@bentoml.service(traffic={"timeout": 7, "max_concurrency": 3})
class Upstream:
    """A body of one object and a body of a list, as /classify and /classify_batch take."""

    @bentoml.api
    def one(self, item: Item, /) -> Item:
        """Echo one item."""
        return item

    @bentoml.api
    def many(self, items: list[Item], /) -> list[Item]:
        """Echo a list of items."""
        return items


@pytest.fixture(scope="session")
def upstream() -> Iterator[TestClient]:
    """BentoML's app for `Upstream`, unchanged; server errors come back as 500s, as served."""
    with TestClient(Upstream.to_asgi(), raise_server_exceptions=False) as client:
        yield client
