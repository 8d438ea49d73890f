"""The store's interfaces, one per concern; :class:`storage.base.Store` is their composition.

A new domain adds its own module here (an abstract class and its row types),
its contract tests in ``tests/storage/contract/``, and its class to
``Store``'s bases, rather than growing one interface and one test file.

Conventions for every query:

* ``start``/``end`` are timezone-aware datetimes; ranges are half-open
  ``[start, end)`` on the *device* time of the reading;
* results are ordered by time, oldest first, unless stated otherwise;
* money is integer fen and weights integer grams, exactly as received.
"""
