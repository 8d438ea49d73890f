"""InfluxDB backend: line protocol, InfluxQL with bound parameters, the v1 HTTP client, the store.

Everything speaks InfluxDB's v1 ``/write`` and ``/query`` endpoints, which 1.x
serves natively and 2.x/3.x serve for compatibility; ``v2setup`` provisions
2.x (bucket + DBRP mapping) for them. See ``docs/influxdb-compatibility.md``.
"""

from storage.influx.client import InfluxClient, InfluxDatabaseNotFound, RetryPolicy
from storage.influx.store import InfluxStore

__all__ = ["InfluxClient", "InfluxDatabaseNotFound", "InfluxStore", "RetryPolicy"]
