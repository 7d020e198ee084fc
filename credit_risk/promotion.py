"""Which model is champion and which is challenger: a recorded, reversible state.

The state lives with the model store, in `$BENTOML_HOME/credit_risk_promotion.json`: the
champion, the challenger, the champions it replaced (newest last, for rollback) and an
append-only audit trail (who, when, from, to, why, and the figures training recorded for the
model). Every change is written under a lock to a temporary file and renamed over the old one,
so a reader sees the state before or after a change, never half of one.

Serving resolves its models from here (`served_tags`): an explicit `CREDIT_RISK_MODEL` pin wins
over the state, the state over `credit_risk:latest`. A bento carries no model store of its own
state, so `make build` bundles the resolved tags (`promoted_models.json`, beside service.py) and
a served bento falls back to them.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from credit_risk.model_store import (
    DEFAULT_TAG,
    MODEL_ENV,
    RegistryError,
    load_serving_model,
    store_home,
)

STATE_FILE: Final = "credit_risk_promotion.json"
"""File name of the promotion state inside the BentoML home."""
CHALLENGER_ENV: Final = "CREDIT_RISK_CHALLENGER"
"""Environment variable naming the challenger (`none` switches shadow scoring off)."""
BUNDLE_FILE: Final = "promoted_models.json"
"""The champion and challenger `make build` resolved, bundled into the bento's sources."""
NO_CHALLENGER: Final = frozenset({"none", "off"})
"""Values of CREDIT_RISK_CHALLENGER that mean: no challenger, whatever the state says."""
CHALLENGER_REMEDY: Final = (
    f"name a servable challenger with {CHALLENGER_ENV} or `credit-risk promote TAG --as "
    "challenger`, retire it with `credit-risk retire-challenger`, or start without shadow "
    f"scoring: {CHALLENGER_ENV}=none"
)
"""What to do about an unservable challenger (the champion's remedy, CREDIT_RISK_MODEL, would
change the wrong model)."""

Role = Literal["champion", "challenger"]
ROLES: Final[tuple[Role, ...]] = ("champion", "challenger")


class PromotionError(ValueError):
    """A promotion or rollback that cannot be made; the state is unchanged."""


@dataclass
class PromotionState:
    """The champion, the challenger, the retired champions and the audit trail."""

    champion: str | None = None
    challenger: str | None = None
    previous_champions: list[str] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ServedTags:
    """The models a service starts with, and where each choice came from."""

    champion: str
    challenger: str | None
    champion_source: str
    challenger_source: str


def state_path() -> Path:
    """The promotion state of the model store this process uses."""
    return store_home() / STATE_FILE


def read_state(path: Path | None = None) -> PromotionState:
    """The current state (empty when nothing was ever promoted)."""
    path = path or state_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return PromotionState()
    except (OSError, ValueError) as exc:
        msg = f"cannot read the promotion state {path}: {exc}"
        raise PromotionError(msg) from None
    return PromotionState(**data)


def bundle_path() -> Path:
    """Where a bento's sources hold the bundled tags (the repository root in a checkout)."""
    return Path(__file__).resolve().parents[1] / BUNDLE_FILE


def export_bundle(path: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str | None]:
    """Write the exact champion and challenger tags serving resolves now, for a bento."""
    served = served_tags(environ)
    try:
        bundle: dict[str, str | None] = {"champion": load_serving_model(served.champion).tag}
    except RegistryError as exc:
        raise PromotionError(str(exc)) from None
    try:
        bundle["challenger"] = (
            load_serving_model(served.challenger).tag if served.challenger else None
        )
    except RegistryError as exc:
        raise PromotionError(challenger_refusal(exc.problem)) from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as out:
        json.dump(bundle, out, indent=2)
    Path(tmp).replace(path)
    return bundle


def challenger_refusal(problem: str) -> str:
    """One line for an unservable challenger: what is wrong, and the challenger's remedies."""
    return f"challenger: {problem}; {CHALLENGER_REMEDY}"


def served_tags(environ: Mapping[str, str] = os.environ) -> ServedTags:
    """Champion: the CREDIT_RISK_MODEL pin, else the state's (the store's, else the bundle's),
    else latest; the challenger likewise."""
    state = read_state()
    where = "promotion state"  # no paths: the model card shows this to API clients
    if state.champion is None and state.challenger is None and bundle_path().exists():
        state, where = read_state(bundle_path()), "promotion state bundled by make build"
    pin = environ.get(MODEL_ENV, "").strip()
    if pin:
        champion, champion_source = pin, f"pinned by {MODEL_ENV}"
    elif state.champion:
        champion, champion_source = state.champion, where
    else:
        champion, champion_source = DEFAULT_TAG, "newest model (nothing promoted)"
    named = environ.get(CHALLENGER_ENV, "").strip()
    challenger: str | None
    if named.lower() in NO_CHALLENGER:
        challenger, challenger_source = None, f"switched off by {CHALLENGER_ENV}"
    elif named:
        challenger, challenger_source = named, f"named by {CHALLENGER_ENV}"
    elif state.challenger:
        challenger, challenger_source = state.challenger, where
    else:
        challenger, challenger_source = None, "none named"
    return ServedTags(champion, challenger, champion_source, challenger_source)


