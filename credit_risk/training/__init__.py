"""The training side: everything that fits and evaluates a model (scikit-learn, pandas,
matplotlib). The serving side never imports it.

The names below are what the command line needs without paying for those imports.
"""

from typing import Final, Literal

Family = Literal["logreg", "hgb"]
ModelChoice = Literal["auto", "logreg", "hgb"]

DEFAULT_SEED: Final = 42
FAMILIES: Final[tuple[Family, ...]] = ("logreg", "hgb")
MODEL_CHOICES: Final[tuple[ModelChoice, ...]] = ("auto", *FAMILIES)
