"""Sales' trace statuses at write time, and verifying the sales a batch came late for.

Each sale is written with its status against the newest record of the batch it
names (``storage.traceability``), found in the write itself, in a cache of the
batches seen, or looked up. A batch written later turns the ``unknown_batch``
sales that name it verified by rewriting their ``trace_status`` field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from typing import Final

from schemas.messages import Sale
from storage.influx.client import Series
from storage.influx.indexes import trace_entries, trace_select
from storage.influx.influxql import Query, Select, equals, time_from
from storage.influx.lineprotocol import sale_trace_status_line
from storage.influx.reader import Reader
from storage.influx.rows import NEWEST_WITH_FALLBACK, int_column, str_column, tagged_rows
from storage.records import Reading
from storage.traceability import (
    LATE_BATCH_GRACE_NS,
    BatchKey,
    TraceStatus,
    batches_written,
    merge_batches,
    sale_statuses,
)

#: Registered batches remembered for checking sales (see ``SaleVerification.trace_statuses``).
_BATCH_CACHE: Final = 100_000
#: A code found without a batch is not looked up before a write for this long.
ABSENT_FRESH_NS: Final = 2 * 1_000_000_000
#: Codes remembered as found without a batch, at most.
_ABSENT_CACHE: Final = 100_000


def _codes_named(readings: Sequence[Reading]) -> set[tuple[str, str]]:
    """The (market, trace code) each sale among ``readings`` names."""
    return {
        (reading.market, message.trace_code)
        for reading in readings
        if isinstance(message := reading.message, Sale)
    }


def _newest_batch_keys(series: Iterable[Series]) -> dict[tuple[str, str], BatchKey]:
    found: dict[tuple[str, str], BatchKey] = {}
    for entry in trace_entries(series):
        if entry.kind != "batch":
            continue
        code = (entry.market, entry.trace_code)
        key = BatchKey(entry.vendor, entry.plu, entry.at_ns)
        if code not in found or key.time_ns > found[code].time_ns:
            found[code] = key
    return found


class SaleVerification:
    """The batches seen, remembered, and the sales checked against them, through ``reader``."""

    def __init__(self, reader: Reader, batch_lines: int, *, clock: Callable[[], int]) -> None:
        self._reader = reader
        self._batch_lines = batch_lines
        self._clock = clock
        self._batch_keys: dict[tuple[str, str], BatchKey] = {}
        #: (market, code) -> when a look-up last found no batch of it (``clock``, ns)
        self._absent: dict[tuple[str, str], int] = {}

    def codes_to_look_up(self, readings: Sequence[Reading]) -> set[tuple[str, str]]:
        """The codes the readings' sales name that neither they nor the cache hold a batch
        of, and that no look-up found without a batch within :data:`ABSENT_FRESH_NS`.

        Passing over a code found absent a moment ago is safe: after every write,
        :meth:`verify_if_batch_came_meanwhile` looks again for each code its sales
        were written ``unknown_batch`` under, and verifies them if a batch came. The
        look-up before the write only spares that rewrite. Without it, a code named
        in every write (a vendor selling an unregistered batch all day) was looked
        up twice per write.
        """
        fresh = self._clock() - ABSENT_FRESH_NS
        return {
            code
            for code in _codes_named(readings) - batches_written(readings).keys()
            if code not in self._batch_keys
            and not (code in self._absent and self._absent[code] >= fresh)
        }

    def note_absent(self, codes: Iterable[tuple[str, str]]) -> None:
        """A look-up just found no batch of ``codes``."""
        if len(self._absent) > _ABSENT_CACHE:
            self._absent.clear()  # bounded; forgetting only costs a look-up
        now = self._clock()
        self._absent.update(dict.fromkeys(codes, now))

    def batch_selects(self, codes: Set[tuple[str, str]], *, first_number: int = 0) -> list[Query]:
        """A statement per code for its newest batch entries in the trace index.

        Each reads one small series (the code's ``trace_index`` bucket), however
        many batches the market has had.
        """
        return [
            trace_select(
                self._reader,
                market,
                code,
                kind="batch",
                number=number,
                newest=NEWEST_WITH_FALLBACK,
            )
            for number, (market, code) in enumerate(sorted(codes), start=first_number)
        ]

    def found(self, series: Iterable[Series]) -> dict[tuple[str, str], BatchKey]:
        """The newest record of each code in answers to :meth:`batch_selects`, remembered.

        ``series`` may hold answers to other statements too: only the trace
        index's rows are read.
        """
        batches = _newest_batch_keys(series)
        if batches:
            self._remember_batches(batches)
        return batches

    def trace_statuses(
        self, readings: Sequence[Reading], looked_up: Mapping[tuple[str, str], BatchKey]
    ) -> dict[int, TraceStatus]:
        """Each sale's trace status, by index (see ``storage.traceability``).

        The newest record of each batch the sales name comes from this write, the
        batches just ``looked_up``, or the cache of the batches seen.
        """
        named = _codes_named(readings)
        if not named:
            return {}
        written = batches_written(readings)
        stored = {code: key for code in named if (key := self._batch_keys.get(code)) is not None}
        stored.update(looked_up)
        return sale_statuses(readings, merge_batches(stored, written))

    def _newest_batches(self, codes: Set[tuple[str, str]]) -> dict[tuple[str, str], BatchKey]:
        """The newest record of each (market, trace code) that has one, remembered, as
        are the codes without one."""
        found = self.found(self._reader.statements(self.batch_selects(codes)))
        self.note_absent(codes - found.keys())
        return found

    def _remember_batches(self, keys: Mapping[tuple[str, str], BatchKey]) -> None:
        if len(self._batch_keys) + len(keys) > _BATCH_CACHE:
            self._batch_keys.clear()  # rarely: a year of batches fits; start over, never grow
        self._batch_keys.update(merge_batches(self._batch_keys, keys))
        for code in keys:
            self._absent.pop(code, None)

    def verify_late_sales(self, written: Sequence[Reading]) -> None:
        """Turn the sales each written batch was late for verified, on the same points.

        Lists the batch vendor's ``unknown_batch`` sales of its product naming it
        since the grace window (a field scan of those series) and rewrites only
        their ``trace_status`` field; InfluxDB merges it into each point.
        """
        batches = batches_written(written)
        if batches:
            self._remember_batches(batches)
            self._verify_sales_of(batches)

    def verify_if_batch_came_meanwhile(
        self,
        written: Sequence[Reading],
        statuses: Mapping[int, TraceStatus],
        readings: Sequence[Reading],
    ) -> Mapping[tuple[str, str], BatchKey]:
        """Look again for the batches of the sales just written as ``unknown_batch``;
        returns those found (their sales are verified now: the caller marks them).

        Another ingest process may have written such a batch after this write
        looked for it and before these sales were stored; its own late-batch
        check then ran too early to see them. Each writer writing first and
        looking second means one of the two sees the other.
        """
        stored = {id(reading) for reading in written}
        unknown = {
            (reading.market, message.trace_code)
            for index, reading in enumerate(readings)
            if statuses.get(index) is TraceStatus.UNKNOWN_BATCH
            and id(reading) in stored
            and isinstance(message := reading.message, Sale)
        }
        found = self._newest_batches(unknown) if unknown else {}
        if found:
            self._verify_sales_of(found)
        return found

    def _verify_sales_of(self, batches: Mapping[tuple[str, str], BatchKey]) -> None:
        """One select per batch, sent together: a desk registers batches in bursts (1,700 a
        day at a 300-vendor market), and a round trip each cost a quarter of a write."""
        selects = [
            Select(
                "sale",
                where=(
                    equals("market", market),
                    equals("vendor", key.vendor),
                    equals("plu", key.plu),
                    equals("trace_code", trace_code),
                    equals("trace_status", TraceStatus.UNKNOWN_BATCH.value),
                    time_from(key.time_ns - LATE_BATCH_GRACE_NS),
                ),
            )
            for (market, trace_code), key in batches.items()
        ]
        lines = [
            sale_trace_status_line(
                {tag: str_column(row, tag) for tag in ("market", "plu", "scale", "vendor")},
                int_column(row, "time"),
                TraceStatus.VERIFIED,
            )
            for row in tagged_rows(self._reader.select_each(selects))
        ]
        for start in range(0, len(lines), self._batch_lines):
            self._reader.write(lines[start : start + self._batch_lines])
