"""Batches: a manager registers a produce batch over HTTP, as an intake station would over MQTT.

``POST /markets/{market}/batches`` takes the fields of the ``BatchIntake``
message plus ``station``, the registered intake station the batch came in at.
There is no pseudo-station for HTTP: a batch is physically received somewhere,
its stored series is that station's as for MQTT intake, and so the registry's
rules apply unchanged. The body is turned into the message a station would
publish and checked by :class:`ingest.validate.Validator` under the station's
topic, so both paths accept and refuse exactly the same batches.

What the OpenAPI document can state about a body is stated there (field formats,
the rapid-test rate as a decimal string that agrees with its result), and a body
it allows is never answered 422. What depends on the market's registry or the
clock (an unknown vendor, product or station, a time too old or in the future)
conflicts with the market's state: 409 ``batch_rejected`` with the reason. Unlike
MQTT, a refused batch is not dead-lettered, because the caller is told at once.

``msg_id`` and ``ts`` may be omitted: ``ts`` is then the time of the request
and ``msg_id`` a nanosecond timestamp, unique and increasing in this process.

Trace codes are unique per market. Registering one again with the same content
answers 200 with the stored batch (a retried request is harmless); with other
content it is refused with 409. The check and the write are ``ingest.entry``'s,
shared with the dashboard's intake form.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from api._exceptions import AUTH_ERRORS, Conflict, ErrorBody, Unprocessable, error_responses
from api.deps import ContextDep, MarketDep, StoreDep
from api.security import Manager
from ingest import entry
from marketdb.locks import lock_if_failed
from schemas.messages import (
    MAX_BATCH_G,
    Identifier,
    JsonInt,
    MsgId,
    Plu,
    RapidTest,
    RapidTestResult,
    Text,
    TraceCode,
)
from storage.interfaces.traceability import BatchRow
from storage.records import from_ns

router = APIRouter(tags=["batches"], responses=AUTH_ERRORS)


#: Rates as the document states them: decimal strings with at most one decimal, below 50
#: for a pass and from 50 for a fail (GB/T 5009.199). JSON numbers are accepted as well.
_PASSING_RATE = r"^([0-9]|[1-4][0-9])(\.[0-9])?$"
_FAILING_RATE = r"^((5[0-9]|[6-9][0-9])(\.[0-9])?|100(\.0)?)$"


def _rapid_test_schema(result: RapidTestResult, rate_pattern: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["result", "inhibition_pct"],
        "properties": {
            "result": {"const": result.value},
            "inhibition_pct": {"type": "string", "pattern": rate_pattern},
        },
    }


RAPID_TEST_SCHEMA: dict[str, Any] = {
    "title": "RapidTest",
    "description": "Enzyme inhibition rate in percent, one decimal at most; 50 or more fails.",
    "oneOf": [
        _rapid_test_schema(RapidTestResult.PASS, _PASSING_RATE),
        _rapid_test_schema(RapidTestResult.FAIL, _FAILING_RATE),
    ],
}


class BatchRegistration(BaseModel):
    """A ``BatchIntake`` message as a manager enters it, plus the intake station."""

    model_config = ConfigDict(extra="forbid")

    station: Identifier = Field(description="Intake station of this market that received it.")
    msg_id: Annotated[MsgId, JsonInt] | None = Field(
        default=None, description="Default: assigned by the server."
    )
    ts: AwareDatetime | None = Field(
        default=None, description="Intake time, RFC 3339 with offset. Default: now."
    )
    trace_code: TraceCode = Field(description="Trace code printed on the batch; unique.")
    vendor: Identifier = Field(description="Vendor receiving the batch.")
    plu: Plu = Field(description="Product look-up code.")
    origin: Text = Field(description="Place of origin (产地).")
    supplier: Text = Field(description="Supplier or wholesaler.")
    quantity_g: Annotated[int, Field(gt=0, le=MAX_BATCH_G, strict=True), JsonInt] = Field(
        description="Quantity received, grams."
    )
    certificate_no: Text = Field(description="Origin/quarantine certificate number (合格证).")
    rapid_test: Annotated[
        RapidTest | None,
        WithJsonSchema({"anyOf": [RAPID_TEST_SCHEMA, {"type": "null"}]}, mode="validation"),
    ] = Field(
        default=None,
        description="The rapid test at intake, both fields; absent or null: not tested "
        "(markets test a sample of their batches).",
    )


class RapidTestOut(BaseModel):
    result: RapidTestResult
    inhibition_pct: Decimal = Field(description="Enzyme inhibition rate, percent (a string).")


class BatchOut(BaseModel):
    """A batch as stored."""

    market: str
    station: str
    trace_code: str
    vendor: str
    plu: str
    origin: str
    supplier: str
    quantity_g: int
    certificate_no: str
    rapid_test: RapidTestOut | None = Field(description="Null: not tested at intake.")
    ts: datetime = Field(description="Intake time (device time, to the millisecond).")
    msg_id: int
    received_at: datetime


@router.post(
    "/markets/{market}/batches",
    status_code=201,
    summary="Register a produce batch (as an intake station would over MQTT)",
    responses={
        200: {"model": BatchOut, "description": "Already registered with the same content."},
        **error_responses(400),
        409: {
            "model": ErrorBody,
            "description": (
                "`batch_rejected`: the batch contradicts the market's registry or the clock "
                "(unknown vendor, product or station; a time too old or in the future); "
                "`conflict`: the trace code is registered with other content."
            ),
        },
    },
)
def register_batch(
    market: MarketDep,
    body: BatchRegistration,
    context: ContextDep,
    store: StoreDep,
    response: Response,
    _caller: Manager,
) -> BatchOut:
    try:
        registered = entry.register_batch(
            context.validator,
            store,
            market.id,
            body.station,
            body.model_dump(mode="json", exclude={"station"}),
        )
    except entry.TraceCodeTaken as exc:
        raise Conflict(exc.reason, code=exc.code) from exc
    except entry.StoreRefused as exc:
        raise Unprocessable(exc.reason, code=exc.code) from exc
    except entry.EntryRefused as exc:
        raise Conflict(exc.reason, code=exc.code) from exc
    if registered.reading is not None and context.lock_keeper is not None:
        lock_if_failed(context.lock_keeper, registered.reading)  # a failed batch is locked now
    if not registered.created:
        response.status_code = 200
    return _batch_out(registered.batch)


def _batch_out(row: BatchRow) -> BatchOut:
    return BatchOut(
        market=row.market,
        station=row.station,
        trace_code=row.trace_code,
        vendor=row.vendor,
        plu=row.plu,
        origin=row.origin,
        supplier=row.supplier,
        quantity_g=row.quantity_g,
        certificate_no=row.certificate_no,
        rapid_test=_test_out(row),
        ts=row.ts,
        msg_id=row.msg_id,
        received_at=from_ns(row.received_ns),
    )


def _test_out(row: BatchRow) -> RapidTestOut | None:
    if row.rapid_test_passed is None or row.inhibition_pct is None:
        return None  # not tested at intake
    result = RapidTestResult.PASS if row.rapid_test_passed else RapidTestResult.FAIL
    return RapidTestOut(result=result, inhibition_pct=row.inhibition_pct)
