"""The classic tutorial service, for comparison: Flask behind gunicorn, pandas in, JSON out, built
the way most "deploy your scikit-learn model" guides build it (the model loaded at import in
every worker, a one-row DataFrame and one `predict_proba` per request), serving the same stored
model as the real service, so `make bench` compares serving stacks, not models.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from flask import Flask, jsonify, request

from credit_risk.model_store import load_model
from credit_risk.policy import ScoreScaling
from credit_risk.schema import FEATURES

MODEL_TAG = os.environ.get("CREDIT_RISK_MODEL", "credit_risk:latest")

_loaded = load_model(MODEL_TAG)
model = _loaded.pipeline
threshold = float(_loaded.metadata["threshold"])
scaling = ScoreScaling.from_metadata(_loaded.metadata["score_scaling"])
model_version = str(_loaded.tag)

app = Flask(__name__)


@app.get("/health")
def health() -> tuple[str, int]:
    """Readiness for the load balancer (and the benchmark's start-up clock)."""
    return "ok", 200


@app.post("/predict")
def predict() -> Any:
    """One applicant in, probability of default, decision and score out."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error="expected a JSON object"), 400
    missing = [f for f in FEATURES if f not in data]
    if missing:
        return jsonify(error=f"missing field(s): {', '.join(missing)}"), 400
    frame = pd.DataFrame([data], columns=list(FEATURES))
    try:
        probability = float(model.predict_proba(frame)[0, 1])
    except (ValueError, TypeError) as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(
        probability_of_default=probability,
        decision="decline" if probability > threshold else "approve",
        score=round(float(scaling.score(np.array([probability]))[0])),
        model_version=model_version,
    )
