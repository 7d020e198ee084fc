"""`credit-risk`: the project's one console script, a subcommand per workflow.

Bad input (a bad option, an unreadable data file) ends in one line on stderr and exit code 2;
each subcommand imports what it needs only when it runs, so `credit-risk --help` stays fast.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Final

import click

from credit_risk import TRAINING_INSTALL_HINT, environment
from credit_risk.training import DEFAULT_SEED, MODEL_CHOICES

EXIT_BAD_INPUT = 2
"""Same code click uses for a bad command line: the input, not the program, is wrong."""
EXIT_GATE_FAILED = 4
"""`credit-risk train`: a blocking quality gate failed and nothing was saved."""


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
    environment.prepare()


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
    help="Where the report files and the run's log (training.log) go (default: reports/).",
)
@click.option("--quick", is_flag=True, help="Tiny search and single CV repeats (smoke runs).")
@click.option(
    "--flow",
    "as_flow",
    is_flag=True,
    help="Run as the Prefect flow, tracked in MLflow and registered in its model registry.",
)
@click.option("--auc-floor", type=float, default=None, help="The protocol ROC AUC floor.")
@click.option(
    "--champion-tolerance",
    type=float,
    default=None,
    help="How far the held-out ROC AUC may fall below the champion's before the gate fails.",
)
@click.option("--fairness-blocking", is_flag=True, help="A failed fairness gate stops the run.")
@click.option(
    "--skip-gates",
    is_flag=True,
    help="Save even if a blocking gate fails; the model's metadata records the skip.",
)
@click.option(
    "-q", "--quiet", is_flag=True, help="No progress on the terminal (the run's log has it)."
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
    skip_gates: bool,
    quiet: bool,
    serve_monthly: bool,
) -> None:
    """Fit, select, evaluate and gate a pipeline, then save it as credit_risk:<version>.

    Exit codes: 0 saved; 2 input refused; 4 a blocking quality gate failed, nothing saved;
    1 anything else failed. Gates, their defaults and options: docs/pipeline.md.
    """
    try:
        from credit_risk.training.data import DEFAULT_DATA_PATH, DataError  # noqa: PLC0415
        from credit_risk.training.gates import GateFailedError, GateSettings  # noqa: PLC0415
        from credit_risk.training.run import DEFAULT_REPORT_DIR  # noqa: PLC0415
        from credit_risk.training.run_log import LOG_NAME  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in TRAINING_MODULES:
            raise InputError(TRAINING_MISSING) from None
        raise

    if serve_monthly and not as_flow:
        raise InputError("--serve-monthly needs --flow")
    gate_options = {
        "auc_floor": auc_floor,
        "champion_tolerance": champion_tolerance,
        "fairness_blocking": fairness_blocking or None,
    }
    gate_options = {k: v for k, v in gate_options.items() if v is not None}
    try:
        settings = GateSettings(**gate_options)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError(str(exc)) from None
    reports = report_dir or DEFAULT_REPORT_DIR
    arguments: dict[str, Any] = {
        "data_path": str(data or DEFAULT_DATA_PATH),
        "model": model,
        "seed": seed,
        "report_dir": str(reports),
        "quick": quick,
        "skip_gates": skip_gates,
    }
    log_path = reports / LOG_NAME
    try:
        if serve_monthly:  # the deployment keeps the options given, not today's defaults
            _serve_monthly({**arguments, **({"gates": gate_options} if gate_options else {})})
        elif as_flow:
            _run_flow({**arguments, "gates": settings}, log_path, quiet=quiet)
        else:
            _run_plain({**arguments, "gates": settings}, log_path, quiet=quiet)
    except DataError as exc:
        raise InputError(str(exc)) from None
    except GateFailedError as exc:
        raise GateRefusedError(f"nothing saved: {exc} (log: {log_path})") from None


class GateRefusedError(click.ClickException):
    """A blocking quality gate failed: one line naming gate and figure, nothing saved."""

    exit_code = EXIT_GATE_FAILED


def _run_log(log_path: Path, *, quiet: bool) -> Any:
    """The run's log (`run_log.run_log`), refused in one line if it cannot be written."""
    from credit_risk.training.run_log import run_log  # noqa: PLC0415

    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()
    except OSError as exc:
        raise InputError(f"cannot write the run's log {log_path}: {exc.strerror}") from None
    return run_log(log_path, quiet=quiet)