def promote(tag: str, role: Role, reason: str, who: str | None = None) -> dict[str, Any]:
    """Make `tag` champion (the old one retires, kept for rollback) or challenger."""
    entry_reason = _reason(reason)
    resolved, figures = _servable(tag)
    with _locked() as state:
        if role == "champion":
            if resolved == state.champion:
                msg = f"{resolved} is already the champion; nothing changed"
                raise PromotionError(msg)
            # with nothing promoted yet, the newest model was serving: it is what we leave
            old = state.champion or _newest_or_none()
            old = None if old == resolved else old
            if old:
                state.previous_champions.append(old)
            state.champion = resolved
            if state.challenger == resolved:
                state.challenger = None
        else:
            old = state.challenger
            if resolved in {old, state.champion or _newest_or_none()}:
                msg = f"{resolved} is already the {'challenger' if resolved == old else 'champion'}"
                raise PromotionError(msg + "; nothing changed")
            state.challenger = resolved
        return _record(
            state,
            action="promote",
            role=role,
            old=old,
            new=resolved,
            reason=entry_reason,
            figures=figures,
            who=who,
        )


def rollback(reason: str, who: str | None = None) -> dict[str, Any]:
    """Return to the champion before the current one; the current one retires."""
    entry_reason = _reason(reason)
    with _locked() as state:
        if not state.previous_champions:
            msg = "no previous champion to roll back to; nothing changed"
            raise PromotionError(msg)
        target = state.previous_champions[-1]
        _, figures = _servable(target)
        state.previous_champions.pop()
        old, state.champion = state.champion, target
        if state.challenger == target:
            state.challenger = None
        return _record(
            state,
            action="rollback",
            role="champion",
            old=old,
            new=target,
            reason=entry_reason,
            figures=figures,
            who=who,
        )


def retire_challenger(reason: str, who: str | None = None) -> dict[str, Any]:
    """Stop shadow scoring: the state names no challenger any more."""
    entry_reason = _reason(reason)
    with _locked() as state:
        if state.challenger is None:
            msg = "there is no challenger to retire; nothing changed"
            raise PromotionError(msg)
        old, state.challenger = state.challenger, None
        return _record(
            state,
            action="retire",
            role="challenger",
            old=old,
            new=None,
            reason=entry_reason,
            figures={},
            who=who,
        )


def model_figures(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What justified a model, as training recorded it: protocol and held-out figures."""
    protocol = metadata.get("cv") or {}
    held_out = (metadata.get("metrics") or {}).get("held_out") or {}
    figures = {
        "estimator": metadata.get("estimator"),
        "threshold": metadata.get("threshold"),
        "schema_hash": metadata.get("schema_hash"),
        "protocol_roc_auc": protocol.get("roc_auc"),
        "protocol_expected_cost": protocol.get("expected_cost_nested_threshold")
        or protocol.get("expected_cost_at_bayes_threshold"),
        "held_out_roc_auc": held_out.get("roc_auc"),
        "trained_at": metadata.get("trained_at"),
        "data_sha256": metadata.get("data_sha256"),
    }
    return {k: v for k, v in figures.items() if v is not None}


def _reason(reason: str) -> str:
    text = " ".join(reason.split())
    if not text:
        msg = "a reason is required (--reason TEXT): it goes into the audit trail"
        raise PromotionError(msg)
    return text


def _servable(tag: str) -> tuple[str, dict[str, Any]]:
    """The exact tag and figures of a model that loads and fits this code's schema."""
    try:
        model = load_serving_model(tag)
    except RegistryError as exc:
        raise PromotionError(str(exc)) from None
    return model.tag, model_figures(model.metadata)


def _newest_or_none() -> str | None:
    """What serving falls back to with nothing promoted: the newest model, if any."""
    try:
        return load_serving_model(DEFAULT_TAG).tag
    except RegistryError:
        return None


def _record(
    state: PromotionState,
    *,
    action: str,
    role: Role,
    old: str | None,
    new: str | None,
    reason: str,
    figures: dict[str, Any],
    who: str | None,
) -> dict[str, Any]:
    entry = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "who": who or _user(),
        "action": action,
        "role": role,
        "from": old,
        "to": new,
        "reason": reason,
        "figures": figures,
    }
    state.audit.append(entry)
    return entry


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return os.environ.get("USER", "unknown")


@contextlib.contextmanager
def _locked() -> Iterator[PromotionState]:
    """The state under an exclusive lock; written back only if the block succeeds."""
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = read_state(path)
        yield state
        _write_atomically(path, state)


def _write_atomically(path: Path, state: PromotionState) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(state), out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
