"""The service's Prometheus alert rules: one source for the plain rules file and the
prometheus-operator `PrometheusRule` (deploy/monitoring). Each alert has a runbook section in
docs/operations.md under its own name."""

from __future__ import annotations

from dataclasses import dataclass
from textwrap import indent
from typing import Any, Final

from credit_risk.monitoring import promql
from credit_risk.monitoring.promql import Scope
from credit_risk.stability import PSI_ALERT

SCOPE: Final = Scope(by=("namespace", "job"))
"""One result per deployment: the operator's ServiceMonitor sets `namespace` and `job` (the
Service's name); a plain scrape config sets `job`."""

RUNBOOK: Final = "docs/operations.md"
"""Where the runbooks are, as the rules link to them (`credit-risk monitoring --runbook-base`
points them at where the docs are served)."""

ERROR_RATIO_MAX: Final = 0.01
"""5xx answers past this share of API requests page: every one is a caller without a decision."""

LATENCY_OBJECTIVE_S: Final = 0.25
"""p99 of answered /classify calls: the performance target (docs/performance.md: at most 250 ms
at 64 connections; measured 53 ms). A bucket edge of BentoML's histogram, so the estimate
crosses it exactly when more than 1 % of calls take longer."""

MIN_CLASSIFY_RATE: Final = 1.0
"""Calls per second below which a p99 says little (it is then the slowest few calls)."""

OVERLOAD_RATIO_MAX: Final = 0.05
"""Overload refusals past this share of offered requests mean too few pods for the traffic."""

APPROVAL_SHIFT_MAX: Final = 0.10
"""Approval rate of the last hour this far (10 points) from the last day's: the population or
the model changed, or something upstream sends other applicants."""

AGREEMENT_DROP_MAX: Final = 0.05
"""Champion-challenger agreement of the last hour this far (5 points) below the last day's."""

MIN_DECISIONS: Final = 100
"""Decisions in the hour below which rates are too noisy to alert on."""


@dataclass(frozen=True)
class Alert:
    """One alert rule with what an on-call engineer reads first."""

    name: str
    expr: str
    severity: str
    summary: str
    description: str
    for_: str = "0m"

    def rule(self, runbook: str) -> dict[str, Any]:
        """The rule as Prometheus reads it."""
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_ != "0m":
            rule["for"] = self.for_
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": f"{runbook}#{self.name.lower()}",
        }
        return rule


WHERE: Final = "{{ $labels.namespace }}/{{ $labels.job }}"


def _block(expr: str) -> str:
    """`expr` in parentheses, indented: how a multi-line operand reads in a rules file."""
    return f"(\n{indent(expr, '  ')}\n)"


def _volume(scope: Scope, counter: str, *keep: str) -> str:
    return f"{promql.counted(scope, counter, *keep)} >= {MIN_DECISIONS}"


