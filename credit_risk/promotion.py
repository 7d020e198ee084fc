"""Which model is champion and which is challenger: a recorded, reversible state.

The state lives with the model store, in `$BENTOML_HOME/credit_risk_promotion.json`: the
champion, the challenger, the champions it replaced (newest last, for rollback) and an
append-only audit trail (who, when, from, to, why, and the figures training recorded for the
model). Every change is written under a lock to a temporary file and renamed over the old one,
so a reader sees the state before or after a change, never half of one. The file's schema is
`PromotionState` (pydantic): a file that does not parse or does not fit it is refused with one
line naming the file and the problem (`PromotionStateError`), and every change of either slot
(champion, challenger) appends its own audit entry, a change the user did not name included
(a challenger promoted to champion leaves the challenger slot empty: two entries).

Serving resolves its models from here (`served_tags`): an explicit `CREDIT_RISK_MODEL` pin wins
over the state, the state over `credit_risk:latest`. A pinned champion is served whatever the
file holds: an unreadable state then only costs the challenger it would have named. A bento
carries no model store of its own state, so `make build` bundles the resolved tags
(`promoted_models.json`, beside service.py) and a served bento falls back to them.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
Action = Literal["promote", "rollback", "retire"]
MAX_PROBLEMS: Final = 3
"""Validation problems named in the one-line refusal of an invalid state file."""

Tag = Annotated[str, Field(min_length=1)]


class PromotionError(ValueError):
    """A promotion or rollback that cannot be made; the state is unchanged."""


class PromotionStateError(PromotionError):
    """The state file cannot be read or does not fit `PromotionState`; one line naming both."""


class AuditEntry(BaseModel):
    """One change of one slot: who, when, which act, from which model to which, and why."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    when: Annotated[str, Field(min_length=1)]
    who: str
    action: Action
    role: Role
    from_: Tag | None = Field(alias="from")
    to: Tag | None
    reason: str
    figures: dict[str, Any] = Field(default_factory=dict)
    """What training recorded for the model the slot now holds (empty when it holds none)."""


class PromotionState(BaseModel):
    """The champion, the challenger, the retired champions and the audit trail: the file's
    schema, stated once."""

    model_config = ConfigDict(extra="forbid")

    champion: Tag | None = None
    challenger: Tag | None = None
    previous_champions: list[Tag] = Field(default_factory=list)
    audit: list[AuditEntry] = Field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The state as the file holds it."""
        return self.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class ServedTags:
    """The models a service starts with, and where each choice came from."""

    champion: str
    challenger: str | None
    champion_source: str
    challenger_source: str
    notes: tuple[str, ...] = field(default=())
    """What the start-up log should warn about (a pin overriding the state, an unreadable
    state the pin made irrelevant); may name files, so never shown to API clients."""


def state_path() -> Path:
    """The promotion state of the model store this process uses."""
    return store_home() / STATE_FILE


def read_state(path: Path | None = None) -> PromotionState:
    """The current state (empty when nothing was ever promoted); `PromotionStateError` with
    one line naming the file and the problem when it cannot be read or is invalid."""
    path = path or state_path()
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return PromotionState()
    except OSError as exc:
        msg = f"{path}: cannot read the promotion state ({exc.strerror or exc})"
        raise PromotionStateError(msg) from None
    try:
        return PromotionState.model_validate_json(text)
    except ValidationError as exc:
        msg = f"{path}: invalid promotion state: {_problems(exc)}"
        raise PromotionStateError(msg) from None


def _problems(error: ValidationError) -> str:
    """Pydantic's errors as one line: where in the file, what is wrong, what was found."""
    parts = []
    for e in error.errors(include_url=False)[:MAX_PROBLEMS]:
        if e["type"] == "json_invalid":
            parts.append(f"not valid JSON ({e['ctx']['error']})")
            continue
        where = ".".join(str(x) for x in e["loc"]) or "top level"
        found = "" if e["type"] == "missing" else f" (found {e['input']!r:.60})"
        parts.append(f"{where}: {' '.join(e['msg'].split())}{found}")
    more = error.error_count() - MAX_PROBLEMS
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


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
    else latest; the challenger likewise. Without a pin, an unreadable state raises
    `PromotionStateError`; with one, it costs only the challenger the state would name."""
    pin = environ.get(MODEL_ENV, "").strip()
    named = environ.get(CHALLENGER_ENV, "").strip()
    notes: list[str] = []
    try:
        state, where = _state_for_serving()
    except PromotionStateError as exc:
        if not pin:
            raise
        state, where = PromotionState(), "promotion state unreadable"
        notes.append(f"{exc}; serving the champion pinned by {MODEL_ENV} regardless")
    if pin:
        champion, champion_source = pin, f"pinned by {MODEL_ENV}"
        if state.champion and state.champion != pin:
            notes.append(
                f"{MODEL_ENV}={pin} pins the champion: it overrides the promotion state "
                f"(champion {state.champion})"
            )
    elif state.champion:
        champion, champion_source = state.champion, where
    else:
        champion, champion_source = DEFAULT_TAG, "newest model (nothing promoted)"
    challenger: str | None
    if named.lower() in NO_CHALLENGER:
        challenger, challenger_source = None, f"switched off by {CHALLENGER_ENV}"
    elif named:
        challenger, challenger_source = named, f"named by {CHALLENGER_ENV}"
    elif state.challenger:
        challenger, challenger_source = state.challenger, where
    else:
        challenger, challenger_source = None, "none named" if not notes else where
    return ServedTags(champion, challenger, champion_source, challenger_source, tuple(notes))


def _state_for_serving() -> tuple[PromotionState, str]:
    """The store's state, else (nothing promoted there) the one bundled into a bento; and a
    description without paths (the model card shows it to API clients)."""
    state = read_state()
    if state.champion is None and state.challenger is None and bundle_path().exists():
        return read_state(bundle_path()), "promotion state bundled by make build"
    return state, "promotion state"


OnChange = Callable[["PromotionState"], None]
"""Called with the new state once it is written, still under the lock (so in the order of the
changes): how the CLI mirrors it to MLflow's aliases. It must not raise."""


