"""What recourse costs the runner: `BatchScoring.score` with and without it, in process.

    python -m load_tests.recourse_cost [--model TAG] [--rounds 7]

The runner's own batch function (credit_risk/serving/batch_scoring.py) on batches of 1, 10, 100
and 1,000 applicants resampled from the shipped data, for the served model (the pin, else the
promoted champion, else the newest): as served, and with a decision rule for the recourse that
declines nothing (the path every approval takes, so the step computes nothing). Both variants
run interleaved, round after round, and each figure is the best round's CPU time per batch
(`time.process_time`: other work on a shared host inflates wall time, not this), so the
difference is what the declines' recourse adds. The load average is printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from credit_risk import environment
from credit_risk.arrays import BoolArray, FloatArray
from credit_risk.encoding import encode_applicants
from credit_risk.model_store import load_serving_model
from credit_risk.promotion import served_tags
from credit_risk.schema import Applicant
from credit_risk.serving.batch_scoring import BatchScoring
from load_tests.applicants import sample_applicants

BATCH_SIZES = (1, 10, 100, 1000)


@dataclasses.dataclass(frozen=True)
class ApprovesAll:
    """A rule under which nothing is declined: the recourse step then computes nothing."""

    threshold: float = 1.0

    def declines(self, probability: FloatArray) -> BoolArray:
        return np.zeros(len(probability), dtype=np.bool_)


def cpu_seconds(fn: Callable[[], object], number: int) -> float:
    """CPU seconds per call of `fn`, over `number` calls."""
    start = time.process_time()
    for _ in range(number):
        fn()
    return (time.process_time() - start) / number


async def measure(tag: str, rounds: int) -> list[dict[str, float]]:
    """Per batch size: CPU microseconds per batch with and without recourse (best round)."""
    with_recourse = BatchScoring(load_serving_model(tag), None, window=1000)
    without = BatchScoring(load_serving_model(tag), None, window=1000)
    without.recourse = dataclasses.replace(without.recourse, rule=ApprovesAll())
    rows = []
    for size in BATCH_SIZES:
        applicants = [Applicant.model_validate(a) for a in sample_applicants(size, seed=size)]
        codes = encode_applicants(applicants)
        declined = int(
            with_recourse.recourse.rule.declines(with_recourse.model.predict(codes)[0]).sum()
        )
        number = max(20, 20_000 // size)
        best = {"on": np.inf, "off": np.inf}
        for _ in range(rounds):
            best["off"] = min(best["off"], cpu_seconds(lambda c=codes: without.score(c), number))
            best["on"] = min(
                best["on"], cpu_seconds(lambda c=codes: with_recourse.score(c), number)
            )
        rows.append(
            {
                "batch": size,
                "declined": declined,
                "off_us": best["off"] * 1e6,
                "on_us": best["on"] * 1e6,
                "added_us": (best["on"] - best["off"]) * 1e6,
                "added_per_decline_us": (best["on"] - best["off"]) * 1e6 / max(declined, 1),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Print the comparison as a markdown table."""
    environment.prepare()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model tag (default: what serving resolves)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    tag = load_serving_model(args.model or served_tags().champion).tag
    rows = asyncio.run(measure(tag, args.rounds))
    print(f"model {tag}, load average {os.getloadavg()[0]:.2f}, best of {args.rounds} rounds")
    print("| batch | declined | score without recourse | with | added | per decline |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['batch']:,} | {r['declined']:,} | {r['off_us']:,.0f} us | {r['on_us']:,.0f} us"
            f" | {r['added_us']:,.0f} us ({r['added_us'] / r['off_us']:+.0%})"
            f" | {r['added_per_decline_us']:.1f} us |"
        )


if __name__ == "__main__":
    main()
