"""Figure builders are pure: a frame in, a figure out. These check what the figure says."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from dashboard import figures
from dashboard.i18n import Lang
from dashboard.queries import MEDIAN

TZ = ZoneInfo("Asia/Shanghai")


def _texts(fig: object) -> list[str]:
    return [a.text for a in fig.layout.annotations]  # type: ignore[attr-defined]


def test_empty_frames_say_so_in_the_language() -> None:
    empty = pd.DataFrame({"day": [], "turnover_fen": [], "transactions": []})
    assert _texts(figures.turnover_trend(empty, Lang.ZH)) == ["暂无数据"]
    assert _texts(figures.turnover_trend(empty, Lang.EN)) == ["No data yet"]


def test_turnover_trend_plots_yuan_and_labels_exact_amounts() -> None:
    frame = pd.DataFrame(
        {
            "day": [date(2026, 11, 20), date(2026, 11, 21)],
            "turnover_fen": [123456, 7],
            "transactions": [40, 1],
        }
    )
    fig = figures.turnover_trend(frame, Lang.EN)
    bar = fig.data[0]
    assert list(bar.y) == [1234.56, 0.07]
    assert [row[0] for row in bar.customdata] == ["¥1,234.56", "¥0.07"]
    assert fig.layout.title.text == "Turnover, last 30 days"


def test_price_history_draws_the_median_on_top_in_the_languages_unit() -> None:
    start = datetime(2026, 11, 20, tzinfo=TZ)
    frame = pd.DataFrame(
        {
            "bucket_start": [start, start, start],
            "series": ["V01", "V02", MEDIAN],
            "fen": [Decimal(1200), Decimal(1300), Decimal(1250)],
        }
    )
    names = {"V01": "A01 老王", "V02": "A02 小李"}
    zh = figures.price_history(frame, Lang.ZH, title="走势", vendor_names=names)
    assert [trace.name for trace in zh.data] == ["A01 老王", "A02 小李", "市场中位价"]
    assert zh.data[-1].line.width == 4  # the median, bold, last so it is drawn on top
    assert list(zh.data[0].y) == [6.0]  # 1200 fen/kg is ¥6.00 per 斤
    assert list(zh.data[0].text) == ["¥6.00/斤"]
    en = figures.price_history(frame, Lang.EN, title="History", vendor_names=names)
    assert list(en.data[0].y) == [12.0]
    assert en.layout.yaxis.title.text == "CNY/kg"


def test_price_spread_marks_promotions() -> None:
    frame = pd.DataFrame(
        {
            "vendor": ["老王", "小李"],
            "stall": ["A01", "A02"],
            "fen": [1000, 1300],
            "promo": [True, False],
        }
    )
    fig = figures.price_spread(frame, Lang.EN, title="Spread")
    bar = fig.data[0]
    assert list(bar.y) == ["A01 老王", "A02 小李"]
    assert list(bar.text) == ["¥10.00/kg promo", "¥13.00/kg"]
    assert bar.marker.color[0] != bar.marker.color[1]


def test_footfall_by_gate_stacks_one_trace_per_gate() -> None:
    hour = datetime(2026, 11, 21, 7, tzinfo=TZ)
    frame = pd.DataFrame(
        {
            "gate": ["g-north", "g-south", "g-north"],
            "hour": [hour, hour, hour + timedelta(hours=1)],
            "people_in": [10, 5, 7],
            "people_out": [0, 0, 0],
        }
    )
    fig = figures.footfall_by_gate(frame, Lang.ZH, {"g-north": "北门"})
    assert fig.layout.barmode == "stack"
    assert [trace.name for trace in fig.data] == ["北门", "g-south"]
    assert list(fig.data[0].x) == ["07:00", "08:00"]
    assert list(fig.data[0].y) == [10, 7]


def test_heatmap_has_every_weekday_and_fills_missing_hours_with_zero() -> None:
    frame = pd.DataFrame({"weekday": [0, 6], "hour": [6, 8], "mean_in": [12.5, 3.0]})
    fig = figures.footfall_heatmap(frame, Lang.EN)
    heat = fig.data[0]
    assert list(heat.y) == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert list(heat.x) == ["06:00", "07:00", "08:00"]
    assert list(heat.z[0]) == [12.5, 0.0, 0.0]
    assert list(heat.z[6]) == [0.0, 0.0, 3.0]


def test_daily_footfall_colours_weekends() -> None:
    days = [date(2026, 11, 20), date(2026, 11, 21)]  # a Friday and a Saturday
    fig = figures.footfall_daily(pd.DataFrame({"day": days, "people_in": [100, 200]}), Lang.ZH)
    colours = list(fig.data[0].marker.color)
    assert colours[0] != colours[1]


@pytest.mark.parametrize(
    ("passed", "shown"), [(True, "passed"), (False, "FAILED"), (None, "not tested")]
)
def test_trace_timeline_shows_quantity_in_against_running_total_sold(
    passed: bool | None, shown: str
) -> None:
    intake = datetime(2026, 11, 21, 5, tzinfo=UTC)
    sales = pd.DataFrame(
        {
            "ts": [intake + timedelta(hours=1), intake + timedelta(hours=2)],
            "scale": ["s1", "s1"],
            "weight_g": [1000, 1500],
            "total_fen": [1300, 1950],
            "sold_g": [1000, 2500],
        }
    )
    fig = figures.trace_timeline(
        sales, Lang.EN, intake=intake, quantity_g=2000, passed=passed, vendor_label="A01"
    )
    quantity, intake_marker, sold = fig.data
    assert list(quantity.y) == [2.0, 2.0]  # kg in English
    assert list(sold.y) == [1.0, 2.5]  # the running total crosses the quantity: oversold
    assert intake_marker.name.endswith(f"Pesticide rapid test: {shown}")
    assert shown in intake_marker.hovertemplate