def promote(
    tag: str, role: Role, reason: str, who: str | None = None, on_change: OnChange | None = None
) -> list[AuditEntry]:
    """Make `tag` champion (the old one retires, kept for rollback) or challenger; the audit
    entries of every slot it changed."""
    entry_reason = _reason(reason)
    resolved, figures = _servable(tag)
    with _locked("promote", entry_reason, who, on_change) as change:
        state = change.state
        if role == "champion":
            if resolved == state.champion:
                msg = f"{resolved} is already the champion; nothing changed"
                raise PromotionError(msg)
            # with nothing promoted yet, the newest model was serving: it is what we leave
            old = state.champion or _newest_or_none()
            old = None if old == resolved else old
            if old:
                state.previous_champions.append(old)
            change.move("champion", old, resolved, figures)
            if state.challenger == resolved:  # it stops shadowing itself
                change.move("challenger", resolved, None, {})
        else:
            old = state.challenger
            if resolved in {old, state.champion or _newest_or_none()}:
                msg = f"{resolved} is already the {'challenger' if resolved == old else 'champion'}"
                raise PromotionError(msg + "; nothing changed")
            change.move("challenger", old, resolved, figures)
        return change.entries


def rollback(
    reason: str, who: str | None = None, on_change: OnChange | None = None
) -> list[AuditEntry]:
    """Return to the champion before the current one; the current one retires."""
    entry_reason = _reason(reason)
    with _locked("rollback", entry_reason, who, on_change) as change:
        state = change.state
        if not state.previous_champions:
            msg = "no previous champion to roll back to; nothing changed"
            raise PromotionError(msg)
        target = state.previous_champions[-1]
        _, figures = _servable(target)
        state.previous_champions.pop()
        change.move("champion", state.champion, target, figures)
        if state.challenger == target:  # it stops shadowing itself
            change.move("challenger", target, None, {})
        return change.entries


def retire_challenger(
    reason: str, who: str | None = None, on_change: OnChange | None = None
) -> list[AuditEntry]:
    """Stop shadow scoring: the state names no challenger any more."""
    entry_reason = _reason(reason)
    with _locked("retire", entry_reason, who, on_change) as change:
        if change.state.challenger is None:
            msg = "there is no challenger to retire; nothing changed"
            raise PromotionError(msg)
        change.move("challenger", change.state.challenger, None, {})
        return change.entries


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


@dataclass
class _Change:
    """One command's change of the state: each slot it moves gets its own audit entry."""

    state: PromotionState
    action: Action
    reason: str
    who: str
    when: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    entries: list[AuditEntry] = field(default_factory=list)

    def move(self, role: Role, old: str | None, new: str | None, figures: dict[str, Any]) -> None:
        """Put `new` into the `role` slot (`old` is what was serving there) and record it."""
        setattr(self.state, role, new)
        entry = AuditEntry.model_validate(
            {
                "when": self.when,
                "who": self.who,
                "action": self.action,
                "role": role,
                "from": old,
                "to": new,
                "reason": self.reason,
                "figures": figures,
            }
        )
        self.state.audit.append(entry)
        self.entries.append(entry)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return os.environ.get("USER", "unknown")


@contextlib.contextmanager
def _locked(
    action: Action, reason: str, who: str | None, on_change: OnChange | None
) -> Iterator[_Change]:
    """The state under an exclusive lock, as a change; written back (and `on_change` told)
    only if the block succeeds."""
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        change = _Change(read_state(path), action, reason, who or _user())
        yield change
        _write_atomically(path, change.state)
        if on_change is not None:
            on_change(change.state)


def _write_atomically(path: Path, state: PromotionState) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(state.as_json(), out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
