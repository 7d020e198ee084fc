"""Shadow scoring on real servers: the challenger is recorded, never returned, and can never
cost the champion an answer (a challenger failing mid-request, or unservable at start)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from credit_risk.decision_store import open_store
from credit_risk.model_store import SCORECARD_FILE, load_serving_model
from credit_risk.promotion import STATE_FILE
from credit_risk.schema import CATEGORIES, FEATURES, Applicant
from load_tests.applicants import sample_applicants
from tests.conftest import Server, copy_model, refused_start, start_server, stop_server

pytestmark = pytest.mark.integration

TARGET = "service:CreditRiskService"


def decision_records(home: Path, expected: int) -> list[dict[str, Any]]:
    """The server's decision store (every answered decision is already committed), each
    record as the applicant's fields, its id and the challenger's part (None when lost)."""
    store = open_store(f"sqlite:///{home / 'decisions.sqlite'}")
    try:
        records = [
            json.loads(r.inputs)
            | {
                "decision_id": r.decision_id,
                "challenger": json.loads(r.challenger) if r.challenger is not None else None,
            }
            for r in store.records()
        ]
    finally:
        store.close()
    assert len(records) == expected, f"{len(records)} records, expected {expected}"
    return records


def metric_total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric_delta(readings: tuple[str, str], name: str, **labels: str) -> float:
    """How much `name` (with `labels`) grew between two /metrics readings."""
    before, after = readings
    return metric_total(after, name, **labels) - metric_total(before, name, **labels)


def expected_decisions(tag: str, applicants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the model itself says, computed here from the stored model (no server)."""
    from credit_risk.decisions import DecisionRule  # noqa: PLC0415
    from credit_risk.encoding import encode_applicants  # noqa: PLC0415
    from credit_risk.policy import ScoreScaling  # noqa: PLC0415

    model = load_serving_model(tag)
    proba, excess = model.scorer.predict(
        encode_applicants([Applicant.model_validate(a) for a in applicants])
    )
    rule = DecisionRule(
        float(model.metadata["threshold"]),
        ScoreScaling.from_metadata(model.metadata["score_scaling"]),
        model.tag,
    )
    return rule.records(proba, excess)


@contextlib.contextmanager
def serving(tmp_path: Path, env: dict[str, str]) -> Iterator[Server]:
    """A real server on its own store at tmp_path/home."""
    server = start_server(TARGET, tmp_path / "server.log", env=env)
    try:
        yield server
    finally:
        stop_server(server)


def test_challenger_is_recorded_never_returned(
    model_tag: str, challenger_tag: str, tmp_path: Path
) -> None:
    """Champion and challenger from the promotion state, the champion also pinned."""
    home = tmp_path / "home"
    for tag in (model_tag, challenger_tag):
        copy_model(tag, home)
    state = {"champion": challenger_tag, "challenger": challenger_tag, "previous_champions": []}
    state["audit"] = []
    (home / STATE_FILE).write_text(json.dumps(state))
    applicants = sample_applicants(30, seed=11)
    env = {"BENTOML_HOME": str(home), "CREDIT_RISK_MODEL": model_tag}
    env["CREDIT_RISK_API_TOKENS"] = ""
    with serving(tmp_path, env) as server:
        metrics_before = httpx.get(f"{server.url}/metrics").text
        singles = [httpx.post(f"{server.url}/classify", json=a).json() for a in applicants[:10]]
        batch = httpx.post(f"{server.url}/classify_batch", json=applicants[10:], timeout=30)
        card = httpx.post(f"{server.url}/model_card").json()
        answers = singles + batch.json()
        records = decision_records(home, len(applicants))
        metrics_text = httpx.get(f"{server.url}/metrics").text
    log = server.log()
    pinned = [ln for ln in log.splitlines() if "pins the champion" in ln]
    assert len(pinned) == 1, log[-3000:]
    assert "overrides the promotion state" in pinned[0]

    champion = expected_decisions(model_tag, applicants)
    challenger = expected_decisions(challenger_tag, applicants)
    for answer, want in zip(answers, champion, strict=True):
        assert "challenger" not in json.dumps(answer)
        assert answer["model_version"] == model_tag
        assert answer["probability_of_default"] == pytest.approx(want["probability_of_default"])
    by_id = {r["decision_id"]: r for r in records}
    for answer, want in zip(answers, challenger, strict=True):
        shadow = by_id[answer["decision_id"]]["challenger"]
        assert shadow["model_version"] == challenger_tag
        assert shadow["probability_of_default"] == pytest.approx(want["probability_of_default"])
        assert (shadow["decision"], shadow["score"]) == (want["decision"], want["score"])
        assert shadow["risk_band"] == want["risk_band"]
        assert shadow["reason_codes"] == ",".join(r["code"] for r in want["reason_codes"])

    assert card["tag"] == model_tag
    assert card["challenger"]["tag"] == challenger_tag
    assert "promotion state" in card["challenger_served_from"]
    versions = {"champion": model_tag, "challenger": challenger_tag}
    counted = {
        c: metric_delta(
            (metrics_before, metrics_text),
            "credit_risk_shadow_comparisons_total",
            comparison=c,
            **versions,
        )
        for c in ("agree", "swap_in", "swap_out")
    }
    ours = [a["decision"] == "approve" for a in answers]
    theirs = [c["decision"] == "approve" for c in challenger]
    assert counted == {
        "agree": sum(a == b for a, b in zip(ours, theirs, strict=True)),
        "swap_in": sum(b and not a for a, b in zip(ours, theirs, strict=True)),
        "swap_out": sum(a and not b for a, b in zip(ours, theirs, strict=True)),
    }
    differences = metric_delta(
        (metrics_before, metrics_text), "credit_risk_shadow_score_difference_count", **versions
    )
    assert differences == len(applicants)


