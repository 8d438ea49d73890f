"""The market database: markets, vendors, stalls, products and devices as relational data.

The registry that managers edit (issue 11). The time series stay in the store
(``storage``); this holds what they refer to. ``marketdb.database`` opens and
migrates it (SQLite or PostgreSQL), ``marketdb.marketfile`` imports and exports
market files, the way to seed and back up a market.
"""
