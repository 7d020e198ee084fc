"""The log file of one `credit-risk train` run, and what of it reaches the terminal.

Everything a run logs goes into its log file (`training.log` in the report directory),
tracebacks included. The terminal gets the progress lines (none with `--quiet`), the report
table, and on a failure the command's one-line error: the flow's task and flow failures, which
Prefect logs with their tracebacks, stay in the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final, TextIO

from credit_risk.training.steps import Progress

LOG_NAME: Final = "training.log"
FILE_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@contextlib.contextmanager
def run_log(path: Path, *, quiet: bool) -> Iterator[Progress]:
    """Open the run's log at `path` (replacing an older one); yields the progress writer.

    Quiet: everything written to stderr, by this process or its children (Prefect's temporary
    server), goes to the file instead. Otherwise progress goes to stderr and to the file, log
    records (tracebacks included) to the file, and no failure record to the terminal.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as log:
        if quiet:
            with _stderr_into(log):
                yield _writer(sys.stderr)
        else:
            with _records_into(log):
                yield _tee(sys.stderr, log)


def _writer(stream: TextIO) -> Progress:
    def write(message: str) -> None:
        print(message, file=stream, flush=True)

    return write


def _tee(terminal: TextIO, log: TextIO) -> Progress:
    def write(message: str) -> None:
        print(message, file=terminal, flush=True)
        print(message, file=log, flush=True)

    return write


@contextlib.contextmanager
def _stderr_into(log: TextIO) -> Iterator[None]:
    """File descriptor 2 points at the log: whatever writes to stderr writes there."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _records_into(log: TextIO) -> Iterator[None]:
    """Every log record into the file; failure records kept off the terminal's handlers."""
    root = logging.getLogger()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    terminal = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    for h in terminal:
        h.addFilter(_no_failure)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for h in terminal:
            h.removeFilter(_no_failure)


def _no_failure(record: logging.LogRecord) -> bool:
    """Off the terminal: errors and anything carrying a traceback (the file keeps them)."""
    return record.levelno < logging.ERROR and record.exc_info is None
