"""Feature encoding shared by training and serving.

Every model sees the same numeric code array: one column per schema field in `FEATURES` order,
categories as their index in the schema vocabulary, numbers as given. Serving builds that array
straight from validated `Applicant`s without pandas; training builds it from the data frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from credit_risk.schema import CATEGORIES, FEATURES, Applicant

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

CATEGORICAL_MASK: Final = np.array([f in CATEGORIES for f in FEATURES])
"""True where a column of the code array holds category codes."""

_CODE_OF: Final[dict[str, dict[str, int]]] = {
    name: {value: code for code, value in enumerate(values)} for name, values in CATEGORIES.items()
}


def encode_applicants(applicants: Sequence[Applicant]) -> FloatArray:
    """Code array for validated applicants: the serving path's only per-row loop."""
    codes = _CODE_OF
    rows = [
        [
            codes[name][value] if name in codes else value
            for name, value in ((f, getattr(a, f)) for f in FEATURES)
        ]
        for a in applicants
    ]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))


def encode_frame(frame: pd.DataFrame) -> FloatArray:
    """Code array for a frame with one column per schema field (API vocabulary)."""
    missing = [f for f in FEATURES if f not in frame.columns]
    if missing:
        msg = f"missing feature column(s): {', '.join(missing)}"
        raise ValueError(msg)
    out = np.empty((len(frame), len(FEATURES)), dtype=np.float64)
    for j, name in enumerate(FEATURES):
        column = frame[name]
        if name in _CODE_OF:
            mapped = column.astype("object").map(_CODE_OF[name])
            if mapped.isna().any():
                bad = column[mapped.isna()].iloc[0]
                msg = f"column {name!r}: unknown category {bad!r}"
                raise ValueError(msg)
            out[:, j] = mapped.to_numpy(dtype=np.float64)
        else:
            out[:, j] = pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64)
    return out


def decode_codes(codes: FloatArray) -> pd.DataFrame:
    """Inverse of `encode_frame`: a frame in API vocabulary (for reports and the baseline)."""
    data: dict[str, Any] = {}
    for j, name in enumerate(FEATURES):
        if name in CATEGORIES:
            data[name] = pd.Categorical.from_codes(
                codes[:, j].astype(np.intp), categories=pd.Index(CATEGORIES[name])
            )
        else:
            data[name] = codes[:, j]
    return pd.DataFrame(data)


