"""Pure figure builders: a frame (from :mod:`dashboard.queries`) and a language in, a figure out.

No store, no clock, no Dash: each builder is tested by handing it a frame.

Money stays exact up to here. Plotly draws with JavaScript numbers, so an axis
value is ``float(Decimal)`` of yuan (a display value only, never summed again);
every hover label is the exact text from :mod:`dashboard.i18n`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from dashboard.i18n import (
    Lang,
    category_name,
    money_text,
    price_text,
    price_unit,
    t,
    weekday_names,
    weight_text,
)
from dashboard.queries import MEDIAN

_FONT = "Noto Sans CJK SC, PingFang SC, WenQuanYi Micro Hei, Microsoft YaHei, Helvetica, sans-serif"
_MARGIN = {"l": 48, "r": 16, "t": 40, "b": 40}
_MEDIAN_COLOUR = "#d62728"
_QUANTITY_COLOUR = "#2ca02c"
_SOLD_COLOUR = "#1f77b4"


def _flat_template() -> go.layout.Template:
    """``plotly_white``'s look for the flat charts drawn here, without its defaults for
    two dozen trace kinds and 3-D, polar and map axes never drawn: applying the whole
    template deep-copies it into every figure (33 ms a figure, a tenth of a callback's
    budget, against 3 ms) and sends its 7 KB to the browser with each."""
    layout = pio.templates["plotly_white"].layout.to_plotly_json()
    for unused in ("polar", "ternary", "scene", "geo", "coloraxis", "colorscale"):
        layout.pop(unused, None)
    return go.layout.Template(layout=layout)


_TEMPLATE = _flat_template()


def _layout_of(title: str, *, height: int = 320) -> dict[str, object]:
    return {
        "title": {"text": title, "x": 0, "font": {"size": 15}},
        "font": {"family": _FONT, "size": 12},
        "margin": _MARGIN,
        "height": height,
        "template": _TEMPLATE,
        "legend": {"orientation": "h", "y": -0.2},
        "hovermode": "closest",
    }


def _layout(fig: go.Figure, title: str, *, height: int = 320) -> go.Figure:
    fig.update_layout(_layout_of(title, height=height))
    return fig


def _empty(title: str, lang: Lang) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=t("no_data", lang), showarrow=False, font={"size": 14})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title)


def _yuan_axis_value(fen: int | Decimal) -> float:
    return float(Decimal(fen) / 100)


# -- overview --------------------------------------------------------------------------


def turnover_trend(frame: pd.DataFrame, lang: Lang) -> go.Figure:
    """Daily turnover bars from ``day, turnover_fen, transactions``."""
    title = t("trend.title", lang)
    if frame.empty or int(frame["turnover_fen"].sum()) == 0:
        return _empty(title, lang)
    fen = [int(v) for v in frame["turnover_fen"].tolist()]
    fig = go.Figure(
        go.Bar(
            x=frame["day"].tolist(),
            y=[_yuan_axis_value(v) for v in fen],
            customdata=[
                [money_text(v), int(n)]
                for v, n in zip(fen, frame["transactions"].tolist(), strict=True)
            ],
            hovertemplate="%{x|%Y-%m-%d}<br>%{customdata[0]}<br>%{customdata[1]}<extra></extra>",
            marker_color=_SOLD_COLOUR,
        )
    )
    fig.update_yaxes(title_text="CNY", tickprefix="¥")
    return _layout(fig, title, height=260)


# -- prices ----------------------------------------------------------------------------


def price_history(
    frame: pd.DataFrame, lang: Lang, *, title: str, vendor_names: Mapping[str, str]
) -> go.Figure:
    """Each vendor's regular price as a thin line and the market median as a bold one.

    ``frame`` is ``bucket_start, series, fen`` (fen per kg; ``series`` a vendor id
    or ``MEDIAN``). Prices are shown in the language's unit (per 斤 or per kg).
    """
    if frame.empty:
        return _empty(title, lang)
    vendors: list[dict[str, object]] = []
    medians: list[dict[str, object]] = []
    for series, points in frame.groupby("series", sort=True):
        is_median = series == MEDIAN
        name = t("history.median", lang) if is_median else vendor_names.get(str(series), series)
        line: dict[str, object] = {"width": 4 if is_median else 1.2, "shape": "hv"}
        if is_median:
            line["color"] = _MEDIAN_COLOUR
        fens = points["fen"].tolist()
        (medians if is_median else vendors).append(
            {
                "type": "scatter",
                "x": points["bucket_start"].tolist(),
                "y": [_unit_axis_value(f, lang) for f in fens],
                "text": [price_text(f, lang) for f in fens],
                "name": str(name),
                "mode": "lines",
                "line": line,
                "opacity": 1.0 if is_median else 0.55,
                "hovertemplate": "%{x|%m-%d %H:%M}<br>%{text}<extra>%{fullData.name}</extra>",
            }
        )
    # One construction, not a trace at a time (each add re-validates the figure: a
    # product sold by 40 vendors took 80 ms); the median last, on top.
    layout = _layout_of(title, height=340)
    layout["yaxis"] = {"title": {"text": price_unit(lang)}, "tickprefix": "¥"}
    return go.Figure(data=[*vendors, *medians], layout=layout)


def _unit_axis_value(fen_per_kg: int | Decimal, lang: Lang) -> float:
    per_unit = Decimal(fen_per_kg) / (2 if lang is Lang.ZH else 1)
    return float(per_unit / 100)


def price_spread(frame: pd.DataFrame, lang: Lang, *, title: str) -> go.Figure:
    """Current price per vendor from ``vendor, stall, fen, promo``, cheapest first."""
    if frame.empty:
        return _empty(title, lang)
    labels = [
        f"{stall} {vendor}" for vendor, stall in zip(frame["vendor"], frame["stall"], strict=True)
    ]
    fens = [int(f) for f in frame["fen"].tolist()]
    promo = [bool(p) for p in frame["promo"].tolist()]
    fig = go.Figure(
        go.Bar(
            x=[_unit_axis_value(f, lang) for f in fens],
            y=labels,
            orientation="h",
            text=[
                price_text(f, lang) + (" 促" if p and lang is Lang.ZH else " promo" if p else "")
                for f, p in zip(fens, promo, strict=True)
            ],
            textposition="auto",
            marker_color=["#ff7f0e" if p else _SOLD_COLOUR for p in promo],
            hovertemplate="%{y}<br>%{text}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text=price_unit(lang), tickprefix="¥")
    return _layout(fig, title, height=max(240, 26 * len(labels) + 80))


# -- footfall --------------------------------------------------------------------------


def footfall_by_gate(frame: pd.DataFrame, lang: Lang, gate_names: Mapping[str, str]) -> go.Figure:
    """People in per local hour, one stacked bar segment per gate (``gate, hour, people_in``)."""
    title = t("footfall.hourly", lang)
    if frame.empty:
        return _empty(title, lang)
    fig = go.Figure()
    for gate, rows in frame.groupby("gate", sort=True):
        fig.add_trace(
            go.Bar(
                x=[h.strftime("%H:00") for h in rows["hour"].tolist()],
                y=rows["people_in"].tolist(),
                name=gate_names.get(str(gate), str(gate)),
                hovertemplate="%{x} %{y}<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text=t("hour", lang), categoryorder="category ascending")
    fig.update_yaxes(title_text=t("people", lang))
    return _layout(fig, title)


def footfall_heatmap(frame: pd.DataFrame, lang: Lang) -> go.Figure:
    """Mean people in per weekday × hour from ``weekday, hour, mean_in``."""
    title = t("footfall.heatmap", lang)
    if frame.empty:
        return _empty(title, lang)
    hours = list(range(int(frame["hour"].min()), int(frame["hour"].max()) + 1))
    grid = (
        frame.pivot_table(index="weekday", columns="hour", values="mean_in", aggfunc="sum")
        .reindex(index=range(7), columns=hours)
        .fillna(0)
    )
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy().tolist(),
            x=[f"{h:02d}:00" for h in hours],
            y=list(weekday_names(lang)),
            colorscale="YlOrRd",
            hovertemplate="%{y} %{x}<br>%{z}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title)


def footfall_daily(frame: pd.DataFrame, lang: Lang) -> go.Figure:
    """Daily people in from ``day, people_in``, weekends marked."""
    title = t("footfall.daily", lang)
    if frame.empty or int(frame["people_in"].sum()) == 0:
        return _empty(title, lang)
    days = frame["day"].tolist()
    fig = go.Figure(
        go.Bar(
            x=days,
            y=frame["people_in"].tolist(),
            marker_color=["#9467bd" if d.weekday() >= 5 else _SOLD_COLOUR for d in days],
            hovertemplate="%{x|%Y-%m-%d}<br>%{y}<extra></extra>",
        )
    )
    fig.update_yaxes(title_text=t("people", lang))
    return _layout(fig, title, height=280)


# -- food safety -----------------------------------------------------------------------

_PASSED_COLOUR = "#2ca02c"
_UNTESTED_COLOUR = "#c7c7c7"


def tests_by_category(frame: pd.DataFrame, lang: Lang) -> go.Figure:
    """Batches passed, failed and not tested per category, stacked, from ``category, passed,
    failed, untested, …`` (``dashboard.queries.tally_frame``); the hover gives the pass rate."""
    title = t("fs.by_category", lang)
    if frame.empty:
        return _empty(title, lang)
    names = [category_name(str(c), lang) for c in frame["category"].tolist()]
    rates = ["–" if rate is None else f"{rate}%" for rate in frame["pass_rate_pct"].tolist()]
    bars = (
        ("passed", t("fs.passed", lang), _PASSED_COLOUR),
        ("failed", t("fs.failed_short", lang), _MEDIAN_COLOUR),
        ("untested", t("fs.untested_short", lang), _UNTESTED_COLOUR),
    )
    fig = go.Figure(
        [
            go.Bar(
                x=names,
                y=frame[column].tolist(),
                name=label,
                marker_color=colour,
                customdata=rates,
                hovertemplate=f"%{{x}} {label} %{{y}}<br>{t('fs.pass_rate', lang)} "
                "%{customdata}<extra></extra>",
            )
            for column, label, colour in bars
        ],
        layout=_layout_of(title, height=300),
    )
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title_text=t("fs.batches", lang), rangemode="tozero")
    return fig


# -- traceability ----------------------------------------------------------------------


#: The intake's test on the timeline: passed, failed, not tested at intake (None).
_TEST_TEXT = {True: "trace.passed", False: "trace.failed", None: "trace.untested"}
_TEST_COLOUR = {True: _QUANTITY_COLOUR, False: "#d62728", None: "#7f7f7f"}


def trace_timeline(
    sales: pd.DataFrame,
    lang: Lang,
    *,
    intake: datetime,
    quantity_g: int,
    passed: bool | None,
    vendor_label: str,
) -> go.Figure:
    """The batch's life: intake and its test (``passed`` None: not tested at intake), then
    every sale and the running total sold.

    ``sales`` is ``ts, scale, weight_g, total_fen, sold_g`` in time order. The
    line of quantity taken in is what the running total must stay under.
    """
    title = t("trace.timeline", lang)
    fig = go.Figure()
    end = sales["ts"].iloc[-1] if not sales.empty else intake
    fig.add_trace(
        go.Scatter(
            x=[intake, end],
            y=[_weight_axis(quantity_g, lang)] * 2,
            mode="lines",
            name=t("trace.quantity_in", lang),
            line={"color": _QUANTITY_COLOUR, "dash": "dash", "width": 2},
            hovertemplate=weight_text(quantity_g, lang) + "<extra></extra>",
        )
    )
    test = t(_TEST_TEXT[passed], lang)
    fig.add_trace(
        go.Scatter(
            x=[intake],
            y=[0],
            mode="markers+text",
            name=f"{t('trace.intake', lang)} · {t('trace.rapid_test', lang)}: {test}",
            text=[f"{t('trace.intake', lang)} → {vendor_label}"],
            textposition="top right",
            marker={
                "size": 14,
                "symbol": "diamond",
                "color": _TEST_COLOUR[passed],
            },
            hovertemplate=f"{t('trace.rapid_test', lang)}: {test}<extra></extra>",
        )
    )
    if not sales.empty:
        sold = [int(v) for v in sales["sold_g"].tolist()]
        fig.add_trace(
            go.Scatter(
                x=sales["ts"].tolist(),
                y=[_weight_axis(v, lang) for v in sold],
                mode="lines+markers",
                line={"shape": "hv", "color": _SOLD_COLOUR},
                name=t("trace.sold", lang),
                customdata=[
                    [scale, weight_text(int(w), lang), money_text(int(f)), weight_text(s, lang)]
                    for scale, w, f, s in zip(
                        sales["scale"], sales["weight_g"], sales["total_fen"], sold, strict=True
                    )
                ],
                hovertemplate=(
                    "%{x|%m-%d %H:%M:%S} %{customdata[0]}<br>%{customdata[1]} %{customdata[2]}"
                    "<br>Σ %{customdata[3]}<extra></extra>"
                ),
            )
        )
    fig.update_yaxes(title_text="斤" if lang is Lang.ZH else "kg", rangemode="tozero")
    return _layout(fig, title, height=340)


def _weight_axis(grams: int, lang: Lang) -> float:
    return float(Decimal(grams) / (500 if lang is Lang.ZH else 1000))