def _run_plain(arguments: dict[str, Any], log_path: Path, *, quiet: bool) -> None:
    """Plain training in this process; progress to the terminal and the run's log."""
    from credit_risk.training.run import train_and_save  # noqa: PLC0415

    with _run_log(log_path, quiet=quiet) as say:
        train_and_save(**arguments, progress=say)


def _flow_module() -> Any:
    """`credit_risk.training.flow`; one line naming the extra when it is not installed."""
    try:
        from credit_risk.training import flow  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in PIPELINE_MODULES:
            raise InputError(PIPELINE_MISSING) from None
        raise
    return flow


def _run_flow(arguments: dict[str, Any], log_path: Path, *, quiet: bool) -> None:
    """One flow run: Prefect's failure records and tracebacks go to the run's log only."""
    flow = _flow_module()  # first: Prefect sets up its console logging only if none exists yet
    with _run_log(log_path, quiet=quiet):
        try:
            flow.run_and_print(**arguments)
        finally:
            flow.quiet_teardown()


def _serve_monthly(arguments: dict[str, Any]) -> None:
    """The flow on its monthly schedule with Prefect's scheduler (blocks)."""
    _flow_module().serve_monthly(**arguments)


@main.command()
def policy() -> None:
    """Print the credit policy (costs, scaling, bands, reason codes, caps) as markdown."""
    from credit_risk.policy import markdown_tables  # noqa: PLC0415

    click.echo(markdown_tables(), nl=False)


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("deploy/monitoring"),
    show_default=True,
    help="Where the generated files go.",
)
@click.option(
    "--runbook-base",
    default=None,
    help="Where the alerts' runbook links point, e.g. the URL of docs/operations.md as your "
    "team serves it (default: docs/operations.md, relative to the repository).",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a file is out of date.")
def monitoring(out: Path, runbook_base: str | None, check: bool) -> None:
    """Generate the Grafana dashboard and the Prometheus alert rules (plain and PrometheusRule).

    docs/operations.md says how to load them.
    """
    from credit_risk.monitoring.alerts import RUNBOOK  # noqa: PLC0415
    from credit_risk.monitoring.files import stale, write  # noqa: PLC0415

    runbook = runbook_base or RUNBOOK
    if check:
        outdated = stale(out, runbook)
        if outdated:
            click.echo(
                f"out of date in {out}: {', '.join(outdated)} (run `credit-risk monitoring`)",
                err=True,
            )
            raise SystemExit(1)
        click.echo(f"{out}: up to date")
        return
    for path in write(out, runbook):
        click.echo(f"wrote {path}")


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
    from credit_risk.promotion import PromotionError, served_tags  # noqa: PLC0415

    try:
        model = model_tag or served_tags().champion
    except PromotionError as exc:
        raise InputError(str(exc)) from None
    job = Job(
        input=input_path,
        output=output,
        model=model,
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
    """Run one change of the promotion state; refused input is one line and exit code 2.

    Where MLflow is configured, its `champion`/`challenger` aliases follow the new state: one
    line says where they point, or (exit code still 0: the promotion stands) why they could not
    be updated.
    """
    from credit_risk import promotion  # noqa: PLC0415

    said: list[tuple[str, bool]] = []
    try:
        entries = getattr(promotion, change)(**kwargs, on_change=lambda s: said.append(_mirror(s)))
    except promotion.PromotionError as exc:
        raise InputError(str(exc)) from None
    for entry in entries:
        click.echo(
            f"{entry.role}: {entry.from_ or '-'} -> {entry.to or '-'} "
            f"({entry.action} by {entry.who} at {entry.when}); restart the service to apply"
        )
    for line, failed in said:
        if failed:  # the promotion stands: the state is what serving reads
            click.echo(f"warning: {line}; the promotion state is changed", err=True)
        elif line:
            click.echo(line)


def _sync_mlflow(state: Any) -> None:
    """`champion --sync-mlflow`: refused (exit 2) where MLflow is not configured, exit 1 where
    it cannot be updated."""
    from credit_risk.mlflow_aliases import configured_uri  # noqa: PLC0415

    if configured_uri() is None:
        msg = "MLflow is not configured: set MLFLOW_TRACKING_URI (or run where mlflow.db is)"
        raise InputError(msg)
    line, failed = _mirror(state)
    if failed or not line:
        hint = "MLflow is not installed: pip install 'credit-risk-bento[pipeline]' (or make setup)"
        raise click.ClickException(line or hint)
    click.echo(line)


def _mirror(state: Any) -> tuple[str, bool]:
    """MLflow's aliases set from `state`: a line to print (empty where MLflow is not
    configured or not installed) and whether it reports a failure."""
    from credit_risk.mlflow_aliases import AliasUpdateError, mirror  # noqa: PLC0415

    try:
        aliases = mirror(state)
    except AliasUpdateError as exc:
        return str(exc), True
    if aliases is None:
        return "", False
    shown = ", ".join(f"{a} -> version {v}" for a, v in sorted(aliases.items())) or "none"
    return f"MLflow aliases: {shown}", False


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
@click.option(
    "--sync-mlflow",
    is_flag=True,
    help="Set MLflow's champion/challenger aliases from the promotion state (promote, rollback "
    "and retire-challenger do it after each change).",
)
def champion(as_json: bool, export: Path | None, sync_mlflow: bool) -> None:
    """Show what serving resolves (pin, promotion state, newest) and the audit trail."""
    import json  # noqa: PLC0415

    from credit_risk import promotion  # noqa: PLC0415

    try:
        state = promotion.read_state()
        served = promotion.served_tags()
        if sync_mlflow:
            _sync_mlflow(state)
            return
        if export is not None:
            bundle = promotion.export_bundle(export)
            click.echo(
                f"{export}: champion {bundle['champion']}, challenger {bundle['challenger']}"
            )
            return
    except promotion.PromotionError as exc:
        raise InputError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"served": vars(served), "state": state.as_json()}, indent=2))
        return
    click.echo(f"state: {promotion.state_path()}")
    click.echo(f"champion:   {served.champion} ({served.champion_source})")
    click.echo(f"challenger: {served.challenger or '-'} ({served.challenger_source})")
    click.echo(f"previous champions: {', '.join(state.previous_champions) or '-'}")
    for note in served.notes:
        click.echo(f"note: {note}")
    for e in state.audit:
        auc = e.figures.get("protocol_roc_auc")
        mean = auc.get("mean", "-") if isinstance(auc, dict) else "-"
        click.echo(
            f"  {e.when} {e.who}: {e.action} {e.role} {e.from_ or '-'} -> "
            f"{e.to or '-'} (protocol ROC AUC {mean}): {e.reason}"
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


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` under a temporary name in its directory, then rename it: a
    failure leaves no partial file and any earlier file as it was. The file is readable by its
    owner only (mkstemp's mode): a notice holds personal data."""
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@main.group()
def decisions() -> None:
    """The decision store: show, notice, verify, import, export, purge."""


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


@decisions.command("notice")
@click.argument("decision_id")
@click.option(
    "--out",
    "output",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The HTML file to write (replaced whole, or left as it was).",
)
@STORE_OPTION
def decisions_notice(decision_id: str, output: Path, store_url: str | None) -> None:
    """Write a declined decision's adverse-action notice (printable HTML) to --out.

    An unknown, approved or malformed DECISION_ID is one line and exit code 2.
    """
    from credit_risk.serving.notice import NotADeclineError, render_notice  # noqa: PLC0415
    from credit_risk.serving.retrieval import DECISION_ID, MALFORMED_ID  # noqa: PLC0415

    if not DECISION_ID.fullmatch(decision_id):
        raise InputError(f"{MALFORMED_ID}, not {decision_id!r}")
    store = _open_store(store_url)
    try:
        record = store.get(decision_id)
    except Exception as exc:  # the store's failure in one line
        raise _store_failure(exc) from None
    finally:
        store.close()
    if record is None:
        raise InputError(f"no decision {decision_id} in the decision store")
    try:
        page = render_notice(record)
    except NotADeclineError as exc:
        raise InputError(str(exc)) from None
    try:
        _write_atomically(output, page)
    except OSError as exc:
        raise InputError(f"{output}: {exc.strerror}") from None
    click.echo(f"{output}: notice of the declined decision {decision_id}")


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
