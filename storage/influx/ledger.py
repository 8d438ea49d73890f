"""The msg_id ledger in InfluxDB: a digest per (market, device, msg_id) first stored.

The write path looks the keys its readings claim up here (``storage.msgids``
decides), records the new ones after the readings, and ``forget`` prunes it.
The ledger's points are timed by msg_id (near 1970), so it reads and writes in
a retention policy of its own when one is given (see ``InfluxStore``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

from storage import msgids
from storage._exceptions import StoreRejected
from storage.influx.client import Series
from storage.influx.influxql import Condition, Delete, Query, Select, equals
from storage.influx.lineprotocol import MSG_ID_LEDGER, ledger_entry_to_line, msg_id_time
from storage.influx.reader import Reader, aware_ns, chunks
from storage.influx.rows import int_column, str_column, tagged_rows
from storage.records import Reading

log = logging.getLogger(__name__)

#: How far apart in arrival the ledger entries of a device that carry their arrival are.
_ARRIVAL_MARK_NS: Final = 60 * 1_000_000_000


def _ledger_lines(entries: Sequence[msgids.LedgerEntry]) -> list[str]:
    """The entries' lines, with ``received_ns`` on one entry a minute per device.

    Pruning (``forget``) deletes a device's ids up to the newest entry that
    carries an arrival before the cutoff, so the unmarked entries after it are
    kept at most a minute longer than the window: never forgotten early.
    """
    marked_at: dict[tuple[str, str], int] = {}
    lines = []
    for entry in entries:
        device = (entry.market, entry.device)
        last = marked_at.get(device)
        mark = last is None or not 0 <= entry.received_ns - last < _ARRIVAL_MARK_NS
        if mark:
            marked_at[device] = entry.received_ns
        lines.append(ledger_entry_to_line(entry, with_arrival=mark))
    return lines


def ledger_digests(series: Iterable[Series]) -> dict[msgids.MsgIdKey, int]:
    """The digests in the answers to :meth:`MsgIdLedger.selects`, by key."""
    digests: dict[msgids.MsgIdKey, int] = {}
    for row in tagged_rows(list(series)):
        # time is the msg_id - 1: see lineprotocol.msg_id_time
        key = (str_column(row, "market"), str_column(row, "device"), int_column(row, "time") + 1)
        digests[key] = int_column(row, "digest")
    return digests


class MsgIdLedger:
    """The ledger's points, read and written through ``reader`` (its retention policy)."""

    def __init__(self, reader: Reader, batch_lines: int) -> None:
        self._reader = reader
        self._batch_lines = batch_lines
        self._refused = False

    def selects(self, readings: Sequence[Reading]) -> list[Query]:
        """Statements for the ledger's digests of the keys these readings claim.

        One per (market, device): a time range seek from its lowest to its
        highest msg_id in the write (InfluxQL has no OR of time ranges).
        """
        ranges: dict[tuple[str, str], tuple[int, int]] = {}
        for market, device, msg_id in msgids.ledger_keys(readings):
            low, high = ranges.get((market, device), (msg_id, msg_id))
            ranges[(market, device)] = (min(low, msg_id), max(high, msg_id))
        return [
            self._select(number, market, device, low, high)
            for number, ((market, device), (low, high)) in enumerate(ranges.items())
        ]

    def _select(self, number: int, market: str, device: str, low: int, high: int) -> Query:
        return Select(
            MSG_ID_LEDGER,
            where=(
                Condition("market", "=", f"market{number}", market),
                Condition("device", "=", f"device{number}", device),
                Condition("time", ">=", f"low{number}", msg_id_time(low)),
                Condition("time", "<=", f"high{number}", msg_id_time(high)),
            ),
            retention_policy=self._reader.retention_policy,
            group_by=("market", "device"),
        ).query()

    def record(
        self,
        entries: Sequence[msgids.LedgerEntry],
        not_stored: Sequence[Reading],
        *,
        also: Sequence[str] = (),
    ) -> None:
        """Add the write's new ledger entries, after its readings, except refused ones.

        ``also`` are more lines timed by msg_id (``receipt_index`` entries), written
        with the entries in the ledger's retention policy.

        Without transactions two instances can both find a key unused and both
        write a reading with it (see docs/architecture.md); the ledger keeps the
        later digest then.
        """
        refused = {(r.market, r.device, r.message.msg_id) for r in not_stored}
        lines = [*_ledger_lines([e for e in entries if e.key not in refused]), *also]
        try:
            for start, end in chunks(len(lines), self._batch_lines):
                self._reader.write(lines[start:end])
        except StoreRejected as exc:
            self._on_refused(exc)
        else:
            if lines and self._refused:
                log.info("InfluxDB stores the msg_id ledger again")
                self._refused = False

    def _on_refused(self, exc: StoreRejected) -> None:
        """The readings are stored; only the memory of their msg_ids is not.

        Holding the readings back would stop ingest for the sake of a check, so
        they go on, and the operator is told once (until the ledger is written
        again) what to fix: typically a retention policy that drops the ledger's
        1970-timed points.
        """
        if self._refused:
            log.debug("InfluxDB still refuses the msg_id ledger: %s", exc.detail or exc)
            return
        self._refused = True
        log.error(
            "InfluxDB refuses the msg_id ledger (%s): reused msg_ids go undetected until it is "
            "stored; give it a retention policy that keeps data forever "
            "(STALLWATCH_INFLUX_MSG_ID_RETENTION_POLICY)",
            exc.detail or exc,
        )

    def forget(self, before: datetime) -> None:
        """See :meth:`Store.forget_msg_ids`: per device, up to its newest id that arrived before.

        The ledger's time is the msg_id, not an age, so for each device the
        highest msg_id that arrived before ``before`` is looked up (a field scan
        of the ledger) and everything up to it deleted. A device's ids increase
        with time, so that is what is older.
        """
        cutoff = (Condition("received_ns", "<", "before", aware_ns(before)),)
        newest_old = self._reader.select(
            MSG_ID_LEDGER, *cutoff, group_by=("market", "device"), newest_first=True, limit=1
        )
        for row in tagged_rows(newest_old):
            delete = Delete(
                MSG_ID_LEDGER,
                (
                    equals("market", str_column(row, "market")),
                    equals("device", str_column(row, "device")),
                    Condition("time", "<=", "through", int_column(row, "time")),
                ),
            )
            self._reader.client.execute(delete.query(), database=self._reader.database)
