"""The Grafana dashboard: no server named in it, the panels operators need, a clean grid, and
every series it or the alerts read listed in docs/operations.md (the contract serving keeps)."""

from __future__ import annotations

import json
import re
from typing import Any

from credit_risk.monitoring.alerts import rule_groups
from credit_risk.monitoring.dashboard import DATASOURCE, dashboard
from tests.conftest import ROOT

OPERATIONS = ROOT / "docs" / "operations.md"
CONTRACT_HEADING = "### Series the dashboard and alerts read"
SERIES = re.compile(r"\b(?:bentoml|credit_risk|process)_[a-z_]+\b")


def _panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def series_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label values in quotes left out)."""
    return set(SERIES.findall(re.sub(r'"[^"]*"', '""', expr)))


def used_series() -> set[str]:
    exprs = [t["expr"] for p in _panels() for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard()["templating"]["list"] if "definition" in v]
    exprs += [r["expr"] for g in rule_groups()["groups"] for r in g["rules"]]
    return set().union(*(series_in(e) for e in exprs))


def documented_series() -> set[str]:
    text = OPERATIONS.read_text(encoding="utf-8")
    assert CONTRACT_HEADING in text, f"docs/operations.md lacks '{CONTRACT_HEADING}'"
    section = text.split(CONTRACT_HEADING, 1)[1]
    section = re.split(r"^#{1,3} ", section, maxsplit=1, flags=re.MULTILINE)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {m for row in rows for m in SERIES.findall(row.split("|")[1])}


def test_the_data_source_is_a_variable_and_no_server_is_named() -> None:
    model = dashboard()
    text = json.dumps(model)
    assert "http://" not in text
    assert "https://" not in text
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for name in ("namespace", "job"):
        assert variables[name]["datasource"] == DATASOURCE
    assert DATASOURCE["uid"] == "${datasource}"


def test_the_panels_show_what_operators_asked_for() -> None:
    titles = {p["title"] for p in _panels()}
    assert titles >= {
        "Requests per second",
        "Refusals by cause",
        "Latency percentiles",
        "Runner batch size",
        "Runner time",
        "Decisions per second by model",
        "Approval rate by model",
        "Probability of default: distribution",
        "Input drift: PSI per signal",
        "Champion / challenger agreement",
        "Decision-store errors by cause",
        "CPU per worker",
        "Resident memory per worker",
        "Open file descriptors per worker",
    }


def test_the_grid_has_no_overlap_and_unique_ids() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    taken: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells
    assert len({t["refId"] for p in _panels() for t in p["targets"]}) >= 1


def test_every_series_read_is_documented_and_every_documented_one_read() -> None:
    used, documented = used_series(), documented_series()
    assert used - documented == set(), "read by the dashboard or alerts, missing in the docs"
    assert documented - used == set(), "listed in the docs, read by nothing"


def test_the_series_finder_ignores_label_values() -> None:
    expr = 'sum(rate(bentoml_service_request_total{service_name="credit_risk_service"}[5m]))'
    assert series_in(expr) == {"bentoml_service_request_total"}
