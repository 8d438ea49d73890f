"""The msg_id ledger: one message per (market, device, msg_id), the first one.

The contract says a device's ``msg_id`` only increases, so a second message
with a ``msg_id`` already used is either a redelivery (the same content: a
silent no-op, as point identity makes it) or a broken or hostile device (other
content). Without this rule the second one silently replaced the stored reading
(same ``ts``) or was stored as a second reading (another ``ts``).

Each store keeps, per (market, device, msg_id), a digest of the first message's
canonical content (:func:`content_digest`): in the store, so that every ingest
instance sees it and it survives restarts. A later message with the same key
and another digest is not written; the store turns it into a dead letter with
the reason :data:`REUSED_MSG_ID`, attributed to the device.

Entries are kept until
:meth:`storage.interfaces.writing.WritingStore.forget_msg_ids` forgets what
arrived before its cut-off, which ingest sets to the accepted device-clock
window (``STALLWATCH_MAX_AGE_S``, 7 days ago): a message older than that is
rejected by the edge check anyway.

A Last Will does not claim its ``msg_id``: it repeats the id of the scale's
last message from connect time, and the broker, not the device, sends it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from schemas.messages import DeviceMessage, ScaleStatus
from storage.records import Reading

#: The dead-letter reason for a message whose msg_id the store already holds with other content.
REUSED_MSG_ID = "msg_id reused with different content"

#: ``(market, device, msg_id)``
MsgIdKey = tuple[str, str, int]


class LedgerEntry(NamedTuple):
    """The first message seen with a key: its content digest and when it arrived.

    A named tuple: one is made per reading written, and a frozen dataclass
    costs several times as much to create.
    """

    market: str
    device: str
    msg_id: int
    digest: int
    received_ns: int

    @property
    def key(self) -> MsgIdKey:
        return (self.market, self.device, self.msg_id)


@dataclass(slots=True)
class Claims:
    """A write's readings sorted by the ledger."""

    #: first uses and redeliveries: written as before
    accepted: list[Reading] = field(default_factory=list)
    #: later messages with a used msg_id and other content: dead-lettered
    reused: list[Reading] = field(default_factory=list)
    #: ledger entries to add, one per key first seen in this write
    new: list[LedgerEntry] = field(default_factory=list)


def content_digest(message: DeviceMessage) -> int:
    """The first 64 bits of the SHA-256 of the message's canonical JSON, as a signed integer.

    Canonical (the model's own serialisation), so a byte-identical redelivery
    and a re-encoding of the same content match. A cryptographic hash, so a
    hostile device cannot make other content match; 64 bits fit an integer
    column and an InfluxDB integer field. SHA-256 measured twice as fast here
    as ``blake2b(digest_size=8)``, whose keyword costs more than the hashing.
    """
    canonical = message.__pydantic_serializer__.to_json(message)  # model_dump_json, as bytes
    return int.from_bytes(hashlib.sha256(canonical).digest()[:8], "big", signed=True)


def claims_msg_id(reading: Reading) -> bool:
    message = reading.message
    return not (isinstance(message, ScaleStatus) and message.will)


def ledger_keys(readings: Sequence[Reading]) -> set[MsgIdKey]:
    """The keys a write claims, to look up before :func:`sort_claims`."""
    return {(r.market, r.device, r.message.msg_id) for r in readings if claims_msg_id(r)}


def sort_claims(readings: Sequence[Reading], stored: Mapping[MsgIdKey, int]) -> Claims:
    """Sort ``readings`` (in write order) against the ``stored`` digests of their keys.

    Within the write, too, the first message of a key wins.
    """
    claims = Claims()
    known = dict(stored)
    for reading in readings:
        if not claims_msg_id(reading):
            claims.accepted.append(reading)
            continue
        key = (reading.market, reading.device, reading.message.msg_id)
        digest = content_digest(reading.message)
        first = known.get(key)
        if first is None:
            known[key] = digest
            claims.new.append(LedgerEntry(*key, digest, reading.received_ns))
        elif first != digest:
            claims.reused.append(reading)
            continue
        claims.accepted.append(reading)
    return claims
