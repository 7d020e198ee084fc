"""PSI and the sliding-window drift monitor."""

import numpy as np
import pytest

from credit_risk.schema import CATEGORIES, FEATURES
from credit_risk.serving.drift import DriftMonitor
from credit_risk.stability import PSI_ALERT, PSI_WATCH, Signal, psi, signals_from_metadata
from credit_risk.training.data import load_dataset
from credit_risk.training.evaluation import category_shares, distribution_summary
from credit_risk.training.preprocessing import encode_frame


def test_psi_zero_for_identical_and_known_value() -> None:
    assert psi([0.25] * 4, [25, 25, 25, 25]) == pytest.approx(0.0)
    expected, actual = np.array([0.5, 0.5]), np.array([0.7, 0.3])
    by_hand = (0.7 - 0.5) * np.log(0.7 / 0.5) + (0.3 - 0.5) * np.log(0.3 / 0.5)
    assert psi(expected, actual) == pytest.approx(by_hand)


def test_window_counts_match_a_brute_force_recount() -> None:
    rng = np.random.default_rng(1)
    signal = Signal("score", np.array([10.0, 20.0, 30.0]), np.full(4, 0.25))
    monitor = DriftMonitor([signal], window=50)
    history: list[float] = []
    for size in [7, 30, 1, 49, 50, 3, 120, 11]:
        scores = rng.uniform(0, 40, size)
        history.extend(scores)
        monitor.observe(np.zeros((size, len(FEATURES))), scores)
        recent = np.asarray(history[-50:])
        expected_counts = np.bincount(signal.bins(recent), minlength=4)
        # the window's PSI is exactly that of the brute-force counts of the last 50 scores
        assert monitor.psi() == {"score": psi(signal.expected, expected_counts)}
    assert monitor.full


def test_several_signals_keep_their_own_counts() -> None:
    rng = np.random.default_rng(2)
    column = FEATURES.index("housing")
    signals = [
        Signal("score", np.array([10.0, 20.0, 30.0]), np.full(4, 0.25)),
        Signal("housing", None, np.full(3, 1 / 3)),
    ]
    monitor = DriftMonitor(signals, window=40)
    scores_seen: list[float] = []
    housing_seen: list[float] = []
    for size in [5, 33, 41, 2, 90]:
        scores = rng.uniform(0, 40, size)
        codes = np.zeros((size, len(FEATURES)))
        codes[:, column] = rng.integers(0, 3, size)
        scores_seen.extend(scores)
        housing_seen.extend(codes[:, column])
        monitor.observe(codes, scores)
        want_scores = np.bincount(signals[0].bins(np.asarray(scores_seen[-40:])), minlength=4)
        want_housing = np.bincount(np.asarray(housing_seen[-40:], dtype=int), minlength=3)
        assert monitor.psi() == {
            "score": psi(signals[0].expected, want_scores),
            "housing": psi(signals[1].expected, want_housing),
        }


@pytest.fixture(scope="module")
def reference() -> tuple[dict, np.ndarray]:
    codes = encode_frame(load_dataset().X)
    scores = codes[:, FEATURES.index("credit_amount")] / 10  # any score-like number will do
    distribution = {
        "score": distribution_summary(scores),
        "numeric": {
            n: distribution_summary(codes[:, FEATURES.index(n)])
            for n in FEATURES
            if n not in CATEGORIES
        },
        "categorical": {
            n: category_shares(codes[:, FEATURES.index(n)], CATEGORIES[n]) for n in CATEGORIES
        },
    }
    return distribution, codes


def test_training_like_population_stays_stable(reference) -> None:
    distribution, codes = reference
    monitor = DriftMonitor(signals_from_metadata(distribution), window=1000)
    rng = np.random.default_rng(3)
    sample = codes[rng.integers(0, len(codes), 1000)]
    monitor.observe(sample, sample[:, FEATURES.index("credit_amount")] / 10)
    values = monitor.psi()
    assert set(values) == {"score", *FEATURES}
    assert max(values.values()) < PSI_WATCH, values


def test_shifted_population_crosses_the_alert_level(reference) -> None:
    distribution, codes = reference
    monitor = DriftMonitor(signals_from_metadata(distribution), window=1000)
    rng = np.random.default_rng(4)
    shifted = codes[rng.integers(0, len(codes), 1000)].copy()
    amount = FEATURES.index("credit_amount")
    shifted[:, amount] *= 3  # a population asking for three times the money
    shifted[:, FEATURES.index("checking_account")] = 0  # everyone overdrawn
    monitor.observe(shifted, shifted[:, amount] / 10)
    values = monitor.psi()
    assert values["credit_amount"] > PSI_ALERT
    assert values["score"] > PSI_ALERT
    assert values["checking_account"] > PSI_ALERT
    assert values["age_years"] < PSI_WATCH
