"""The store contract of prices (``storage.interfaces.prices.PriceStore``).

Runs once per backend through the parametrized ``store`` fixture in conftest.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from storage.base import Store
from storage.interfaces.prices import PriceRow, PromotionRow
from tests.storage.contract.helpers import DAY_END, write_ok
from tests.storage.factories import (
    MARKET,
    OTHER_MARKET,
    T0,
    at,
    price,
    promotion,
    reading,
)


class TestRoundTrip:
    def test_price_with_promotion(self, store: Store) -> None:
        until = at(hours=10, ms=5) + timedelta(microseconds=7)
        promo = promotion(
            price_fen_per_kg=1_990, text="限时特价 \"5折\", a=b \\ '买一送一'", until=until
        )
        message = price(
            msg_id=3, ts=at(ms=30), vendor="v001", plu="1001", price_fen_per_kg=2_580, promo=promo
        )
        write_ok(store, [reading(message, "scr-001")])

        expected = PriceRow(
            market=MARKET,
            vendor="v001",
            plu="1001",
            screen="scr-001",
            price_fen_per_kg=2_580,
            promo=PromotionRow(
                price_fen_per_kg=1_990, text="限时特价 \"5折\", a=b \\ '买一送一'", until=until
            ),
            ts=at(ms=30),
            msg_id=3,
        )
        assert store.latest_prices(MARKET) == [expected]
        assert store.price_history(MARKET, T0, DAY_END) == [expected]

    def test_price_without_promotion(self, store: Store) -> None:
        write_ok(store, [reading(price(promo=None), "scr-001")])
        assert store.latest_prices(MARKET)[0].promo is None


class TestPrices:
    def test_latest_price_per_vendor_and_product(self, store: Store) -> None:
        early = promotion(price_fen_per_kg=900, text="早市特价", until=at(hours=2))
        late = promotion(price_fen_per_kg=950, text='晚市 "清仓"', until=at(hours=12))
        # Written newest first: "latest" is by device time, not by arrival.
        write_ok(
            store,
            [
                reading(
                    price(
                        msg_id=3,
                        ts=at(hours=9),
                        vendor="v001",
                        plu="1001",
                        price_fen_per_kg=1_300,
                        promo=late,
                    ),
                    "scr-001",
                ),
                reading(
                    price(
                        msg_id=1,
                        ts=at(hours=0),
                        vendor="v001",
                        plu="1001",
                        price_fen_per_kg=1_200,
                        promo=early,
                    ),
                    "scr-001",
                ),
                reading(
                    price(
                        msg_id=2, ts=at(hours=5), vendor="v001", plu="1001", price_fen_per_kg=1_250
                    ),
                    "scr-001",
                ),
                reading(
                    price(
                        msg_id=4,
                        ts=at(hours=1),
                        vendor="v001",
                        plu="1002",
                        price_fen_per_kg=1_000,
                        promo=early,
                    ),
                    "scr-002",
                ),
                reading(
                    price(
                        msg_id=5, ts=at(hours=7), vendor="v002", plu="1001", price_fen_per_kg=1_100
                    ),
                    "scr-201",
                ),
                reading(
                    price(
                        msg_id=6, ts=at(hours=8), vendor="v001", plu="1001", price_fen_per_kg=9_999
                    ),
                    "scr-001",
                    market=OTHER_MARKET,
                ),
            ],
        )

        assert store.latest_prices(MARKET) == [
            PriceRow(
                MARKET,
                "v001",
                "1001",
                "scr-001",
                1_300,
                PromotionRow(950, '晚市 "清仓"', at(hours=12)),
                at(hours=9),
                3,
            ),
            PriceRow(
                MARKET,
                "v001",
                "1002",
                "scr-002",
                1_000,
                PromotionRow(900, "早市特价", at(hours=2)),
                at(hours=1),
                4,
            ),
            PriceRow(MARKET, "v002", "1001", "scr-201", 1_100, None, at(hours=7), 5),
        ]

    def test_a_promotion_does_not_outlive_the_price_that_carried_it(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(
                    price(msg_id=1, ts=at(hours=0), promo=promotion(until=at(hours=8))), "scr-001"
                ),
                reading(price(msg_id=2, ts=at(hours=1), price_fen_per_kg=1_500), "scr-001"),
            ],
        )
        [latest] = store.latest_prices(MARKET)
        assert (latest.msg_id, latest.price_fen_per_kg, latest.promo) == (2, 1_500, None)

    def test_no_prices(self, store: Store) -> None:
        assert store.latest_prices(MARKET) == []

    def test_price_history_filters_and_range(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(price(msg_id=1, ts=at(hours=1), vendor="v001", plu="1001"), "scr-001"),
                reading(price(msg_id=2, ts=at(hours=2), vendor="v001", plu="1002"), "scr-001"),
                reading(price(msg_id=3, ts=at(hours=3), vendor="v002", plu="1001"), "scr-201"),
                reading(price(msg_id=4, ts=at(hours=4), vendor="v001", plu="1001"), "scr-001"),
                reading(
                    price(msg_id=5, ts=at(hours=2), vendor="v001", plu="1001"),
                    "scr-001",
                    market=OTHER_MARKET,
                ),
            ],
        )

        def ids(start: datetime, end: datetime, **filters: str) -> list[int]:
            return [row.msg_id for row in store.price_history(MARKET, start, end, **filters)]

        assert ids(T0, DAY_END) == [1, 2, 3, 4]
        assert ids(at(hours=1), at(hours=4)) == [1, 2, 3]
        assert ids(T0, DAY_END, plu="1001") == [1, 3, 4]
        assert ids(T0, DAY_END, vendor="v001") == [1, 2, 4]
        assert ids(T0, DAY_END, vendor="v001", plu="1001") == [1, 4]


class TestPricesBefore:
    def test_the_last_price_of_each_series_strictly_before_the_moment(self, store: Store) -> None:
        moment = at(hours=2)
        promo = promotion(price_fen_per_kg=900, until=at(hours=5))
        write_ok(
            store,
            [
                reading(price(msg_id=1, ts=at(hours=0), price_fen_per_kg=1_000), "scr-001"),
                reading(
                    price(
                        msg_id=2,
                        ts=moment - timedelta(milliseconds=1),
                        price_fen_per_kg=1_100,
                        promo=promo,
                    ),
                    "scr-001",
                ),
                reading(price(msg_id=3, ts=moment, price_fen_per_kg=1_200), "scr-001"),
                reading(price(msg_id=4, ts=at(hours=1), plu="1002"), "scr-001"),
                reading(price(msg_id=1, ts=at(hours=-30), vendor="v002"), "scr-201"),
                reading(price(msg_id=2, ts=at(hours=3), vendor="v003"), "scr-301"),
                reading(price(msg_id=9, ts=at(hours=1)), "scr-001", market=OTHER_MARKET),
            ],
        )

        rows = store.prices_before(MARKET, moment)

        assert [(r.vendor, r.plu, r.price_fen_per_kg, r.msg_id) for r in rows] == [
            ("v001", "1001", 1_100, 2),
            ("v001", "1002", 1_160, 4),
            ("v002", "1001", 1_160, 1),
        ]
        assert rows[0].promo == PromotionRow(900, "限时特价", at(hours=5))
        assert rows[0].ts == moment - timedelta(milliseconds=1)
        assert [(r.vendor, r.plu) for r in store.prices_before(MARKET, moment, plu="1002")] == [
            ("v001", "1002")
        ]
        assert store.prices_before(MARKET, at(hours=-31)) == []
