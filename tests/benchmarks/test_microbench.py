"""Micro-benchmarks behind the per-call figures the docs quote (pytest-benchmark).

Not run by `make test` (they are measurements, not tests: the `microbench` marker is deselected
by default). `make microbench` runs them and fails when one has become more than 30 % slower
than the baseline committed under load_tests/results/microbench/ (its fastest round, the figure
least disturbed by other work on the machine); `make microbench-baseline` records a new one.
Each still checks what it times, so a benchmark of a broken path fails rather than flatters.

What each benchmark stands behind (docs/performance.md, "Micro-benchmarks", has the figures):
- `test_compiled_scorer_*`: the compiled scorecard scores 1 to 1,000 applicants in tens to
  hundreds of microseconds (design.md, champion-challenger.md);
- `test_validating_*`: pydantic validation of a request, ~3 µs per applicant (performance.md);
- `test_building_*`: answers built as dicts cost a fraction of pydantic objects (design.md);
- `test_decision_store_*`: one commit holds a turn's records, or a 1,000-applicant batch's, with
  the answers they are built from (design.md, performance.md: what a record costs);
- `test_coalescing_*`: gathering a turn's runner calls into one costs little per call
  (design.md);
- `test_runner_scores_*`: the runner's batch function with the recourse of its declines and
  with a rule that declines nothing (what an approval costs), 1 to 1,000 rows (model.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter

from credit_risk.decision_store import new_records, open_store
from credit_risk.decision_store.chain import ChainWriter
from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.model_store import ServingModel, load_serving_model
from credit_risk.recourse import APPROVED, RECOURSE_COLUMNS
from credit_risk.schema import Applicant, Decision
from credit_risk.serving.batch_scoring import BatchScoring
from credit_risk.serving.coalesce import Coalescer
from load_tests.applicants import sample_applicants

pytestmark = pytest.mark.microbench

APPLICANTS = TypeAdapter(list[Applicant])


@pytest.fixture(scope="module")
def served(model_tag: str) -> ServingModel:
    return load_serving_model(model_tag)


@pytest.fixture(scope="module")
def applicants() -> list[dict[str, Any]]:
    return sample_applicants(1000, seed=3)


@pytest.fixture(scope="module")
def codes(applicants: list[dict[str, Any]]) -> np.ndarray:
    return encode_applicants(APPLICANTS.validate_python(applicants))


@pytest.fixture(scope="module")
def rule(served: ServingModel) -> DecisionRule:
    return DecisionRule.from_model(served.tag, served.metadata)


@pytest.mark.parametrize("rows", [1, 64, 1000])
def test_compiled_scorer_scores_a_batch(
    benchmark: Any, served: ServingModel, codes: np.ndarray, rows: int
) -> None:
    proba, excess = (np.asarray(a) for a in benchmark(served.scorer.predict, codes[:rows]))
    assert proba.shape == (rows,)
    assert ((proba > 0) & (proba < 1)).all()
    assert excess.shape[0] == rows


def test_validating_a_request_of_1000_applicants(benchmark: Any, applicants: list[Any]) -> None:
    body = json.dumps(applicants).encode()
    parsed = benchmark(APPLICANTS.validate_json, body)
    assert len(parsed) == 1000
    assert parsed[0].model_dump(mode="json") == applicants[0]


def test_building_1000_answers_as_dicts(
    benchmark: Any, served: ServingModel, codes: np.ndarray, rule: DecisionRule
) -> None:
    proba, excess = served.scorer.predict(codes)
    records = benchmark(rule.records, np.asarray(proba), np.asarray(excess))
    assert len(records) == 1000
    Decision.model_validate(records[0])  # the same layout as the schema's


def test_building_1000_answers_as_pydantic_objects(
    benchmark: Any, served: ServingModel, codes: np.ndarray, rule: DecisionRule
) -> None:
    proba, excess = (np.asarray(a) for a in served.scorer.predict(codes))
    decisions = benchmark(rule.decide, proba, excess)
    as_dict = decisions[0].model_dump(mode="json")
    assert as_dict.keys() == rule.records(proba, excess)[0].keys()


@pytest.mark.parametrize("rows", [64, 1000])
def test_decision_store_commits_records(
    benchmark: Any,
    served: ServingModel,
    codes: np.ndarray,
    rule: DecisionRule,
    applicants: list[Any],
    tmp_path: Path,
    rows: int,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'decisions.sqlite'}")
    writer = ChainWriter(store, "bench")
    people = APPLICANTS.validate_python(applicants[:rows])
    proba, excess = (np.asarray(a) for a in served.scorer.predict(codes[:rows]))

    def one_commit() -> None:  # fresh ids each round: a decision id is the primary key
        decisions = rule.records(proba, excess)
        records = new_records(
            people, decisions, None, application_ids=[None] * rows, policy_version="bench"
        )
        writer.append(records)

    benchmark(one_commit)
    assert len(list(store.records())) % rows == 0
    store.close()


def test_coalescing_64_concurrent_calls_into_one(benchmark: Any, codes: np.ndarray) -> None:
    calls: list[int] = []

    async def decide(rows: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(len(rows))
        return rows

    coalescer: Coalescer[np.ndarray, np.ndarray] = Coalescer(decide, max_items=1000)
    loop = asyncio.new_event_loop()

    async def turn() -> list[Any]:
        return await asyncio.gather(*(coalescer.submit([codes[i]]) for i in range(64)))

    try:
        answers = benchmark(lambda: loop.run_until_complete(turn()))
    finally:
        loop.close()
    assert set(calls) == {64}, "one batch per turn"
    np.testing.assert_array_equal(np.vstack([a[0] for a in answers]), codes[:64])


class DeclinesNone:
    """A decision rule under which nothing is declined: the recourse step then computes nothing."""

    threshold = 1.0

    def declines(self, probability: np.ndarray) -> np.ndarray:
        return np.zeros(len(probability), dtype=np.bool_)


@pytest.mark.parametrize("rows", [1, 10, 100, 1000])
@pytest.mark.parametrize("rule_kind", ["served", "declines_none"])
def test_runner_scores_a_batch(
    benchmark: Any, served: ServingModel, codes: np.ndarray, rows: int, rule_kind: str
) -> None:
    scoring = BatchScoring(served, None, window=1000)
    scoring._drift_publish_scheduled = True  # as in steady state: the drift update is scheduled
    if rule_kind == "declines_none":
        scoring.recourse = dataclasses.replace(scoring.recourse, rule=DeclinesNone())
    out = benchmark(scoring.score, codes[:rows])
    state = out[:, -RECOURSE_COLUMNS]  # the recourse columns come last: APPROVED where approved
    declined = scoring.recourse.rule.declines(out[:, 0])
    assert out.shape[0] == rows
    if rule_kind == "declines_none":
        assert not declined.any()
    elif rows == 1000:
        assert declined.any(), "the sample holds declines, so the recourse is computed"
    np.testing.assert_array_equal(state != APPROVED, declined)
