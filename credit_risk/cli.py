"""`credit-risk`: the project's one console script, a subcommand per workflow.

Bad input (a bad option, an unreadable data file) ends in one line on stderr and exit code 2;
each subcommand imports what it needs only when it runs, so `credit-risk --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from credit_risk.training import DEFAULT_SEED, MODEL_CHOICES

EXIT_BAD_INPUT = 2
"""Same code click uses for a bad command line: the input, not the program, is wrong."""


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
def train(data: Path | None, model: str, seed: int, report_dir: Path | None, quick: bool) -> None:
    """Fit, select and evaluate a pipeline, then save it as credit_risk:<version>."""
    from credit_risk.training.data import DEFAULT_DATA_PATH, DataError  # noqa: PLC0415
    from credit_risk.training.run import DEFAULT_REPORT_DIR, train_and_save  # noqa: PLC0415

    try:
        train_and_save(
            data or DEFAULT_DATA_PATH,
            model,
            seed,
            report_dir=report_dir or DEFAULT_REPORT_DIR,
            quick=quick,
        )
    except DataError as exc:
        raise InputError(str(exc)) from None


@main.command()
def policy() -> None:
    """Print the credit policy (costs, scaling, bands, reason codes, caps) as markdown."""
    from credit_risk.policy import markdown_tables  # noqa: PLC0415

    click.echo(markdown_tables(), nl=False)


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


@main.command()
@click.argument("outcomes", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--decision-log",
    type=click.Path(path_type=Path),
    default=None,
    help="A decision log file or folder (default: the one beside the model store).",
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where backtest.{md,json,png} go (default: reports/backtest/).",
)
def backtest(outcomes: Path, decision_log: Path | None, report_dir: Path | None) -> None:
    """Back-test logged decisions (champion and challenger) against matured outcomes.

    OUTCOMES is a CSV or Parquet file with decision_id, outcome (good/bad) and observed_at.
    Exit 2: bad input, nothing written. Exit 3: report written, but some outcomes matched no
    logged decision (counted and listed in it).
    """
    from credit_risk.backtest import EXIT_UNMATCHED  # noqa: PLC0415
    from credit_risk.backtest.inputs import BacktestInputError  # noqa: PLC0415
    from credit_risk.backtest.run import DEFAULT_REPORT_DIR  # noqa: PLC0415
    from credit_risk.backtest.run import backtest as run_backtest  # noqa: PLC0415

    try:
        result = run_backtest(outcomes, decision_log, report_dir or DEFAULT_REPORT_DIR)
    except BacktestInputError as exc:
        raise InputError(str(exc)) from None
    click.echo("report: " + ", ".join(str(p) for p in result.paths))
    if result.unmatched:
        click.echo(
            f"{result.unmatched} outcome(s) matched no logged decision: listed in the report",
            err=True,
        )
        raise SystemExit(EXIT_UNMATCHED)
