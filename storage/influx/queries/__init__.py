"""The store's reads, one module per interface in ``storage.interfaces``.

Each query is a function of a :class:`~storage.influx.reader.Reader` and the
interface method's arguments; ``InfluxStore`` only hands them its reader. How
rows are decoded, and why a row may be passed over, is :mod:`storage.influx.rows`.
"""
