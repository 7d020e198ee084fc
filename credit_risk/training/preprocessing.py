"""The scikit-learn side of the pipeline: data frame to code array, and scorecard binning.

Training-only: the serving processes never import this module (a compiled scorecard needs
only numpy), which keeps scikit-learn, SciPy and pandas out of their start-up and memory.
"""

from __future__ import annotations

from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from credit_risk.arrays import FloatArray, IntArray
from credit_risk.encoding import CATEGORICAL_MASK, CODE_OF
from credit_risk.schema import CATEGORIES, FEATURES, NUMERIC_FEATURES

DEFAULT_SMOOTHING: Final = 8.0
"""Pseudo-applicants per WoE bin; 2 to 16 scored alike in repeated CV on the training split,
8 was best by a hair (docs/model.md, "The scorecard")."""

U_SHAPED_FEATURES: Final = ("credit_amount",)
"""Numbers whose bad rate falls then rises: both very small and very large loans go bad more
often than mid-sized ones (visible in the binned training data, and in the data's literature)."""


def encode_frame(frame: pd.DataFrame) -> FloatArray:
    """Code array for a frame with one column per schema field (API vocabulary)."""
    missing = [f for f in FEATURES if f not in frame.columns]
    if missing:
        msg = f"missing feature column(s): {', '.join(missing)}"
        raise ValueError(msg)
    out = np.empty((len(frame), len(FEATURES)), dtype=np.float64)
    for j, name in enumerate(FEATURES):
        column = frame[name]
        if name in CODE_OF:
            mapped = column.astype("object").map(CODE_OF[name])
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
    (with `monotonic=True`) adjacent bins pooled until the bad rate runs one way, so the score
    moves monotonically with, say, the loan term; features named in `u_shaped` may fall then
    rise once instead. Categories are their own bins. WoE = ln(%good/%bad), each bin padded with
    `smoothing` pseudo-applicants at the training bad rate, so a sparse bin shrinks toward 0
    (no evidence); a bin unseen in training gets 0.
    """

    def __init__(
        self,
        *,
        max_bins: int = 8,
        min_bin_fraction: float = 0.05,
        smoothing: float = DEFAULT_SMOOTHING,
        monotonic: bool = True,
        u_shaped: tuple[str, ...] = U_SHAPED_FEATURES,
    ) -> None:
        self.max_bins = max_bins
        self.min_bin_fraction = min_bin_fraction
        self.smoothing = smoothing
        self.monotonic = monotonic
        self.u_shaped = u_shaped

    def fit(self, X: Any, y: Any) -> Self:  # noqa: N803
        """Learn cut points (`edges_`) and per-bin WoE (`woe_`) for every column."""
        array = np.asarray(X, dtype=np.float64)
        target = np.asarray(y).astype(bool)
        unknown = set(self.u_shaped) - set(NUMERIC_FEATURES)
        if unknown:
            msg = f"u_shaped names non-numeric feature(s): {', '.join(sorted(unknown))}"
            raise ValueError(msg)
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
                edges = self._numeric_edges(column, target, u_shaped=FEATURES[j] in self.u_shaped)
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

    def information_value(self, X: Any, y: Any) -> FloatArray:  # noqa: N803
        """Per-column information value on (X, y): how much each binned feature separates."""
        idx = self.bin_index(X)
        bad = np.asarray(y).astype(bool)
        return np.array(
            [_iv(idx[:, j], bad, woe) for j, woe in enumerate(self.woe_)], dtype=np.float64
        )

    def _woe(self, idx: IntArray, bad: npt.NDArray[np.bool_], n_bins: int) -> FloatArray:
        bads = np.bincount(idx[bad], minlength=n_bins).astype(np.float64)
        goods = np.bincount(idx[~bad], minlength=n_bins).astype(np.float64)
        total_good, total_bad = goods.sum(), bads.sum()
        # m-estimate: `smoothing` pseudo-rows per bin at the overall bad rate, so the prior of
        # every bin is WoE 0 and a bin holding a handful of rows cannot claim strong evidence
        prior_good = self.smoothing * total_good / (total_good + total_bad)
        prior_bad = self.smoothing * total_bad / (total_good + total_bad)
        pct_good = (goods + prior_good) / (total_good + prior_good * n_bins)
        pct_bad = (bads + prior_bad) / (total_bad + prior_bad * n_bins)
        woe: FloatArray = np.log(pct_good / pct_bad)
        woe[(goods + bads) == 0] = 0.0
        return woe

    def _numeric_edges(
        self, column: FloatArray, bad: npt.NDArray[np.bool_], *, u_shaped: bool
    ) -> FloatArray:
        quantiles = np.linspace(0, 1, self.max_bins + 1)[1:-1]
        cuts = np.unique(np.quantile(column, quantiles, method="higher"))
        # a cut at the minimum would leave an empty first bin
        edges = [float(c) for c in cuts if c > column.min()]
        min_count = self.min_bin_fraction * len(column)

        # merge the smallest under-populated bin into its smaller neighbour until none is left
        while edges:
            n, _ = _bin_counts(edges, column, bad)
            small = int(np.argmin(n))
            if n[small] >= min_count:
                break
            if small == 0:
                del edges[0]
            elif small == len(n) - 1 or n[small - 1] <= n[small + 1]:
                del edges[small - 1]
            else:
                del edges[small]

        if not self.monotonic or len(edges) < 2:  # one cut (two bins) is always monotone
            return np.asarray(edges, dtype=np.float64)
        if not u_shaped:
            direction = np.sign(np.corrcoef(column, bad.astype(np.float64))[0, 1]) or 1.0
            return np.asarray(self._pool(edges, column, bad, direction), dtype=np.float64)
        # bad rate falls up to a turning cut and rises after it: try every turning cut (and
        # none, i.e. plain falling or rising) and keep the shape that separates best
        best: tuple[float, list[float]] | None = None
        for k in range(-1, len(edges)):
            if k < 0:
                candidates = [self._pool(edges, column, bad, d) for d in (-1.0, 1.0)]
            else:
                left, right = column < edges[k], column >= edges[k]
                falling = self._pool(edges[:k], column[left], bad[left], -1.0)
                rising = self._pool(edges[k + 1 :], column[right], bad[right], 1.0)
                candidates = [[*falling, edges[k], *rising]]
            for candidate in candidates:
                idx = np.searchsorted(np.asarray(candidate), column, side="right")
                iv = _iv(idx, bad, self._woe(idx, bad, len(candidate) + 1))
                if best is None or iv > best[0]:
                    best = (iv, candidate)
        assert best is not None
        return np.asarray(best[1], dtype=np.float64)

    def _pool(
        self, edges: list[float], column: FloatArray, bad: npt.NDArray[np.bool_], direction: float
    ) -> list[float]:
        """Pool adjacent violators: drop cuts until the smoothed bad rate runs `direction`."""
        edges = list(edges)
        while edges:
            n, b = _bin_counts(edges, column, bad)
            rate = (b + self.smoothing * bad.mean()) / (n + self.smoothing)
            steps = np.diff(rate) * direction
            if (steps >= 0).all():
                break
            del edges[int(np.argmin(steps))]  # bins k and k+1 disagree most: drop the cut
        return edges


def _bin_counts(
    edges: list[float], column: FloatArray, bad: npt.NDArray[np.bool_]
) -> tuple[FloatArray, FloatArray]:
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), column, side="right")
    n = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    b = np.bincount(idx[bad], minlength=len(edges) + 1).astype(np.float64)
    return n, b


def _iv(idx: IntArray, bad: npt.NDArray[np.bool_], woe: FloatArray) -> float:
    goods = np.bincount(idx[~bad], minlength=len(woe)) / max(int((~bad).sum()), 1)
    bads = np.bincount(idx[bad], minlength=len(woe)) / max(int(bad.sum()), 1)
    return float(np.sum((goods - bads) * woe))
