"""Train, evaluate and save the credit-risk model: `python train.py --help`.

The work happens in `credit_risk.training`; this is the command line around it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from credit_risk.data import DEFAULT_DATA_PATH, DataError
from credit_risk.training import DEFAULT_REPORT_DIR, DEFAULT_SEED, MODEL_CHOICES, train_and_save

EXIT_BAD_INPUT = 2
"""Same code argparse uses for a bad command line: the input, not the program, is wrong."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The documented command line."""
    parser = argparse.ArgumentParser(
        description="Fit, select and evaluate a credit-risk pipeline, then save it into the "
        "BentoML model store as credit_risk:<version>.",
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA_PATH, help="CSV in the German Credit layout"
    )
    parser.add_argument(
        "--model",
        choices=MODEL_CHOICES,
        default="auto",
        help="estimator family; 'auto' picks the best CV ROC AUC (default)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for every split")
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=DEFAULT_REPORT_DIR,
        help="where training.json and training.png go (default: reports/)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny search and single CV repeats (smoke runs)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run training; bad data ends in one line on stderr and exit code 2."""
    args = parse_args(argv)
    try:
        train_and_save(
            args.data, args.model, args.seed, report_dir=args.report_dir, quick=args.quick
        )
    except DataError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
