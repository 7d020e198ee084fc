"""Tamper evidence: each record's hash covers the previous record of the same writer.

A writer is one process that appends (an API worker, an import). Its records form one chain,
`seq` 1, 2, 3...: each record's `record_hash` is the SHA-256 of its content and of the previous
record's hash (`records.DecisionRecord.content_hash`); the writer's row holds its head (the last
record) and its anchor (the last record a purge removed, or the genesis hash). Verification walks
every chain from its anchor to its head and names each record that was edited (its content no
longer matches its hash), deleted (a link is missing) or reordered (a link points elsewhere in
the chain). Retention purges a prefix of each chain and moves the anchor, so what remains still
verifies. It is evidence, not prevention: whoever can rewrite every later hash and the writer's
row can hide an edit, which is why an export (or the database's own backups) should go where
the service's credentials cannot write.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from credit_risk.decision_store.records import DecisionRecord, now_text
from credit_risk.decision_store.store import DecisionStore, Writer


def process_writer_id(role: str = "api") -> str:
    """A writer id unique to this process for its lifetime: host (the pod's name in
    Kubernetes), process id and start time, so two processes never share a chain."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{now_text()}"


@dataclass
class ChainWriter:
    """Appends one writer's records to the store, each chained to the one before."""

    store: DecisionStore
    writer_id: str
    _head: Writer | None = field(default=None, init=False)

    def append(self, records: Sequence[DecisionRecord]) -> list[DecisionRecord]:
        """Chain and commit `records` in one transaction; on any failure nothing is stored and
        the head is read again from the store before the next append."""
        if self._head is None:
            self._head = self.store.register_writer(self.writer_id)
        head = self._head
        seq, prev = head.last_seq, head.last_hash
        chained = []
        for record in records:
            seq += 1
            linked = record.chained(self.writer_id, seq, prev)
            prev = linked.record_hash
            chained.append(linked)
        try:
            self.store.append(self.writer_id, chained, head.last_seq)
        except BaseException:
            self._head = None  # the commit may or may not have happened: ask the store
            raise
        self._head = replace(head, last_seq=seq, last_hash=prev)
        return chained

    def touch(self) -> None:
        """A write of nothing new (readiness after a failure)."""
        if self._head is None:
            self._head = self.store.register_writer(self.writer_id)
        self.store.touch(self.writer_id)


@dataclass(frozen=True)
class Problem:
    """One broken link or edited record, named for a person to act on."""

    kind: str
    """`edited`, `deleted`, `reordered` or `unknown_writer`."""
    decision_id: str | None
    writer_id: str
    seq: int | None
    detail: str

    def line(self) -> str:
        """One line for `credit-risk decisions verify`."""
        where = f"record {self.decision_id} (writer {self.writer_id}, #{self.seq})"
        if self.decision_id is None:
            where = f"writer {self.writer_id}"
        return f"{self.kind.upper()}: {where}: {self.detail}"


@dataclass
class VerifyResult:
    """What a verification walked and what it found."""

    records: int = 0
    writers: int = 0
    problems: list[Problem] = field(default_factory=list)


def verify(store: DecisionStore) -> VerifyResult:
    """Walk every writer's chain from its anchor to its head (see the module docstring)."""
    writers = {w.writer_id: w for w in store.writers()}
    result = VerifyResult(writers=len(writers))
    seen: set[str] = set()
    for writer_id, rows in _by_writer(store.records(chain_order=True)):
        seen.add(writer_id)
        result.records += len(rows)
        writer = writers.get(writer_id)
        if writer is None:
            result.problems.append(
                Problem(
                    "unknown_writer",
                    None,
                    writer_id,
                    None,
                    "records of a writer the store has no chain head for (its row was deleted)",
                )
            )
            continue
        result.problems += _walk(writer, rows)
    for writer_id in writers.keys() - seen:
        result.problems += _walk(writers[writer_id], [])
    return result


def _by_writer(records: Iterable[DecisionRecord]) -> Iterable[tuple[str, list[DecisionRecord]]]:
    current: list[DecisionRecord] = []
    for record in records:
        if current and record.writer_id != current[0].writer_id:
            yield current[0].writer_id, current
            current = []
        current.append(record)
    if current:
        yield current[0].writer_id, current


def _walk(writer: Writer, rows: list[DecisionRecord]) -> list[Problem]:
    problems = []
    position = {r.record_hash: r for r in rows}
    known = set(position) | {writer.anchor_hash}
    expected, before = writer.anchor_hash, None
    for r in rows:
        if r.content_hash(r.prev_hash) != r.record_hash:
            problems.append(
                Problem(
                    "edited",
                    r.decision_id,
                    r.writer_id,
                    r.seq,
                    "its content no longer matches its hash",
                )
            )
        if r.prev_hash != expected:
            problems.append(_broken_link(r, before, known, position))
        expected, before = r.record_hash, r
    if expected != writer.last_hash:
        last = f"after record {before.decision_id} (#{before.seq})" if before else "all records"
        kind = "reordered" if writer.last_hash in known else "deleted"
        problems.append(
            Problem(
                kind,
                None,
                writer.writer_id,
                None,
                f"{last}: the chain's head is #{writer.last_seq}, so the record(s) after it "
                f"are {'out of order' if kind == 'reordered' else 'missing'}",
            )
        )
    return problems


def _broken_link(
    r: DecisionRecord,
    before: DecisionRecord | None,
    known: set[str],
    position: dict[str, DecisionRecord],
) -> Problem:
    after = f"#{before.seq} {before.decision_id}" if before else "the chain's start"
    if r.prev_hash in known:
        follows = position.get(r.prev_hash)
        really = f"#{follows.seq} {follows.decision_id}" if follows else "the chain's start"
        return Problem(
            "reordered",
            r.decision_id,
            r.writer_id,
            r.seq,
            f"it follows {after} but was chained after {really}",
        )
    return Problem(
        "deleted",
        r.decision_id,
        r.writer_id,
        r.seq,
        f"the record it was chained after is missing (or rewritten); before it: {after}",
    )