def break_last_table(model_dir: Path) -> None:
    """Cut the last category's entry off the scorecard's last table, keeping only check rows
    without it: the model loads, and fails on any applicant in that category."""
    path = model_dir / SCORECARD_FILE
    with np.load(path) as stored:
        data = dict(stored)
    size = len(data["flat_table"]) - int(data["offsets"][-1])
    keep = data["check_codes"][:, len(FEATURES) - 1] < size - 1
    data["flat_table"] = data["flat_table"][:-1]
    data["check_codes"] = data["check_codes"][keep]
    data["check_expected"] = data["check_expected"][keep]
    np.savez(path, **data)


def test_a_failing_challenger_loses_only_its_own_records(
    model_tag: str, challenger_tag: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    copy_model(model_tag, home)
    break_last_table(copy_model(challenger_tag, home))
    last = FEATURES[-1]
    dropped = CATEGORIES[last][-1]
    applicants = sample_applicants(40, seed=5)
    failing = sum(a[last] == dropped for a in applicants)
    assert 0 < failing < len(applicants), "the sample must hold both kinds of applicant"
    env = {"BENTOML_HOME": str(home), "CREDIT_RISK_MODEL": model_tag}
    env |= {"CREDIT_RISK_CHALLENGER": challenger_tag, "CREDIT_RISK_API_TOKENS": ""}
    with serving(tmp_path, env) as server:
        metrics_before = httpx.get(f"{server.url}/metrics").text
        statuses = [httpx.post(f"{server.url}/classify", json=a).status_code for a in applicants]
        batch = httpx.post(f"{server.url}/classify_batch", json=applicants, timeout=30)
        records = decision_records(home, 2 * len(applicants))
        metrics_text = httpx.get(f"{server.url}/metrics").text
    assert statuses == [200] * len(applicants)
    assert batch.status_code == 200
    assert len(batch.json()) == len(applicants)
    lost = [r for r in records if r["challenger"] is None]
    # one at a time, exactly the applicants in the dropped category; as a batch, all of them
    assert len(lost) == failing + len(applicants)
    kept = [r for r in records if r["challenger"] is not None]
    assert len(kept) == len(applicants) - failing
    assert all(r[last] != dropped for r in kept)
    failures = metric_delta(
        (metrics_before, metrics_text), "credit_risk_shadow_failures_total", stage="score"
    )
    assert failures == len(lost)


@pytest.mark.parametrize("case", ["unreadable", "schema-mismatch"])
def test_an_unservable_challenger_is_refused_with_one_line(
    case: str, model_tag: str, challenger_tag: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    copy_model(model_tag, home)
    target = copy_model(challenger_tag, home)
    if case == "unreadable":
        path = target / SCORECARD_FILE
        path.write_bytes(path.read_bytes()[:100])
        must_say = ("challenger: model", "cannot use", "CREDIT_RISK_CHALLENGER=none")
    else:
        info = yaml.safe_load((target / "model.yaml").read_text())
        info["metadata"]["schema_hash"] = "0" * 16
        (target / "model.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
        must_say = ("challenger: model", "applicant schema '0000000000000000'")
    env = {"BENTOML_HOME": str(home), "CREDIT_RISK_MODEL": model_tag}
    env["CREDIT_RISK_CHALLENGER"] = challenger_tag
    code, log = refused_start(TARGET, tmp_path / "server.log", env)
    assert code not in {None, 0}, log[-3000:]
    lines = [ln for ln in log.splitlines() if all(s in ln for s in must_say)]
    assert len(lines) == 1, log[-3000:]
    assert "Traceback" not in log


def test_the_start_up_log_names_the_resolved_version(model_tag: str, tmp_path: Path) -> None:
    """With nothing pinned or promoted, `credit_risk:latest` is served: the log says which."""
    home = tmp_path / "home"
    copy_model(model_tag, home)
    with serving(tmp_path, {"BENTOML_HOME": str(home)}) as server:
        card = httpx.post(f"{server.url}/model_card").json()
    lines = [ln for ln in server.log().splitlines() if "champion credit_risk:" in ln]
    assert len(lines) == 1, server.log()[-3000:]
    assert lines[0].split("champion ", 1)[1].startswith(f"{model_tag} (newest model")
    assert "resolved from credit_risk:latest" in lines[0]
    assert card["tag"] == model_tag