class SchemaEncoder(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """First pipeline step: a frame in API vocabulary to the shared code array.

    Passes an array through unchanged, so a pipeline accepts either form.
    """

    def fit(self, X: Any, y: Any = None) -> Self:  # noqa: ARG002, N803 (sklearn's signature)
        """Stateless; records the input width as scikit-learn expects."""
        self.n_features_in_ = len(FEATURES)
        return self

    def transform(self, X: Any) -> FloatArray:  # noqa: N803
        """Encode a frame; validate the width of an array."""
        if isinstance(X, pd.DataFrame):
            return encode_frame(X)
        array = np.asarray(X, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != len(FEATURES):
            msg = f"expected a (n, {len(FEATURES)}) code array, got shape {array.shape}"
            raise ValueError(msg)
        return array


class WoEEncoder(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Scorecard binning: each column of the code array to the weight of evidence of its bin.

    Numeric columns are cut at training quantiles, small bins merged into a neighbour, and
    (with `monotonic=True`) adjacent bins pooled until the WoE runs one way, so the score moves
    monotonically with, say, the loan term. Categories are their own bins. WoE = ln(%good/%bad)
    with additive `smoothing` so rare bins shrink toward 0; a bin unseen in training gets 0.
    """

    def __init__(
        self,
        *,
        max_bins: int = 8,
        min_bin_fraction: float = 0.05,
        smoothing: float = 0.5,
        monotonic: bool = True,
    ) -> None:
        self.max_bins = max_bins
        self.min_bin_fraction = min_bin_fraction
        self.smoothing = smoothing
        self.monotonic = monotonic

    def fit(self, X: Any, y: Any) -> Self:  # noqa: N803
        """Learn cut points (`edges_`) and per-bin WoE (`woe_`) for every column."""
        array = np.asarray(X, dtype=np.float64)
        target = np.asarray(y).astype(bool)
        self.n_features_in_ = array.shape[1]
        self.edges_: list[FloatArray | None] = []
        self.woe_: list[FloatArray] = []
        for j in range(array.shape[1]):
            column = array[:, j]
            if CATEGORICAL_MASK[j]:
                n_bins = len(CATEGORIES[FEATURES[j]])
                self.edges_.append(None)
                self.woe_.append(self._woe(column.astype(np.intp), target, n_bins))
            else:
                edges = self._numeric_edges(column, target)
                self.edges_.append(edges)
                idx = np.searchsorted(edges, column, side="right")
                self.woe_.append(self._woe(idx, target, len(edges) + 1))
        return self

    def bin_index(self, X: Any) -> IntArray:  # noqa: N803
        """Bin number of every cell: category code, or position among the cut points."""
        check_is_fitted(self, "woe_")
        array = np.asarray(X, dtype=np.float64)
        out = np.empty(array.shape, dtype=np.intp)
        for j, edges in enumerate(self.edges_):
            if edges is None:
                out[:, j] = array[:, j].astype(np.intp)
            else:
                out[:, j] = np.searchsorted(edges, array[:, j], side="right")
        return out

    def transform(self, X: Any) -> FloatArray:  # noqa: N803
        """Replace every cell by its bin's WoE."""
        idx = self.bin_index(X)
        out = np.empty(idx.shape, dtype=np.float64)
        for j, woe in enumerate(self.woe_):
            out[:, j] = woe[idx[:, j]]
        return out

    def _woe(self, idx: IntArray, bad: npt.NDArray[np.bool_], n_bins: int) -> FloatArray:
        bads = np.bincount(idx[bad], minlength=n_bins).astype(np.float64)
        goods = np.bincount(idx[~bad], minlength=n_bins).astype(np.float64)
        s = self.smoothing
        pct_good = (goods + s) / (goods.sum() + s * n_bins)
        pct_bad = (bads + s) / (bads.sum() + s * n_bins)
        woe: FloatArray = np.log(pct_good / pct_bad)
        woe[(goods + bads) == 0] = 0.0
        return woe

    def _numeric_edges(self, column: FloatArray, bad: npt.NDArray[np.bool_]) -> FloatArray:
        quantiles = np.linspace(0, 1, self.max_bins + 1)[1:-1]
        cuts = np.unique(np.quantile(column, quantiles, method="higher"))
        # a cut at the minimum would leave an empty first bin
        edges = [c for c in cuts if c > column.min()]
        min_count = self.min_bin_fraction * len(column)

        def counts(e: list[float]) -> tuple[FloatArray, FloatArray]:
            idx = np.searchsorted(np.asarray(e), column, side="right")
            n = np.bincount(idx, minlength=len(e) + 1).astype(np.float64)
            b = np.bincount(idx[bad], minlength=len(e) + 1).astype(np.float64)
            return n, b

        # merge the smallest under-populated bin into its smaller neighbour until none is left
        while edges:
            n, _ = counts(edges)
            small = int(np.argmin(n))
            if n[small] >= min_count:
                break
            if small == 0:
                del edges[0]
            elif small == len(n) - 1 or n[small - 1] <= n[small + 1]:
                del edges[small - 1]
            else:
                del edges[small]

        if self.monotonic and len(edges) > 1:
            n, b = counts(edges)
            direction = np.sign(np.corrcoef(column, bad.astype(np.float64))[0, 1]) or 1.0
            # pool adjacent violators: merge neighbours whose bad rates run against `direction`
            while len(edges) > 0:
                rate = (b + self.smoothing) / (n + 2 * self.smoothing)
                steps = np.diff(rate) * direction
                if (steps >= 0).all():
                    break
                k = int(np.argmin(steps))  # bins k and k+1 disagree most: drop the cut between
                del edges[k]
                n, b = counts(edges)
        return np.asarray(edges, dtype=np.float64)
