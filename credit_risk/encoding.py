"""The code array every model sees, built without pandas or scikit-learn.

One column per schema field in `FEATURES` order, categories as their index in the schema
vocabulary, numbers as given. Serving builds it straight from validated `Applicant`s, so the
serving processes import only numpy; training builds it from a data frame
(`credit_risk.training.preprocessing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from credit_risk.arrays import FloatArray
from credit_risk.schema import CATEGORIES, FEATURES, Applicant

CATEGORICAL_MASK: Final = np.array([f in CATEGORIES for f in FEATURES])
"""True where a column of the code array holds category codes."""

CODE_OF: Final[dict[str, dict[str, int]]] = {
    name: {value: code for code, value in enumerate(values)} for name, values in CATEGORIES.items()
}
"""Category value -> code, per categorical feature."""


def encode_applicants(applicants: Sequence[Applicant]) -> FloatArray:
    """Code array for validated applicants: the serving path's only per-applicant loop."""
    out = np.empty((len(applicants), len(FEATURES)), dtype=np.float64)
    for j, name in enumerate(FEATURES):
        values = [getattr(a, name) for a in applicants]
        codes = CODE_OF.get(name)
        out[:, j] = values if codes is None else [codes[v] for v in values]
    return out
