"""The embedded SQLite store (the zero-setup default backend)."""

from storage.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
