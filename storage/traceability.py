"""Whether a sale's trace code really names a batch of what was sold, at that stall.

A scale can put any trace code on a sale. A sale is money that changed hands,
so it is always kept, but the store records on it whether its trace code was
checked against the registered batches (the intake desk's ``BatchIntake``
messages, i.e. the store's own batch data) and what came out:
:class:`TraceStatus`. Only a :attr:`TraceStatus.VERIFIED` sale may be shown with
a batch's origin and test result.

The intake desk is sometimes late: a sale may arrive before its batch. Such a
sale is stored as :attr:`TraceStatus.UNKNOWN_BATCH`, and when the batch is
written the store turns its sales verified, as long as they were made at most
:data:`LATE_BATCH_GRACE` before the batch's intake time (and are the batch's
vendor's sales of the batch's product).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Final

from schemas.messages import BatchIntake, Sale
from storage.records import Reading

#: How long before a batch's intake time a sale from it is still believed: scale
#: clocks drift and the intake desk may register a batch after its first sales.
LATE_BATCH_GRACE: Final = timedelta(days=1)
LATE_BATCH_GRACE_NS: Final = LATE_BATCH_GRACE // timedelta(microseconds=1) * 1_000


class TraceStatus(StrEnum):
    """The outcome of checking a sale's trace code; a small, fixed set."""

    VERIFIED = "verified"
    #: No batch with this code was registered (yet), or only after the grace window.
    UNKNOWN_BATCH = "unknown_batch"
    #: The code names a batch of another vendor.
    OTHER_VENDOR = "other_vendor"
    #: The code names a batch of another product (PLU).
    PRODUCT_MISMATCH = "product_mismatch"
    #: The stall is not registered to sell this product's category (market file).
    OUTSIDE_CATEGORIES = "outside_categories"
    #: Stored before sales were checked (InfluxDB points written by older versions).
    UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class BatchKey:
    """What checking a sale needs of a registered batch (its newest record)."""

    vendor: str
    plu: str
    #: the batch's point time (its intake time, see ``storage.records.point_time_ns``)
    time_ns: int


def batches_written(readings: Iterable[Reading]) -> dict[tuple[str, str], BatchKey]:
    """The newest batch record per (market, trace code) among ``readings``."""
    found: dict[tuple[str, str], BatchKey] = {}
    for reading in readings:
        message = reading.message
        if isinstance(message, BatchIntake):
            code = (reading.market, message.trace_code)
            key = BatchKey(message.vendor, message.plu, reading.time_ns)
            known = found.get(code)
            if known is None or key.time_ns >= known.time_ns:
                found[code] = key
    return found


def merge_batches(
    stored: Mapping[tuple[str, str], BatchKey], written: Mapping[tuple[str, str], BatchKey]
) -> dict[tuple[str, str], BatchKey]:
    """The newest record per (market, trace code) of the stored ones and a write's own."""
    merged = dict(stored)
    for code, key in written.items():
        known = merged.get(code)
        if known is None or key.time_ns >= known.time_ns:
            merged[code] = key
    return merged


def trace_status(reading: Reading, batch: BatchKey | None) -> TraceStatus:
    """The status of sale ``reading`` given the newest record of the batch it names."""
    sale = reading.message
    if not isinstance(sale, Sale):
        raise TypeError(f"only sales have a trace status, not {type(sale).__name__}")
    if reading.outside_categories:
        return TraceStatus.OUTSIDE_CATEGORIES
    if batch is None:
        return TraceStatus.UNKNOWN_BATCH
    if batch.vendor != sale.vendor:
        return TraceStatus.OTHER_VENDOR
    if batch.plu != sale.plu:
        return TraceStatus.PRODUCT_MISMATCH
    if reading.time_ns < batch.time_ns - LATE_BATCH_GRACE_NS:
        return TraceStatus.UNKNOWN_BATCH  # sold long before the batch came in: not from it
    return TraceStatus.VERIFIED


def sale_statuses(
    readings: Iterable[Reading], batches: Mapping[tuple[str, str], BatchKey]
) -> dict[int, TraceStatus]:
    """The status of each sale among ``readings``, by its index.

    ``batches`` holds the newest known record per (market, trace code): the
    stored ones merged with :func:`batches_written` of the same write.
    """
    statuses: dict[int, TraceStatus] = {}
    for index, reading in enumerate(readings):
        sale = reading.message
        if isinstance(sale, Sale):
            statuses[index] = trace_status(reading, batches.get((reading.market, sale.trace_code)))
    return statuses
