"""The store contract of writing (``storage.interfaces.writing.WritingStore``).

What a write refuses, point identity (a replay is one point), the msg_id ledger
(``storage.msgids``) and dead letters. Runs once per backend through the
parametrized ``store`` fixture in conftest.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from schemas.messages import Sale
from storage.base import Store
from storage.msgids import REUSED_MSG_ID
from storage.records import UNREGISTERED, DeadLetter, to_ns
from tests.storage.contract.helpers import DAY_END, one_of_each, write_ok
from tests.storage.factories import (
    MARKET,
    OTHER_MARKET,
    T0,
    at,
    batch,
    dead_letter,
    gate_count,
    price,
    reading,
    sale,
    status,
)


class TestWrite:
    def test_good_data_is_not_refused(self, store: Store) -> None:
        assert store.write(one_of_each(), [dead_letter()]) == []

    def test_nothing_to_write(self, store: Store) -> None:
        assert store.write([]) == []

    def test_a_reading_the_store_cannot_hold_is_dead_lettered_and_the_rest_written(
        self, store: Store
    ) -> None:
        # Bypasses validation: an integer beyond 64 bits fits no backend.
        unstorable = Sale.model_construct(
            v=1,
            msg_id=7,
            ts=at(ms=7),
            vendor="v001",
            plu="1001",
            weight_g=500,
            tare_g=None,
            unit_price_fen_per_kg=1_000,
            total_fen=2**64,
            trace_code="SD370782-20250512-001",
        )
        good = reading(sale(msg_id=8, ts=at(ms=8)), "sc-001")
        bad = reading(unstorable, "sc-001")

        refused = store.write([bad, good])

        assert len(refused) == 1
        letter = refused[0]
        assert (letter.market, letter.device) == (MARKET, "sc-001")
        assert letter.topic == "markets/nanmen/scales/sc-001/sale"
        assert letter.received_ns == bad.received_ns
        assert letter.reason
        assert json.loads(letter.payload)["total_fen"] == 2**64
        assert json.loads(letter.payload)["msg_id"] == 7
        assert store.dead_letters(T0, DAY_END) == [letter]
        assert [row.msg_id for row in store.sales(MARKET, T0, DAY_END)] == [8]


class TestPointIdentity:
    def test_the_same_readings_written_twice_are_stored_once(self, store: Store) -> None:
        readings = one_of_each()
        write_ok(store, readings)
        write_ok(store, readings)

        assert len(store.sales(MARKET, T0, DAY_END)) == 1
        assert len(store.price_history(MARKET, T0, DAY_END)) == 1
        assert len(store.batches(MARKET, T0, DAY_END)) == 1
        assert len(store.gate_counts(MARKET, T0, DAY_END)) == 1
        assert len(store.scale_status(MARKET)) == 1

    def test_a_replay_received_later_overwrites_the_first_delivery(self, store: Store) -> None:
        message = sale(msg_id=5, ts=at(ms=5))
        first = to_ns(at(ms=200))
        replayed = to_ns(at(minutes=30))
        write_ok(store, [reading(message, "sc-001", received_ns=first)])
        write_ok(store, [reading(message, "sc-001", received_ns=replayed)])

        rows = store.sales(MARKET, T0, DAY_END)
        assert [(row.msg_id, row.received_ns) for row in rows] == [(5, replayed)]

    def test_a_replay_within_one_batch_is_one_row(self, store: Store) -> None:
        message = sale(msg_id=5, ts=at(ms=5))
        write_ok(store, [reading(message, "sc-001"), reading(message, "sc-001")])
        assert len(store.sales(MARKET, T0, DAY_END)) == 1

    def test_two_sales_in_the_same_millisecond_are_two_rows(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(sale(msg_id=2, ts=at(ms=1), weight_g=200), "sc-001"),
                reading(sale(msg_id=1, ts=at(ms=1), weight_g=100), "sc-001"),
            ],
        )
        rows = store.sales(MARKET, T0, DAY_END)
        assert [(row.msg_id, row.weight_g, row.ts) for row in rows] == [
            (1, 100, at(ms=1)),
            (2, 200, at(ms=1)),
        ]

    def test_the_same_message_id_on_two_scales_is_two_rows(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(sale(msg_id=1, ts=at(ms=1)), "sc-001"),
                reading(sale(msg_id=1, ts=at(ms=1)), "sc-002"),
            ],
        )
        assert sorted(row.scale for row in store.sales(MARKET, T0, DAY_END)) == ["sc-001", "sc-002"]


class TestMsgIdLedger:
    """One message per (market, device, msg_id): the first (``storage.msgids``)."""

    @pytest.mark.parametrize("msg_id", [0, 5, 2**63 - 1])
    @pytest.mark.parametrize("later_ts", [at(ms=5), at(minutes=3)], ids=["same ts", "later ts"])
    def test_a_reused_msg_id_with_other_content_is_dead_lettered_and_the_first_kept(
        self, store: Store, msg_id: int, later_ts: datetime
    ) -> None:
        first = reading(sale(msg_id=msg_id, ts=at(ms=5), weight_g=100), "sc-001")
        reuse = reading(sale(msg_id=msg_id, ts=later_ts, weight_g=1033), "sc-001")
        write_ok(store, [first])

        refused = store.write([reuse])

        assert [(d.reason, d.market, d.device, d.received_ns) for d in refused] == [
            (REUSED_MSG_ID, MARKET, "sc-001", reuse.received_ns)
        ]
        assert json.loads(refused[0].payload)["weight_g"] == 1033
        assert refused[0].topic == "markets/nanmen/scales/sc-001/sale"
        assert store.dead_letters(T0, DAY_END) == refused
        assert store.reject_counts(T0, DAY_END) == {(MARKET, "sc-001"): 1}
        assert [(r.msg_id, r.weight_g) for r in store.sales(MARKET, T0, DAY_END)] == [(msg_id, 100)]

    def test_within_one_write_the_first_wins(self, store: Store) -> None:
        first = reading(sale(msg_id=5, ts=at(ms=5), weight_g=100), "sc-001")
        reuse = reading(sale(msg_id=5, ts=at(ms=9), weight_g=200), "sc-001")
        refused = store.write([first, reuse, first])

        assert [d.reason for d in refused] == [REUSED_MSG_ID]
        assert [r.weight_g for r in store.sales(MARKET, T0, DAY_END)] == [100]

    def test_every_message_type_claims_its_msg_id(self, store: Store) -> None:
        write_ok(store, one_of_each())
        reused = [
            reading(sale(weight_g=999), "sc-001"),
            reading(price(price_fen_per_kg=999), "scr-001"),
            reading(batch(quantity_g=999), "in-01"),
            reading(gate_count(in_total=999, out_total=2), "g-north"),
            reading(status(msg_id=2, online=False), "sc-001"),
        ]
        refused = store.write(reused)
        assert sorted((d.device, d.reason) for d in refused) == sorted(
            (r.device, REUSED_MSG_ID) for r in reused
        )

    def test_the_ledger_is_shared_by_every_instance_and_survives_reopening(
        self, store_pair: tuple[Store, Store]
    ) -> None:
        one, other = store_pair
        write_ok(one, [reading(sale(msg_id=5, weight_g=100), "sc-001")])
        one.close()

        [letter] = other.write([reading(sale(msg_id=5, weight_g=200), "sc-001")])

        assert letter.reason == REUSED_MSG_ID
        assert [r.weight_g for r in other.sales(MARKET, T0, DAY_END)] == [100]

    def test_ids_are_per_device_and_market(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(sale(msg_id=5, weight_g=100), "sc-001"),
                reading(sale(msg_id=5, weight_g=200), "sc-002"),
                reading(sale(msg_id=5, weight_g=300), "sc-001", market=OTHER_MARKET),
            ],
        )

    def test_a_last_will_repeating_the_last_msg_id_is_stored(self, store: Store) -> None:
        write_ok(store, [reading(sale(msg_id=5), "sc-001")])
        will = status(msg_id=5, ts=at(minutes=-30), online=False, will=True)
        write_ok(store, [reading(will, "sc-001", received=at(minutes=1))])
        assert [row.will for row in store.scale_status(MARKET)] == [True]

    def test_forgotten_ids_can_be_used_again_and_newer_ones_cannot(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(sale(msg_id=1, ts=at(hours=1)), "sc-001"),
                reading(sale(msg_id=2, ts=at(hours=3)), "sc-001"),
                reading(sale(msg_id=1, ts=at(hours=1)), "sc-002"),
            ],
        )

        store.forget_msg_ids(at(hours=2))

        again = [
            reading(sale(msg_id=1, ts=at(hours=4), weight_g=11), "sc-001"),
            reading(sale(msg_id=2, ts=at(hours=4), weight_g=22), "sc-001"),
            reading(sale(msg_id=1, ts=at(hours=4), weight_g=33), "sc-002"),
        ]
        refused = store.write(again)
        assert [(d.device, json.loads(d.payload)["msg_id"]) for d in refused] == [("sc-001", 2)]


class TestDeadLetters:
    def test_raw_bytes_and_every_field_round_trip(self, store: Store) -> None:
        letters = [
            dead_letter(
                received=at(ms=1),
                payload=b'\xff\xfe\x00\x80{"v": 1}\\,= "\xe6\x9d',
                reason="not JSON",
            ),
            dead_letter(received=at(ms=2), payload=b"", reason="empty payload"),
            dead_letter(
                received=at(ms=3),
                payload=b"x" * 1024,
                payload_size=300_000,
                reason="payload too large",
            ),
            DeadLetter(
                received_ns=to_ns(at(ms=4)) + 5,
                topic='markets/北门 x/scales/"a",b=c\\/sale',
                payload=b"{}",
                reason='topic "markets/北门 x/…" does not match, a=b \\',
            ),
        ]
        write_ok(store, [], letters)

        stored = store.dead_letters(T0, DAY_END)

        assert stored == letters[::-1]
        assert (stored[0].market, stored[0].device) == (UNREGISTERED, UNREGISTERED)
        assert stored[1].payload_size == 300_000

    def test_newest_first_with_limit_market_and_half_open_range(self, store: Store) -> None:
        start, end = at(hours=1), at(hours=2)
        before = dead_letter(received=start - timedelta(microseconds=1), reason="before")
        first = dead_letter(received=start, reason="first")
        other = dead_letter(
            received=at(hours=1, minutes=30), market=OTHER_MARKET, device="sc-900", reason="other"
        )
        last = dead_letter(received=end - timedelta(microseconds=1), reason="last")
        after = dead_letter(received=end, reason="after")
        write_ok(store, [], [last, before, after, first, other])

        assert store.dead_letters(start, end) == [last, other, first]
        assert store.dead_letters(start, end, limit=2) == [last, other]
        assert store.dead_letters(start, end, market=MARKET) == [last, first]
        assert store.dead_letters(start, end, market=OTHER_MARKET) == [other]

    def test_identical_dead_letters_both_survive(self, store: Store) -> None:
        letter = dead_letter(received=at(ms=1))
        write_ok(store, [], [letter, letter])
        assert store.dead_letters(T0, DAY_END) == [letter, letter]

    def test_a_batch_written_again_stores_its_dead_letters_once(self, store: Store) -> None:
        # The forwarder writes a batch again when it died before trimming its spool.
        letters = [
            dead_letter(received=at(ms=1), reason="first"),
            dead_letter(received=at(ms=1), reason="first"),  # identical, also its own
            dead_letter(received=at(ms=2), reason="second"),
        ]
        write_ok(store, [], letters)
        write_ok(store, [], letters)

        assert store.dead_letters(T0, DAY_END) == letters[::-1]
        assert store.reject_counts(T0, DAY_END) == {(MARKET, "sc-001"): 3}

    def test_reject_counts_per_market_and_device(self, store: Store) -> None:
        write_ok(
            store,
            [],
            [
                dead_letter(received=at(minutes=1), device="sc-001"),
                dead_letter(received=at(minutes=2), device="sc-001"),
                dead_letter(received=at(minutes=3), device="g-north"),
                dead_letter(received=at(minutes=4), market=UNREGISTERED, device=UNREGISTERED),
                dead_letter(received=at(hours=2), device="sc-001"),
            ],
        )

        assert store.reject_counts(T0, at(hours=1)) == {
            (MARKET, "sc-001"): 2,
            (MARKET, "g-north"): 1,
            (UNREGISTERED, UNREGISTERED): 1,
        }
        assert store.reject_counts(at(hours=3), at(hours=4)) == {}
