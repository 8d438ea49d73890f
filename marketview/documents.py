"""Vendors' licences and staff health certificates: which have expired or expire soon.

The local standards for smart markets (e.g. DB3208/T 128-2019) ask a market to
keep every vendor's food-trade licence and staff health certificates valid and
shown; the overview warns about those that lapse within :data:`EXPIRY_WARNING`,
and the public stall screens (a later issue) show the same status, so it is
computed here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Final

from schemas.registry import Market

#: How far ahead an expiry is announced (the issue: 30 days).
EXPIRY_WARNING: Final = timedelta(days=30)


class DocumentKind(StrEnum):
    FOOD_LICENCE = "food_licence"
    HEALTH_CERTIFICATE = "health_certificate"


@dataclass(frozen=True, slots=True)
class DocumentExpiry:
    """A licence or certificate of an active vendor that has expired or soon will."""

    kind: DocumentKind
    vendor: str
    vendor_name: str
    number: str
    #: whose certificate (None for a licence)
    holder: str | None
    expires: date
    #: days from today to the expiry: negative once expired, 0 on its last valid day
    days_left: int

    @property
    def expired(self) -> bool:
        return self.days_left < 0


def expiring_documents(
    market: Market, today: date, *, within: timedelta = EXPIRY_WARNING
) -> list[DocumentExpiry]:
    """Active vendors' documents expired or expiring within ``within``, soonest first.

    A document is valid through its expiry date; it has expired the day after.
    """
    found: list[DocumentExpiry] = []
    for vendor in market.active_vendors:
        if vendor.food_licence_no is not None and vendor.food_licence_expires is not None:
            found.append(
                DocumentExpiry(
                    DocumentKind.FOOD_LICENCE,
                    vendor.id,
                    vendor.name,
                    vendor.food_licence_no,
                    None,
                    vendor.food_licence_expires,
                    (vendor.food_licence_expires - today).days,
                )
            )
        found += [
            DocumentExpiry(
                DocumentKind.HEALTH_CERTIFICATE,
                vendor.id,
                vendor.name,
                certificate.number,
                certificate.holder,
                certificate.expires,
                (certificate.expires - today).days,
            )
            for certificate in vendor.health_certificates
        ]
    due = [doc for doc in found if doc.days_left <= within.days]
    return sorted(due, key=lambda doc: (doc.days_left, doc.vendor, doc.number))
