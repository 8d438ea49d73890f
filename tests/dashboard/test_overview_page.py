"""The overview's renderers: a frame of alerts in, Dash components out (no store, no server)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from dashboard.i18n import Lang
from dashboard.pages.overview import ALERTS_SHOWN_PER_KIND, alert_list
from dashboard.queries.overview import ALERT_COLUMNS


def _alerts(kind: str, count: int) -> list[dict[str, Any]]:
    return [
        {"kind": kind, "subject": f"{kind}-{n:03d}", "detail": "", "since": None}
        for n in range(count)
    ]


def _items(components: list[Any]) -> list[Any]:
    (group,) = components
    return list(group.children)


def _text(component: Any) -> str:
    children = getattr(component, "children", component)
    if isinstance(children, list):
        return " ".join(_text(child) for child in children)
    return str(children)


def test_each_kind_lists_its_first_alerts_and_counts_the_rest_on_one_line() -> None:
    frame = pd.DataFrame([*_alerts("oversold", 3), *_alerts("offline", 300)], columns=ALERT_COLUMNS)

    items = _items(alert_list(frame, Lang.EN, "/trace"))

    assert len(items) == 3 + ALERTS_SHOWN_PER_KIND + 1
    offline = [item for item in items if "alert-offline" in item.className]
    assert [_text(item).split()[-1] for item in offline[:-1]] == [
        f"offline-{n:03d}" for n in range(ALERTS_SHOWN_PER_KIND)
    ]
    assert "alert-more" in offline[-1].className
    assert _text(offline[-1]).endswith(f"and {300 - ALERTS_SHOWN_PER_KIND:,} more")
    assert not any("alert-more" in item.className for item in items[:3])


def test_a_kind_at_the_limit_has_no_more_line() -> None:
    frame = pd.DataFrame(_alerts("offline", ALERTS_SHOWN_PER_KIND), columns=ALERT_COLUMNS)

    items = _items(alert_list(frame, Lang.ZH, "/trace"))

    assert len(items) == ALERTS_SHOWN_PER_KIND
    assert not any("alert-more" in item.className for item in items)
