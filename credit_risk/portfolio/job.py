"""`credit-risk score`: a whole portfolio through the served model, batch by batch.

read -> validate -> encode -> score -> decide -> write, one bounded Arrow batch at a time.
Rows that break the applicant contract go to the quarantine file and are not scored. Both
outputs appear under their names only when the whole run succeeded. Exit codes tell a
scheduler which case it is: 0 all scored, 3 some quarantined, 2 input refused, 1 failed.

Duplicated and empty ids are scored, not quarantined: every row is a complete application and
the job cannot know which copy is right; the summary and the audit record count them so the
feed can be fixed (`credit_risk.portfolio.ids`; detecting repeats keeps an 8-byte hash per
row: 80 MB for 10 million rows).
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from credit_risk.model_store import DEFAULT_TAG, RegistryError
from credit_risk.portfolio import RefusedInputError
from credit_risk.portfolio.audit import append_run, default_audit_log
from credit_risk.portfolio.ids import IdCounter
from credit_risk.portfolio.io import (
    BATCH_ROWS,
    AtomicWriter,
    Source,
    column_names,
    file_format,
    open_source,
)
from credit_risk.portfolio.scoring import BatchScorer, StageTimer, malformed_rows
from credit_risk.portfolio.validation import APPLICATION_ID

EXIT_SCORED: Final = 0
EXIT_FAILED: Final = 1
EXIT_REFUSED: Final = 2
EXIT_QUARANTINED: Final = 3


@dataclass(frozen=True)
class Job:
    """One scoring run: where from, where to, which model, which columns identify a row."""

    input: Path
    output: Path
    model: str = DEFAULT_TAG
    id_columns: tuple[str, ...] = ()
    quarantine: Path | None = None
    audit_log: Path | None = None
    batch_rows: int = BATCH_ROWS

    def quarantine_path(self) -> Path:
        """`--quarantine`, else beside the output: `book.parquet` -> `book.quarantine.parquet`."""
        out = self.output
        return self.quarantine or out.with_name(f"{out.stem}.quarantine{out.suffix}")


@dataclass
class Summary:
    """What a run did: the audit record, and the line the command prints."""

    run_id: str
    model: str
    input: str
    output: str
    quarantine: str
    input_sha256: str = ""
    rows_read: int = 0
    rows_scored: int = 0
    rows_quarantined: int = 0
    duplicate_id_rows: int = 0
    empty_id_rows: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    status: str = "failed"
    message: str = ""
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    engine: str = "credit-risk score"
    """Which job ran: `credit-risk score`, or its Spark twin (`spark`)."""

    @property
    def exit_code(self) -> int:
        """0 all scored, 3 some quarantined, 2 refused, 1 failed."""
        codes = {"scored": EXIT_SCORED, "quarantined": EXIT_QUARANTINED}
        return codes.get(self.status, EXIT_REFUSED if self.status == "refused" else EXIT_FAILED)

    def line(self) -> str:
        """One line for the log: counts, speed and where the outputs are."""
        rate = self.rows_read / self.seconds if self.seconds else 0.0
        text = (
            f"run {self.run_id}: {self.rows_scored:,} scored, {self.rows_quarantined:,} "
            f"quarantined of {self.rows_read:,} rows in {self.seconds:.1f} s "
            f"({rate:,.0f} rows/s) with {self.model} -> {self.output}"
        )
        if self.rows_quarantined:
            text += f" (quarantine: {self.quarantine})"
        if self.duplicate_id_rows:
            text += f"; {self.duplicate_id_rows:,} rows repeat an earlier id (scored)"
        if self.empty_id_rows:
            text += f"; {self.empty_id_rows:,} rows have an empty id (scored)"
        return text

    def finish(self) -> None:
        """After a run that wrote its outputs: what was quarantined, and the status."""
        self.rows_quarantined = self.rows_read - self.rows_scored
        self.status = "quarantined" if self.rows_quarantined else "scored"


def run(job: Job, *, progress: bool | None = None) -> Summary:
    """Score the portfolio and append the run's audit record; raise `RefusedInputError` if refused.

    `progress` defaults to showing a bar only when stderr is a terminal.
    """
    start = time.perf_counter()
    summary = Summary(
        run_id=uuid.uuid4().hex,
        model=job.model,
        input=str(job.input),
        output=str(job.output),
        quarantine=str(job.quarantine_path()),
    )
    show = sys.stderr.isatty() if progress is None else progress
    with audited(summary, job.audit_log, start):
        _score(job, summary, show)
    return summary


@contextmanager
def audited(summary: Summary, audit_log: Path | None, start: float) -> Iterator[None]:
    """Append the run's audit record however the run ends (refused and failed runs too), so
    both engines leave the same trail."""
    try:
        yield
    except RefusedInputError as exc:
        summary.status, summary.message = "refused", str(exc)
        raise
    except Exception as exc:
        summary.status, summary.message = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        summary.seconds = round(time.perf_counter() - start, 3)
        append_run(audit_log or default_audit_log(), asdict(summary))


def _score(job: Job, summary: Summary, show_progress: bool) -> None:
    if job.output.resolve() == job.quarantine_path().resolve():
        msg = f"{job.output}: the output and the quarantine must be different files"
        raise RefusedInputError(msg)
    for path in (job.output, job.quarantine_path()):
        file_format(path)
        if path.resolve() == job.input.resolve():
            msg = f"{path}: would overwrite the input"
            raise RefusedInputError(msg)
        if not path.parent.is_dir():
            msg = f"{path}: directory {path.parent} does not exist"
            raise RefusedInputError(msg)
    timer = StageTimer()
    try:
        with timer.stage("load model"):
            scorer = BatchScorer.load(job.model, summary.run_id, _id_columns(job))
    except RegistryError as exc:
        raise RefusedInputError(str(exc)) from None
    summary.model = scorer.rule.model_version
    source = open_source(job.input, scorer.layout.input_columns(), job.batch_rows)
    scorer.layout.check_input(source.schema, str(job.input))
    with timer.stage("hash input"):
        summary.input_sha256 = file_sha256(job.input)
    output = AtomicWriter(job.output, scorer.layout.output_schema(source.schema))
    quarantine = AtomicWriter(job.quarantine_path(), scorer.layout.quarantine_schema(source.schema))
    try:
        with _progress_bar(show_progress, source.total_rows) as advance:
            _stream(source, scorer, (output, quarantine), summary, timer, advance=advance)
        if summary.rows_read == 0:
            msg = f"{job.input}: no data rows"
            raise RefusedInputError(msg)
        output.commit()
        quarantine.commit()
    except BaseException:
        output.abort()
        quarantine.abort()
        raise
    summary.stage_seconds = {k: round(v, 3) for k, v in timer.seconds.items()}
    summary.finish()


def _id_columns(job: Job) -> tuple[str, ...]:
    """The id columns to carry: those asked for, and the lender's `application_id` whenever
    the input has that column (checked like the API checks it)."""
    has_reference = APPLICATION_ID in column_names(job.input)
    if not has_reference or APPLICATION_ID in job.id_columns:
        return job.id_columns
    return (APPLICATION_ID, *job.id_columns)


def _stream(
    source: Source,
    scorer: BatchScorer,
    writers: tuple[AtomicWriter, AtomicWriter],
    summary: Summary,
    timer: StageTimer,
    *,
    advance: Callable[[int], None],
) -> None:
    """Score batch by batch; reading ahead and writing behind run on a second thread each
    (PyArrow decodes and encodes without holding the GIL), so the two cores overlap them."""
    output, quarantine = writers
    ids = IdCounter(scorer.layout.id_columns)
    reported = 0
    with ThreadPoolExecutor(1, "portfolio-write") as write_pool:
        pending: Future[None] | None = None
        for batch, rows in _read(source, timer):
            result = scorer.score(batch, rows, timer)
            outputs = [(output, result.decisions), (quarantine, result.quarantine)]
            if len(source.malformed) > reported:  # CSV rows skipped while reading
                bad = source.malformed[reported:]
                reported = len(source.malformed)
                rejected = malformed_rows(quarantine.schema, bad, scorer.layout.id_columns)
                outputs.append((quarantine, rejected))
            if pending is not None:
                pending.result()  # at most one batch waits to be written: memory stays bounded
            pending = write_pool.submit(_write, outputs, timer)
            if ids.id_columns:
                with timer.stage("ids"):
                    ids.add(batch)
            summary.rows_scored += result.decisions.num_rows
            summary.rows_read += batch.num_rows
            advance(batch.num_rows)
        if pending is not None:
            pending.result()
    summary.rows_read += len(source.malformed)
    summary.duplicate_id_rows = ids.repeated()
    summary.empty_id_rows = ids.empty


def _write(outputs: list[tuple[AtomicWriter, pa.RecordBatch]], timer: StageTimer) -> None:
    with timer.stage("write"):
        for writer, batch in outputs:
            writer.write(batch)


def _read(
    source: Source, timer: StageTimer
) -> Iterator[tuple[pa.RecordBatch, npt.NDArray[np.int64]]]:
    """The source's batches, one read ahead on a second thread; a file that breaks off
    mid-way is refused, not half-scored."""

    def fetch() -> tuple[pa.RecordBatch, npt.NDArray[np.int64]] | None:
        with timer.stage("read"):
            return next(source.batches, None)

    done = 0
    with ThreadPoolExecutor(1, "portfolio-read") as read_pool:
        ahead = read_pool.submit(fetch)
        while True:
            try:
                item = ahead.result()
            except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
                reason = " ".join(str(exc).split())
                msg = f"{source.path}: unreadable after row {done:,} ({reason})"
                raise RefusedInputError(msg) from None
            if item is None:
                return
            ahead = read_pool.submit(fetch)
            done += item[0].num_rows
            yield item


def file_sha256(path: Path) -> str:
    """The input's fingerprint for the audit record (either engine's)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@contextmanager
def _progress_bar(enabled: bool, total: int | None) -> Iterator[Callable[[int], None]]:
    """Rows, rows/s and ETA on a terminal; nothing at all in logs."""
    if not enabled:
        yield lambda _rows: None
        return
    from rich.console import Console  # noqa: PLC0415 (only on a terminal)
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("scoring", total=total, rate="-")
        started = time.perf_counter()

        def advance(rows: int) -> None:
            done = bar.tasks[0].completed + rows
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(task, advance=rows, rate=f"{rate:,.0f}")

        yield advance
