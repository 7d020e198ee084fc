"""A damaged promotion state at `bentoml serve` start-up: a pinned champion is served anyway;
without a pin the start is refused with one line naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from credit_risk.promotion import STATE_FILE
from load_tests.applicants import sample_applicants
from tests.conftest import copy_model, refused_start, start_server, stop_server

pytestmark = pytest.mark.integration

TARGET = "service:CreditRiskService"
TRUNCATED = '{"champion": "credit_risk:abc", "chall'


def _home(tmp_path: Path, model_tag: str, state: str) -> Path:
    home = tmp_path / "home"
    copy_model(model_tag, home)
    (home / STATE_FILE).write_text(state)
    return home


def test_without_a_pin_the_start_is_refused_with_one_line(model_tag: str, tmp_path: Path) -> None:
    home = _home(tmp_path, model_tag, TRUNCATED)
    env = {"BENTOML_HOME": str(home), "CREDIT_RISK_MODEL": "", "CREDIT_RISK_CHALLENGER": ""}
    code, log = refused_start(TARGET, tmp_path / "server.log", env)
    assert code not in {None, 0}, log[-3000:]
    lines = [ln for ln in log.splitlines() if "cannot choose the model to serve" in ln]
    assert len(lines) == 1, log[-3000:]
    assert f"{home / STATE_FILE}: invalid promotion state: not valid JSON" in lines[0]
    assert "CREDIT_RISK_MODEL=<tag>" in lines[0]
    assert "Traceback" not in log


@pytest.mark.parametrize("state", [TRUNCATED, "[]"])
def test_a_pinned_champion_is_served_whatever_the_file_holds(
    state: str, model_tag: str, tmp_path: Path
) -> None:
    home = _home(tmp_path, model_tag, state)
    env = {"BENTOML_HOME": str(home), "CREDIT_RISK_MODEL": model_tag}
    env |= {"CREDIT_RISK_CHALLENGER": "", "CREDIT_RISK_API_TOKENS": ""}
    server = start_server(TARGET, tmp_path / "server.log", env=env)
    try:
        answer = httpx.post(f"{server.url}/classify", json=sample_applicants(1, seed=5)[0])
        card = httpx.post(f"{server.url}/model_card").json()
    finally:
        stop_server(server)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == model_tag
    assert card["challenger"] is None
    assert card["challenger_served_from"] == "promotion state unreadable"
    warned = [ln for ln in server.log().splitlines() if str(home / STATE_FILE) in ln]
    assert len(warned) == 1, server.log()[-3000:]
    assert "serving the champion pinned by CREDIT_RISK_MODEL regardless" in warned[0]
    assert "Traceback" not in server.log()
