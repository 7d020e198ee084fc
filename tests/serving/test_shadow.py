"""The challenger's side, in process with real models: the runner's columns and the API's
records equal what the challenger's own decision rule says; the batched histogram update
equals prometheus_client's own `observe` (a canary for the internals it uses)."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from credit_risk.decisions import DecisionRule
from credit_risk.encoding import encode_applicants
from credit_risk.model_store import load_serving_model
from credit_risk.recourse import RecourseFinder
from credit_risk.schema import Applicant
from credit_risk.serving.metrics import SCORE_DIFFERENCE_BUCKETS, observe_all
from credit_risk.serving.shadow import WIDTH, Shadow, ShadowScorer
from load_tests.applicants import sample_applicants


def _samples(histogram: Histogram) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_observe_all_equals_observing_one_by_one() -> None:
    values = np.array([-75.0, -60.0, -3.0, 0.0, 0.0, 1.5, 2.0, 19.0, 61.0, 300.0])
    one, many = (
        Histogram("d", "d", buckets=SCORE_DIFFERENCE_BUCKETS, registry=CollectorRegistry())
        for _ in range(2)
    )
    for v in values.tolist():
        one.observe(v)
    observe_all(many, values)
    assert _samples(many) == _samples(one)


def test_shadow_records_are_the_challengers_own_decisions(
    model_tag: str, challenger_tag: str
) -> None:
    champion, challenger = load_serving_model(model_tag), load_serving_model(challenger_tag)
    rules = [DecisionRule.from_model(m.tag, m.metadata) for m in (challenger, champion)]
    applicants = [Applicant.model_validate(a) for a in sample_applicants(200, seed=2)]
    codes = encode_applicants(applicants)
    proba, excess = champion.scorer.predict(codes)
    recourse = RecourseFinder.for_model(champion.scorer, rules[1]).columns(codes, proba)
    ours = np.column_stack([proba, excess, recourse.as_array()])
    out = ShadowScorer(challenger.scorer, *rules).append(ours, codes)
    assert out.shape[1] > WIDTH
    shadow = Shadow(challenger.tag, challenger.metadata, champion.tag)
    records = shadow.records(len(applicants), out)
    want = rules[0].records(*challenger.scorer.predict(codes))
    assert {r["decision"] for r in want} == {"approve", "decline"}
    for got, expected in zip(records, want, strict=True):
        assert got is not None
        for key in ("model_version", "score", "risk_band", "decision", "threshold"):
            assert got[key] == expected[key], key
        assert got["probability_of_default"] == expected["probability_of_default"]
        assert got["reason_codes"] == ",".join(r["code"] for r in expected["reason_codes"])
    lost = shadow.records(3, out[:3, :WIDTH])
    assert lost == [None, None, None]
