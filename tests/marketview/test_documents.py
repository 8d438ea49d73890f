"""Licences and health certificates that have expired or expire within 30 days."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from marketview.documents import DocumentKind, expiring_documents
from schemas.registry import HealthCertificate, Market, MarketFile, load_market
from tests.ingest.helpers import write_market

TODAY = date(2026, 11, 26)


def market_with(tmp_path: Path, **vendor_changes: object) -> Market:
    spec = load_market(write_market(tmp_path)).spec
    first = spec.vendors[0].model_copy(update=vendor_changes)
    return Market(MarketFile(**{**dict(spec), "vendors": (first, *spec.vendors[1:])}))


def certificate(number: str, expires: date) -> HealthCertificate:
    return HealthCertificate(holder="王五", number=number, expires=expires)


def test_documents_are_due_from_30_days_ahead_and_expired_the_day_after_their_date(
    tmp_path: Path,
) -> None:
    market = market_with(
        tmp_path,
        food_licence_no="JY13201000000001",
        food_licence_expires=TODAY + timedelta(days=30),
        health_certificates=(
            certificate("JK-TODAY", TODAY),
            certificate("JK-GONE", TODAY - timedelta(days=1)),
            certificate("JK-LATER", TODAY + timedelta(days=31)),
        ),
    )

    due = expiring_documents(market, TODAY)

    assert [(d.number, d.days_left, d.expired) for d in due] == [
        ("JK-GONE", -1, True),
        ("JK-TODAY", 0, False),
        ("JY13201000000001", 30, False),
    ]
    assert due[0].kind is DocumentKind.HEALTH_CERTIFICATE
    assert due[0].holder == "王五"
    assert due[2].kind is DocumentKind.FOOD_LICENCE
    assert due[2].holder is None


def test_a_vendor_who_left_and_a_licence_without_expiry_are_not_due(tmp_path: Path) -> None:
    gone = market_with(
        tmp_path,
        active=False,
        health_certificates=(certificate("JK-GONE", TODAY - timedelta(days=400)),),
    )
    undated = market_with(tmp_path, food_licence_no="JY13201000000001")

    assert expiring_documents(gone, TODAY) == []
    assert expiring_documents(undated, TODAY) == []
