"""The intake desk's form without a browser: what it makes of the fields, and what it stores.

A batch may come in without a rapid test (markets test a sample); a test is its
result and rate together, and half of one is refused on the missing field. The
form's callback body (``intake._register``) runs in a Flask app context as in a
request, against a real store and the registry's validator.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import flask
import pytest

from dashboard.forms import Outcome
from dashboard.i18n import Lang, t
from dashboard.manage import intake
from dashboard.queries import DashboardData
from ingest.validate import Validator
from marketview.live_mqtt import LiveView
from schemas.registry import Registry
from stallwatch.options import live_mqtt_options
from stallwatch.settings import Settings
from storage.base import Store
from storage.sqlite import SQLiteStore
from tests.ingest.helpers import write_market

MARKET = "tm"


def form(**changes: Any) -> dict[str, Any]:
    """The form's fields as the callback hands them over (blank fields are None)."""
    values: dict[str, Any] = {
        "station": "IN-1",
        "trace_code": "TM-FORM-0001",
        "vendor": "V01",
        "plu": "1001",
        "origin": "山东寿光",
        "supplier": "寿光批发市场",
        "quantity_kg": "12.5",
        "certificate_no": "HG-2026-0001",
        "rapid_test_result": None,
        "inhibition_pct": None,
    }
    return values | changes


def test_without_a_result_and_a_rate_the_batch_has_no_test() -> None:
    fields = intake.entry_fields(form(), Lang.EN)
    assert isinstance(fields, dict)
    assert "rapid_test" not in fields
    assert fields["quantity_g"] == 12_500


def test_a_result_and_a_rate_are_the_test() -> None:
    fields = intake.entry_fields(form(rapid_test_result="fail", inhibition_pct="62,5"), Lang.EN)
    assert isinstance(fields, dict)
    assert fields["rapid_test"] == {"result": "fail", "inhibition_pct": "62.5"}


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"rapid_test_result": "pass"}, "inhibition_pct"),
        ({"inhibition_pct": "12.5"}, "rapid_test_result"),
    ],
)
@pytest.mark.parametrize("lang", list(Lang))
def test_half_a_test_is_refused_on_the_missing_field(
    changes: dict[str, str], missing: str, lang: Lang
) -> None:
    outcome = intake.entry_fields(form(**changes), lang)
    assert isinstance(outcome, Outcome)
    assert outcome.colour == "danger"
    assert outcome.errors == {missing: t("intake.half_test", lang)}
    assert outcome.message == t("intake.half_test", lang)


def test_the_desk_can_say_a_batch_was_not_tested_in_both_languages() -> None:
    assert t("intake.not_tested", Lang.ZH) == "未检测"
    assert t("intake.not_tested", Lang.EN) == "not tested"
    assert t("trace.untested", Lang.ZH) == "未检测"
    assert t("trace.untested", Lang.EN) == "not tested"


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[DashboardData, Validator]]:
    """The form's data and validator on a real store; a live view that is never started
    (the form does not read it)."""
    registry = Registry.load([write_market(tmp_path)])
    store: Store = SQLiteStore(tmp_path / "store.db")
    settings = Settings(markets=(tmp_path / "tm.toml",))
    live = LiveView(registry, store, live_mqtt_options(settings))
    with store, flask.Flask(__name__).app_context():
        yield DashboardData(registry=registry, store=store, live=live), Validator(registry)


def register(desk: tuple[DashboardData, Validator], values: dict[str, Any]) -> Outcome:
    data, validator = desk
    return intake._register(data, validator, MARKET, Lang.EN, values)


def test_a_batch_entered_without_a_test_is_stored_as_not_tested(
    desk: tuple[DashboardData, Validator],
) -> None:
    outcome = register(desk, form())

    assert outcome.colour == "success", outcome.message
    assert outcome.message == "Registered batch TM-FORM-0001: not tested at intake"
    stored = desk[0].store.batch(MARKET, "TM-FORM-0001")
    assert stored is not None
    assert (stored.rapid_test_passed, stored.inhibition_pct, stored.quantity_g) == (
        None,
        None,
        12_500,
    )


def test_a_failed_test_is_stored_and_the_desk_warned(
    desk: tuple[DashboardData, Validator],
) -> None:
    outcome = register(desk, form(rapid_test_result="fail", inhibition_pct="62.5"))

    assert outcome.colour == "warning"
    assert "rapid test FAILED" in outcome.message
    stored = desk[0].store.batch(MARKET, "TM-FORM-0001")
    assert stored is not None
    assert (stored.rapid_test_passed, stored.inhibition_pct) == (False, Decimal("62.5"))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rapid_test_result": "pass"}, "inhibition_pct"),
        ({"inhibition_pct": "12.5"}, "rapid_test_result"),
        # Both given but disagreeing: the validator's reason, on the rate.
        ({"rapid_test_result": "pass", "inhibition_pct": "62.5"}, "inhibition_pct"),
    ],
)
def test_half_or_a_contradicting_test_stores_nothing(
    desk: tuple[DashboardData, Validator], changes: dict[str, str], field: str
) -> None:
    outcome = register(desk, form(**changes))

    assert outcome.colour == "danger"
    assert list(outcome.errors) == [field]
    assert desk[0].store.batch(MARKET, "TM-FORM-0001") is None
