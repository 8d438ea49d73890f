"""The outage log: one line when the store goes away, one when it is back."""

from __future__ import annotations

import logging
import threading

import pytest

from storage._exceptions import StoreQueryError, StoreUnavailable
from storage.outage import OutageLog

LOGGER = "tests.outage"


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


@pytest.fixture
def outage(caplog: pytest.LogCaptureFixture) -> OutageLog:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    seconds = iter([100.0, 142.4])
    return OutageLog(logging.getLogger(LOGGER), clock=lambda: next(seconds))


def test_many_failures_are_one_warning_and_one_recovery(
    outage: OutageLog, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(50):
        outage.failed(StoreUnavailable("connection refused"), "GET /x")
    outage.answered()
    outage.answered()

    loud = [(level, text) for level, text in records(caplog) if level >= logging.INFO]
    assert loud == [
        (logging.WARNING, "store unavailable (connection refused); answering 503 until it is back"),
        (logging.INFO, "store resumed after 42 s; 50 requests were answered 503"),
    ]
    assert not outage.in_outage


def test_answers_without_an_outage_log_nothing(
    outage: OutageLog, caplog: pytest.LogCaptureFixture
) -> None:
    outage.answered()
    assert records(caplog) == []


def test_a_refused_query_is_an_error_each_time_and_no_outage(
    outage: OutageLog, caplog: pytest.LogCaptureFixture
) -> None:
    outage.failed(StoreQueryError("bad query"), "GET /a")
    outage.failed(StoreQueryError("bad query"), "GET /b")
    assert [level for level, _ in records(caplog)] == [logging.ERROR, logging.ERROR]
    assert not outage.in_outage


def test_concurrent_failures_start_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    outage = OutageLog(logging.getLogger(LOGGER))
    start = threading.Barrier(8)

    def fail() -> None:
        start.wait()
        for _ in range(100):
            outage.failed(StoreUnavailable("down"), "callback")

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outage.answered()

    loud = [text for level, text in records(caplog) if level >= logging.INFO]
    assert len(loud) == 2
    assert loud[1].endswith("800 requests were answered 503")
