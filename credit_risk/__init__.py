"""Credit-risk scoring: the applicant contract, the compiled scorers and the service's parts."""

from typing import Final

__version__ = "0.1.0"
"""The package's version, stated once: pyproject.toml reads it, the OpenAPI document shows it."""

TRAINING_INSTALL_HINT: Final = "pip install 'credit-risk-bento[training]' (or make setup)"
"""What to run when scikit-learn, pandas or matplotlib is missing: the `training` extra."""
