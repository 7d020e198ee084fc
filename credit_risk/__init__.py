"""Credit-risk scoring: the applicant contract, the compiled scorers and the service's parts."""

from typing import Final

TRAINING_INSTALL_HINT: Final = "pip install 'credit-risk-bento[training]' (or make setup)"
"""What to run when scikit-learn, pandas or matplotlib is missing: the `training` extra."""
