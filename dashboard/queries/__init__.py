"""What the dashboard's pages show, asked of the store and the live view and shaped with pandas.

One module per page (``overview``, ``prices``, ``trace``, ``footfall``, ``foodsafety``,
``vendors``) and ``common`` for what they share; this package re-exports their public names.

Every function takes a :class:`DashboardData` and returns plain data (frames or
frozen dataclasses); none builds a component. Callbacks call one or two of these
and hand the result to a pure figure builder (:mod:`dashboard.figures`) or a grid.

Cost at scale is the point of this package: the dashboard runs all day on a
year-old store of hundreds of vendors, so nothing here reads more than a day of
raw sales. Longer ranges come from the store's rollups (``sales_by_hour``,
``footfall_hourly``, ``batch_balances``), and current prices from the live view,
which never touches the store.
"""

from dashboard.queries.common import (
    BATCH_ALERT_WINDOW,
    DEAD_LETTER_ROWS,
    GATE_SILENCE,
    HEATMAP_WEEKS,
    TREND_DAYS,
    DashboardData,
    Recent,
    day_start,
    is_open,
    local_time_text,
    market_today,
    product_name,
    unverified_counts,
    unverified_today,
)
from dashboard.queries.foodsafety import (
    TALLY_COLUMNS,
    lock_recalls,
    rapid_tests_of_day,
    tally_frame,
)
from dashboard.queries.footfall import footfall_daily, footfall_day, footfall_heatmap
from dashboard.queries.overview import (
    ALERT_COLUMNS,
    Overview,
    alerts,
    overview,
    turnover_by_day,
    vendors_online,
)
from dashboard.queries.prices import (
    MEDIAN,
    BoardCache,
    BoardRows,
    BoardUpdate,
    board_rows,
    price_history,
    price_spread,
    product_label,
    row_transaction,
)
from dashboard.queries.trace import (
    TraceChain,
    TraceQuery,
    UnverifiedReceipt,
    parse_trace_query,
    sales_frame,
    trace_chain,
)
from dashboard.queries.vendors import (
    VendorsToday,
    dead_letters,
    device_table,
    read_vendors_today,
    vendor_table,
)

__all__ = [
    "ALERT_COLUMNS",
    "BATCH_ALERT_WINDOW",
    "DEAD_LETTER_ROWS",
    "GATE_SILENCE",
    "HEATMAP_WEEKS",
    "MEDIAN",
    "TALLY_COLUMNS",
    "TREND_DAYS",
    "BoardCache",
    "BoardRows",
    "BoardUpdate",
    "DashboardData",
    "Overview",
    "Recent",
    "TraceChain",
    "TraceQuery",
    "UnverifiedReceipt",
    "VendorsToday",
    "alerts",
    "board_rows",
    "day_start",
    "dead_letters",
    "device_table",
    "footfall_daily",
    "footfall_day",
    "footfall_heatmap",
    "is_open",
    "local_time_text",
    "lock_recalls",
    "market_today",
    "overview",
    "parse_trace_query",
    "price_history",
    "price_spread",
    "product_label",
    "product_name",
    "rapid_tests_of_day",
    "read_vendors_today",
    "row_transaction",
    "sales_frame",
    "tally_frame",
    "trace_chain",
    "turnover_by_day",
    "unverified_counts",
    "unverified_today",
    "vendor_table",
    "vendors_online",
]
