"""How stallwatch's processes log: one line per event an operator should know of.

HTTP libraries log every request at INFO; with InfluxDB as the store that is a line per
batch, and during an outage and the drain after it hundreds of lines around the two that
matter (``store unavailable`` and ``store resumed``). They are kept to warnings unless
``--verbose`` asks for everything.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: Loggers that write a line per HTTP request, and Alembic's, which logs its plugins and
#: checks at every start of the market database (a migration it runs is logged here).
PER_REQUEST_LOGGERS = ("httpx", "httpcore", "alembic")


def configure_logging(*, verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT)
    if not verbose:
        quiet_per_request_loggers()


def quiet_per_request_loggers() -> None:
    for name in PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
