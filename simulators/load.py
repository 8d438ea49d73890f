"""Load mode: publish N valid sales as fast as possible and measure the rate, for benchmarks.

The payloads are built (and validated) before the clock starts: sales spread
round-robin over the market's scales, each naming the vendor that owns the
scale and one of that vendor's registered products, so ingest accepts them.
Message ids are ``(epoch ms at build time) × 1000 + n`` per scale, so a second
run never repeats the first's ids; device times run up to the build time, one
millisecond apart per scale, so ingest does not find them in the future.

Publishing goes over ``connections`` multiplexed connections, each with at most
``window`` unacknowledged publishes (paho's 16-bit message ids stay unique).
The rate counts from the first publish to the last PUBACK.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from schemas.messages import DeviceKind, Sale, expected_total_fen
from schemas.registry import Market, Vendor
from schemas.topics import topic_for
from simulators.catalog import knowledge
from simulators.config import DayConfig
from simulators.devices import (
    MAX_WINDOW,
    BrokerAddress,
    ConnectionMode,
    FleetDevice,
    LinkOptions,
    build_hub,
)
from simulators.events import epoch_ms, from_epoch_ms
from simulators.intake import trace_code, trace_prefix
from simulators.prices import to_fen_per_kg

log = logging.getLogger(__name__)

_PUMP_EVERY = 500


@dataclass(frozen=True, slots=True)
class LoadMessage:
    device: str
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class LoadResult:
    messages: int
    acked: int
    seconds: float
    connections: int

    @property
    def rate(self) -> float:
        """Acknowledged messages per second."""
        return self.acked / self.seconds if self.seconds > 0 else 0.0


def load_messages(market: Market, n: int, *, now: datetime | None = None) -> list[LoadMessage]:
    """``n`` valid sale messages spread over the market's scales."""
    sellers = [
        (scale, vendor)
        for vendor in market.active_vendors
        if vendor.products
        for scale in vendor.scales
    ]
    if not sellers:
        raise ValueError(f"market {market.id} has no scale of a vendor with products")
    moment = (now or datetime.now(market.tz)).astimezone(market.tz)
    base_id = epoch_ms(moment) * 1000
    per_scale = -(-n // len(sellers))
    messages = []
    for index, (scale, vendor, number) in zip(range(n), _round_robin(sellers), strict=False):
        sale = _sale(
            market,
            vendor,
            number,
            msg_id=base_id + number,
            ts_ms=epoch_ms(moment) - per_scale + number,
            index=index,
        )
        topic = topic_for(market.id, DeviceKind.SCALE, scale, "sale")
        messages.append(LoadMessage(scale, topic, sale.model_dump_json(exclude_none=True).encode()))
    return messages


def _round_robin(sellers: list[tuple[str, Vendor]]) -> Iterator[tuple[str, Vendor, int]]:
    number = 0
    while True:
        number += 1
        for scale, vendor in sellers:
            yield scale, vendor, number


def _sale(
    market: Market, vendor: Vendor, number: int, *, msg_id: int, ts_ms: int, index: int
) -> Sale:
    product = market.products[vendor.products[number % len(vendor.products)]]
    price_range = knowledge(product).price
    price = to_fen_per_kg(
        (price_range.low_fen_per_jin + price_range.high_fen_per_jin) // 2, product.unit
    )
    weight = 200 + (index * 37) % 1800
    moment = from_epoch_ms(ts_ms, market.tz)
    return Sale(
        msg_id=msg_id,
        ts=moment,
        vendor=vendor.id,
        plu=product.plu,
        weight_g=weight,
        unit_price_fen_per_kg=price,
        total_fen=expected_total_fen(weight, price),
        trace_code=trace_code(trace_prefix(market, DayConfig()), moment.date(), vendor.stall, 9999),
    )


def publish_load(
    broker_url: str,
    market: Market,
    n: int,
    *,
    qos: int = 1,
    connections: int = 4,
    window: int = 10_000,
    timeout_s: float = 600.0,
) -> LoadResult:
    """Publish ``n`` sales as fast as possible; returns how many were acknowledged and how fast."""
    if not 1 <= window <= MAX_WINDOW:
        raise ValueError(f"window must be within 1..{MAX_WINDOW}")
    messages = load_messages(market, n)
    devices = sorted({message.device for message in messages})
    options = LinkOptions(qos=qos, window=window, buffer_per_device=max(1, n))
    hub = build_hub(
        BrokerAddress.parse(broker_url),
        [FleetDevice(device) for device in devices],
        mode=ConnectionMode.MULTIPLEXED,
        options=options,
        connections=connections,
        client_prefix=f"stallwatch-load-{market.id}",
    )
    with hub:
        if not hub.connect(timeout_s):
            raise ConnectionError(f"could not connect to {broker_url}")
        started = time.monotonic()
        for count, message in enumerate(messages, 1):
            hub.publish(message.device, message.topic, message.payload)
            if count % _PUMP_EVERY == 0:
                hub.pump(0.0)
        hub.drain(timeout_s)
        seconds = time.monotonic() - started
        stats = hub.stats()
    result = LoadResult(len(messages), stats.acked, seconds, len(hub.links))
    log.info(
        "published %d sales, %d acknowledged, in %.2fs: %.0f/s",
        n,
        result.acked,
        seconds,
        result.rate,
    )
    return result
