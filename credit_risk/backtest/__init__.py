"""Back-testing served decisions against the outcomes that came back once loans matured.

`credit-risk backtest OUTCOMES` joins an outcomes file with the decision log and reports, per
model version (the champion's decisions, and the challenger's shadow decisions on the same
applicants), calibration by risk band, discrimination, approval and bad rates and cost.
Analysis side only (numpy, scipy, matplotlib): serving never imports it.
"""

from typing import Final

EXIT_UNMATCHED: Final = 3
"""Exit code when the report was written but some outcomes matched no logged decision (they
are counted and listed in it); bad input itself is exit code 2 with nothing written."""
