"""Plain training: the steps of `steps.py` in order, in this process, gated before the save.

`credit-risk train` and `python train.py` run this; `credit-risk train --flow` runs the same
steps as Prefect tasks (`flow.py`). A failing blocking gate raises `GateFailedError` before
anything is saved, unless the gates are skipped on purpose (then the model's metadata says so).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Final

from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from credit_risk.training import DEFAULT_SEED, steps
from credit_risk.training.data import DEFAULT_DATA_PATH
from credit_risk.training.gates import GateSettings
from credit_risk.training.holdout import TEST_FRACTION, Split, split
from credit_risk.training.report import render_table
from credit_risk.training.steps import Progress, TrainingResult

__all__ = [
    "DEFAULT_REPORT_DIR",
    "TEST_FRACTION",
    "Split",
    "TrainingResult",
    "split",
    "train",
    "train_and_save",
]

DEFAULT_REPORT_DIR: Final = Path(__file__).resolve().parents[2] / "reports"


def train(
    data_path: Path | str = DEFAULT_DATA_PATH,
    model: str = "auto",
    seed: int = DEFAULT_SEED,
    *,
    quick: bool = False,
    gates: GateSettings | None = None,
    skip_gates: bool = False,
    progress: Progress | None = None,
) -> TrainingResult:
    """Every step up to the save, gates included; reads the store (the champion), never writes."""
    plan = steps.Plan.of(model, seed, quick=quick)
    say = progress or _stderr
    started = time.perf_counter()
    # one BLAS/OpenMP thread: gradient boosting on 1,000 rows is fastest single-threaded (a
    # busy 2-core machine made 2 threads 40x slower), and results cannot depend on scheduling
    with threadpool_limits(limits=1):
        loaded = steps.load(data_path, say=say)
        data = split(loaded.codes, loaded.dataset.y, seed)
        ranked = steps.candidates(plan, data, say=say)
        selection = steps.select(ranked, data.y_train, say=say)
        evaluation = steps.evaluate(plan, ranked, loaded, data, selection, say=say)
        verdicts = steps.gates(
            gates or GateSettings(),
            plan,
            loaded,
            data,
            evaluation=evaluation,
            selection=selection,
            say=say,
        )
    return steps.assemble(
        plan,
        loaded,
        data,
        ranked,
        selection=selection,
        evaluation=evaluation,
        verdicts=verdicts,
        elapsed=time.perf_counter() - started,
        gates_skipped=skip_gates,
    )


def train_and_save(
    data_path: Path | str = DEFAULT_DATA_PATH,
    model: str = "auto",
    seed: int = DEFAULT_SEED,
    report_dir: Path | str | None = DEFAULT_REPORT_DIR,
    *,
    quick: bool = False,
    quiet: bool = False,
    gates: GateSettings | None = None,
    skip_gates: bool = False,
    progress: Progress | None = None,
) -> str:
    """Train, gate, save into the BentoML store, write the report; returns the new tag.

    A failing blocking gate raises `GateFailedError` and nothing is saved, unless
    `skip_gates`. `quick=True` searches one configuration per family with single CV repeats:
    a real, small model in seconds for test fixtures. Progress goes to `progress` (default:
    stderr, nowhere when `quiet`), the report table to stdout unless `quiet`.
    """
    say = progress or (steps.silent if quiet else _stderr)
    result = train(
        data_path, model, seed, quick=quick, gates=gates, skip_gates=skip_gates, progress=say
    )
    if skip_gates:
        say("quality gates skipped (--skip-gates): recorded in the model's metadata")
    else:
        result.verdicts.enforce()
    tag = steps.save(result)
    say(f"saved: {tag}")
    if report_dir is not None:
        paths = steps.report(result, Path(report_dir))
        say("report: " + ", ".join(str(p) for p in paths))
    if not quiet:
        print(render_table(result.report), flush=True)
    return tag


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
