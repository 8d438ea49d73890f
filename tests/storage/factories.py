"""Small builders for device messages, readings and dead letters used by the store tests.

Defaults are valid contract messages; every field can be overridden. Times are
whole milliseconds unless a test says otherwise, because a point's device time
is kept to the millisecond (see ``storage.records.point_time_ns``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from schemas.messages import (
    BatchIntake,
    DeviceMessage,
    GateCount,
    PriceSet,
    Promotion,
    RapidTest,
    RapidTestReport,
    RapidTestResult,
    Sale,
    ScaleStatus,
    expected_total_fen,
)
from storage.records import DeadLetter, Reading, to_ns

SHANGHAI = ZoneInfo("Asia/Shanghai")
MARKET = "nanmen"
OTHER_MARKET = "beimen"
#: A Monday morning at the market, local time.
T0 = datetime(2025, 5, 12, 8, 0, tzinfo=SHANGHAI)
#: Arrival delay the factories assume when no received time is given.
LATENCY = timedelta(milliseconds=250)


def at(*, hours: float = 0, minutes: float = 0, seconds: float = 0, ms: int = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds, milliseconds=ms)


def reading(
    message: DeviceMessage,
    device: str,
    *,
    market: str = MARKET,
    received: datetime | None = None,
    received_ns: int | None = None,
) -> Reading:
    if received_ns is None:
        received_ns = to_ns(received if received is not None else message.ts + LATENCY)
    return Reading(market=market, device=device, received_ns=received_ns, message=message)


def sale(
    *,
    msg_id: int = 1,
    ts: datetime = T0,
    vendor: str = "v001",
    plu: str = "1001",
    weight_g: int = 1234,
    unit_price_fen_per_kg: int = 1_160,
    total_fen: int | None = None,
    tare_g: int | None = None,
    trace_code: str = "SD370782-20250512-001",
) -> Sale:
    if total_fen is None:
        total_fen = expected_total_fen(weight_g, unit_price_fen_per_kg)
    return Sale(
        msg_id=msg_id,
        ts=ts,
        vendor=vendor,
        plu=plu,
        weight_g=weight_g,
        tare_g=tare_g,
        unit_price_fen_per_kg=unit_price_fen_per_kg,
        total_fen=total_fen,
        trace_code=trace_code,
    )


def promotion(
    *, price_fen_per_kg: int = 990, text: str = "限时特价", until: datetime | None = None
) -> Promotion:
    return Promotion(price_fen_per_kg=price_fen_per_kg, text=text, until=until or at(hours=10))


def price(
    *,
    msg_id: int = 1,
    ts: datetime = T0,
    vendor: str = "v001",
    plu: str = "1001",
    price_fen_per_kg: int = 1_160,
    promo: Promotion | None = None,
) -> PriceSet:
    return PriceSet(
        msg_id=msg_id, ts=ts, vendor=vendor, plu=plu, price_fen_per_kg=price_fen_per_kg, promo=promo
    )


def batch(
    *,
    msg_id: int = 1,
    ts: datetime = T0,
    trace_code: str = "SD370782-20250512-001",
    vendor: str = "v001",
    plu: str = "1001",
    origin: str = "山东寿光",
    supplier: str = "寿光蔬菜批发市场 第3档",
    quantity_g: int = 250_000,
    certificate_no: str = "HG-2025-000123",
    passed: bool | None = True,
    inhibition_pct: Decimal = Decimal("12.5"),
) -> BatchIntake:
    """A batch; ``passed=None``: not tested at intake (no ``rapid_test``)."""
    test = None
    if passed is not None:
        result = RapidTestResult.PASS if passed else RapidTestResult.FAIL
        test = RapidTest(result=result, inhibition_pct=inhibition_pct)
    return BatchIntake(
        msg_id=msg_id,
        ts=ts,
        trace_code=trace_code,
        vendor=vendor,
        plu=plu,
        origin=origin,
        supplier=supplier,
        quantity_g=quantity_g,
        certificate_no=certificate_no,
        rapid_test=test,
    )


def rapid_test(
    *,
    msg_id: int = 1,
    ts: datetime = T0,
    trace_code: str = "SD370782-20250512-001",
    vendor: str = "v001",
    plu: str = "1001",
    passed: bool = True,
    inhibition_pct: Decimal = Decimal("12.5"),
) -> RapidTestReport:
    result = RapidTestResult.PASS if passed else RapidTestResult.FAIL
    return RapidTestReport(
        msg_id=msg_id,
        ts=ts,
        trace_code=trace_code,
        vendor=vendor,
        plu=plu,
        rapid_test=RapidTest(result=result, inhibition_pct=inhibition_pct),
    )


def gate_count(
    *, msg_id: int = 1, ts: datetime = T0, in_total: int = 0, out_total: int = 0
) -> GateCount:
    return GateCount(msg_id=msg_id, ts=ts, in_total=in_total, out_total=out_total)


def status(
    *,
    msg_id: int = 1,
    ts: datetime = T0,
    online: bool = True,
    will: bool = False,
    zero_ok: bool | None = None,
    seal_intact: bool | None = None,
    calibration_due: date | None = None,
) -> ScaleStatus:
    return ScaleStatus(
        msg_id=msg_id,
        ts=ts,
        online=online,
        will=will,
        zero_ok=zero_ok,
        seal_intact=seal_intact,
        calibration_due=calibration_due,
    )


def dead_letter(
    *,
    received: datetime = T0,
    topic: str = "markets/nanmen/scales/sc-001/sale",
    payload: bytes = b'{"v": 1, "msg_id": "x"}',
    reason: str = "msg_id: Input should be a valid integer",
    market: str = MARKET,
    device: str = "sc-001",
    payload_size: int = -1,
) -> DeadLetter:
    return DeadLetter(
        received_ns=to_ns(received),
        topic=topic,
        payload=payload,
        reason=reason,
        market=market,
        device=device,
        payload_size=payload_size,
    )
