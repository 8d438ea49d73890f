"""Component ids, in one place: layouts and callbacks must agree on them, and tests use them."""

from __future__ import annotations

# -- the shell (every page) --------------------------------------------------------------
URL = "url"
PAGE = "page-content"
LANG = "lang"  # a dcc.Store holding "zh" or "en", kept in the browser's local storage
LANG_SWITCH = "lang-switch"
MARKET = "market"
NAV = "nav"
NAV_LINK = "nav-link"  # pattern-matching: {"type": NAV_LINK, "page": <path>}
BRAND = "brand"
LOGOUT = "logout"

# -- overview ----------------------------------------------------------------------------
OVERVIEW_TICK = "overview-tick"
OVERVIEW_KPIS = "overview-kpis"
OVERVIEW_ALERTS = "overview-alerts"
OVERVIEW_TREND = "overview-trend"

# -- live prices -------------------------------------------------------------------------
PRICES_TICK = "prices-tick"
PRICES_GRID = "prices-grid"
PRICES_VERSION = "prices-version"  # the board version the browser's grid shows
PRICES_HISTORY = "prices-history"
PRICES_SPREAD = "prices-spread"
PRICES_DETAIL_TITLE = "prices-detail-title"
PRICES_RANGE = "prices-range"

# -- traceability ------------------------------------------------------------------------
TRACE_QUERY = "trace-query"
TRACE_SEARCH = "trace-search"
TRACE_RESULT = "trace-result"
TRACE_TIMELINE = "trace-timeline"
TRACE_SALES = "trace-sales"

# -- footfall ----------------------------------------------------------------------------
FOOTFALL_DAY = "footfall-day"
FOOTFALL_HOURLY = "footfall-hourly"
FOOTFALL_HEATMAP = "footfall-heatmap"
FOOTFALL_DAILY = "footfall-daily"
FOOTFALL_SUMMARY = "footfall-summary"

# -- food safety -------------------------------------------------------------------------
FOOD_SAFETY_TICK = "food-safety-tick"
FOOD_SAFETY_DAY = "food-safety-day"
FOOD_SAFETY_KPIS = "food-safety-kpis"
FOOD_SAFETY_BY_CATEGORY = "food-safety-by-category"
FOOD_SAFETY_FAILED = "food-safety-failed"
FOOD_SAFETY_LOCKS = "food-safety-locks"
#: Pattern-matching type of a lock row's CSV button; its ``index`` is the lock's id.
FOOD_SAFETY_RECALL_CSV = "food-safety-recall-csv"
FOOD_SAFETY_RECALL_DOWNLOAD = "food-safety-recall-download"
FOOD_SAFETY_UNLOCK_WHICH = "food-safety-unlock-which"
FOOD_SAFETY_UNLOCK_REASON = "food-safety-unlock-reason"
FOOD_SAFETY_UNLOCK = "food-safety-unlock"
FOOD_SAFETY_UNLOCK_RESULT = "food-safety-unlock-result"

# -- vendors & devices -------------------------------------------------------------------
VENDORS_TICK = "vendors-tick"
VENDORS_GRID = "vendors-grid"
DEVICES_GRID = "devices-grid"
DEAD_LETTERS_GRID = "dead-letters-grid"
