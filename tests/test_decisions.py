"""Score scaling, risk bands, reason codes and the decision policy."""

import math
import re
import time

import numpy as np
import pytest

from credit_risk.decisions import DecisionRule
from credit_risk.policy import (
    BAND_FLOORS,
    MAX_REASON_CODES,
    REASONS,
    RISK_BANDS,
    ScoreScaling,
    band_ceiling_probability,
    risk_bands,
    score_and_band,
)
from credit_risk.recourse import APPROVED, FOUND, NONE, RecourseColumns
from credit_risk.schema import FEATURES, Decision, describe_recourse


def test_scaling_anchor_and_pdo() -> None:
    s = ScoreScaling()
    # 50:1 good:bad -> P(bad) = 1/51 -> 600 points
    assert s.score(np.array([1 / 51]))[0] == pytest.approx(600.0)
    # doubling the good:bad odds adds PDO points
    assert s.score(np.array([1 / 101]))[0] == pytest.approx(620.0)
    assert s.factor == pytest.approx(20 / math.log(2))


def test_scaling_round_trips_metadata() -> None:
    s = ScoreScaling(base_score=500, base_odds_good_to_bad=20, pdo=50)
    meta = s.as_metadata()
    assert ScoreScaling.from_metadata(meta) == s
    assert meta["offset"] == pytest.approx(s.offset)


def test_score_is_finite_and_monotone_at_the_edges() -> None:
    p = np.array([0.0, 1e-6, 0.1, 0.5, 0.9, 1.0])
    scores = ScoreScaling().score(p)
    assert np.isfinite(scores).all()
    assert (np.diff(scores) < 0).all()


def test_bands_follow_the_documented_floors() -> None:
    floors = [int(f) for f in list(BAND_FLOORS.values())[:-1]]
    scores = np.array([*floors, floors[-1] - 1, 1000, -1000])
    assert risk_bands(scores) == ["A", "B", "C", "D", "E", "A", "E"]


def test_bands_are_cut_from_shown_scores_only() -> None:
    with pytest.raises(TypeError, match="whole-point"):
        risk_bands(np.array([579.76]))


def test_the_score_shown_decides_the_band() -> None:
    """Data row 715 of the shipped data scored 579.76 points: shown as 580, so band A (it was
    answered with band B while band A starts at 580)."""
    scaling = ScoreScaling()
    p = np.array([scaling.probability(s) for s in (579.76, 579.5, 579.49, 559.9, 499.5)])
    scores, bands = score_and_band(p, scaling)
    assert scores.tolist() == [580, 580, 579, 560, 500]
    assert [RISK_BANDS[b] for b in bands] == ["A", "A", "B", "B", "D"]
    (decision,) = POLICY.decide(p[:1], np.zeros((1, len(FEATURES))))
    assert (decision.score, decision.risk_band) == (580, "A")


def test_the_policy_table_states_the_highest_probability_a_band_admits() -> None:
    scaling = ScoreScaling()
    for floor in [f for f in BAND_FLOORS.values() if math.isfinite(f)]:
        ceiling = band_ceiling_probability(floor, scaling)
        just_in, just_out = ceiling * (1 - 1e-9), ceiling * (1 + 1e-9)
        scores, _ = score_and_band(np.array([just_in, just_out]), scaling)
        assert scores.tolist() == [floor, floor - 1]


def test_reason_codes_are_unique_and_cover_every_feature() -> None:
    assert set(REASONS) == set(FEATURES)
    codes = [code for code, _ in REASONS.values()]
    assert len(set(codes)) == len(codes)


POLICY = DecisionRule(threshold=0.2, scaling=ScoreScaling(), model_version="credit_risk:test")


def test_decline_gets_largest_reasons_first() -> None:
    excess = np.zeros((2, len(FEATURES)))
    excess[0, [3, 7, 1, 12, 5]] = [0.5, 0.9, 0.1, 0.7, 0.3]
    excess[1, 2] = 1.0
    decisions = POLICY.decide(np.array([0.6, 0.1]), excess)
    declined, approved = decisions
    assert declined.decision == "decline"
    assert [r.feature for r in declined.reason_codes] == [
        FEATURES[7],
        FEATURES[12],
        FEATURES[3],
        FEATURES[5],
    ]
    assert len(declined.reason_codes) == MAX_REASON_CODES
    points = [r.points for r in declined.reason_codes]
    assert points == sorted(points)  # most negative first
    assert points[0] == pytest.approx(-0.9 * POLICY.scaling.factor, abs=0.01)
    assert approved.decision == "approve"
    assert approved.reason_codes == []


def test_decline_lists_only_features_that_cost_points() -> None:
    excess = np.zeros((1, len(FEATURES)))
    excess[0, 4] = 0.2
    (decision,) = POLICY.decide(np.array([0.9]), excess)
    assert [r.code for r in decision.reason_codes] == [REASONS[FEATURES[4]][0]]


