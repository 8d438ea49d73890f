"""The write path: readings checked, encoded and written in chunks that isolate refused lines.

See :class:`Writer`. The msg_id ledger is :mod:`storage.influx.ledger`, the
sales' trace statuses :mod:`storage.influx.verification`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Final

from storage import msgids
from storage._exceptions import StoreRejected
from storage.influx.indexes import SaleEntriesWritten, receipt_lines, with_trace_entries
from storage.influx.ledger import MsgIdLedger, ledger_digests
from storage.influx.lineprotocol import (
    MSG_ID_LEDGER,
    LineProtocolError,
    dead_letter_to_line,
    is_portable_tag_value,
    reading_to_line,
)
from storage.influx.reader import Reader, chunks
from storage.influx.rollups import Marks, Rollups, batch_buckets
from storage.influx.verification import SaleVerification
from storage.records import (
    UNREGISTERED,
    DeadLetter,
    Reading,
    dead_letter_ordinals,
    reading_as_dead_letter,
)
from storage.traceability import BatchKey, TraceStatus

REJECTED_PREFIX: Final = "store rejected: "


def rejected_reading(reading: Reading, detail: str) -> DeadLetter:
    """A reading the store refused, as a dead letter with its re-serialized payload."""
    return reading_as_dead_letter(reading, REJECTED_PREFIX + detail)


class Writer:
    """Writes readings and dead letters through ``reader``, in chunks of ``batch_lines``.

    When InfluxDB refuses a chunk (400) it is bisected until the refused lines
    are isolated: every good line is written, and only the refused readings come
    back as dead letters (also stored in ``dead_letter``). On 1.x a refused chunk
    is a partial write; rewriting its good lines is harmless because a point's
    identity is its series and timestamp. :class:`~storage._exceptions.StoreUnavailable`
    propagates so the caller keeps the data and retries; some chunks may already be
    written then, which a retry simply overwrites.
    """

    def __init__(
        self,
        reader: Reader,
        ledger: MsgIdLedger,
        verification: SaleVerification,
        batch_lines: int,
        rollups: Rollups,
    ) -> None:
        self._reader = reader
        self._rollups = rollups
        self._ledger = ledger
        self._verification = verification
        self._batch_lines = batch_lines
        self._sale_entries = SaleEntriesWritten()

    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]:
        """See :meth:`Store.write`.

        Besides :class:`~storage._exceptions.StoreUnavailable`, raises
        :class:`StoreRejected` only if InfluxDB refuses a *dead letter* line (which
        the fixed ``dead_letter`` schema should make impossible); all other lines
        are written by then.
        """
        digests, batches = self._look_up(readings)
        claims = msgids.sort_claims(readings, digests)
        accepted = claims.accepted
        statuses = self._verification.trace_statuses(accepted, batches)
        lines, sources, not_stored = _encode(accepted, statuses)
        indexed = with_trace_entries(
            lines, sources, accepted, statuses, written_before=self._sale_entries
        )
        lines, sources = indexed.lines, indexed.sources
        # Rollup marks go last, in the raw points' request (storage.influx.rollups).
        marks = self._rollups.mark_lines(accepted)
        lines = [*lines, *marks.lines]
        for start, end in chunks(len(lines), self._batch_lines):
            for index, detail in self._write_isolating(lines[start:end]):
                if start + index < len(sources):  # a mark's line is never refused: same ids
                    not_stored.append((sources[start + index], detail))
        self._rollups.written(marks)
        not_written = {id(reading) for reading, _ in not_stored}
        written = [reading for reading in sources if id(reading) not in not_written]
        self._sale_entries.remember(
            line for line, source in indexed.sale_entries if id(source) not in not_written
        )
        self._verification.verify_late_sales(written)
        came_meanwhile = self._verification.verify_if_batch_came_meanwhile(
            written, statuses, accepted
        )
        if came_meanwhile:
            # Those sales marked no batch when written: their batches are recounted now.
            self._write_marks(self._rollups.marks_for(batch_buckets(came_meanwhile)))
        self._ledger.record(
            claims.new, [reading for reading, _ in not_stored], also=receipt_lines(written)
        )
        refused = [rejected_reading(reading, detail) for reading, detail in not_stored]
        refused += [
            reading_as_dead_letter(reading, msgids.REUSED_MSG_ID) for reading in claims.reused
        ]
        refused = [_storable(letter) for letter in refused]
        letters = [*map(_storable, dead_letters), *refused]
        if letters:
            self._write_dead_letters(letters)
        return refused

    def _write_marks(self, marks: Marks) -> None:
        for start, end in chunks(len(marks.lines), self._batch_lines):
            self._reader.write(marks.lines[start:end])
        self._rollups.written(marks)

    def _look_up(
        self, readings: Sequence[Reading]
    ) -> tuple[dict[msgids.MsgIdKey, int], dict[tuple[str, str], BatchKey]]:
        """What a write must know first, in one request: the ledger's digests of the keys
        the readings claim, and the batches their sales name that are not known yet.

        A code without a batch is asked for again in every write that names it, so
        a batch another ingest process registered is found. (A query per code and
        one for the ledger cost the ingest benchmark a third of its rate.)
        """
        selects = self._ledger.selects(readings)
        unseen = self._verification.codes_to_look_up(readings)
        batch_selects = self._verification.batch_selects(unseen, first_number=len(selects))
        series = self._reader.statements([*selects, *batch_selects])
        digests = ledger_digests(one for one in series if one.name == MSG_ID_LEDGER)
        batches = self._verification.found(series)
        self._verification.note_absent(unseen - batches.keys())
        return digests, batches

    def _write_isolating(self, lines: list[str]) -> list[tuple[int, str]]:
        """Write ``lines``; return (index, server's reason) of each line it refuses.

        One request when all is well; k refused lines among n cost about
        2·k·log2(n) more, and never more than 2·n.
        """
        refused: list[tuple[int, str]] = []
        pending = [(0, len(lines))]
        while pending:
            low, high = pending.pop()
            try:
                self._reader.write(lines[low:high])
            except StoreRejected as exc:
                if high - low == 1:
                    refused.append((low, exc.detail))
                else:
                    middle = (low + high) // 2
                    pending += [(middle, high), (low, middle)]
        refused.sort()
        return refused

    def _write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        lines = _dead_letter_lines(letters)
        refused: list[tuple[int, str]] = []
        for start in range(0, len(lines), self._batch_lines):
            refused += self._write_isolating(lines[start : start + self._batch_lines])
        if refused:
            # A dead letter cannot itself be dead-lettered: say so loudly, after
            # everything else has been written.
            raise StoreRejected(
                f"InfluxDB refused {len(refused)} dead letter(s): {refused[0][1]}",
                detail=refused[0][1],
            )


#: A reading the store did not write, and why.
_NotStored = tuple[Reading, str]


def _encode(
    readings: Sequence[Reading], statuses: Mapping[int, TraceStatus]
) -> tuple[list[str], Sequence[Reading], list[_NotStored]]:
    """Lines for the readings, the readings they belong to, and those that cannot be encoded.

    ``statuses`` holds each sale's trace status by its index in ``readings``.
    """
    try:
        lines = [reading_to_line(reading, statuses.get(i)) for i, reading in enumerate(readings)]
    except LineProtocolError:
        # Rare (contract validation prevents it): redo one by one to find the
        # culprits, so the common case keeps its tight list comprehension.
        return _encode_one_by_one(readings, statuses)
    return lines, readings, []


def _encode_one_by_one(
    readings: Sequence[Reading], statuses: Mapping[int, TraceStatus]
) -> tuple[list[str], Sequence[Reading], list[_NotStored]]:
    lines: list[str] = []
    kept: list[Reading] = []
    refused: list[_NotStored] = []
    for index, reading in enumerate(readings):
        try:
            lines.append(reading_to_line(reading, statuses.get(index)))
        except LineProtocolError as exc:
            refused.append((reading, f"cannot encode as line protocol: {exc}"))
        else:
            kept.append(reading)
    return lines, kept, refused


def _dead_letter_lines(letters: Sequence[DeadLetter]) -> list[str]:
    """Lines for the letters; those sharing a point identity get a ``dup`` tag each.

    Only collisions within one call are seen; across calls a collision would
    need the same device rejected twice in the same nanosecond of arrival.
    """
    return [
        dead_letter_to_line(letter, duplicate=ordinal)
        for letter, ordinal in zip(letters, dead_letter_ordinals(letters), strict=True)
    ]


def _storable(letter: DeadLetter) -> DeadLetter:
    """The letter, or a copy with placeholder tags if its ids cannot be tags.

    The ids it claimed survive in the ``topic`` field.
    """
    if is_portable_tag_value(letter.market) and is_portable_tag_value(letter.device):
        return letter
    return replace(letter, market=UNREGISTERED, device=UNREGISTERED)
