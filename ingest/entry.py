"""Batches entered by people (the intake desk's form in the dashboard, or the HTTP API),
checked and stored exactly as the intake station's MQTT message would be.

There is no pseudo-station: a batch is received at a real intake station, its
stored series is that station's, and the registry's rules apply unchanged. The
entry becomes the JSON the station would publish and goes through
:class:`ingest.validate.Validator` under the station's topic, so every path
accepts and refuses the same batches.

Trace codes are unique per market. Entering one again with the same content
returns the stored batch (a retried form or request is harmless); with other
content it is refused, naming what differs. The check and the write are
serialised within this process; a batch arriving over MQTT at the same instant
is not covered.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ingest.validate import Validator
from schemas.messages import BatchIntake, DeviceKind, RapidTestResult
from schemas.topics import topic_for
from storage._exceptions import StoreQueryError
from storage.base import Store
from storage.interfaces.traceability import BatchRow
from storage.records import DeadLetter, Reading, from_ns


class EntryRefused(Exception):
    """The entry contradicts the registry or the clock; ``reason`` says how (nothing stored)."""

    code = "batch_rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TraceCodeTaken(EntryRefused):
    """The trace code is registered already, with other content."""

    code = "trace_code_taken"


class StoreRefused(EntryRefused):
    """The store refused the checked batch (its own limits)."""

    code = "batch_refused"


@dataclass(frozen=True, slots=True)
class Registered:
    batch: BatchRow
    #: False: the same batch was registered before (a retry), nothing was written
    created: bool
    #: The reading stored, as ingest would have stored the desk's message (None when
    #: nothing was written): hand it to the lock keeper, which locks a failed batch.
    reading: Reading | None = None


class _MessageIds:
    """Nanosecond timestamps that never repeat or go backwards within this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last


_msg_ids = _MessageIds()
_registration_lock = threading.Lock()


def register_batch(
    validator: Validator,
    store: Store,
    market: str,
    station: str,
    fields: Mapping[str, Any],
) -> Registered:
    """Check ``fields`` (a ``BatchIntake`` message's JSON fields; ``msg_id`` and ``ts`` may
    be left out: a fresh id, and now) as ``station``'s message, and store it."""
    received_ns = time.time_ns()
    topic = topic_for(market, DeviceKind.INTAKE, station, "batch")
    validator.refresh()
    checked = validator.check(topic, _payload(fields, received_ns), received_ns)
    if isinstance(checked, DeadLetter):
        raise EntryRefused(checked.reason)
    message = checked.message
    assert isinstance(message, BatchIntake)
    with _registration_lock:
        existing = store.batch(market, message.trace_code)
        if existing is not None:
            _require_same_content(existing, message)
            return Registered(existing, created=False)
        refused = store.write([checked])
        if refused:
            raise StoreRefused(f"the store refused the batch: {refused[0].reason}")
        stored = store.batch(market, message.trace_code)
    if stored is None:
        raise StoreQueryError("a batch just written cannot be read back")
    return Registered(stored, created=True, reading=checked)


def _payload(fields: Mapping[str, Any], received_ns: int) -> bytes:
    """The JSON an intake station would publish for this batch."""
    message = dict(fields)
    if message.get("msg_id") is None:
        message["msg_id"] = _msg_ids.next()
    if message.get("ts") is None:
        message["ts"] = from_ns(received_ns).isoformat()
    return json.dumps(message, ensure_ascii=False, default=str).encode("utf-8")


def _content_of_row(row: BatchRow) -> dict[str, object]:
    result = None
    if row.rapid_test_passed is not None:  # None: not tested at intake
        result = RapidTestResult.PASS if row.rapid_test_passed else RapidTestResult.FAIL
    return {
        "vendor": row.vendor,
        "plu": row.plu,
        "origin": row.origin,
        "supplier": row.supplier,
        "quantity_g": row.quantity_g,
        "certificate_no": row.certificate_no,
        "rapid_test.result": result,
        "rapid_test.inhibition_pct": row.inhibition_pct,
    }


def _content_of_message(message: BatchIntake) -> dict[str, object]:
    test = message.rapid_test
    return {
        "vendor": message.vendor,
        "plu": message.plu,
        "origin": message.origin,
        "supplier": message.supplier,
        "quantity_g": message.quantity_g,
        "certificate_no": message.certificate_no,
        "rapid_test.result": None if test is None else test.result,
        "rapid_test.inhibition_pct": None if test is None else test.inhibition_pct,
    }


def _require_same_content(existing: BatchRow, message: BatchIntake) -> None:
    held = _content_of_row(existing)
    offered = _content_of_message(message)
    # Decimal compares by value: 12.5 and 12.50 are the same rate.
    differing = [name for name, value in offered.items() if held[name] != value]
    if differing:
        raise TraceCodeTaken(
            f"trace code {message.trace_code!r} is already registered with a different "
            f"{', '.join(differing)}"
        )