def test_decisions_validate_against_the_schema() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 50)
    excess = rng.uniform(0, 1, (50, len(FEATURES)))
    for d in POLICY.decide(p, excess):
        again = Decision.model_validate(d.model_dump())
        assert again == d
        assert (d.decision == "decline") == (d.probability_of_default > POLICY.threshold)
        exact_score = POLICY.scaling.score(np.array([d.probability_of_default]))
        assert d.risk_band == risk_bands(np.array([d.score]))[0]
        assert abs(d.score - exact_score[0]) <= 0.5


def test_records_are_assembled_from_the_decision_columns() -> None:
    rng = np.random.default_rng(7)
    p = rng.uniform(0, 0.6, 200)
    excess = rng.exponential(0.2, (200, len(FEATURES))) * (rng.random((200, len(FEATURES))) > 0.4)
    columns = POLICY.columns(p, excess)
    for i, record in enumerate(POLICY.records(p, excess)):
        k = columns.reason_count[i]
        assert record["score"] == columns.score[i]
        assert record["risk_band"] == "ABCDE"[columns.band[i]]
        assert (record["decision"] == "decline") == columns.declined[i]
        assert [r["code"] for r in record["reason_codes"]] == [
            REASONS[FEATURES[j]][0] for j in columns.reason_feature[i][:k]
        ]
        assert [r["points"] for r in record["reason_codes"]] == list(columns.reason_points[i][:k])
    assert not columns.reason_count[~columns.declined].any()


def test_no_shipped_applicant_is_answered_with_a_band_its_score_contradicts(
    model_tag: str,
) -> None:
    """All 1,000 rows of the shipped data through a real stored model: each answer's band is
    the one its shown score reads as, including the rows whose unrounded score sits just below
    a band's lowest score (13 of them with the default model were answered a band too low)."""
    from credit_risk.model_store import load_serving_model  # noqa: PLC0415
    from credit_risk.training.data import load_dataset  # noqa: PLC0415
    from credit_risk.training.preprocessing import encode_frame  # noqa: PLC0415

    model = load_serving_model(model_tag)
    rule = DecisionRule.from_model(model.tag, model.metadata)
    probability, excess = model.scorer.predict(encode_frame(load_dataset().X))
    answers = rule.records(probability, excess)
    exact = rule.scaling.score(probability)
    floors = [f for f in BAND_FLOORS.values() if math.isfinite(f)]
    on_an_edge = [i for i, s in enumerate(exact) if any(f - 0.5 <= s < f for f in floors)]
    assert on_an_edge, "no row sits on a rounding edge: the check below would prove nothing"
    for answer in answers:
        reached = [b for b, f in BAND_FLOORS.items() if answer["score"] >= f]
        assert answer["risk_band"] == reached[0]
    assert all(answers[i]["risk_band"] != _band_of_unrounded(exact[i]) for i in on_an_edge)


def _band_of_unrounded(score: float) -> str:
    """The band the unrounded score would have been cut into (the rule before the fix)."""
    return next(b for b, f in BAND_FLOORS.items() if score >= f)


def test_records_carry_the_recourse_columns_of_declines_only() -> None:
    p = np.array([0.1, 0.6, 0.7])
    recourse = RecourseColumns(
        state=np.array([APPROVED, FOUND, NONE]),
        method=np.zeros(3, dtype=np.intp),
        credit_amount=np.array([0.0, 1200.0, 0.0]),
        duration_months=np.array([0, 18, 0]),
    )
    approved, found, none = POLICY.decide(p, np.zeros((3, len(FEATURES))), recourse)
    assert approved.recourse is None
    assert found.recourse is not None
    assert (found.recourse.found, found.recourse.credit_amount) == (True, 1200.0)
    assert found.recourse.duration_months == 18
    assert found.recourse.method == "exact"
    assert found.recourse.description == describe_recourse(1200.0, 18)
    assert none.recourse is not None
    assert none.recourse.found is False
    assert none.recourse.credit_amount is None
    # a library caller that computes no recourse gets null everywhere
    assert [d.recourse for d in POLICY.decide(p, np.zeros((3, len(FEATURES))))] == [None] * 3


def test_decision_ids_are_unique_unguessable_and_ordered_by_time() -> None:
    p, excess = np.full(1_000, 0.2), np.zeros((1_000, len(FEATURES)))
    earlier = [r["decision_id"] for r in POLICY.records(p, excess)]
    before_next = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == before_next:  # the next millisecond (a condition)
        pass
    later = [r["decision_id"] for r in POLICY.records(p, excess)]
    ids = earlier + later
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert max(earlier) < min(later), "ids made later sort later (the store's index appends)"
    clock = int(later[0][:12], 16)
    assert before_next <= clock <= time.time_ns() // 1_000_000
    tails = {i[12:] for i in earlier}
    assert len(tails) == len(earlier), "80 random bits after the clock"
