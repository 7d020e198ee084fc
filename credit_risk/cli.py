"""`credit-risk`: the project's one console script, a subcommand per workflow.

Bad input (a bad option, an unreadable data file) ends in one line on stderr and exit code 2;
each subcommand imports what it needs only when it runs, so `credit-risk --help` stays fast.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Final

import click

from credit_risk import TRAINING_INSTALL_HINT
from credit_risk.training import DEFAULT_SEED, MODEL_CHOICES

EXIT_BAD_INPUT = 2
"""Same code click uses for a bad command line: the input, not the program, is wrong."""


TRAINING_MODULES: Final = ("sklearn", "pandas", "scipy", "threadpoolctl", "matplotlib")
TRAINING_MISSING: Final = (
    f"training needs scikit-learn, pandas and matplotlib (the runtime has none): "
    f"{TRAINING_INSTALL_HINT}"
)
PIPELINE_MODULES: Final = ("prefect", "mlflow")
PIPELINE_MISSING: Final = (
    "training as a flow needs Prefect and MLflow: pip install 'credit-risk-bento[pipeline]' "
    "(or make setup)"
)


def _installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class InputError(click.ClickException):
    """Refused input: click prints `Error: <message>` as one line and exits with 2."""

    exit_code = EXIT_BAD_INPUT


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="credit-risk-bento")
def main() -> None:
    """Train, serve and manage the credit-risk scorecard."""


@main.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="CSV in the German Credit layout (default: the shipped data/german_credit.csv).",
)
@click.option(
    "--model",
    type=click.Choice(MODEL_CHOICES),
    default="auto",
    show_default=True,
    help="Estimator family; 'auto' picks the best CV ROC AUC.",
)
@click.option(
    "--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Seed for every split."
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where training.json and training.png go (default: reports/).",
)
@click.option("--quick", is_flag=True, help="Tiny search and single CV repeats (smoke runs).")
@click.option(
    "--flow",
    "as_flow",
    is_flag=True,
    help="Run as the Prefect flow: tracked in MLflow, quality gates before anything is saved.",
)
@click.option(
    "--auc-floor", type=float, default=None, help="With --flow: the protocol ROC AUC floor."
)
@click.option(
    "--champion-tolerance",
    type=float,
    default=None,
    help="With --flow: how far the protocol ROC AUC may fall below the model it replaces.",
)
@click.option(
    "--fairness-blocking", is_flag=True, help="With --flow: a failed fairness gate stops the run."
)
@click.option(
    "--serve-monthly",
    is_flag=True,
    help="With --flow: serve the flow on its monthly schedule with Prefect's scheduler (blocks).",
)
def train(
    *,
    data: Path | None,
    model: str,
    seed: int,
    report_dir: Path | None,
    quick: bool,
    as_flow: bool,
    auc_floor: float | None,
    champion_tolerance: float | None,
    fairness_blocking: bool,
    serve_monthly: bool,
) -> None:
    """Fit, select and evaluate a pipeline, then save it as credit_risk:<version>.

    Defaults for the gates and what each option overrides: docs/pipeline.md.
    """
    try:
        from credit_risk.training.data import DEFAULT_DATA_PATH, DataError  # noqa: PLC0415
        from credit_risk.training.run import DEFAULT_REPORT_DIR, train_and_save  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in TRAINING_MODULES:
            raise InputError(TRAINING_MISSING) from None
        raise

    gate_options = {
        "auc_floor": auc_floor,
        "champion_tolerance": champion_tolerance,
        "fairness_blocking": fairness_blocking or None,
    }
    gate_options = {k: v for k, v in gate_options.items() if v is not None}
    if not as_flow and (gate_options or serve_monthly):
        raise InputError("the gate options and --serve-monthly need --flow")
    arguments: dict[str, Any] = {
        "data_path": str(data or DEFAULT_DATA_PATH),
        "model": model,
        "seed": seed,
        "report_dir": str(report_dir or DEFAULT_REPORT_DIR),
        "quick": quick,
    }
    try:
        if as_flow:
            _run_flow(arguments, gate_options, serve_monthly=serve_monthly)
        else:
            train_and_save(
                arguments["data_path"], model, seed, report_dir=arguments["report_dir"], quick=quick
            )
    except DataError as exc:
        raise InputError(str(exc)) from None


def _run_flow(
    arguments: dict[str, Any], gate_options: dict[str, Any], *, serve_monthly: bool
) -> None:
    """The flow, or its monthly schedule; one line naming the extra when it is not installed."""
    try:
        from credit_risk.training import flow  # noqa: PLC0415
        from credit_risk.training.gates import GateFailedError  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in PIPELINE_MODULES:
            raise InputError(PIPELINE_MISSING) from None
        raise
    if gate_options:
        arguments["gates"] = gate_options  # the flow validates them into its GateSettings
    if serve_monthly:
        flow.serve_monthly(**arguments)
        return
    try:
        flow.run_and_print(**arguments)
    except GateFailedError as exc:
        raise click.ClickException(f"nothing saved: {exc}") from None


@main.command()
def policy() -> None:
    """Print the credit policy (costs, scaling, bands, reason codes, caps) as markdown."""
    from credit_risk.policy import markdown_tables  # noqa: PLC0415

    click.echo(markdown_tables(), nl=False)


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("output", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--model",
    "model_tag",
    default=None,
    help="Model tag (default: what serving resolves: the pin, the champion or the latest).",
)
@click.option(
    "--id-column",
    "id_columns",
    multiple=True,
    help="Column passed through to the output to join results back (repeatable).",
)
@click.option(
    "--quarantine",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Rows that break the contract (default: OUTPUT with .quarantine before the extension).",
)
@click.option(
    "--audit-log",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="JSON-lines run log (default: $CREDIT_RISK_PORTFOLIO_AUDIT_LOG, else "
    "<BentoML home>/portfolio/runs.jsonl).",
)
def score(
    *,
    input_path: Path,
    output: Path,
    model_tag: str | None,
    id_columns: tuple[str, ...],
    quarantine: Path | None,
    audit_log: Path | None,
) -> None:
    """Score a portfolio file (Parquet or CSV) with the served model and policy.

    Exit codes: 0 every row scored, 3 written but some rows quarantined, 2 input refused
    (nothing written), 1 the job failed.
    """
    from credit_risk.portfolio import INSTALL_HINT, RefusedInputError  # noqa: PLC0415

    try:
        from credit_risk.portfolio.job import Job, run  # noqa: PLC0415
    except ImportError as exc:
        msg = f"`credit-risk score` needs {exc.name}: {INSTALL_HINT}"
        raise InputError(msg) from None
    from credit_risk.promotion import served_tags  # noqa: PLC0415

    job = Job(
        input=input_path,
        output=output,
        model=model_tag or served_tags().champion,
        id_columns=id_columns,
        quarantine=quarantine,
        audit_log=audit_log,
    )
    try:
        summary = run(job)
    except RefusedInputError as exc:
        raise InputError(str(exc)) from None
    except Exception as exc:  # the job failed: one line, exit 1, the audit log has the record
        raise click.ClickException(f"scoring failed: {type(exc).__name__}: {exc}") from None
    click.echo(summary.line(), err=True)
    raise SystemExit(summary.exit_code)


def _promotion_change(change: str, **kwargs: str) -> None:
    """Run one change of the promotion state; refused input is one line and exit code 2."""
    from credit_risk import promotion  # noqa: PLC0415

    try:
        entry = getattr(promotion, change)(**kwargs)
    except promotion.PromotionError as exc:
        raise InputError(str(exc)) from None
    click.echo(
        f"{entry['role']}: {entry['from'] or '-'} -> {entry['to'] or '-'} "
        f"({entry['action']} by {entry['who']} at {entry['when']}); restart the service to apply"
    )


@main.command()
@click.argument("tag")
@click.option(
    "--as",
    "role",
    type=click.Choice(["champion", "challenger"]),
    default="champion",
    show_default=True,
    help="champion: serves the decisions (the old one retires); challenger: scored in shadow.",
)
@click.option("--reason", required=True, help="Why: recorded in the audit trail.")
def promote(tag: str, role: str, reason: str) -> None:
    """Promote a stored model to champion or challenger, with an audit-trail entry."""
    _promotion_change("promote", tag=tag, role=role, reason=reason)


@main.command()
@click.option("--reason", required=True, help="Why: recorded in the audit trail.")
def rollback(reason: str) -> None:
    """Return to the previous champion (the current one retires)."""
    _promotion_change("rollback", reason=reason)


@main.command("retire-challenger")
@click.option("--reason", required=True, help="Why: recorded in the audit trail.")
def retire_challenger(reason: str) -> None:
    """Stop shadow scoring: the promotion state names no challenger."""
    _promotion_change("retire_challenger", reason=reason)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="The whole state, audit trail included.")
@click.option(
    "--export",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the exact tags serving resolves to this file (`make build` bundles it).",
)
def champion(as_json: bool, export: Path | None) -> None:
    """Show what serving resolves (pin, promotion state, newest) and the audit trail."""
    import json  # noqa: PLC0415

    from credit_risk import promotion  # noqa: PLC0415

    try:
        state = promotion.read_state()
        served = promotion.served_tags()
        if export is not None:
            bundle = promotion.export_bundle(export)
            click.echo(
                f"{export}: champion {bundle['champion']}, challenger {bundle['challenger']}"
            )
            return
    except promotion.PromotionError as exc:
        raise InputError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"served": vars(served), "state": vars(state)}, indent=2))
        return
    click.echo(f"state: {promotion.state_path()}")
    click.echo(f"champion:   {served.champion} ({served.champion_source})")
    click.echo(f"challenger: {served.challenger or '-'} ({served.challenger_source})")
    click.echo(f"previous champions: {', '.join(state.previous_champions) or '-'}")
    for e in state.audit:
        auc = e["figures"].get("protocol_roc_auc") or {}
        click.echo(
            f"  {e['when']} {e['who']}: {e['action']} {e['role']} {e['from'] or '-'} -> "
            f"{e['to'] or '-'} (protocol ROC AUC {auc.get('mean', '-')}): {e['reason']}"
        )


STORE_OPTION: Final = click.option(
    "--store",
    "store_url",
    default=None,
    metavar="URL",
    help="Decision store URL (default: $CREDIT_RISK_DECISION_STORE, the file "
    "$CREDIT_RISK_DECISION_STORE_FILE names, else SQLite under the BentoML home).",
)


def _open_store(url: str | None) -> Any:
    """The decision store; a bad URL is one line and exit code 2."""
    from credit_risk.decision_store import StoreError, open_store  # noqa: PLC0415

    try:
        return open_store(url)
    except StoreError as exc:
        raise InputError(str(exc)) from None


def _moment(value: str | None, option: str) -> str | None:
    """An ISO date or date-time (naive = UTC) as the store's `decided_at` text."""
    if value is None:
        return None
    from datetime import UTC, datetime  # noqa: PLC0415

    from credit_risk.decision_store.records import utc_text  # noqa: PLC0415

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        msg = f"{option} {value!r} is not an ISO date or date-time (2026-01-31, 2026-01-31T12:00)"
        raise InputError(msg) from None
    return utc_text(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _store_failure(exc: Exception) -> click.ClickException:
    from credit_risk.decision_store.errors import StoreUnavailableError, cause_of  # noqa: PLC0415

    if isinstance(exc, StoreUnavailableError):
        return click.ClickException(str(exc))
    return click.ClickException(f"decision store unavailable ({cause_of(exc)}): {exc}")


@main.group()
def decisions() -> None:
    """The decision store: show, verify, import, export, purge."""


@decisions.command("show")
@click.argument("decision_id", required=False)
@click.option("--application-id", default=None, help="Every decision for this reference.")
@STORE_OPTION
def decisions_show(
    decision_id: str | None, application_id: str | None, store_url: str | None
) -> None:
    """One decision by its id, or every decision for an application reference, as JSON."""
    import json  # noqa: PLC0415

    if (decision_id is None) == (application_id is None):
        raise InputError("give a DECISION_ID or --application-id, not both or neither")
    store = _open_store(store_url)
    try:
        if decision_id is not None:
            record = store.get(decision_id)
            if record is None:
                raise click.ClickException(f"no decision {decision_id} in the decision store")
            shown: Any = record.view()
        else:
            records = store.by_application(application_id)
            shown = {"application_id": application_id, "decisions": [r.view() for r in records]}
    except click.ClickException:
        raise
    except Exception as exc:  # the store's failure in one line
        raise _store_failure(exc) from None
    click.echo(json.dumps(shown, indent=2))


@decisions.command("verify")
@STORE_OPTION
def decisions_verify(store_url: str | None) -> None:
    """Check every record against its hash chain; name each edited, deleted or reordered one.

    Exit 0 when every chain verifies, 1 when any record was tampered with.
    """
    from credit_risk.decision_store.chain import verify  # noqa: PLC0415

    store = _open_store(store_url)
    try:
        result = verify(store)
    except Exception as exc:  # the store's failure in one line
        raise _store_failure(exc) from None
    for problem in result.problems:
        click.echo(problem.line())
    verdict = "OK" if not result.problems else f"FAILED, {len(result.problems)} problem(s)"
    click.echo(f"verify: {result.records} records in {result.writers} chains: {verdict}")
    if result.problems:
        raise SystemExit(1)


@decisions.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@STORE_OPTION
def decisions_import(path: Path, store_url: str | None) -> None:
    """Load JSON-lines decision logs (a file, a log path, or a directory of per-pod logs).

    Every line is checked first (a bad one: one line naming it, exit 2, nothing imported);
    decisions already stored are skipped, so a re-run imports nothing twice.
    """
    from credit_risk.decision_store import StoreError  # noqa: PLC0415
    from credit_risk.decision_store.legacy import import_logs  # noqa: PLC0415

    store = _open_store(store_url)
    try:
        summary = import_logs(store, path)
    except StoreError as exc:
        raise InputError(str(exc)) from None
    except Exception as exc:  # the store's failure in one line
        raise _store_failure(exc) from None
    click.echo(
        f"{path}: {summary.read} records in {summary.files} file(s): {summary.imported} "
        f"imported, {summary.already_stored} already stored"
    )


@decisions.command("export")
@click.argument("output", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--since", default=None, help="Decided at or after (ISO date or date-time, UTC).")
@click.option("--until", default=None, help="Decided before (ISO date or date-time, UTC).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "parquet"]),
    default=None,
    help="Default: from OUTPUT's suffix (.parquet, else jsonl).",
)
@STORE_OPTION
def decisions_export(
    output: Path, since: str | None, until: str | None, fmt: str | None, store_url: str | None
) -> None:
    """Write decisions (every column, as stored) to OUTPUT, complete or not at all."""
    from credit_risk.decision_store import StoreError  # noqa: PLC0415
    from credit_risk.decision_store.export import export  # noqa: PLC0415

    fmt = fmt or ("parquet" if output.suffix.lower() in {".parquet", ".pq"} else "jsonl")
    window = (_moment(since, "--since"), _moment(until, "--until"))
    store = _open_store(store_url)
    try:
        count = export(store, output, fmt, *window)
    except StoreError as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"{output}: {exc.strerror}") from None
    except Exception as exc:  # the store's failure in one line
        raise _store_failure(exc) from None
    click.echo(f"{output}: {count} decisions ({fmt})")


@decisions.command("purge")
@click.option("--before", required=True, help="Delete decisions made before this date (UTC).")
@STORE_OPTION
def decisions_purge(before: str, store_url: str | None) -> None:
    """Delete decisions older than a retention limit, and their outcomes.

    What remains still verifies: each chain keeps the hash of its last deleted record.
    """
    from credit_risk.decision_store.chain import verify  # noqa: PLC0415

    cutoff = _moment(before, "--before")
    assert cutoff is not None
    store = _open_store(store_url)
    try:
        deleted = store.purge(cutoff)
        result = verify(store)
    except Exception as exc:  # the store's failure in one line
        raise _store_failure(exc) from None
    state = "verifies" if not result.problems else "does NOT verify: run decisions verify"
    click.echo(
        f"purged {deleted} decisions made before {cutoff}; {result.records} remain and the "
        f"store {state}"
    )


@main.group()
def outcomes() -> None:
    """Loan outcomes in the decision store, for the back-test."""


@outcomes.command("load")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@STORE_OPTION
def outcomes_load(path: Path, store_url: str | None) -> None:
    """Load outcomes (CSV or Parquet: decision_id, outcome good/bad, observed_at).

    The whole file is checked first: a bad row, an unknown decision or an outcome observed
    before its decision is one line naming the row, exit 2, nothing loaded.
    """
    from credit_risk.backtest.inputs import (  # noqa: PLC0415
        BacktestInputError,
        check_against_decisions,
        read_outcomes,
    )
    from credit_risk.decision_store.store import Outcome  # noqa: PLC0415

    store = _open_store(store_url)
    try:
        rows = read_outcomes(path)
        decided = store.known_ids([o.decision_id for o in rows])
        check_against_decisions(path, rows, decided)
        stored = [Outcome(o.decision_id, "bad" if o.bad else "good", o.observed_at) for o in rows]
        count = store.put_outcomes(stored)
    except BacktestInputError as exc:
        raise InputError(str(exc)) from None
    except Exception as exc:  # the store's failure in one line
        raise _store_failure(exc) from None
    click.echo(f"{path}: {count} outcomes loaded")


@main.command()
@click.argument(
    "outcomes_file",
    metavar="[OUTCOMES]",
    required=False,
    type=click.Path(path_type=Path, dir_okay=False),
)
@click.option(
    "--min-months",
    type=click.IntRange(min=0),
    default=12,
    show_default=True,
    help="Performance window: decisions younger than this are counted apart, never scored.",
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where backtest.{md,json,png} go (default: reports/backtest/).",
)
@STORE_OPTION
def backtest(
    outcomes_file: Path | None, min_months: int, report_dir: Path | None, store_url: str | None
) -> None:
    """Back-test stored decisions (champion and challenger) against matured outcomes.

    Outcomes come from the store (`credit-risk outcomes load`), or from OUTCOMES, a CSV or
    Parquet file with decision_id, outcome (good/bad) and observed_at, read as it is.
    Exit 2: bad input, nothing written. Exit 3: report written, but some outcomes of OUTCOMES
    matched no stored decision (counted and listed in it).
    """
    missing = [m for m in ("scipy", "matplotlib") if not _installed(m)]
    if missing:
        msg = f"back-testing needs {' and '.join(missing)}: {TRAINING_INSTALL_HINT}"
        raise InputError(msg)
    from credit_risk.backtest import EXIT_UNMATCHED  # noqa: PLC0415
    from credit_risk.backtest.inputs import BacktestInputError  # noqa: PLC0415
    from credit_risk.backtest.run import DEFAULT_REPORT_DIR  # noqa: PLC0415
    from credit_risk.backtest.run import backtest as run_backtest  # noqa: PLC0415

    store = _open_store(store_url)
    try:
        result = run_backtest(
            store, outcomes_file, report_dir or DEFAULT_REPORT_DIR, min_months=min_months
        )
    except BacktestInputError as exc:
        raise InputError(str(exc)) from None
    except Exception as exc:  # the store's failure in one line
        raise _store_failure(exc) from None
    click.echo("report: " + ", ".join(str(p) for p in result.paths))
    if result.unmatched:
        click.echo(
            f"{result.unmatched} outcome(s) matched no stored decision: listed in the report",
            err=True,
        )
        raise SystemExit(EXIT_UNMATCHED)
