"""The decision store: one durable record per decision, on SQLite (embedded) or PostgreSQL.

Every decision the service answers is committed here before its answer is sent
(`DecisionRecorder`), chained by an integrity hash per writer (`chain`), found again by its id
or by the lender's application reference, exported, purged for retention, verified, and joined
with outcomes for the back-test. One small interface (`DecisionStore`), two backends.

A layer of its own between the contract and the parts: serving, the back-test, the portfolio
job and the command line import it; it imports only the contract (tests/test_layout.py).
"""

from __future__ import annotations

from credit_risk.decision_store.errors import StoreError, StoreUnavailableError
from credit_risk.decision_store.location import (
    STORE_ENV,
    STORE_FILE_ENV,
    describe_url,
    open_store,
    store_url,
)
from credit_risk.decision_store.records import DecisionRecord, new_records
from credit_risk.decision_store.store import DecisionStore, Outcome

__all__ = [
    "STORE_ENV",
    "STORE_FILE_ENV",
    "DecisionRecord",
    "DecisionStore",
    "Outcome",
    "StoreError",
    "StoreUnavailableError",
    "describe_url",
    "new_records",
    "open_store",
    "store_url",
]