def alerts() -> list[Alert]:
    """Every alert, in the order of the runbooks."""
    hour, day = SCOPE.over("1h"), SCOPE.over("1d")
    return [
        Alert(
            "CreditRiskErrorRatioHigh",
            f"{_block(promql.error_ratio(SCOPE))} > {ERROR_RATIO_MAX}",
            "critical",
            f"Credit-risk API answers 5xx to {{{{ $value | humanizePercentage }}}} of requests "
            f"({WHERE})",
            f"Over the last 5 minutes {{{{ $value | humanizePercentage }}}} of API requests "
            f"were answered with a 5xx (threshold {ERROR_RATIO_MAX:.0%}): those callers got no "
            "decision.",
            for_="5m",
        ),
        Alert(
            "CreditRiskLatencyP99AboveObjective",
            f"{promql.latency_quantile(0.99, SCOPE, ('/classify',))} > {LATENCY_OBJECTIVE_S}\n"
            f"and\n{promql.answered_rate(SCOPE, '/classify')} >= {MIN_CLASSIFY_RATE}",
            "warning",
            f"Credit-risk /classify p99 is {{{{ $value | humanizeDuration }}}} ({WHERE})",
            f"The 99th percentile of answered /classify calls has been "
            f"{{{{ $value | humanizeDuration }}}} for 10 minutes, above the "
            f"{LATENCY_OBJECTIVE_S * 1000:.0f} ms objective.",
            for_="10m",
        ),
        Alert(
            "CreditRiskOverloadRefusals",
            f"{_block(promql.overload_ratio(SCOPE))} > {OVERLOAD_RATIO_MAX}",
            "warning",
            f"Credit-risk refuses {{{{ $value | humanizePercentage }}}} of requests for "
            f"overload ({WHERE})",
            f"Over the last 5 minutes {{{{ $value | humanizePercentage }}}} of offered API "
            f"requests were refused for overload (429, 503 or 504; threshold "
            f"{OVERLOAD_RATIO_MAX:.0%}): the pods cannot keep up with the traffic.",
            for_="5m",
        ),
        Alert(
            "CreditRiskDriftPSIHigh",
            f"{promql.drift_psi(SCOPE)} > {PSI_ALERT}",
            "warning",
            f"Credit-risk input drift: PSI of {{{{ $labels.signal }}}} is "
            f'{{{{ $value | printf "%.2f" }}}} ({WHERE})',
            f"The population stability index of {{{{ $labels.signal }}}} over the runner's "
            f"drift window has stayed above {PSI_ALERT} for an hour: today's applicants differ "
            "significantly from the training population.",
            for_="1h",
        ),
        Alert(
            "CreditRiskApprovalRateShift",
            "abs"
            + _block(
                f"{_block(promql.approval_ratio(hour))}\n-\n{_block(promql.approval_ratio(day))}"
            )
            + f" > {APPROVAL_SHIFT_MAX}\nand\n{_volume(hour, promql.DECISIONS)}",
            "warning",
            f"Credit-risk approval rate moved {{{{ $value | humanizePercentage }}}} from the "
            f"day's ({WHERE})",
            f"The approval rate of the last hour differs from the last day's by "
            f"{{{{ $value | humanizePercentage }}}} (absolute; threshold "
            f"{APPROVAL_SHIFT_MAX:.0%}), for 30 minutes.",
            for_="30m",
        ),
        Alert(
            "CreditRiskChallengerAgreementFalling",
            f"{_block(promql.agreement_ratio(hour))}\n<\n{_block(promql.agreement_ratio(day))}"
            f" - {AGREEMENT_DROP_MAX}\nand\n"
            f"{_volume(hour, promql.SHADOW_COMPARISONS, 'champion', 'challenger')}",
            "warning",
            "Champion and challenger agree on only {{ $value | humanizePercentage }} of "
            f"applicants ({WHERE})",
            "Champion {{ $labels.champion }} and challenger {{ $labels.challenger }} decided "
            "alike on {{ $value | humanizePercentage }} of the last hour's applicants, more "
            f"than {AGREEMENT_DROP_MAX * 100:.0f} points below their agreement over the last "
            "day, for 30 minutes.",
            for_="30m",
        ),
        Alert(
            "CreditRiskRunnerRestarted",
            f"{promql.worker_restarts(SCOPE.over('15m'), promql.RUNNER_SERVICE)} > 0",
            "warning",
            f"Credit-risk model runner restarted ({WHERE} {{{{ $labels.pod }}}})",
            "The model runner (worker {{ $labels.worker_index }} on {{ $labels.instance }}) "
            "started anew {{ $value }} time(s) in the last 15 minutes: it died and BentoML "
            "restarted it. Requests during the gap got 503.",
        ),
        Alert(
            "CreditRiskDecisionStoreFailing",
            f"{promql.store_errors(SCOPE)} > 0",
            "critical",
            f"Credit-risk decisions are not being stored: {{{{ $labels.cause }}}} ({WHERE})",
            "{{ $value | humanize }} decisions could not be stored in the last 5 minutes "
            "(cause {{ $labels.cause }}). Every decision must have its record: the audit "
            "trail and the back-test depend on it.",
        ),
    ]


def rule_groups(runbook: str = RUNBOOK) -> dict[str, Any]:
    """The plain rules file (Prometheus `rule_files`); also the PrometheusRule's spec."""
    return {"groups": [{"name": "credit-risk", "rules": [a.rule(runbook) for a in alerts()]}]}


def prometheus_rule(runbook: str = RUNBOOK) -> dict[str, Any]:
    """The same rules as a prometheus-operator PrometheusRule."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "credit-risk",
            "labels": {
                "app.kubernetes.io/name": "credit-risk",
                "app.kubernetes.io/part-of": "credit-risk-bento",
            },
        },
        "spec": rule_groups(runbook),
    }
